package file

import (
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/sluicedata/sluice/dataflow"
)

// partitioner maps event times to partition directories (relative,
// "/"-separated; "" for Dir itself). It caches the last directory with the
// span of time it covers, so a pattern is formatted once per hour (or day,
// minute...) of event time rather than once per record. Not safe for
// concurrent use: each subtask has its own.
type partitioner struct {
	layout string
	fn     func(time.Time) string
	def    string // records without an event time

	// cache of the last directory computed: ts in [lo, hi) gives dir.
	lo, hi dataflow.Timestamp
	dir    string
	// checked is the last directory returned by fn that passed checkDir, if
	// hasChecked.
	checked    string
	hasChecked bool
}

func newPartitioner[T any](cfg Config[T]) (*partitioner, error) {
	p := &partitioner{layout: cfg.PartitionPattern, fn: cfg.Partition, def: cfg.DefaultPartition}
	if p.layout == "" && p.fn == nil {
		return p, nil
	}
	if p.def == "" {
		p.def = defaultPartition(p.layout)
	}
	if err := checkDir(p.def); err != nil {
		return nil, fmt.Errorf("default partition: %w", err)
	}
	if p.layout != "" {
		sample := time.Date(2026, 11, 22, 13, 4, 5, 0, time.UTC).Format(p.layout)
		if err := checkDir(sample); err != nil {
			return nil, fmt.Errorf("partition pattern %q: %w", p.layout, err)
		}
		if sample == time.Date(2027, 12, 23, 14, 5, 6, 0, time.UTC).Format(p.layout) {
			return nil, fmt.Errorf("partition pattern %q has no time field", p.layout)
		}
	}
	p.lo, p.hi = 1, 0 // empty cache
	return p, nil
}

// defaultPartition is the directory of records without an event time: for a
// Hive-style pattern every segment's key with HiveDefaultPartition (so that
// readers see one consistent set of partition columns), otherwise
// NoTimestampPartition.
func defaultPartition(layout string) string {
	if layout == "" {
		return NoTimestampPartition
	}
	segs := strings.Split(layout, "/")
	for i, s := range segs {
		k, _, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return NoTimestampPartition
		}
		segs[i] = k + "=" + HiveDefaultPartition
	}
	return strings.Join(segs, "/")
}

// checkDir accepts a relative "/"-separated path that stays under Dir and
// that no reader skips: no segment empty, ".", ".." or starting with "." or
// "_" (hidden to Hive, Spark, Athena and this sink's own naming).
func checkDir(dir string) error {
	if dir == "" {
		return fmt.Errorf("%w: empty", ErrPartition)
	}
	if path.IsAbs(dir) || strings.Contains(dir, `\`) {
		return fmt.Errorf("%w: %q is not a relative /-separated path", ErrPartition, dir)
	}
	for _, s := range strings.Split(dir, "/") {
		if s == "" || s[0] == '.' || s[0] == '_' {
			return fmt.Errorf("%w: %q: segment %q is empty, hidden from readers (starts with . or _) or leaves the directory", ErrPartition, dir, s)
		}
	}
	return nil
}

// spans are the units a cached directory may cover, largest first: a layout
// gives one directory for a whole span when it formats the span's first and
// last instant the same.
var spans = [...]time.Duration{24 * time.Hour, time.Hour, time.Minute, time.Second}

// partition returns the directory of a record with event time ts.
func (p *partitioner) partition(ts dataflow.Timestamp) (string, error) {
	if p.layout == "" && p.fn == nil {
		return "", nil
	}
	if ts == dataflow.NoTimestamp {
		return p.def, nil
	}
	if p.fn != nil {
		d := p.fn(ts.Time())
		if !p.hasChecked || d != p.checked {
			if err := checkDir(d); err != nil {
				return "", fmt.Errorf("partition of event time %v: %w", ts, err)
			}
			p.checked, p.hasChecked = d, true
		}
		return d, nil
	}
	if ts >= p.lo && ts < p.hi {
		return p.dir, nil
	}
	t := ts.Time()
	d := t.Format(p.layout)
	p.dir, p.lo, p.hi = d, ts, ts+1
	// Unix time has no leap seconds, so UTC days, hours, minutes and seconds
	// are aligned multiples of their length from the epoch.
	for _, span := range spans {
		n := int64(span)
		lo := int64(ts) - mod(int64(ts), n)
		if lo > int64(dataflow.MaxWatermark)-n {
			continue
		}
		hi := lo + n
		if time.Unix(0, lo).UTC().Format(p.layout) == d && time.Unix(0, hi-1).UTC().Format(p.layout) == d {
			p.lo, p.hi = dataflow.Timestamp(lo), dataflow.Timestamp(hi)
			break
		}
	}
	return d, nil
}

func mod(a, n int64) int64 {
	m := a % n
	if m < 0 {
		m += n
	}
	return m
}
