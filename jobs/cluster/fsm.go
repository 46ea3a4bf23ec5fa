package cluster

import (
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// fsm is the raft state machine over a State. Apply runs on raft's
// goroutine; readers take a copy under mu (view). Every applied command
// signals changed, so the leader reconciles and watchers wake up.
type fsm struct {
	mu      sync.RWMutex
	st      *State
	changed chan struct{} // capacity 1: "something changed since you last looked"
	watch   sync.Map      // *watcher → struct{}
}

// watcher is one Watch call's channel.
type watcher struct{ ch chan struct{} }

func newFSM() *fsm { return &fsm{st: newState(), changed: make(chan struct{}, 1)} }

func (f *fsm) notify() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
	f.watch.Range(func(k, _ any) bool {
		select {
		case k.(*watcher).ch <- struct{}{}:
		default:
		}
		return true
	})
}

// Apply applies one command. Its result is the command's error (nil when
// it applied), which raft hands to the proposer's ApplyFuture.Response.
func (f *fsm) Apply(l *raft.Log) any {
	var c Command
	if err := msgpack.Unmarshal(l.Data, &c); err != nil {
		return fmt.Errorf("raft log entry %d: %w", l.Index, err)
	}
	f.mu.Lock()
	err := f.st.apply(&c)
	f.mu.Unlock()
	f.notify()
	return err
}

// view calls fn with the current State, which fn must not keep or change.
func (f *fsm) view(fn func(*State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.st)
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	data, err := msgpack.Marshal(f.st)
	if err != nil {
		return nil, fmt.Errorf("encode cluster state: %w", err)
	}
	return fsmSnapshot(data), nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st := newState()
	if err := msgpack.NewDecoder(rc).Decode(st); err != nil {
		return fmt.Errorf("decode cluster state snapshot: %w", err)
	}
	st.fill()
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	f.notify()
	return nil
}

type fsmSnapshot []byte

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write cluster state snapshot: %w", err)
	}
	return sink.Close()
}

func (fsmSnapshot) Release() {}
