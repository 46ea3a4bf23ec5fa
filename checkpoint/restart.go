package checkpoint

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// RestartStrategy decides whether and when a failed job restarts.
//
// Next is called after each failure with the number of consecutive failures,
// starting at 1, and the error that ended the run. It returns how long to
// wait before restarting, and false to give up: the job then fails with
// lastErr. The count is the caller's: a job that ran stably for a while
// starts again at 1 (see RestartTracker). Next is called from one goroutine
// at a time.
//
// The constructors of this package validate their arguments and return an
// error naming the wrong one.
type RestartStrategy interface {
	Next(failures int, lastErr error) (delay time.Duration, restart bool)
}

// UnlimitedAttempts, as the attempts of FixedDelay or ExponentialBackoff,
// restarts for ever.
const UnlimitedAttempts = 0

// NoRestart never restarts: the first failure fails the job.
func NoRestart() RestartStrategy { return noRestart{} }

type noRestart struct{}

func (noRestart) Next(int, error) (time.Duration, bool) { return 0, false }
func (noRestart) String() string                        { return "no restart" }

// FixedDelay restarts after delay, at most attempts times in a row
// (UnlimitedAttempts, 0, for no limit). delay may be 0; negative values are
// errors.
func FixedDelay(attempts int, delay time.Duration) (RestartStrategy, error) {
	if attempts < 0 {
		return nil, fmt.Errorf("checkpoint: fixed-delay restart: attempts is %d; it must be positive, or 0 for unlimited", attempts)
	}
	if delay < 0 {
		return nil, fmt.Errorf("checkpoint: fixed-delay restart: delay is %v; it must not be negative", delay)
	}
	return fixedDelay{attempts: attempts, delay: delay}, nil
}

type fixedDelay struct {
	attempts int
	delay    time.Duration
}

func (f fixedDelay) Next(failures int, _ error) (time.Duration, bool) {
	if f.attempts != UnlimitedAttempts && failures > f.attempts {
		return 0, false
	}
	return f.delay, true
}

func (f fixedDelay) String() string {
	return fmt.Sprintf("fixed delay %v, %s", f.delay, attemptsString(f.attempts))
}

// ExponentialBackoff restarts after initial, then multiplies the delay by
// multiplier at each further consecutive failure, up to maxDelay: the n-th
// consecutive failure waits min(initial*multiplier^(n-1), maxDelay). It gives up
// after maxAttempts consecutive failures (UnlimitedAttempts, 0, for no
// limit). initial must be positive, maxDelay at least initial, multiplier at
// least 1.
func ExponentialBackoff(initial, maxDelay time.Duration, multiplier float64, maxAttempts int) (RestartStrategy, error) {
	switch {
	case initial <= 0:
		return nil, fmt.Errorf("checkpoint: exponential-backoff restart: initial delay is %v; it must be positive", initial)
	case maxDelay < initial:
		return nil, fmt.Errorf("checkpoint: exponential-backoff restart: max delay %v is less than the initial delay %v", maxDelay, initial)
	case math.IsNaN(multiplier) || multiplier < 1:
		return nil, fmt.Errorf("checkpoint: exponential-backoff restart: multiplier is %v; it must be at least 1", multiplier)
	case maxAttempts < 0:
		return nil, fmt.Errorf("checkpoint: exponential-backoff restart: max attempts is %d; it must be positive, or 0 for unlimited", maxAttempts)
	}
	return expBackoff{initial: initial, max: maxDelay, mult: multiplier, attempts: maxAttempts}, nil
}

type expBackoff struct {
	initial, max time.Duration
	mult         float64
	attempts     int
}

func (e expBackoff) Next(failures int, _ error) (time.Duration, bool) {
	failures = max(failures, 1)
	if e.attempts != UnlimitedAttempts && failures > e.attempts {
		return 0, false
	}
	d := float64(e.initial) * math.Pow(e.mult, float64(failures-1))
	if d >= float64(e.max) || math.IsInf(d, 0) {
		return e.max, true
	}
	return time.Duration(d), true
}

func (e expBackoff) String() string {
	return fmt.Sprintf("exponential backoff from %v by %g up to %v, %s", e.initial, e.mult, e.max, attemptsString(e.attempts))
}

func attemptsString(n int) string {
	if n == UnlimitedAttempts {
		return "unlimited attempts"
	}
	return fmt.Sprintf("at most %d attempts", n)
}

// WithJitter spreads the delays of s, so that many jobs failing together do
// not restart together: each delay d becomes a uniformly random value in
// [d*(1-fraction), d]. fraction must lie in [0, 1]. r is the source of
// randomness (for reproducible tests); nil means math/rand/v2's global one.
// Strategies are deterministic without it.
func WithJitter(s RestartStrategy, fraction float64, r *rand.Rand) (RestartStrategy, error) {
	if s == nil {
		return nil, fmt.Errorf("checkpoint: jitter: nil restart strategy")
	}
	if math.IsNaN(fraction) || fraction < 0 || fraction > 1 {
		return nil, fmt.Errorf("checkpoint: jitter: fraction is %v; it must lie in [0, 1]", fraction)
	}
	return &jitter{s: s, fraction: fraction, r: r}, nil
}

type jitter struct {
	s        RestartStrategy
	fraction float64
	mu       sync.Mutex // guards r
	r        *rand.Rand
}

func (j *jitter) String() string { return fmt.Sprintf("%v with jitter %g", j.s, j.fraction) }

func (j *jitter) Next(failures int, lastErr error) (time.Duration, bool) {
	d, ok := j.s.Next(failures, lastErr)
	if !ok || d <= 0 {
		return d, ok
	}
	var u float64
	if j.r != nil {
		j.mu.Lock()
		u = j.r.Float64()
		j.mu.Unlock()
	} else {
		u = rand.Float64()
	}
	return d - time.Duration(float64(d)*j.fraction*u), true
}

// RestartTracker counts consecutive failures for a RestartStrategy. A run
// that lasted at least ResetAfter before failing counts as stable: the count
// starts again at 1. With ResetAfter 0 the count never resets. A
// RestartTracker is used from one goroutine.
type RestartTracker struct {
	Strategy   RestartStrategy
	ResetAfter time.Duration
	failures   int
}

// Failed records a failure of a run that lasted ranFor and returns the
// strategy's decision.
func (t *RestartTracker) Failed(ranFor time.Duration, err error) (delay time.Duration, restart bool) {
	if t.ResetAfter > 0 && ranFor >= t.ResetAfter {
		t.failures = 0
	}
	t.failures++
	return t.Strategy.Next(t.failures, err)
}

// Failures returns the current count of consecutive failures.
func (t *RestartTracker) Failures() int { return t.failures }
