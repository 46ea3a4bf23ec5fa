package checkpoint

import (
	"errors"
	"fmt"
	"time"
)

// Defaults of Config, applied by WithDefaults to zero fields.
const (
	// DefaultTimeout is how long a checkpoint may take before it is aborted.
	DefaultTimeout = 10 * time.Minute
	// DefaultRetain is how many completed checkpoints are kept.
	DefaultRetain = 3
)

// Config configures periodic checkpoints. The zero value is valid: no
// periodic checkpoints (Interval 0), and the defaults below once
// WithDefaults is applied.
type Config struct {
	// Interval is the time between the start of two checkpoints. Zero
	// disables periodic checkpoints (savepoints and the final checkpoint at
	// end of input are still taken); negative is invalid.
	Interval time.Duration
	// Timeout aborts a checkpoint that has not completed after this long.
	// Zero means DefaultTimeout (10 minutes).
	Timeout time.Duration
	// MinPause is the least time between the end of one checkpoint and the
	// start of the next, so that a job whose checkpoints take longer than
	// Interval still makes progress between them. Zero means none.
	MinPause time.Duration
	// TolerableFailures is how many consecutive checkpoints may fail (time
	// out, be declined, fail to write) before the job fails. The default, 0,
	// fails the job at the first failed checkpoint.
	TolerableFailures int
	// Retain is how many completed checkpoints the storage keeps (Prune).
	// Zero means DefaultRetain (3).
	Retain int
}

// DefaultConfig returns a Config with every default filled in and periodic
// checkpoints disabled (set Interval to enable them).
func DefaultConfig() Config { return Config{}.WithDefaults() }

// WithDefaults returns c with zero Timeout and Retain replaced by
// DefaultTimeout and DefaultRetain.
func (c Config) WithDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Retain == 0 {
		c.Retain = DefaultRetain
	}
	return c
}

// Enabled reports whether periodic checkpoints are on (Interval > 0).
func (c Config) Enabled() bool { return c.Interval > 0 }

// Validate reports every invalid field. Zero fields are valid: they take
// their defaults.
func (c Config) Validate() error {
	var errs []error
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("checkpoint: Interval is %v; it must be positive to enable periodic checkpoints, or 0 to disable them", c.Interval))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("checkpoint: Timeout is %v; it must be positive (0 means %v)", c.Timeout, DefaultTimeout))
	}
	if c.MinPause < 0 {
		errs = append(errs, fmt.Errorf("checkpoint: MinPause is %v; it must not be negative", c.MinPause))
	}
	if c.TolerableFailures < 0 {
		errs = append(errs, fmt.Errorf("checkpoint: TolerableFailures is %d; it must not be negative", c.TolerableFailures))
	}
	if c.Retain < 0 {
		errs = append(errs, fmt.Errorf("checkpoint: Retain is %d; it must be at least 1 (0 means %d)", c.Retain, DefaultRetain))
	}
	return errors.Join(errs...)
}
