// Package retry is the retry policy the connectors share: how often and
// how long a sink retries an operation after a transient failure (a dropped
// connection, a server restarting, an overloaded node), with exponential
// backoff.
package retry

import (
	"fmt"
	"time"
)

// Policy retries an operation after a transient failure with exponential
// backoff. Zero fields take the values of Default.
type Policy struct {
	// MaxAttempts is the number of tries, the first included. 1 disables retries.
	MaxAttempts int
	// InitialBackoff is the wait after the first failure; it doubles after
	// each further one.
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between two tries.
	MaxBackoff time.Duration
}

// Default returns 10 attempts with backoff from 100ms doubling up to 5s:
// about 25 seconds in all, long enough for a server restart.
func Default() Policy {
	return Policy{MaxAttempts: 10, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}
}

// WithDefaults returns p with its zero fields set from Default.
func (p Policy) WithDefaults() Policy {
	d := Default()
	if p.MaxAttempts == 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.InitialBackoff == 0 {
		p.InitialBackoff = d.InitialBackoff
	}
	if p.MaxBackoff == 0 {
		p.MaxBackoff = d.MaxBackoff
	}
	return p
}

// Validate reports a policy with fewer than one attempt or a negative backoff.
func (p Policy) Validate() error {
	if p.MaxAttempts < 1 || p.InitialBackoff < 0 || p.MaxBackoff < 0 {
		return fmt.Errorf("retry policy %+v: attempts must be at least 1 and backoffs not negative", p)
	}
	return nil
}

// Backoff is the wait after the attempt-th failure (1-based).
func (p Policy) Backoff(attempt int) time.Duration {
	d := p.InitialBackoff
	for i := 1; i < attempt && d < p.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, p.MaxBackoff)
}
