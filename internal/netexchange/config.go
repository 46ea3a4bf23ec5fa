package netexchange

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrClosed is returned by Send and Run after Close.
	ErrClosed = errors.New("netexchange: closed")
	// ErrNoReceiver is returned by a Sender that got no credit within
	// Config.StartTimeout of its first Send.
	ErrNoReceiver = errors.New("netexchange: no credit from a receiver")
	// ErrSequence is returned by a Receiver that got a message out of
	// sequence: one or more were lost, or the other end belongs to another
	// run.
	ErrSequence = errors.New("netexchange: message out of sequence")
	// ErrDecode is returned by a Receiver (or Sender, for a grant) that got
	// a message it cannot decode.
	ErrDecode = errors.New("netexchange: cannot decode")
)

// Config are the settings of both ends of a channel; the two must use the
// same Codec. Start from DefaultConfig.
type Config[E any] struct {
	// Codec encodes the batches.
	Codec Codec[E]
	// Credit is how many messages (batches or events) a sender may send
	// beyond those its receiver has handed to the gate: the initial credit
	// and the window. Credit batches are the most a channel holds in the
	// network and the receiver's subscription.
	Credit int
	// GrantEvery is how many messages the receiver hands to the gate before
	// it grants more credit, 1..Credit.
	GrantEvery int
	// RegrantInterval is how long a receiver that gets no message waits
	// before it grants its credit again, in case a grant was lost.
	RegrantInterval time.Duration
	// StartTimeout bounds a sender's wait for its first credit: how long a
	// receiver may take to come up.
	StartTimeout time.Duration
}

// DefaultConfig is 16 messages of credit granted 4 at a time, re-granted
// after 250 ms without a message, a start timeout of 10 s and the Msgpack
// codec.
func DefaultConfig[E any]() Config[E] {
	return Config[E]{
		Codec:           Msgpack[E](),
		Credit:          16,
		GrantEvery:      4,
		RegrantInterval: 250 * time.Millisecond,
		StartTimeout:    10 * time.Second,
	}
}

// Validate reports the first setting that is missing or out of range.
func (c Config[E]) Validate() error {
	switch {
	case c.Codec == nil:
		return fmt.Errorf("netexchange: Config.Codec is nil")
	case c.Credit < 1:
		return fmt.Errorf("netexchange: Config.Credit %d must be at least 1", c.Credit)
	case c.GrantEvery < 1 || c.GrantEvery > c.Credit:
		return fmt.Errorf("netexchange: Config.GrantEvery %d must be in [1, Credit=%d]", c.GrantEvery, c.Credit)
	case c.RegrantInterval <= 0:
		return fmt.Errorf("netexchange: Config.RegrantInterval %v must be positive", c.RegrantInterval)
	case c.StartTimeout <= 0:
		return fmt.Errorf("netexchange: Config.StartTimeout %v must be positive", c.StartTimeout)
	}
	return nil
}
