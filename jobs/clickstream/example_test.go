package clickstream_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/connectors/jetstream/embedded"
	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/clickstream"
)

// The job reads a stream filled by the generator and writes its results;
// a bounded run reads to the end of the stream and finishes.
func ExampleBuild() {
	dir, _ := os.MkdirTemp("", "clickstream-example")
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(embedded.Config{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()

	ctx := context.Background()
	gen := clickstream.DefaultGeneratorConfig()
	gen.Count = 20_000 // one minute of event time per 2 000 events
	if err := clickstream.EnsureStream(ctx, nc, gen.StreamConfig()); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := clickstream.Generate(ctx, nc, gen); err != nil {
		fmt.Println(err)
		return
	}

	out := filepath.Join(dir, "results")
	job, counters, err := clickstream.BuildWithCounters(jobs.Config{
		Params:    map[string]string{"top": "3"},
		NATS:      jetstream.ConnConfig{URL: srv.URL()},
		Bounded:   true,
		OutputDir: out,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := job.Run(ctx); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("malformed %d, late %d\n", counters.Malformed(), counters.Late())
	for _, line := range readLines(filepath.Join(out, clickstream.ResultTop, "dt=2026-01-01", "hour=00")) {
		var tv clickstream.TopVideo
		_ = json.Unmarshal([]byte(line), &tv)
		if tv.WindowStart.Minute() == 2 {
			fmt.Printf("%s #%d %s %d views\n", tv.WindowStart.Format("15:04"), tv.Rank, tv.VideoID, tv.Views)
		}
	}
	// Output:
	// malformed 32, late 125
	// 00:02 #1 v-00000 97 views
	// 00:02 #2 v-00001 36 views
	// 00:02 #3 v-00002 30 views
}

// readLines returns the lines of the final files in dir, sorted.
func readLines(dir string) []string {
	var lines []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
	}
	slices.Sort(lines)
	return lines
}

// ParseEvent reads a payload, with its time as RFC 3339 or Unix milliseconds,
// and says what is wrong with a malformed one.
func ExampleParseEvent() {
	e, err := clickstream.ParseEvent([]byte(`{"event_id":"e7","user_id":"u-000042","session_id":"s-3","video_id":"v-00017",
		"country":"DE","device":"android","type":"stop","watch_seconds":312.5,"ts":1767225723456}`))
	fmt.Println(e.Type, e.VideoID, e.Country, e.WatchMillis, e.Time.Format("2006-01-02T15:04:05.000Z"), err)

	_, err = clickstream.ParseEvent([]byte(`{"event_id":"e8","user_id":"u-000042","video_id":"v-00017","type":"play","ts":"yesterday"}`))
	fmt.Println(err)
	// Output:
	// stop v-00017 DE 312500 2026-01-01T00:02:03.456Z <nil>
	// clickstream: malformed event: event e8: ts: "yesterday" is not an RFC 3339 time
}

// A command binds the generator's settings to flags; jobrunner generate
// then calls RunGenerator.
func ExampleGeneratorConfig_RegisterFlags() {
	cfg := clickstream.DefaultGeneratorConfig()
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"-count", "5000", "-rate", "1000", "-start", "2026-05-01T08:00:00Z", "-late-fraction", "0.05"}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Count, cfg.Rate, cfg.Start.Format("2006-01-02 15:04"), cfg.LateFraction, cfg.Partitions, cfg.Validate())
	// Output:
	// 5000 1000 2026-05-01 08:00 0.05 8 <nil>
}

// Demo starts everything the job needs; the job then runs on the config it
// prepared, writing to a new run directory under OutputDir. Here it reads
// what the generator published and ends.
func ExampleDemo() {
	dir, _ := os.MkdirTemp("", "clickstream-demo")
	defer os.RemoveAll(dir)
	cfg := jobs.Config{
		Params:    map[string]string{"demo-events": "10000", "demo-rate": "0"},
		OutputDir: dir,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	stop, ready, err := clickstream.Demo(context.Background(), &cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	<-ready
	cfg.Bounded = true
	job, err := clickstream.Build(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range clickstream.Results {
		parts, _ := filepath.Glob(filepath.Join(cfg.OutputDir, r, "dt=*", "hour=*", "part-*.jsonl"))
		fmt.Println(r, len(parts) > 0)
	}
	// Output:
	// views_per_video true
	// top_videos true
	// watch_time true
	// views_by_country true
	// errors_per_minute true
	// late_events true
}
