package clickstream_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/clickstream"
)

// Demo starts a server and the generator; the job built on the config it
// set up writes every result to files under ./sluice-demo-output/run-*.
func TestDemo(t *testing.T) {
	t.Chdir(t.TempDir())
	began := time.Now()
	cfg := jobs.Config{Params: map[string]string{"demo-events": "30000", "demo-rate": "0"}}
	stop, ready, err := clickstream.Demo(context.Background(), &cfg)
	require.NoError(t, err)
	defer func() { require.NoError(t, stop()) }()
	require.NotEmpty(t, cfg.NATS.URL)
	require.True(t, strings.HasPrefix(cfg.OutputDir, filepath.Join(clickstream.DefaultDemoOutputDir, "run-")), cfg.OutputDir)

	select {
	case <-ready:
	case <-time.After(time.Minute):
		t.Fatal("the demo generator did not publish its events within a minute")
	}
	// Read what was published and end (the runner ends a live job instead).
	cfg.Bounded = true
	job, counters, err := clickstream.BuildWithCounters(cfg)
	require.NoError(t, err)
	require.NoError(t, job.Run(context.Background()))
	t.Logf("demo of 30000 events: results after %v, %d malformed, %d late", time.Since(began), counters.Malformed(), counters.Late())
	require.Positive(t, counters.Malformed())
	require.Positive(t, counters.Late())

	for _, r := range clickstream.Results {
		var files []string
		err := filepath.WalkDir(filepath.Join(cfg.OutputDir, r), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
				files = append(files, p)
			}
			return err
		})
		require.NoError(t, err)
		require.NotEmpty(t, files, "no result files for %s", r)
	}
	rows := readResults(t, cfg.OutputDir, false)
	require.Len(t, rows.Top, len(windows(rows.Views))*clickstream.DefaultTop)

	// stop is idempotent.
	require.NoError(t, stop())
	require.NoError(t, stop())
}

// Demo reports bad parameters before it starts anything.
func TestDemoBadParams(t *testing.T) {
	cfg := jobs.Config{Params: map[string]string{"demo-events": "many"}}
	_, _, err := clickstream.Demo(context.Background(), &cfg)
	require.ErrorIs(t, err, clickstream.ErrParam)
	require.ErrorContains(t, err, `demo-events="many"`)
	require.Empty(t, cfg.NATS.URL)
}
