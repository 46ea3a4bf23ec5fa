package clickstream_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/clickstream"
)

// The job's results are those of a plain batch computation over the stream,
// for both file formats, both ways of handling malformed events and two
// parallelisms; malformed events are counted and in no result.
func TestJobMatchesBatch(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	g := testGenerator(40_000)
	publish(t, nc, g)
	msgs := readStream(t, nc, g.Stream)
	require.Len(t, msgs, int(g.Count))
	want, malformed := reference(msgs, time.Minute, clickstream.DefaultOutOfOrder, clickstream.DefaultLateness, clickstream.DefaultTop)

	// The generated data exercise what the test is about.
	require.Greater(t, malformed, 50)
	require.Greater(t, len(want.Late), 100)
	// Six minutes, and windows before the start: a partition's first events
	// are on time whatever their time.
	require.GreaterOrEqual(t, len(windows(want.Views)), 6)
	require.NotEmpty(t, want.Errors)
	require.GreaterOrEqual(t, len(want.Top), 6*clickstream.DefaultTop)

	for _, tc := range []struct {
		name        string
		parallelism int
		params      map[string]string
	}{
		{"jsonl-dead-letter-p2", 2, nil},
		{"parquet-skip-p1", 1, map[string]string{"format": "parquet", "malformed": "skip"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			cfg := jobs.Config{
				Job:       dataflow.Config{Parallelism: tc.parallelism},
				Params:    tc.params,
				NATS:      jetstream.ConnConfig{URL: srv.URL()},
				Start:     jetstream.Earliest(),
				Bounded:   true,
				OutputDir: out,
			}
			job, counters, err := clickstream.BuildWithCounters(cfg)
			require.NoError(t, err)
			require.NoError(t, job.Run(context.Background()))

			got := readResults(t, out, tc.params["format"] == "parquet")
			requireResults(t, want, got)
			require.EqualValues(t, malformed, counters.Malformed())
			require.EqualValues(t, len(want.Late), counters.Late())
		})
	}

	// With dead-letter, every malformed payload is in the dead-letter stream,
	// once, with headers saying where it came from.
	dl := readStream(t, nc, g.Stream+"-dlq")
	require.Len(t, dl, malformed)
	bySeq := map[uint64]streamMsg{}
	for _, m := range msgs {
		bySeq[m.Seq] = m
	}
	for _, d := range dl {
		seq, err := strconv.ParseUint(d.Header.Get("Sluice-Source-Sequence"), 10, 64)
		require.NoError(t, err)
		orig := bySeq[seq]
		require.Equal(t, orig.Data, d.Data)
		require.Equal(t, orig.Subject, d.Header.Get("Sluice-Source-Subject"))
		_, perr := clickstream.ParseEvent(orig.Data)
		require.ErrorIs(t, perr, clickstream.ErrMalformed)
		require.Contains(t, d.Header.Get("Sluice-Error"), "malformed event")
	}
}

func windows(rows []clickstream.VideoViews) map[time.Time]bool {
	ws := map[time.Time]bool{}
	for _, r := range rows {
		ws[r.WindowStart] = true
	}
	return ws
}

