package clickstream

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedata/sluice/connectors/jetstream"
)

// ErrGenerator is wrapped by the errors of an invalid GeneratorConfig.
var ErrGenerator = errors.New("clickstream: invalid generator configuration")

// DefaultStart is the event time of the first generated event unless
// GeneratorConfig.Start says otherwise: a fixed time, so that a seed gives the
// same events, and the same results, on every run.
var DefaultStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// GeneratorConfig configures Generate. Its fields are exported and flat so
// that a command can bind them to flags (RegisterFlags). Zero fields take the
// values of DefaultGeneratorConfig, except the fractions, where 0 means none.
type GeneratorConfig struct {
	// Stream, SubjectPrefix and Partitions say where events go: an event is
	// published to PREFIX.<hash(user) mod Partitions>, so that every event of
	// a user (and of a session) is in one partition, in order.
	Stream        string
	SubjectPrefix string
	Partitions    int

	// Count is the number of events to publish, malformed ones included.
	Count int64
	// Rate is how many events per second are published at most; 0 means as
	// fast as the server acknowledges them.
	Rate float64
	// Seed chooses the events: the same configuration publishes the same
	// payloads to the same subjects in the same order.
	Seed uint64

	// Start is the event time of the first event and Span the event time
	// the events cover: event i is due at Start + Span*i/Count.
	Start time.Time
	Span  time.Duration
	// OutOfOrder is how much earlier than its due time an on-time event's
	// time may be (uniformly); keep it below the job's out-of-orderness.
	OutOfOrder time.Duration
	// LateFraction of the events are late: earlier than their due time by
	// more than OutOfOrder and at most MaxLateness (uniformly), like events a
	// phone buffered while offline. Whether the job still counts one depends
	// on its out-of-orderness, lateness and window.
	LateFraction float64
	MaxLateness  time.Duration
	// MalformedFraction of the events are malformed: truncated or non-JSON
	// payloads, a missing video_id, an unknown type, an unparsable or 1970
	// event time, a negative watch time.
	MalformedFraction float64

	// Videos, Users and Sessions size the simulation: video popularity is
	// Zipf-distributed; Sessions playback sessions run at a time, each a play,
	// then pauses, resumes and seeks, ending with a stop (with the watch
	// time) or an error.
	Videos, Users, Sessions int

	// BatchSize is how many events are published asynchronously before
	// waiting for their acknowledgements.
	BatchSize int
}

// DefaultGeneratorConfig returns the defaults: 200 000 events over 10 minutes
// of event time on 8 partitions of stream "clickstream", 1% late by up to
// 3 minutes, 0.2% malformed, 2 000 videos, 50 000 users.
func DefaultGeneratorConfig() GeneratorConfig {
	return GeneratorConfig{
		Stream:            DefaultStream,
		SubjectPrefix:     DefaultSubjectPrefix,
		Partitions:        DefaultPartitions,
		Count:             DefaultDemoEvents,
		Seed:              1,
		Start:             DefaultStart,
		Span:              10 * time.Minute,
		OutOfOrder:        4 * time.Second,
		LateFraction:      0.01,
		MaxLateness:       3 * time.Minute,
		MalformedFraction: 0.002,
		Videos:            2000,
		Users:             50_000,
		Sessions:          2000,
		BatchSize:         2000,
	}
}

// RegisterFlags binds the fields to flags of fs, with c's current values as
// defaults: -stream, -subject-prefix, -partitions, -count, -rate, -seed,
// -start (RFC 3339), -span, -out-of-order, -late-fraction, -max-lateness,
// -malformed-fraction, -videos, -users, -sessions, -batch.
func (c *GeneratorConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Stream, "stream", c.Stream, "JetStream stream to publish to (created if missing)")
	fs.StringVar(&c.SubjectPrefix, "subject-prefix", c.SubjectPrefix, "partition subjects are PREFIX.0 ... PREFIX.N-1")
	fs.IntVar(&c.Partitions, "partitions", c.Partitions, "number of partition subjects")
	fs.Int64Var(&c.Count, "count", c.Count, "events to publish")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "events per second; 0 as fast as possible")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed: the same seed publishes the same events")
	fs.TextVar(&c.Start, "start", c.Start, "event time of the first event (RFC 3339)")
	fs.DurationVar(&c.Span, "span", c.Span, "event time covered by the events")
	fs.DurationVar(&c.OutOfOrder, "out-of-order", c.OutOfOrder, "how much earlier than due an on-time event may be")
	fs.Float64Var(&c.LateFraction, "late-fraction", c.LateFraction, "fraction of events that are late")
	fs.DurationVar(&c.MaxLateness, "max-lateness", c.MaxLateness, "how late a late event is at most")
	fs.Float64Var(&c.MalformedFraction, "malformed-fraction", c.MalformedFraction, "fraction of events that are malformed")
	fs.IntVar(&c.Videos, "videos", c.Videos, "distinct videos")
	fs.IntVar(&c.Users, "users", c.Users, "distinct users")
	fs.IntVar(&c.Sessions, "sessions", c.Sessions, "concurrent playback sessions")
	fs.IntVar(&c.BatchSize, "batch", c.BatchSize, "events published before waiting for acknowledgements")
}

