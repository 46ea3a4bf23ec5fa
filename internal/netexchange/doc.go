// Package netexchange carries one exchange channel between two processes over
// core NATS: the producer subtask's Writer on one node sends through a Sender
// (an exchange.Remote), and a Receiver on the consumer's node hands what it
// receives to the consumer's exchange.Gate, as a local producer would.
//
// # Subjects and frames
//
// Each channel has its own data subject, Subject(prefix, edge, from, to), and
// its receiver grants credit on CreditSubject(data). One NATS message carries
// one exchange message: a whole batch of records, encoded by a Codec (Msgpack
// by default), or one control event (watermark, barrier, end of input, idle).
// Events travel on the same subject and in the same sequence as the records,
// so they never overtake the records written before them.
//
// Every data message carries a sequence number, 1, 2, 3, ... Core NATS is at
// most once: a message lost on a reconnection shows as a gap, and the
// receiver fails with ErrSequence rather than go on without it. If the last
// messages were lost, no later one shows the gap: a receiver that has had
// nothing for a while repeats its grant (see Credit), and a sender that has
// sent more than the grant shows the receiver has taken answers with a sync
// message carrying the sequence number of its last message. As NATS keeps
// the order of one connection's messages, whatever of those the receiver
// lacks when the sync comes is lost, and it fails with ErrSequence. Recovery is
// the job's: it restarts from its latest checkpoint. Give each run of a job
// its own prefix (for example with the attempt number in it), so that a
// restarted sender or receiver never meets the other end of an older run.
//
// # Credit
//
// The receiver grants credit; the sender never sends a message beyond it.
// A grant carries the cumulative number of messages the sender may have sent
// since the start, not an increment, so a lost grant is made good by any
// later one. The receiver grants Config.Credit messages at the start, and
// then, every Config.GrantEvery messages it has handed to the gate, the
// number handed so far plus Config.Credit. As Gate.Send waits while the
// consumer's channel is full, a slow consumer withholds credit and its
// producers wait for it: nothing is dropped, and the messages of a channel in
// flight or queued never exceed Config.Credit plus the gate channel's
// capacity. A receiver that got no message for Config.RegrantInterval grants
// its credit again, so a lost grant (or one sent before the sender
// subscribed) delays the sender by one or two intervals and never deadlocks
// it; an idle channel costs one small grant per interval. Both ends must use
// the same Config: the sender needs Credit to tell from a repeated grant
// whether the receiver lacks messages. A sender waits at most Config.StartTimeout for its first
// grant and then fails with ErrNoReceiver naming the subject; afterwards it
// waits for credit as long as its consumer is slow, until its context ends.
//
// # Concurrency
//
// A Sender belongs to one producer goroutine (Send, like the Writer that
// calls it); a Receiver's Run runs on one goroutine, the producer of its gate
// channel. Close may be called from any goroutine, more than once; it makes
// a waiting Send or Run return ErrClosed. Neither starts goroutines of its
// own besides the one nats.go runs for the sender's credit subscription,
// which Close ends. Cancelling the context releases a Send waiting for credit
// and a Run waiting for a message or for room in the gate. The *nats.Conn
// belongs to the caller: it may be shared by many senders and receivers and
// is not closed by them; when it closes, they fail with an error wrapping
// nats.ErrConnectionClosed.
package netexchange