// A live run, reading while the generator publishes and checkpointing as it
// goes, then drained, writes the same rows as a replay from offset zero at
// another parallelism; both match the batch computation.
func TestLiveRunAndReplayAgree(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	g := testGenerator(30_000)
	g.Rate = 30_000 // about a second of publishing, in batches
	g.BatchSize = 1000
	require.NoError(t, clickstream.EnsureStream(context.Background(), nc, g.StreamConfig()))

	liveDir := t.TempDir()
	store, err := checkpoint.NewLocalStorage(t.TempDir())
	require.NoError(t, err)
	live, counters, err := clickstream.BuildWithCounters(jobs.Config{
		Job: dataflow.Config{Parallelism: 2, CheckpointStorage: store,
			Checkpoint: checkpoint.Config{Interval: 200 * time.Millisecond}},
		NATS:      jetstream.ConnConfig{URL: srv.URL()},
		OutputDir: liveDir,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- live.Run(ctx) }()
	require.NoError(t, live.WaitRunning(ctx))

	n, err := clickstream.Generate(ctx, nc, g)
	require.NoError(t, err)
	require.Equal(t, g.Count, n)
	msgs := readStream(t, nc, g.Stream)
	want, malformed := reference(msgs, time.Minute, clickstream.DefaultOutOfOrder, clickstream.DefaultLateness, clickstream.DefaultTop)

	// Caught up: the source emitted every event that decodes (polling the job
	// is the only way to know it has read the server's stream). Then end its
	// input where it is, as jobrunner does after a demo: every window fires.
	require.Eventually(t, func() bool {
		return sourceRecords(live) == int64(len(msgs)-malformed)
	}, 30*time.Second, 10*time.Millisecond)
	require.Greater(t, live.Metrics().Checkpoints.Completed, int64(0), "the live run took no checkpoint while it read")
	require.NoError(t, live.Drain(ctx))
	require.NoError(t, <-runErr)
	require.EqualValues(t, malformed, counters.Malformed())
	liveRes := readResults(t, liveDir, false)
	requireResults(t, want, liveRes)

	replayDir := t.TempDir()
	replay, err := clickstream.Build(jobs.Config{
		Job:       dataflow.Config{Parallelism: 3},
		NATS:      jetstream.ConnConfig{URL: srv.URL()},
		Start:     jetstream.Earliest(),
		Bounded:   true,
		OutputDir: replayDir,
	})
	require.NoError(t, err)
	require.NoError(t, replay.Run(context.Background()))
	requireResults(t, liveRes, readResults(t, replayDir, false))
}

// sourceRecords is what the job's source emitted so far.
func sourceRecords(job *dataflow.Job) int64 {
	var n int64
	for _, o := range job.Metrics().Operators {
		if o.Operator == "clicks" {
			n += o.RecordsOut
		}
	}
	return n
}

// The job's graph has stable operator names, which its state is keyed by.
func TestOperatorNames(t *testing.T) {
	job, err := clickstream.Build(jobs.Config{
		NATS: jetstream.ConnConfig{URL: "nats://127.0.0.1:1"}, OutputDir: t.TempDir(), Postgres: "host=127.0.0.1 dbname=test",
	})
	require.NoError(t, err)
	plan, err := job.Plan()
	require.NoError(t, err)
	var names []string
	for _, o := range plan.Operators {
		names = append(names, o.Name)
	}
	for _, want := range []string{
		"clicks", "late-filter", "plays", "stops", "errors",
		"views-per-video", "views-per-video-rows", "top-videos", "top-videos-rows",
		"watch-time", "watch-time-rows", "views-by-country", "views-by-country-rows",
		"errors-per-minute", "errors-per-minute-rows", "window-closed-events",
	} {
		require.Contains(t, names, want)
	}
	for _, r := range clickstream.Results {
		require.Contains(t, names, r+"-files")
		require.Contains(t, names, r+"-postgres")
	}
}

// Bad parameters and missing outputs fail Build with errors that name them.
func TestBuildErrors(t *testing.T) {
	base := jobs.Config{NATS: jetstream.ConnConfig{URL: "nats://127.0.0.1:1"}, OutputDir: t.TempDir()}
	for _, tc := range []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{"windw": "1m"}, `unknown parameter "windw"`},
		{map[string]string{"window": "sixty"}, `window="sixty": not a duration`},
		{map[string]string{"window": "0s"}, `window="0s": must be positive`},
		{map[string]string{"lateness": "-1s"}, `lateness="-1s": must not be negative`},
		{map[string]string{"top": "0"}, `top="0": must be between 1 and 10000`},
		{map[string]string{"partitions": "x"}, `partitions="x": not an integer`},
		{map[string]string{"format": "csv"}, `format="csv": want jsonl or parquet`},
		{map[string]string{"malformed": "ignore"}, `malformed="ignore": want dead-letter, skip or fail`},
		{map[string]string{"postgres-mode": "append"}, `postgres-mode="append": want upsert or exactly-once`},
		{map[string]string{"table-prefix": "Drop Table;"}, `table-prefix="Drop Table;"`},
		{map[string]string{"subject-prefix": "clicks.>"}, `subject-prefix="clicks.>"`},
		{map[string]string{"dead-letter-subject": "clicks.9"}, `must not be one of the partition subjects`},
	} {
		cfg := base
		cfg.Params = tc.params
		_, err := clickstream.Build(cfg)
		require.ErrorIs(t, err, clickstream.ErrParam, "%v", tc.params)
		require.ErrorContains(t, err, tc.want)
	}

	// Several mistakes are reported together.
	cfg := base
	cfg.Params = map[string]string{"window": "x", "top": "-3"}
	_, err := clickstream.Build(cfg)
	require.ErrorContains(t, err, "window=")
	require.ErrorContains(t, err, "top=")

	cfg = base
	cfg.OutputDir = ""
	_, err = clickstream.Build(cfg)
	require.ErrorIs(t, err, clickstream.ErrNoOutput)

	cfg = base
	cfg.NATS.URL = ""
	_, err = clickstream.Build(cfg)
	require.ErrorContains(t, err, "no NATS server URL")

	// A fresh start refuses an output directory with an earlier run's
	// results; files still hidden (not committed) do not count.
	cfg = base
	cfg.OutputDir = t.TempDir()
	part := filepath.Join(cfg.OutputDir, clickstream.ResultErrors, "dt=2026-01-01", "hour=00")
	require.NoError(t, os.MkdirAll(part, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(part, ".part-0-x-0.jsonl.pending"), nil, 0o644))
	_, err = clickstream.Build(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(part, "part-0-1-0.jsonl"), nil, 0o644))
	_, err = clickstream.Build(cfg)
	require.ErrorIs(t, err, clickstream.ErrOutputNotEmpty)
	require.ErrorContains(t, err, filepath.Join(part, "part-0-1-0.jsonl"))
	// Restoring goes on writing there.
	cfg.Job.RestoreFrom, err = checkpoint.NewLocalStorage(t.TempDir())
	require.NoError(t, err)
	_, err = clickstream.Build(cfg)
	require.NoError(t, err)
}