func (c GeneratorConfig) withDefaults() GeneratorConfig {
	d := DefaultGeneratorConfig()
	if c.Stream == "" {
		c.Stream = d.Stream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = d.SubjectPrefix
	}
	if c.Partitions == 0 {
		c.Partitions = d.Partitions
	}
	if c.Start.IsZero() {
		c.Start = d.Start
	}
	if c.Span == 0 {
		c.Span = d.Span
	}
	if c.MaxLateness == 0 {
		c.MaxLateness = d.MaxLateness
	}
	if c.Videos == 0 {
		c.Videos = d.Videos
	}
	if c.Users == 0 {
		c.Users = d.Users
	}
	if c.Sessions == 0 {
		c.Sessions = d.Sessions
	}
	if c.BatchSize == 0 {
		c.BatchSize = d.BatchSize
	}
	return c
}

// Validate reports every invalid field, after defaults.
func (c GeneratorConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrGenerator, fmt.Sprintf(format, args...)))
	}
	if !streamRE.MatchString(c.Stream) {
		bad("stream %q: letters, digits, '-' and '_' only", c.Stream)
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		bad("partitions %d: want 1 to 1024", c.Partitions)
	}
	if c.Count < 0 {
		bad("count %d is negative", c.Count)
	}
	if c.Rate < 0 {
		bad("rate %v is negative", c.Rate)
	}
	if c.Span < 0 || c.OutOfOrder < 0 || c.MaxLateness < 0 {
		bad("span %v, out-of-order %v and max-lateness %v must not be negative", c.Span, c.OutOfOrder, c.MaxLateness)
	}
	if c.LateFraction > 0 && c.MaxLateness <= c.OutOfOrder+time.Millisecond {
		bad("max-lateness %v must exceed out-of-order %v by more than 1ms for late events", c.MaxLateness, c.OutOfOrder)
	}
	if c.LateFraction < 0 || c.MalformedFraction < 0 || c.LateFraction+c.MalformedFraction > 1 {
		bad("late-fraction %v and malformed-fraction %v must be >= 0 with a sum <= 1", c.LateFraction, c.MalformedFraction)
	}
	if c.Videos < 2 || c.Users < 1 || c.Sessions < 1 {
		bad("videos %d (at least 2), users %d and sessions %d (at least 1)", c.Videos, c.Users, c.Sessions)
	}
	if c.BatchSize < 1 {
		bad("batch %d must be positive", c.BatchSize)
	}
	if t := c.Start.Add(-c.MaxLateness); t.Before(minEventTime) || !c.Start.Add(c.Span).Before(maxEventTime) {
		bad("start %v: events must fall within the years 2000 to 2099", c.Start)
	}
	return errors.Join(errs...)
}

// StreamConfig is the stream layout the generator publishes to, with the
// job's default dead-letter subject.
func (c GeneratorConfig) StreamConfig() StreamConfig {
	c = c.withDefaults()
	return StreamConfig{Stream: c.Stream, SubjectPrefix: c.SubjectPrefix, Partitions: c.Partitions,
		DeadLetterSubject: c.SubjectPrefix + "-dlq"}
}

