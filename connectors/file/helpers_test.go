package file_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicedata/sluice/connectors/file"
	"github.com/sluicedata/sluice/dataflow"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// event is the test record.
type event struct {
	ID   int64  `json:"id" csv:"id" parquet:"id"`
	Name string `json:"name" csv:"name" parquet:"name"`
}

func events(from, to int64) []event {
	var es []event
	for i := from; i < to; i++ {
		es = append(es, event{ID: i, Name: "event " + string(rune('a'+i%26))})
	}
	return es
}

// sinkOp is the sink's operator with its checkpoint methods.
type sinkOp[T any] interface {
	dataflow.Operator[T]
	dataflow.Snapshotter
	dataflow.CheckpointListener
}

// newOp makes one operator of a file sink named "files".
func newOp[T any](t *testing.T, cfg file.Config[T]) sinkOp[T] {
	t.Helper()
	factory, err := file.NewSink("files", cfg)
	require.NoError(t, err)
	op, ok := factory().(sinkOp[T])
	require.True(t, ok, "the sink operator implements Snapshotter and CheckpointListener")
	return op
}

// opCtx describes subtask sub of par, restored from r if not nil.
func opCtx(sub, par int, r *dataflow.RestoredState) *dataflow.OperatorContext {
	return &dataflow.OperatorContext{
		Job: "job", Operator: "files", Subtask: sub, Parallelism: par, MaxParallelism: 128,
		KeyGroups: dataflow.KeyGroupRange{Start: sub * 128 / par, End: (sub + 1) * 128 / par},
		Restored:  r,
	}
}

// openOp makes and opens subtask sub of par.
func openOp[T any](t *testing.T, cfg file.Config[T], sub, par int, r *dataflow.RestoredState) sinkOp[T] {
	t.Helper()
	op := newOp(t, cfg)
	require.NoError(t, op.Open(context.Background(), opCtx(sub, par, r)))
	return op
}

func process[T any](t *testing.T, op sinkOp[T], vs []T) {
	t.Helper()
	for _, v := range vs {
		require.NoError(t, op.Process(v, dataflow.NoTimestamp))
	}
}

func snapshot[T any](t *testing.T, op sinkOp[T], id int64) []byte {
	t.Helper()
	b, err := op.SnapshotState(context.Background(), id)
	require.NoError(t, err)
	return b
}

func complete[T any](t *testing.T, op sinkOp[T], id int64) {
	t.Helper()
	require.NoError(t, op.NotifyCheckpointComplete(context.Background(), id))
}

// listFiles returns the files under dir, relative and "/"-separated:
// visible ones (what a reader sees), and hidden ones (names starting with a
// dot).
func listFiles(t *testing.T, dir string) (visible, hidden []string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(d.Name(), ".") {
			hidden = append(hidden, rel)
		} else {
			visible = append(visible, rel)
		}
		return nil
	})
	require.NoError(t, err)
	return visible, hidden
}

func visibleFiles(t *testing.T, dir string) []string {
	t.Helper()
	v, _ := listFiles(t, dir)
	return v
}

func hiddenFiles(t *testing.T, dir string) []string {
	t.Helper()
	_, h := listFiles(t, dir)
	return h
}

// readJSONL reads one JSON Lines file strictly: every line a whole object,
// the file ending with a newline.
func readJSONL[T any](t *testing.T, path string) []T {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	if len(b) == 0 {
		return nil
	}
	require.True(t, strings.HasSuffix(string(b), "\n"), "%s ends with a whole line", path)
	var out []T
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		var v T
		require.NoError(t, json.Unmarshal(sc.Bytes(), &v), "%s: line %q", path, sc.Text())
		out = append(out, v)
	}
	require.NoError(t, sc.Err())
	return out
}

// readVisibleJSONL reads every visible file under dir, in name order.
func readVisibleJSONL[T any](t *testing.T, dir string) []T {
	t.Helper()
	var out []T
	for _, f := range visibleFiles(t, dir) {
		out = append(out, readJSONL[T](t, filepath.Join(dir, f))...)
	}
	return out
}

func sortedIDs(es []event) []int64 {
	ids := make([]int64, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	slices.Sort(ids)
	return ids
}

func idRange(from, to int64) []int64 {
	ids := []int64{}
	for i := from; i < to; i++ {
		ids = append(ids, i)
	}
	return ids
}