// A stream that exists with other subjects is reported, not changed.
func TestEnsureStreamConflict(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	ctx := context.Background()
	sc := clickstream.StreamConfig{Stream: "clickstream", SubjectPrefix: "clicks", Partitions: 4, DeadLetterSubject: "clicks-dlq"}
	require.NoError(t, clickstream.EnsureStream(ctx, nc, sc))
	require.NoError(t, clickstream.EnsureStream(ctx, nc, sc), "a second call finds the streams")

	sc.SubjectPrefix = "views"
	err := clickstream.EnsureStream(ctx, nc, sc)
	require.ErrorContains(t, err, "stream clickstream exists with subjects [clicks.*], which do not take views.0")
}

// A job whose stream does not exist fails with an error naming it.
func TestMissingStream(t *testing.T) {
	srv := startServer(t)
	job, err := clickstream.Build(jobs.Config{
		NATS: jetstream.ConnConfig{URL: srv.URL()}, Bounded: true, OutputDir: t.TempDir(),
		Params: map[string]string{"stream": "nope"},
	})
	require.NoError(t, err)
	err = job.Run(context.Background())
	require.ErrorIs(t, err, jetstream.ErrStreamNotFound)
	require.ErrorContains(t, err, "nope")
}

// malformed=fail fails the job at the first malformed event, naming where
// it is.
func TestMalformedFail(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	g := testGenerator(2000)
	publish(t, nc, g)
	job, err := clickstream.Build(jobs.Config{
		NATS: jetstream.ConnConfig{URL: srv.URL()}, Bounded: true, OutputDir: filepath.Join(t.TempDir(), "out"),
		Params: map[string]string{"malformed": "fail"},
	})
	require.NoError(t, err)
	err = job.Run(context.Background())
	require.ErrorIs(t, err, jetstream.ErrDecode)
	require.ErrorIs(t, err, clickstream.ErrMalformed)
	require.True(t, strings.Contains(err.Error(), "stream clickstream subject clicks."), err.Error())
	var oe *dataflow.OperatorError
	require.True(t, errors.As(err, &oe))
}

