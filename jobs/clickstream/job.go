package clickstream

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluicedata/sluice/connectors/file"
	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/connectors/postgres"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/state"
	"github.com/sluicedata/sluice/window"
)

// Name is the name the job is registered under.
const Name = "clickstream"

func init() {
	jobs.Register(jobs.Definition{
		Name:        Name,
		Description: "video-streaming analytics from a JetStream stream: views, top videos, watch time, views by country, playback errors per window; to files and Postgres",
		Params:      Params,
		Build:       Build,
		Demo:        Demo,
		Backlog:     Backlog,
		Generate: func(ctx context.Context, cfg jobs.Config, fs *flag.FlagSet, args []string) (int64, error) {
			g := DefaultGeneratorConfig()
			g.RegisterFlags(fs)
			if err := fs.Parse(args); err != nil {
				return 0, err
			}
			if fs.NArg() > 0 {
				return 0, fmt.Errorf("unexpected arguments %q", fs.Args())
			}
			return RunGenerator(ctx, cfg.NATS, g)
		},
	})
}

// The result names: the subdirectories of Config.OutputDir and, after the
// table prefix, the Postgres tables.
const (
	ResultViews     = "views_per_video"
	ResultTop       = "top_videos"
	ResultWatchTime = "watch_time"
	ResultCountries = "views_by_country"
	ResultErrors    = "errors_per_minute"
	ResultLate      = "late_events"
)

// Results lists the result names in the order the job defines them.
var Results = []string{ResultViews, ResultTop, ResultWatchTime, ResultCountries, ResultErrors, ResultLate}

// MarkerTableSuffix, after the table prefix, names the table where
// postgres-mode=exactly-once records the checkpoints it committed.
const MarkerTableSuffix = "sink_commits"

// HivePartitions is the layout of result directories by event time (the
// window's last instant, in UTC).
const HivePartitions = "dt=2006-01-02/hour=15"

// ErrOutputNotEmpty is returned by Build for a fresh start (no
// Config.Job.RestoreFrom) whose output directory already holds results:
// a reader would see two runs' rows, and the new part files could clash with
// the old ones' names.
var ErrOutputNotEmpty = errors.New("clickstream: output directory holds the results of an earlier run")

// ErrNoOutput is returned by Build when neither files nor Postgres are
// configured: the job would compute results and write them nowhere.
var ErrNoOutput = errors.New("clickstream: no output: set an output directory (Config.OutputDir) or a Postgres connection string (Config.Postgres)")

// Counters are counts the job keeps beside its results. They are safe to
// read from any goroutine while the job runs. Like the job's metrics they
// add up over restarts: records read again after a restore count again.
type Counters struct {
	malformed jetstream.Counter
	late      atomic.Int64
}

// Malformed is the number of events that could not be decoded (ParseEvent)
// and were skipped or dead-lettered.
func (c *Counters) Malformed() int64 { return c.malformed.Load() }

// Late is the number of events that came after their window had closed and
// went to the late_events output instead of the results.
func (c *Counters) Late() int64 { return c.late.Load() }

// Build makes the clickstream job from cfg (see the package documentation).
// It connects to nothing: the runner runs the job.
func Build(cfg jobs.Config) (*dataflow.Job, error) {
	job, _, err := BuildWithCounters(cfg)
	return job, err
}

