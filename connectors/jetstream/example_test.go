package jetstream_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/connectors/jetstream/embedded"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
)

type View struct {
	Video string `json:"video"`
	User  string `json:"user"`
}

// startExampleServer starts an embedded server with a stream VIEWS on
// views.> holding three views.
func startExampleServer() (srv *embedded.Server, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "sluice-example")
	if err != nil {
		return nil, nil, err
	}
	srv, err = embedded.Start(embedded.Config{Dir: dir})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	cleanup = func() { srv.Shutdown(); os.RemoveAll(dir) }
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	defer nc.Close()
	js, _ := njs.New(nc)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, njs.StreamConfig{Name: "VIEWS", Subjects: []string{"views.>"}}); err != nil {
		cleanup()
		return nil, nil, err
	}
	for _, v := range []string{`{"video":"a","user":"ann"}`, `{"video":"b","user":"bob"}`, `{"video":"a","user":"cid"}`} {
		if _, err := js.Publish(ctx, "views.eu", []byte(v)); err != nil {
			cleanup()
			return nil, nil, err
		}
	}
	return srv, cleanup, nil
}

// A bounded source reads the stream from offset zero to its end at start,
// and the job finishes.
func ExampleSource() {
	srv, cleanup, err := startExampleServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cleanup()

	job := dataflow.NewJob("views")
	views := jetstream.Source(job, "views", jetstream.SourceConfig[View]{
		Conn:    jetstream.ConnConfig{URL: srv.URL()},
		Stream:  "VIEWS",
		Start:   jetstream.Earliest(),
		Bounded: true,
	})
	memory.Print(views, "print", os.Stdout)
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// print> {Video:a User:ann}
	// print> {Video:b User:bob}
	// print> {Video:a User:cid}
}

// A sink publishes at checkpoint commit, one Nats-Msg-Id per record.
func ExampleSink() {
	srv, cleanup, err := startExampleServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cleanup()

	job := dataflow.NewJob("copy")
	views := jetstream.Source(job, "views", jetstream.SourceConfig[View]{
		Conn: jetstream.ConnConfig{URL: srv.URL()}, Stream: "VIEWS", Bounded: true,
	})
	users := operators.Map(views, "user", func(v View) string { return v.User })
	jetstream.Sink(users, "users", jetstream.SinkConfig[string]{
		Conn:    jetstream.ConnConfig{URL: srv.URL()},
		Subject: func(u string) string { return "views.users." + u },
	})
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
		return
	}

	nc, err := nats.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	js, _ := njs.New(nc)
	s, _ := js.Stream(context.Background(), "VIEWS")
	for seq := uint64(4); seq <= 6; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			fmt.Println(err)
			return
		}
		id := nats.Header(m.Header).Get(nats.MsgIdHdr)
		fmt.Println(m.Subject, string(m.Data), strings.HasPrefix(id, "copy/users/0/"))
	}
	// Output:
	// views.users.ann ann true
	// views.users.bob bob true
	// views.users.cid cid true
}

// A checkpoint committed by one node is restored by another, on its own
// connection to the same NATS system.
func ExampleCheckpointStorage() {
	dir, err := os.MkdirTemp("", "sluice-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(embedded.Config{Dir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	ctx := context.Background()

	// Node 1 writes a file and commits a checkpoint that references it.
	nc1, err := nats.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc1.Close()
	js1, _ := njs.New(nc1)
	st, err := jetstream.NewCheckpointStorage(ctx, js1, jetstream.CheckpointStorageConfig{Bucket: "CHECKPOINTS"})
	if err != nil {
		fmt.Println(err)
		return
	}
	w, err := st.Create(ctx, 1, "counts/0/keyed")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Fprint(w, "state of subtask 0")
	ref, err := w.Commit()
	if err != nil {
		fmt.Println(err)
		return
	}
	err = st.Commit(ctx, &checkpoint.Manifest{
		Version: checkpoint.FormatVersion, Kind: checkpoint.KindCheckpoint, ID: 1, Job: "counts",
		MaxParallelism: 128,
		Operators: []checkpoint.OperatorState{{Name: "counts", Parallelism: 1,
			Subtasks: []checkpoint.SubtaskState{{Keyed: []checkpoint.FileRef{ref}}}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// Node 2 restores it.
	nc2, err := nats.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc2.Close()
	js2, _ := njs.New(nc2)
	restore, err := jetstream.OpenCheckpointStorage(ctx, js2, "CHECKPOINTS")
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := restore.Latest(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	op, _ := m.Operator("counts")
	r, err := restore.Open(ctx, op.Subtasks[0].Keyed[0])
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("checkpoint %d of %s: %s: %q\n", m.ID, m.Job, op.Subtasks[0].Keyed[0].Path, b)
	// Output:
	// checkpoint 1 of counts: chk-1/counts/0/keyed: "state of subtask 0"
}