// Backlog counts what a replay from each start position will read.
func TestBacklog(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	g := testGenerator(3000)
	publish(t, nc, g)
	ctx := context.Background()
	cfg := jobs.Config{NATS: jetstream.ConnConfig{URL: srv.URL()}}
	for _, tc := range []struct {
		start jetstream.StartPosition
		want  int64
	}{
		{jetstream.Earliest(), 3000},
		{jetstream.Sequence(1001), 2000},
		{jetstream.Sequence(5000), 0},
		{jetstream.Latest(), 0},
		{jetstream.Time(time.Now().Add(time.Hour)), 0},
	} {
		cfg.Start = tc.start
		n, err := clickstream.Backlog(ctx, cfg)
		require.NoError(t, err, tc.start.String())
		require.Equal(t, tc.want, n, tc.start.String())
	}

	cfg.Start = jetstream.Earliest()
	cfg.Params = map[string]string{"stream": "other"}
	_, err := clickstream.Backlog(ctx, cfg)
	require.ErrorIs(t, err, jetstream.ErrStreamNotFound)
	require.ErrorContains(t, err, "stream other")
}

// The documented defaults are the ones the job uses.
func TestParamDefaults(t *testing.T) {
	want := map[string]string{
		"window": clickstream.DefaultWindow.String(), "out-of-orderness": clickstream.DefaultOutOfOrder.String(),
		"lateness": clickstream.DefaultLateness.String(), "idleness": clickstream.DefaultIdleness.String(),
	}
	seen := 0
	for _, p := range clickstream.Params {
		if w, ok := want[p.Name]; ok {
			d, err := time.ParseDuration(p.Default)
			require.NoError(t, err)
			require.Equal(t, w, d.String(), p.Name)
			seen++
		}
	}
	require.Equal(t, len(want), seen)
}