// Generate publishes cfg.Count events to the partition subjects of
// cfg.Stream over nc, which must exist (EnsureStream), and returns how many
// the server acknowledged. Events are published asynchronously in batches of
// cfg.BatchSize, and each batch's acknowledgements are awaited before the
// next, so the stream holds them in the order generated. Cancelling ctx stops
// it with ctx's error. Generate uses nc from one goroutine; nc may be shared.
func Generate(ctx context.Context, nc *nats.Conn, cfg GeneratorConfig) (published int64, err error) {
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	cfg = cfg.withDefaults()
	js, err := njs.New(nc, njs.WithPublishAsyncMaxPending(2*cfg.BatchSize))
	if err != nil {
		return 0, fmt.Errorf("clickstream: generator: %w", err)
	}
	g := newSimulation(cfg)
	futures := make([]njs.PubAckFuture, 0, cfg.BatchSize)
	begin := time.Now()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	wait := func(d time.Duration) error {
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for published < cfg.Count {
		n := min(int64(cfg.BatchSize), cfg.Count-published)
		futures = futures[:0]
		for range n {
			subject, payload := g.next()
			f, err := js.PublishAsync(subject, payload)
			if err != nil {
				return published, fmt.Errorf("clickstream: generator: publish to %s (stream %s): %w", subject, cfg.Stream, err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
				published++
			case err := <-f.Err():
				return published, fmt.Errorf("clickstream: generator: publish to %s (stream %s): %w", f.Msg().Subject, cfg.Stream, err)
			case <-ctx.Done():
				return published, ctx.Err()
			}
		}
		if cfg.Rate > 0 {
			due := begin.Add(time.Duration(float64(published) / cfg.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				if err := wait(d); err != nil {
					return published, err
				}
			}
		}
	}
	return published, nil
}

// RunGenerator is the entry point for a command (jobrunner generate):
// it connects to the server conn names, makes the stream and the dead-letter
// stream the job's defaults use (EnsureStream with cfg.StreamConfig()), and
// publishes cfg.Count events (Generate).
func RunGenerator(ctx context.Context, conn jetstream.ConnConfig, cfg GeneratorConfig) (published int64, err error) {
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	nc, err := jetstream.Connect(ctx, conn)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	if err := EnsureStream(ctx, nc, cfg.StreamConfig()); err != nil {
		return 0, err
	}
	return Generate(ctx, nc, cfg)
}

// simulation makes the events of a configuration, deterministically.
type simulation struct {
	cfg      GeneratorConfig
	rng      *rand.Rand
	zipf     *rand.Zipf
	subjects []string
	sessions []session
	n        int64 // events made
	started  uint64

	startMs, spanMs, oooMs, lateMs int64
	idPrefix                       string
}

type sessionState uint8

const (
	starting sessionState = iota
	playing
	paused
)

type session struct {
	id    string
	user  int
	video int
	state sessionState
}

func newSimulation(cfg GeneratorConfig) *simulation {
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9E3779B97F4A7C15))
	g := &simulation{
		cfg:      cfg,
		rng:      rng,
		zipf:     rand.NewZipf(rng, 1.1, 2, uint64(cfg.Videos-1)),
		subjects: partitionSubjects(cfg.SubjectPrefix, cfg.Partitions),
		sessions: make([]session, cfg.Sessions),
		startMs:  cfg.Start.UnixMilli(),
		spanMs:   cfg.Span.Milliseconds(),
		oooMs:    cfg.OutOfOrder.Milliseconds(),
		lateMs:   cfg.MaxLateness.Milliseconds(),
		idPrefix: "e" + strconv.FormatUint(cfg.Seed, 10) + "-",
	}
	for i := range g.sessions {
		g.sessions[i] = g.newSession()
	}
	return g
}

func (g *simulation) newSession() session {
	g.started++
	return session{
		id:    "s" + strconv.FormatUint(g.cfg.Seed, 10) + "-" + strconv.FormatUint(g.started, 10),
		user:  g.rng.IntN(g.cfg.Users),
		video: int(g.zipf.Uint64()),
	}
}

// next makes the next event: its subject and payload.
func (g *simulation) next() (subject string, payload []byte) {
	i := g.n
	g.n++
	due := g.startMs
	if g.cfg.Count > 0 {
		due += int64(float64(g.spanMs) * float64(i) / float64(g.cfg.Count))
	}
	r := g.rng.Float64()
	malformed := r < g.cfg.MalformedFraction
	late := !malformed && r < g.cfg.MalformedFraction+g.cfg.LateFraction
	ts := due - g.rng.Int64N(g.oooMs+1)
	if late {
		ts = due - g.oooMs - 1 - g.rng.Int64N(g.lateMs-g.oooMs-1)
	}

	s := &g.sessions[g.rng.IntN(len(g.sessions))]
	e := Event{
		EventID:   g.idPrefix + strconv.FormatInt(i, 10),
		UserID:    userID(s.user),
		SessionID: s.id,
		VideoID:   videoID(s.video),
		Time:      time.UnixMilli(ts).UTC(),
	}
	e.Country, e.Device = userProfile(s.user)
	subject = g.subjects[fnv32(e.UserID)%uint32(len(g.subjects))]
	if malformed {
		return subject, g.malformed(e)
	}

	u := g.rng.Float64()
	switch s.state {
	case starting:
		e.Type, s.state = Play, playing
	case playing:
		switch {
		case u < 0.15:
			e.Type, s.state = Pause, paused
		case u < 0.27:
			e.Type = Seek
		case u < 0.30:
			e.Type = Error
			e.ErrorCode = pick(g.rng.Float64(), errorCodes)
		default:
			e.Type = Stop
		}
	case paused:
		if u < 0.7 {
			e.Type, s.state = Resume, playing
		} else {
			e.Type = Stop
		}
	}
	if e.Type == Stop {
		w := g.rng.Float64()
		e.WatchMillis = int64(float64(videoLengthMs(s.video)) * (0.02 + 0.98*w*w))
	}
	if e.Type == Stop || e.Type == Error {
		*s = g.newSession()
	}
	tf := RFC3339Millis
	if e.Device == "ios" || e.Device == "android" {
		tf = UnixMillis
	}
	payload, err := AppendJSON(nil, e, tf)
	if err != nil {
		panic(err) // the generator's own events always encode
	}
	return subject, payload
}

// malformed turns e into one of the ways real payloads go wrong.
func (g *simulation) malformed(e Event) []byte {
	e.Type = Play
	ok, _ := AppendJSON(nil, e, RFC3339Millis)
	w := wireEvent{EventID: e.EventID, UserID: e.UserID, SessionID: e.SessionID, VideoID: e.VideoID,
		Country: e.Country, Device: e.Device, Type: Play, TS: json.RawMessage(strconv.FormatInt(e.Time.UnixMilli(), 10))}
	switch g.rng.IntN(7) {
	case 0: // cut off in transit
		return ok[:len(ok)/2]
	case 1: // a proxy's error page
		return []byte("<html><body><h1>502 Bad Gateway</h1></body></html>")
	case 2:
		w.VideoID = ""
	case 3:
		w.TS = json.RawMessage(`"yesterday"`)
	case 4:
		w.Type = "teleport"
	case 5:
		w.Type = Stop
		s := -12.5
		w.WatchSeconds = &s
	case 6: // a device whose clock was reset
		w.TS = json.RawMessage("0")
	}
	b, err := json.Marshal(w)
	if err != nil {
		panic(err)
	}
	return b
}

func userID(u int) string  { return fmt.Sprintf("u-%06d", u) }
func videoID(v int) string { return fmt.Sprintf("v-%05d", v) }

// mix is splitmix64's finalizer: a fixed hash for per-user and per-video
// attributes, independent of the order events are made in.
func mix(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ x>>30) * 0xBF58476D1CE4E5B9
	x = (x ^ x>>27) * 0x94D049BB133111EB
	return x ^ x>>31
}

