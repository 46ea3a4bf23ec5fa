package jobs_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/jobs"
)

func build(jobs.Config) (*dataflow.Job, error) { return dataflow.NewJob("x"), nil }

func TestRegistry(t *testing.T) {
	r := jobs.NewRegistry()
	r.Register(jobs.Definition{Name: "b", Build: build})
	r.Register(jobs.Definition{Name: "a", Build: build})
	all := r.All()
	require.Equal(t, "a", all[0].Name)
	require.Equal(t, "b", all[1].Name)
	d, err := r.Lookup("b")
	require.NoError(t, err)
	require.Equal(t, "b", d.Name)
	_, err = r.Lookup("c")
	require.ErrorIs(t, err, jobs.ErrUnknownJob)
	require.EqualError(t, err, `jobs: unknown job "c" (registered: [a b])`)
	require.PanicsWithValue(t, "jobs: Register called twice for job a", func() { r.Register(jobs.Definition{Name: "a", Build: build}) })
	require.Panics(t, func() { r.Register(jobs.Definition{Name: "nobuild"}) })
}

func TestConfigParams(t *testing.T) {
	c := jobs.Config{Params: map[string]string{"n": "12", "bad": "x", "f": "1.5"}}
	n, err := c.Int("n", 3)
	require.NoError(t, err)
	require.Equal(t, int64(12), n)
	n, err = c.Int("missing", 3)
	require.NoError(t, err)
	require.Equal(t, int64(3), n)
	_, err = c.Int("bad", 3)
	require.EqualError(t, err, `parameter bad="x": not an integer`)
	f, err := c.Float("f", 0)
	require.NoError(t, err)
	require.Equal(t, 1.5, f)
	_, err = c.Float("bad", 0)
	require.EqualError(t, err, `parameter bad="x": not a number`)
}