// A run stopped with a savepoint after the first half of the stream and
// restored from it at another parallelism, to read the second half, writes in
// the same directory exactly the batch computation's rows: the late filter's
// state and the windows are checkpointed with the source's offsets.
func TestSavepointRestore(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	firstHalf := testGenerator(15_000)
	firstHalf.Span = 3 * time.Minute
	publish(t, nc, firstHalf)
	valid := 0
	for _, m := range readStream(t, nc, firstHalf.Stream) {
		if _, err := clickstream.ParseEvent(m.Data); err == nil {
			valid++
		}
	}

	out := t.TempDir()
	store, err := checkpoint.NewLocalStorage(t.TempDir())
	require.NoError(t, err)
	first, err := clickstream.Build(jobs.Config{
		Job: dataflow.Config{Parallelism: 2, CheckpointStorage: store,
			Checkpoint: checkpoint.Config{Interval: 100 * time.Millisecond}},
		NATS:      jetstream.ConnConfig{URL: srv.URL()},
		OutputDir: out,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- first.Run(ctx) }()
	require.Eventually(t, func() bool { return sourceRecords(first) == int64(valid) }, 30*time.Second, 5*time.Millisecond)
	sp, err := checkpoint.NewLocalStorage(t.TempDir())
	require.NoError(t, err)
	_, err = first.StopWithSavepoint(ctx, sp)
	require.NoError(t, err)
	require.NoError(t, <-runErr)
	require.NotEmpty(t, readResults(t, out, false).Views, "the first run completed no window")

	// The second half goes on in event time, with other users and sessions.
	secondHalf := firstHalf
	secondHalf.Seed++
	secondHalf.Start = firstHalf.Start.Add(firstHalf.Span)
	_, err = clickstream.Generate(ctx, nc, secondHalf)
	require.NoError(t, err)
	want, _ := reference(readStream(t, nc, firstHalf.Stream), time.Minute, clickstream.DefaultOutOfOrder, clickstream.DefaultLateness, clickstream.DefaultTop)

	second, err := clickstream.Build(jobs.Config{
		Job:       dataflow.Config{Parallelism: 3, RestoreFrom: sp},
		NATS:      jetstream.ConnConfig{URL: srv.URL()},
		Bounded:   true,
		OutputDir: out,
	})
	require.NoError(t, err)
	require.NoError(t, second.Run(context.Background()))
	requireResults(t, want, readResults(t, out, false))
}

// An event of a partition that was idle while the other partitions moved
// the watermark past its window is not lost: it goes to late_events with
// reason "window-closed" (the documented cost of idleness).
func TestIdlePartitionWindowClosed(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, clickstream.EnsureStream(ctx, nc, clickstream.StreamConfig{Partitions: 2, DeadLetterSubject: "clicks-dlq"}))
	t0 := clickstream.DefaultStart
	play := func(subject, id, video string, at time.Time) {
		t.Helper()
		b, err := clickstream.AppendJSON(nil, clickstream.Event{EventID: id, UserID: "u", VideoID: video, Type: clickstream.Play, Time: at}, clickstream.RFC3339Millis)
		require.NoError(t, err)
		require.NoError(t, nc.Publish(subject, b))
	}
	out := t.TempDir()
	job, counters, err := clickstream.BuildWithCounters(jobs.Config{
		Params:    map[string]string{"partitions": "2", "idleness": "100ms"},
		NATS:      jetstream.ConnConfig{URL: srv.URL()},
		OutputDir: out,
	})
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- job.Run(ctx) }()
	require.NoError(t, job.WaitRunning(ctx))

	play("clicks.1", "p1-0", "v-1", t0)
	i := 0
	more := func() { // clicks.0 goes on, a second of event time per event
		play("clicks.0", "p0-"+strconv.Itoa(i), "v-0", t0.Add(time.Duration(i)*time.Second))
		i++
	}
	for range 180 {
		more()
	}
	// clicks.1 goes idle while clicks.0 goes on, and the windows of the
	// first two minutes fire.
	require.Eventually(t, func() bool {
		more()
		require.NoError(t, nc.Flush())
		for _, o := range job.Metrics().Operators {
			if o.Operator == "views-per-video" && o.Watermark < dataflow.TimestampOf(t0.Add(2*time.Minute)) {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond)
	play("clicks.1", "p1-1", "v-late", t0.Add(30*time.Second))
	require.NoError(t, nc.Flush())
	require.Eventually(t, func() bool { return counters.Late() == 1 }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, job.Drain(ctx))
	require.NoError(t, <-runErr)

	res := readResults(t, out, false)
	require.Len(t, res.Late, 1)
	require.Equal(t, "p1-1", res.Late[0].EventID)
	require.Equal(t, "window-closed", res.Late[0].Reason)
	require.Equal(t, t0.Add(time.Minute), res.Late[0].WindowEnd)
	require.Equal(t, t0.Add(-clickstream.DefaultOutOfOrder-time.Nanosecond), res.Late[0].Watermark, "the partition's watermark")
	for _, v := range res.Views {
		require.NotEqual(t, "v-late", v.VideoID)
	}
	require.Contains(t, res.Views, clickstream.VideoViews{WindowStart: t0, WindowEnd: t0.Add(time.Minute), VideoID: "v-1", Views: 1})
}
