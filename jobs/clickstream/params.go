package clickstream

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicedata/sluice/connectors/file"
	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/connectors/postgres"
	"github.com/sluicedata/sluice/jobs"
)

// ErrParam is wrapped by the errors of invalid job parameters.
var ErrParam = errors.New("clickstream: invalid parameter")

// Defaults of the job's parameters and of the stream layout.
const (
	DefaultStream        = "clickstream"
	DefaultSubjectPrefix = "clicks"
	DefaultPartitions    = 8
	DefaultWindow        = time.Minute
	DefaultTop           = 10
	DefaultOutOfOrder    = 5 * time.Second
	DefaultLateness      = 30 * time.Second
	DefaultIdleness      = 30 * time.Second
	DefaultTablePrefix   = "clickstream_"
	DefaultDemoEvents    = 200_000
	DefaultDemoRate      = 50_000
)

// Params documents every parameter of the job (jobs.Config.Params), with its
// default. Unknown parameters are an error, so a typo is not silently ignored.
var Params = []jobs.Param{
	{Name: "stream", Default: DefaultStream, Usage: "JetStream stream to read"},
	{Name: "subject-prefix", Default: DefaultSubjectPrefix, Usage: "partition subjects are PREFIX.0 ... PREFIX.N-1"},
	{Name: "partitions", Default: strconv.Itoa(DefaultPartitions), Usage: "number of partition subjects (each has its own offset and watermark)"},
	{Name: "window", Default: "1m", Usage: "tumbling window size of every result"},
	{Name: "top", Default: strconv.Itoa(DefaultTop), Usage: "videos ranked per window in top_videos"},
	{Name: "out-of-orderness", Default: "5s", Usage: "how much earlier than the latest event of its partition an event may be and still be on time (watermark delay)"},
	{Name: "lateness", Default: "30s", Usage: "allowed lateness: a window's one result is emitted when the watermark passes its end plus this; events after that are late"},
	{Name: "idleness", Default: "30s", Usage: "a partition without events for this long stops holding the watermark back; 0 never"},
	{Name: "format", Default: "jsonl", Usage: "file format: jsonl or parquet"},
	{Name: "malformed", Default: "dead-letter", Usage: "what to do with undecodable events: dead-letter (publish to dead-letter-subject and count), skip (count) or fail"},
	{Name: "dead-letter-subject", Default: "SUBJECT-PREFIX-dlq", Usage: "subject malformed events are published to; it must belong to a stream (EnsureStream makes one)"},
	{Name: "postgres-mode", Default: "upsert", Usage: "how results are written to Postgres: upsert or exactly-once"},
	{Name: "table-prefix", Default: DefaultTablePrefix, Usage: "prefix of the Postgres tables (PREFIXviews_per_video, ..., and PREFIXsink_commits for exactly-once markers)"},
	{Name: "demo-events", Default: strconv.Itoa(DefaultDemoEvents), Usage: "with --demo: events the generator publishes"},
	{Name: "demo-rate", Default: strconv.Itoa(DefaultDemoRate), Usage: "with --demo: events per second the generator publishes; 0 as fast as possible"},
	{Name: "seed", Default: "1", Usage: "with --demo: generator seed (same seed, same events)"},
}

// settings are the parsed parameters.
type settings struct {
	stream, prefix   string
	partitions       int
	window           time.Duration
	top              int
	outOfOrder       time.Duration
	lateness         time.Duration
	idleness         time.Duration
	format           file.Format
	malformed        string
	deadLetter       string
	pgMode           postgres.Mode
	tablePrefix      string
	demoEvents       int64
	demoRate         float64
	seed             uint64
	malformedHandler jetstream.DecodePolicy
}

var (
	tokenRE  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	streamRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	tableRE  = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
)