func unit(x uint64) float64 { return float64(mix(x)>>11) / (1 << 53) }

type weighted struct {
	value  string
	weight float64
}

var (
	countries = []weighted{
		{"US", 28}, {"IN", 14}, {"BR", 9}, {"GB", 6}, {"DE", 6}, {"FR", 5}, {"JP", 5}, {"MX", 4}, {"CA", 4},
		{"ID", 4}, {"NG", 3}, {"KR", 3}, {"ES", 3}, {"IT", 2}, {"AU", 2}, {"PL", 1}, {"", 1},
	}
	devices    = []weighted{{"web", 35}, {"android", 30}, {"ios", 20}, {"tv", 15}}
	errorCodes = []weighted{
		{"NETWORK_TIMEOUT", 35}, {"CDN_5XX", 20}, {"DECODE_ERROR", 15}, {"DRM_LICENSE", 10},
		{"MANIFEST_404", 10}, {"BUFFER_UNDERRUN", 7}, {"OUT_OF_MEMORY", 3},
	}
)

// pick chooses from ws by u in [0, 1).
func pick(u float64, ws []weighted) string {
	total := 0.0
	for _, w := range ws {
		total += w.weight
	}
	u *= total
	for _, w := range ws {
		if u < w.weight {
			return w.value
		}
		u -= w.weight
	}
	return ws[len(ws)-1].value
}

// userProfile is a user's country ("" for the few without one) and device.
func userProfile(u int) (country, device string) {
	return pick(unit(uint64(u)*2), countries), pick(unit(uint64(u)*2+1), devices)
}

// videoLengthMs is a video's length: 30 s to about an hour.
func videoLengthMs(v int) int64 {
	return 30_000 + int64(unit(uint64(v)+1<<40)*3_570_000)
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
