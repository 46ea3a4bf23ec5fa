package jetstream_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/dataflow"
)

// publishWithBad publishes 6 messages to views.0, of which seqs 2 and 5 are
// not JSON.
func publishWithBad(f *fixture) {
	f.publishRaw(f.subj("views.0"), `{"n":0}`, `not json`, `{"n":2}`, `{"n":3}`, `{bad`, `{"n":5}`)
}

func TestDecodeFailureFailsNamingStreamSubjectAndSequence(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		publishWithBad(f)
		o := openSource(t, f.sourceConfig(1), 0, 1, nil)
		err := o.pollErr(t)
		require.ErrorIs(t, err, jetstream.ErrDecode)
		require.ErrorContains(t, err, fmt.Sprintf("jetstream: cannot decode record: stream %s subject %s seq 2: invalid character", f.stream, f.subj("views.0")))
		require.Equal(t, fmt.Sprintf("stream %s subject %s seq 2", f.stream, f.subj("views.0")), o.src.(dataflow.Positioner).Position(), "the message that failed")
	})
}

func TestDecodeFailuresSkippedAndCounted(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		publishWithBad(f)
		var failures jetstream.Counter
		cfg := f.sourceConfig(1)
		cfg.OnDecodeError, cfg.DecodeFailures = jetstream.Skip(), &failures
		o := openSource(t, cfg, 0, 1, nil)
		o.pollUntil(t, func() bool { return false })
		require.Equal(t, []uint64{1, 3, 4, 6}, seqs(o.out.vals))
		require.Equal(t, int64(2), failures.Load())
		// The skipped messages are behind the checkpointed position.
		snap := snapshot(t, o)
		o = openSource(t, cfg, 0, 1, &dataflow.RestoredState{CheckpointID: 1, Subtasks: [][]byte{snap}})
		o.pollUntil(t, func() bool { return false })
		require.Empty(t, o.out.vals)
		require.Equal(t, int64(2), failures.Load())
	})
}

func TestDecodeFailuresGoToDeadLetterSubjectOnce(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		publishWithBad(f)
		dlqSubject := "dlq_" + f.prefix
		dlq := f.createStream("DLQ_"+f.stream, dlqSubject)
		var failures jetstream.Counter
		cfg := f.sourceConfig(1)
		cfg.OnDecodeError, cfg.DecodeFailures = jetstream.DeadLetter(dlqSubject), &failures

		for run := 1; run <= 2; run++ {
			// The second run replays the stream: its dead letters are
			// duplicates, dropped by the dead-letter stream.
			o := openSource(t, cfg, 0, 1, nil)
			o.pollUntil(t, func() bool { return false })
			require.Equal(t, []uint64{1, 3, 4, 6}, seqs(o.out.vals))
			require.Equal(t, int64(2*run), failures.Load(), "every run counts its dead letters")
			info, err := dlq.Info(context.Background())
			require.NoError(t, err)
			require.Equal(t, uint64(2), info.State.Msgs, "run %d", run)
		}

		for i, seq := range []uint64{2, 5} {
			m, err := dlq.GetMsg(context.Background(), uint64(i+1))
			require.NoError(t, err)
			require.Equal(t, []string{"not json", "{bad"}[i], string(m.Data))
			h := nats.Header(m.Header)
			require.Equal(t, f.stream, h.Get("Sluice-Source-Stream"))
			require.Equal(t, f.subj("views.0"), h.Get("Sluice-Source-Subject"))
			require.Equal(t, strconv.FormatUint(seq, 10), h.Get("Sluice-Source-Sequence"))
			require.Contains(t, h.Get("Sluice-Error"), "invalid character")
			require.Equal(t, fmt.Sprintf("%s:%d", f.stream, seq), h.Get(nats.MsgIdHdr))
		}
	})
}