// parseSettings reads and checks cfg.Params. Every error names the parameter
// and the value.
func parseSettings(cfg jobs.Config) (settings, error) {
	for name := range cfg.Params {
		if !slices.ContainsFunc(Params, func(p jobs.Param) bool { return p.Name == name }) {
			names := make([]string, len(Params))
			for i, p := range Params {
				names[i] = p.Name
			}
			return settings{}, fmt.Errorf("%w: unknown parameter %q (known: %s)", ErrParam, name, strings.Join(names, ", "))
		}
	}
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w %s=%q: %s", ErrParam, name, cfg.Params[name], fmt.Sprintf(format, args...)))
	}
	str := func(name, def string) string {
		if v, ok := cfg.Params[name]; ok {
			return v
		}
		return def
	}
	integer := func(name string, def, lo, hi int64) int64 {
		s, ok := cfg.Params[name]
		if !ok {
			return def
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			bad(name, "not an integer")
			return def
		}
		if v < lo || v > hi {
			bad(name, "must be between %d and %d", lo, hi)
			return def
		}
		return v
	}
	duration := func(name string, def time.Duration, positive bool) time.Duration {
		s, ok := cfg.Params[name]
		if !ok {
			return def
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			bad(name, "not a duration (write it like 1m, 30s or 500ms)")
			return def
		}
		if d < 0 || (positive && d == 0) {
			if positive {
				bad(name, "must be positive")
			} else {
				bad(name, "must not be negative")
			}
			return def
		}
		return d
	}

	s := settings{
		stream:      str("stream", DefaultStream),
		prefix:      str("subject-prefix", DefaultSubjectPrefix),
		partitions:  int(integer("partitions", DefaultPartitions, 1, 1024)),
		window:      duration("window", DefaultWindow, true),
		top:         int(integer("top", DefaultTop, 1, 10_000)),
		outOfOrder:  duration("out-of-orderness", DefaultOutOfOrder, false),
		lateness:    duration("lateness", DefaultLateness, false),
		idleness:    duration("idleness", DefaultIdleness, false),
		malformed:   str("malformed", "dead-letter"),
		tablePrefix: str("table-prefix", DefaultTablePrefix),
		demoEvents:  integer("demo-events", DefaultDemoEvents, 0, 1<<40),
		seed:        uint64(integer("seed", 1, 0, 1<<62)),
	}
	if !streamRE.MatchString(s.stream) {
		bad("stream", "a stream name has letters, digits, '-' and '_' only")
	}
	if !strings.HasPrefix(s.prefix, ".") && !strings.HasSuffix(s.prefix, ".") {
		for tok := range strings.SplitSeq(s.prefix, ".") {
			if !tokenRE.MatchString(tok) {
				bad("subject-prefix", "subject tokens have letters, digits, '-' and '_' only")
				break
			}
		}
	} else {
		bad("subject-prefix", "must not start or end with '.'")
	}
	s.deadLetter = str("dead-letter-subject", s.prefix+"-dlq")
	if s.deadLetter == "" || strings.ContainsAny(s.deadLetter, "*> \t") {
		bad("dead-letter-subject", "must be a literal subject (no wildcards or spaces)")
	} else if s.deadLetter == s.prefix || strings.HasPrefix(s.deadLetter, s.prefix+".") {
		bad("dead-letter-subject", "must not be one of the partition subjects %s.*", s.prefix)
	}
	switch f := str("format", "jsonl"); f {
	case "jsonl", "json", "jsonlines":
		s.format = file.JSONLines
	case "parquet":
		s.format = file.Parquet
	default:
		bad("format", "want jsonl or parquet")
	}
	switch s.malformed {
	case "dead-letter", "deadletter", "dlq":
		s.malformed = "dead-letter"
		s.malformedHandler = jetstream.DeadLetter(s.deadLetter)
	case "skip":
		s.malformedHandler = jetstream.Skip()
	case "fail":
		s.malformedHandler = jetstream.Fail()
	default:
		bad("malformed", "want dead-letter, skip or fail")
	}
	switch m := str("postgres-mode", "upsert"); m {
	case "upsert":
		s.pgMode = postgres.Upsert
	case "exactly-once", "exactlyonce":
		s.pgMode = postgres.ExactlyOnce
	default:
		bad("postgres-mode", "want upsert or exactly-once")
	}
	if !tableRE.MatchString(s.tablePrefix) || len(s.tablePrefix) > 40 {
		bad("table-prefix", "want lower-case letters, digits and '_', starting with a letter or '_', at most 40 characters")
	}
	if v, ok := cfg.Params["demo-rate"]; ok {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 {
			bad("demo-rate", "want a number of events per second >= 0")
		}
		s.demoRate = r
	} else {
		s.demoRate = DefaultDemoRate
	}
	if len(errs) > 0 {
		return settings{}, errors.Join(errs...)
	}
	return s, nil
}

// partitionSubjects are the subjects of the stream's partitions.
func partitionSubjects(prefix string, n int) []string {
	subs := make([]string, n)
	for i := range subs {
		subs[i] = prefix + "." + strconv.Itoa(i)
	}
	return subs
}