// BuildWithCounters is Build that also returns the job's Counters.
func BuildWithCounters(cfg jobs.Config) (*dataflow.Job, *Counters, error) {
	s, err := parseSettings(cfg)
	if err != nil {
		return nil, nil, err
	}
	if cfg.OutputDir == "" && cfg.Postgres == "" {
		return nil, nil, ErrNoOutput
	}
	if cfg.OutputDir != "" && cfg.Job.RestoreFrom == nil {
		if err := checkFreshOutput(cfg.OutputDir); err != nil {
			return nil, nil, err
		}
	}
	if cfg.NATS.URL == "" {
		return nil, nil, fmt.Errorf("clickstream: no NATS server URL (Config.NATS.URL) to read stream %s from", s.stream)
	}
	if cfg.Job.Logger == nil {
		cfg.Job.Logger = cfg.Logger
	}
	counters := &Counters{}
	job := dataflow.NewJob(Name, cfg.Job)

	wms := dataflow.BoundedOutOfOrderness(s.outOfOrder, eventTime)
	if s.idleness > 0 {
		wms = wms.WithIdleness(s.idleness)
	}
	events := jetstream.Source(job, "clicks", jetstream.SourceConfig[Event]{
		Conn:           cfg.NATS,
		Stream:         s.stream,
		Partitions:     partitionSubjects(s.prefix, s.partitions),
		Start:          cfg.Start,
		Bounded:        cfg.Bounded,
		Decode:         decodeEvent,
		Watermarks:     wms,
		OnDecodeError:  s.malformedHandler,
		DecodeFailures: &counters.malformed,
	})

	// Lateness is decided per source partition, in stream order, so that it
	// depends on the stream's contents alone (see lateFilter).
	assigner := window.Tumbling(s.window)
	lateTag := dataflow.NewOutputTag[LateEvent]("late")
	onTime := operators.KeyedProcess(dataflow.KeyBy(events, func(e Event) string { return e.Partition }), "late-filter",
		func() operators.KeyedProcessFunction[string, Event, Event] {
			return &lateFilter{assigner: assigner, outOfOrder: dataflow.Timestamp(s.outOfOrder),
				lateness: s.lateness, tag: lateTag, count: &counters.late}
		})
	plays := operators.Filter(onTime, "plays", func(e Event) bool { return e.Type == Play })
	stops := operators.Filter(onTime, "stops", func(e Event) bool { return e.Type == Stop })
	failures := operators.Filter(onTime, "errors", func(e Event) bool { return e.Type == Error })

	// Every window emits one final result, when the watermark passes its end
	// plus the allowed lateness (finalTrigger). windowClosed catches what
	// the windows still drop: only events of a partition that was idle (see
	// the idleness parameter). Plays go to two windows, views and countries,
	// which see the same watermarks; only the first reports them, so that
	// each dropped event is reported once.
	windowClosed := dataflow.NewOutputTag[Event]("window-closed")
	wopts := []window.Option{window.AllowedLateness(s.lateness), window.WithTrigger(finalTrigger{lateness: s.lateness})}
	reportClosed := append(slices.Clone(wopts), window.LateOutput(windowClosed))

	views := window.Aggregate(dataflow.KeyBy(plays, func(e Event) string { return e.VideoID }), "views-per-video",
		assigner, window.Count[Event](), reportClosed...)
	viewRows := operators.Map(views, "views-per-video-rows", func(r window.Result[string, int64]) VideoViews {
		start, end := bounds(r.Window)
		return VideoViews{WindowStart: start, WindowEnd: end, VideoID: r.Key, Views: r.Value}
	})

	top := window.Aggregate(dataflow.KeyBy(viewRows, func(v VideoViews) int64 { return v.WindowStart.UnixNano() }), "top-videos",
		assigner, topViews{n: s.top}, window.AllowedLateness(s.lateness), window.WithTrigger(finalTrigger{lateness: s.lateness}))
	topRows := operators.FlatMap(top, "top-videos-rows", func(r window.Result[int64, []VideoCount], emit func(TopVideo)) error {
		start, end := bounds(r.Window)
		for i, vc := range r.Value {
			emit(TopVideo{WindowStart: start, WindowEnd: end, Rank: int64(i + 1), VideoID: vc.VideoID, Views: vc.Views})
		}
		return nil
	})

	watch := window.Aggregate(dataflow.KeyBy(stops, func(e Event) string { return e.VideoID }), "watch-time",
		assigner, watchAgg{}, reportClosed...)
	watchRows := operators.Map(watch, "watch-time-rows", func(r window.Result[string, WatchAcc]) WatchTime {
		start, end := bounds(r.Window)
		return WatchTime{WindowStart: start, WindowEnd: end, VideoID: r.Key, Sessions: r.Value.Count,
			TotalSeconds: float64(r.Value.SumMillis) / 1000, AvgSeconds: r.Value.AvgSeconds()}
	})

	countries := window.Aggregate(dataflow.KeyBy(plays, func(e Event) string { return e.Country }), "views-by-country",
		assigner, window.Count[Event](), wopts...)
	countryRows := operators.Map(countries, "views-by-country-rows", func(r window.Result[string, int64]) CountryViews {
		start, end := bounds(r.Window)
		return CountryViews{WindowStart: start, WindowEnd: end, Country: r.Key, Views: r.Value}
	})

	errs := window.Aggregate(dataflow.KeyBy(failures, func(e Event) string { return e.ErrorCode }), "errors-per-minute",
		assigner, window.Count[Event](), reportClosed...)
	errRows := operators.Map(errs, "errors-per-minute-rows", func(r window.Result[string, int64]) PlaybackErrors {
		start, end := bounds(r.Window)
		return PlaybackErrors{WindowStart: start, WindowEnd: end, ErrorCode: r.Key, Errors: r.Value}
	})

	closed := dataflow.Union(
		dataflow.SideOutput(views, windowClosed), dataflow.SideOutput(watch, windowClosed),
		dataflow.SideOutput(errs, windowClosed))
	closedRows := operators.Map(closed, "window-closed-events", func(e Event) LateEvent {
		counters.late.Add(1)
		w := window.Window{Start: dataflow.TimestampOf(e.Time)}
		w.Start -= w.Start % dataflow.Timestamp(s.window)
		return lateEvent(e, e.partitionWatermark.Time(), w.Start.Time().Add(s.window), "window-closed")
	})
	late := dataflow.Union(dataflow.SideOutput(onTime, lateTag), closedRows)

	o := outputs{cfg: cfg, s: s}
	writeResult(o, viewRows, ResultViews)
	writeResult(o, topRows, ResultTop)
	writeResult(o, watchRows, ResultWatchTime)
	writeResult(o, countryRows, ResultCountries)
	writeResult(o, errRows, ResultErrors)
	writeResult(o, late, ResultLate)

	if err := job.Validate(); err != nil {
		return nil, nil, err
	}
	return job, counters, nil
}

