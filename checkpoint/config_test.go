package checkpoint_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
)

func TestConfigDefaults(t *testing.T) {
	d := checkpoint.DefaultConfig()
	require.Equal(t, checkpoint.Config{Timeout: 10 * time.Minute, Retain: 3}, d)
	require.False(t, d.Enabled())
	require.NoError(t, d.Validate())
	require.NoError(t, checkpoint.Config{}.Validate(), "the zero Config is valid")

	c := checkpoint.Config{Interval: time.Second, Timeout: time.Minute, Retain: 5, TolerableFailures: 2}.WithDefaults()
	require.Equal(t, checkpoint.Config{Interval: time.Second, Timeout: time.Minute, Retain: 5, TolerableFailures: 2}, c, "set fields are kept")
	require.True(t, c.Enabled())
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  checkpoint.Config
		want []string
	}{
		{checkpoint.Config{Interval: -time.Second}, []string{"Interval is -1s"}},
		{checkpoint.Config{Timeout: -1}, []string{"Timeout is -1ns"}},
		{checkpoint.Config{MinPause: -time.Millisecond}, []string{"MinPause is -1ms"}},
		{checkpoint.Config{TolerableFailures: -1}, []string{"TolerableFailures is -1"}},
		{checkpoint.Config{Retain: -2}, []string{"Retain is -2"}},
		{checkpoint.Config{Interval: -1, Retain: -1}, []string{"Interval", "Retain"}},
	}
	for _, tc := range tests {
		err := tc.cfg.Validate()
		require.Error(t, err, "%+v", tc.cfg)
		for _, w := range tc.want {
			require.ErrorContains(t, err, w)
		}
	}
	require.NoError(t, checkpoint.Config{Interval: time.Millisecond, MinPause: time.Second, TolerableFailures: 3}.Validate())
}
