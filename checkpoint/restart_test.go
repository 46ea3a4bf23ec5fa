package checkpoint_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
)

type step struct {
	delay   time.Duration
	restart bool
}

// must returns s, panicking on err (arguments valid by construction).
func must(s checkpoint.RestartStrategy, err error) checkpoint.RestartStrategy {
	if err != nil {
		panic(err)
	}
	return s
}

func TestRestartStrategies(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		s    checkpoint.RestartStrategy
		want []step // for failures 1, 2, ...
	}{
		{"none", checkpoint.NoRestart(), []step{{0, false}, {0, false}}},
		{"fixed 2", must(checkpoint.FixedDelay(2, time.Second)), []step{{time.Second, true}, {time.Second, true}, {0, false}, {0, false}}},
		{"fixed unlimited", must(checkpoint.FixedDelay(checkpoint.UnlimitedAttempts, 0)), []step{{0, true}, {0, true}, {0, true}}},
		{"exponential", must(checkpoint.ExponentialBackoff(100*time.Millisecond, time.Second, 2, 6)), []step{
			{100 * time.Millisecond, true}, {200 * time.Millisecond, true}, {400 * time.Millisecond, true},
			{800 * time.Millisecond, true}, {time.Second, true}, {time.Second, true}, {0, false}}},
		{"exponential x1.5 unlimited", must(checkpoint.ExponentialBackoff(time.Second, time.Hour, 1.5, 0)), []step{
			{time.Second, true}, {1500 * time.Millisecond, true}, {2250 * time.Millisecond, true}}},
		{"exponential multiplier 1", must(checkpoint.ExponentialBackoff(time.Second, time.Second, 1, 2)), []step{
			{time.Second, true}, {time.Second, true}, {0, false}}},
	}
	for _, tc := range tests {
		for i, w := range tc.want {
			d, ok := tc.s.Next(i+1, boom)
			require.Equal(t, w, step{d, ok}, "%s: failure %d", tc.name, i+1)
		}
	}
	// Far out, the backoff stays at its maximum without overflowing.
	d, ok := must(checkpoint.ExponentialBackoff(time.Second, time.Minute, 10, 0)).Next(10_000, boom)
	require.True(t, ok)
	require.Equal(t, time.Minute, d)
}

func TestRestartStrategyArguments(t *testing.T) {
	bad := []struct {
		name string
		err  error
		want string
	}{
		{"fixed attempts", second(checkpoint.FixedDelay(-1, time.Second)), "attempts is -1"},
		{"fixed delay", second(checkpoint.FixedDelay(1, -time.Second)), "delay is -1s"},
		{"exp initial", second(checkpoint.ExponentialBackoff(0, time.Second, 2, 0)), "initial delay is 0s"},
		{"exp max", second(checkpoint.ExponentialBackoff(time.Second, time.Millisecond, 2, 0)), "max delay 1ms is less than the initial delay 1s"},
		{"exp multiplier", second(checkpoint.ExponentialBackoff(time.Second, time.Minute, 0.5, 0)), "multiplier is 0.5"},
		{"exp attempts", second(checkpoint.ExponentialBackoff(time.Second, time.Minute, 2, -3)), "max attempts is -3"},
		{"jitter fraction", second(checkpoint.WithJitter(checkpoint.NoRestart(), 1.5, nil)), "fraction is 1.5"},
		{"jitter nil", second(checkpoint.WithJitter(nil, 0.5, nil)), "nil restart strategy"},
	}
	for _, tc := range bad {
		require.ErrorContains(t, tc.err, tc.want, tc.name)
	}
}

func second(s checkpoint.RestartStrategy, err error) error {
	if s != nil {
		panic("a strategy with an error")
	}
	return err
}

func TestRestartStrategyString(t *testing.T) {
	require.Equal(t, "fixed delay 1s, at most 3 attempts with jitter 0.2",
		fmt.Sprint(must(checkpoint.WithJitter(must(checkpoint.FixedDelay(3, time.Second)), 0.2, nil))))
	require.Equal(t, "exponential backoff from 1s by 2 up to 1m0s, unlimited attempts",
		fmt.Sprint(must(checkpoint.ExponentialBackoff(time.Second, time.Minute, 2, 0))))
	require.Equal(t, "no restart", fmt.Sprint(checkpoint.NoRestart()))
}

func TestJitter(t *testing.T) {
	base := must(checkpoint.FixedDelay(3, time.Second))
	j := must(checkpoint.WithJitter(base, 0.5, rand.New(rand.NewPCG(1, 2))))
	seen := map[time.Duration]bool{}
	for i := 1; i <= 3; i++ {
		d, ok := j.Next(i, nil)
		require.True(t, ok)
		require.GreaterOrEqual(t, d, 500*time.Millisecond)
		require.LessOrEqual(t, d, time.Second)
		seen[d] = true
	}
	require.Greater(t, len(seen), 1, "delays are spread")
	_, ok := j.Next(4, nil)
	require.False(t, ok, "jitter keeps the decision")

	// The same seed gives the same delays.
	j2 := must(checkpoint.WithJitter(base, 0.5, rand.New(rand.NewPCG(1, 2))))
	j3 := must(checkpoint.WithJitter(base, 0.5, rand.New(rand.NewPCG(1, 2))))
	for i := 1; i <= 3; i++ {
		a, _ := j2.Next(i, nil)
		b, _ := j3.Next(i, nil)
		require.Equal(t, a, b)
	}
	// Global randomness stays within bounds too.
	jg := must(checkpoint.WithJitter(base, 1, nil))
	d, _ := jg.Next(1, nil)
	require.LessOrEqual(t, d, time.Second)
	require.GreaterOrEqual(t, d, time.Duration(0))
}

func TestRestartTrackerResetsAfterStableRun(t *testing.T) {
	tr := &checkpoint.RestartTracker{Strategy: must(checkpoint.FixedDelay(2, time.Second)), ResetAfter: time.Minute}
	for i, tc := range []struct {
		ranFor   time.Duration
		restart  bool
		failures int
	}{
		{time.Second, true, 1},
		{time.Second, true, 2},
		{time.Second, false, 3},     // a third quick failure: give up
		{2 * time.Minute, true, 1},  // but a stable run resets the count
		{59 * time.Second, true, 2}, // just short of ResetAfter
		{time.Minute, true, 1},      // exactly ResetAfter counts as stable
	} {
		_, ok := tr.Failed(tc.ranFor, errors.New("x"))
		require.Equal(t, tc.restart, ok, "step %d", i)
		require.Equal(t, tc.failures, tr.Failures(), "step %d", i)
	}
	never := &checkpoint.RestartTracker{Strategy: checkpoint.NoRestart()}
	never.Failed(time.Hour, nil)
	never.Failed(time.Hour, nil)
	require.Equal(t, 2, never.Failures(), "ResetAfter 0 never resets")
}