// checkFreshOutput fails if a result directory under dir holds a final
// file (one whose name does not start with "." or "_").
func checkFreshOutput(dir string) error {
	for _, r := range Results {
		var found string
		err := filepath.WalkDir(filepath.Join(dir, r), func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			if err != nil {
				return err
			}
			if !d.IsDir() && !strings.HasPrefix(d.Name(), ".") && !strings.HasPrefix(d.Name(), "_") {
				found = p
				return fs.SkipAll
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("clickstream: output directory %s: %w", dir, err)
		}
		if found != "" {
			return fmt.Errorf("%w: %s (for example %s); write to a new directory, or remove it, or restore the run from its checkpoint",
				ErrOutputNotEmpty, dir, found)
		}
	}
	return nil
}

type outputs struct {
	cfg jobs.Config
	s   settings
}

// writeResult adds the file and Postgres sinks of one result.
func writeResult[T any](o outputs, rows dataflow.Stream[T], result string) {
	if o.cfg.OutputDir != "" {
		fc := file.Config[T]{
			Dir:              filepath.Join(o.cfg.OutputDir, result),
			Format:           o.s.format,
			PartitionPattern: HivePartitions,
		}
		if o.s.format == file.Parquet {
			fc.Compression = file.Snappy
		}
		file.Sink(rows, result+"-files", fc)
	}
	if o.cfg.Postgres != "" {
		// The commit markers of exactly-once mode are keyed by job and sink
		// name, the same in every deployment of this job: a marker table per
		// table prefix keeps deployments into one database apart.
		postgres.Sink(rows, result+"-postgres", postgres.Config[T]{
			ConnString:  o.cfg.Postgres,
			Table:       o.s.tablePrefix + result,
			Mode:        o.s.pgMode,
			CreateTable: true,
			MarkerTable: o.s.tablePrefix + MarkerTableSuffix,
			Logger:      o.cfg.Logger,
		})
	}
}

// bounds is a window's start and end as times in UTC.
func bounds(w window.Window) (start, end time.Time) {
	return w.Start.Time().UTC(), w.End.Time().UTC()
}

// lateFilter decides which events are late, per source partition: an event
// is late when its window's end plus the allowed lateness is not after its
// partition's watermark, computed exactly as the source computes it (the
// largest event time seen in the partition so far, minus the
// out-of-orderness, minus 1ns). Keyed by partition, it sees each partition's
// events in stream order, and its state (the largest event time per
// partition) is checkpointed with the source's offsets, so which events are
// late depends only on the stream, not on how fast partitions were read.
//
// The job's watermark downstream is the minimum over all partitions, so it
// is never ahead of the partition watermark an event was judged by (unless a
// partition was idle): an event that passes arrives before its window's final
// firing. Without this filter a window operator would judge lateness against
// the minimum over partitions at arrival, which depends on timing.
type lateFilter struct {
	assigner   window.Assigner
	outOfOrder dataflow.Timestamp
	lateness   time.Duration
	tag        dataflow.OutputTag[LateEvent]
	count      *atomic.Int64

	maxTs *state.Value[int64]
	ws    []window.Window
}

func (f *lateFilter) Open(_ context.Context, oc *dataflow.OperatorContext) (err error) {
	f.maxTs, err = state.NewValue[int64](oc.State(), "max-event-time")
	return err
}

func (f *lateFilter) ProcessElement(ctx *operators.KeyedContext[string, Event], e Event) error {
	ts := ctx.Timestamp()
	maxTs, seen, err := f.maxTs.Get()
	if err != nil {
		return err
	}
	wm := dataflow.MinWatermark
	if seen {
		wm = max(dataflow.Timestamp(maxTs)-f.outOfOrder-1, dataflow.MinWatermark)
	}
	if !seen || dataflow.Timestamp(maxTs) < ts {
		if err := f.maxTs.Update(int64(ts)); err != nil {
			return err
		}
		e.partitionWatermark = wm
		ctx.Emit(e)
		return nil
	}
	if f.ws, err = f.assigner.AssignTo(f.ws[:0], ts); err != nil {
		return fmt.Errorf("event %s at %v: %w", e.EventID, e.Time, err)
	}
	w := f.ws[0] // tumbling: one window
	if w.CleanupTime(f.lateness) <= wm {
		f.count.Add(1)
		operators.EmitSide(&ctx.ProcessContext, f.tag, lateEvent(e, wm.Time(), w.End.Time(), "lateness"))
		return nil
	}
	e.partitionWatermark = wm
	ctx.Emit(e)
	return nil
}

// finalTrigger fires a window once, when the watermark passes its end plus
// the allowed lateness, which is also when its state is dropped. Every
// record that is not late arrives before that, so the one result is final:
// file outputs get no updates, and a replay gives the same rows.
type finalTrigger struct{ lateness time.Duration }

func (t finalTrigger) OnElement(ctx window.TriggerContext, _ dataflow.Timestamp, w window.Window) (window.TriggerResult, error) {
	if ctx.NewWindow() {
		ctx.RegisterEventTimeTimer(w.CleanupTime(t.lateness))
	}
	return window.Continue, nil
}

func (t finalTrigger) OnEventTime(_ window.TriggerContext, at dataflow.Timestamp, w window.Window) (window.TriggerResult, error) {
	if at == w.CleanupTime(t.lateness) {
		return window.FireAndPurge, nil
	}
	return window.Continue, nil
}

func (finalTrigger) OnProcessingTime(window.TriggerContext, dataflow.Timestamp, window.Window) (window.TriggerResult, error) {
	return window.Continue, nil
}

func (t finalTrigger) Clear(ctx window.TriggerContext, w window.Window) error {
	ctx.DeleteEventTimeTimer(w.CleanupTime(t.lateness))
	return nil
}

// VideoCount is a video and its views, an entry of a top-N ranking.
type VideoCount struct {
	VideoID string
	Views   int64
}

// TopAcc is the accumulator of the top-N ranking: the best entries so far,
// best first, at most n.
type TopAcc struct {
	Top []VideoCount
}

// topViews ranks the per-video counts of a window: by views, descending,
// then video id, ascending. Each video has one count per window (the
// windows fire once), so keeping only the n best as they come is exact.
type topViews struct{ n int }

func better(a, b VideoCount) bool {
	if a.Views != b.Views {
		return a.Views > b.Views
	}
	return a.VideoID < b.VideoID
}

func (t topViews) CreateAccumulator() TopAcc { return TopAcc{} }

func (t topViews) Add(acc TopAcc, v VideoViews) TopAcc {
	return t.insert(acc, VideoCount{VideoID: v.VideoID, Views: v.Views})
}

func (t topViews) insert(acc TopAcc, vc VideoCount) TopAcc {
	i := len(acc.Top)
	for i > 0 && better(vc, acc.Top[i-1]) {
		i--
	}
	if i >= t.n {
		return acc
	}
	if len(acc.Top) < t.n {
		acc.Top = append(acc.Top, VideoCount{})
	}
	copy(acc.Top[i+1:], acc.Top[i:len(acc.Top)-1])
	acc.Top[i] = vc
	return acc
}

func (t topViews) Merge(a, b TopAcc) TopAcc {
	for _, vc := range b.Top {
		a = t.insert(a, vc)
	}
	return a
}

func (t topViews) Result(acc TopAcc) []VideoCount { return acc.Top }

func (t topViews) Validate() error {
	if t.n <= 0 {
		return fmt.Errorf("%w: top %d must be positive", ErrParam, t.n)
	}
	return nil
}

// WatchAcc is the accumulator of watch time: integer milliseconds, so the
// sum is exact whatever the order of addition.
type WatchAcc struct {
	SumMillis int64
	Count     int64
}

// AvgSeconds is the average watch time in seconds.
func (a WatchAcc) AvgSeconds() float64 {
	if a.Count == 0 {
		return 0
	}
	return float64(a.SumMillis) / float64(a.Count) / 1000
}

type watchAgg struct{}

func (watchAgg) CreateAccumulator() WatchAcc { return WatchAcc{} }
func (watchAgg) Add(acc WatchAcc, e Event) WatchAcc {
	acc.SumMillis += e.WatchMillis
	acc.Count++
	return acc
}
func (watchAgg) Merge(a, b WatchAcc) WatchAcc {
	return WatchAcc{SumMillis: a.SumMillis + b.SumMillis, Count: a.Count + b.Count}
}
func (watchAgg) Result(acc WatchAcc) WatchAcc { return acc }
