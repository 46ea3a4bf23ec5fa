package jetstream_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/checkpoint/checkpointtest"
	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/connectors/jetstream/embedded"
)

// uniqueName is a bucket name unique to t (and to this run), so that tests
// can share the external server.
func uniqueName(t testing.TB, prefix string) string {
	id := nonName.ReplaceAllString(t.Name(), "_")
	if len(id) > 40 {
		id = id[len(id)-40:]
	}
	inbox := nats.NewInbox() // ends in a random NUID
	return prefix + strings.Trim(id, "_") + "_" + inbox[len(inbox)-8:]
}

// connectJS opens a connection (a "node") to url, closed when t ends.
func connectJS(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, njs.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := njs.New(nc)
	require.NoError(t, err)
	return nc, js
}

// newCheckpointStorage opens a storage in a new bucket, deleted when t ends.
func newCheckpointStorage(t testing.TB, js njs.JetStream, cfg jetstream.CheckpointStorageConfig) *jetstream.CheckpointStorage {
	t.Helper()
	if cfg.Bucket == "" {
		cfg.Bucket = uniqueName(t, "CHK_")
	}
	st, err := jetstream.NewCheckpointStorage(context.Background(), js, cfg)
	require.NoError(t, err)
	deleteBucketAtEnd(t, js, cfg.Bucket)
	return st
}

func deleteBucketAtEnd(t testing.TB, js njs.JetStream, bucket string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteObjectStore(ctx, bucket); err != nil && !errors.Is(err, njs.ErrBucketNotFound) {
			t.Errorf("delete bucket %s: %v", bucket, err)
		}
	})
}

func TestCheckpointStorageConformance(t *testing.T) {
	eachURL(t, func(t *testing.T, url string, _ *embedded.Server) {
		_, js := connectJS(t, url)
		checkpointtest.StorageConformance(t, func(t *testing.T) checkpoint.Storage {
			return newCheckpointStorage(t, js, jetstream.CheckpointStorageConfig{})
		})
	})
}

// A small chunk size cuts every file of the suite into many chunks.
func TestCheckpointStorageConformanceSmallChunks(t *testing.T) {
	srv := newEmbedded(t)
	_, js := connectJS(t, srv.URL())
	checkpointtest.StorageConformance(t, func(t *testing.T) checkpoint.Storage {
		return newCheckpointStorage(t, js, jetstream.CheckpointStorageConfig{ChunkSize: 1000, Storage: njs.MemoryStorage})
	})
}

// A second node, on its own connection, restores what the first committed.
func TestCheckpointStorageSecondNode(t *testing.T) {
	eachURL(t, func(t *testing.T, url string, _ *embedded.Server) {
		ctx := context.Background()
		_, js1 := connectJS(t, url, nats.Name("node-1"))
		st1 := newCheckpointStorage(t, js1, jetstream.CheckpointStorageConfig{})

		big := bytes.Repeat([]byte("sluice state "), 100_000) // 1.3 MB, several chunks
		a := checkpointtest.WriteFile(t, st1, 1, "op/0/keyed", big)
		b := checkpointtest.WriteFile(t, st1, 1, "op/1/keyed", []byte("subtask 1"))
		m1 := checkpointtest.Manifest(1, a, b)
		require.NoError(t, st1.Commit(ctx, m1))
		c := checkpointtest.WriteFile(t, st1, 2, "op/1/delta", []byte("delta"))
		m2 := checkpointtest.Manifest(2, a, b, c)
		require.NoError(t, st1.Commit(ctx, m2))

		_, js2 := connectJS(t, url, nats.Name("node-2"))
		ro, err := jetstream.OpenCheckpointStorage(ctx, js2, st1.Bucket())
		require.NoError(t, err)
		rw, err := jetstream.NewCheckpointStorage(ctx, js2, jetstream.CheckpointStorageConfig{Bucket: st1.Bucket()})
		require.NoError(t, err)
		for _, st := range []*jetstream.CheckpointStorage{ro, rw} {
			latest, err := st.Latest(ctx)
			require.NoError(t, err)
			require.Equal(t, m2, latest)
			require.NoError(t, st.Verify(ctx, latest))
			got, err := checkpointtest.ReadFile(st, a)
			require.NoError(t, err)
			require.True(t, bytes.Equal(big, got))
			ids, err := st.List(ctx)
			require.NoError(t, err)
			require.Equal(t, []int64{1, 2}, ids)
		}
		_, err = ro.Create(ctx, 3, "x")
		require.ErrorIs(t, err, checkpoint.ErrReadOnly)
		require.ErrorIs(t, ro.Commit(ctx, checkpointtest.Manifest(3)), checkpoint.ErrReadOnly)
		require.ErrorIs(t, ro.Prune(ctx, 1), checkpoint.ErrReadOnly)
		require.ErrorIs(t, ro.Probe(ctx), checkpoint.ErrReadOnly)

		// The second node goes on where the first stopped.
		d := checkpointtest.WriteFile(t, rw, 3, "op/1/delta", []byte("node 2"))
		require.NoError(t, rw.Commit(ctx, checkpointtest.Manifest(3, a, b, c, d)))
		require.NoError(t, rw.Prune(ctx, 1))
		latest, err := st1.Latest(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 3, latest.ID)
		require.NoError(t, st1.Verify(ctx, latest))
	})
}

// rawPut replaces object name of bucket with data, as the object store lays
// objects out (ADR-20): one chunk and a metadata message with the right
// digest, so that only Sluice's own checks can tell. (njs.ObjectStore.Put
// is not used: it leaks a goroutine now and then, see checkpointstore.go.)
func rawPut(t *testing.T, js njs.JetStream, bucket, name string, data []byte) {
	t.Helper()
	ctx := context.Background()
	id := nats.NewInbox()[len("_INBOX."):]
	_, err := js.Publish(ctx, "$O."+bucket+".C."+id, data)
	require.NoError(t, err)
	h := sha256.Sum256(data)
	info := njs.ObjectInfo{ObjectMeta: njs.ObjectMeta{Name: name}, Bucket: bucket, NUID: id, Size: uint64(len(data)), Chunks: 1,
		Digest: "SHA-256=" + base64.URLEncoding.EncodeToString(h[:])}
	meta, err := json.Marshal(info)
	require.NoError(t, err)
	m := nats.NewMsg("$O." + bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(name)))
	m.Header.Set(njs.MsgRollup, njs.MsgRollupSubject)
	m.Data = meta
	_, err = js.PublishMsg(ctx, m)
	require.NoError(t, err)
}

func TestCheckpointStorageCorruption(t *testing.T) {
	eachURL(t, func(t *testing.T, url string, _ *embedded.Server) {
		ctx := context.Background()
		_, js := connectJS(t, url)
		st := newCheckpointStorage(t, js, jetstream.CheckpointStorageConfig{ChunkSize: 4096})
		obs, err := js.ObjectStore(ctx, st.Bucket())
		require.NoError(t, err)
		stream, err := js.Stream(ctx, "OBJ_"+st.Bucket())
		require.NoError(t, err)

		data := bytes.Repeat([]byte("0123456789"), 5000) // 13 chunks
		a := checkpointtest.WriteFile(t, st, 1, "a", data)
		b := checkpointtest.WriteFile(t, st, 1, "b", data)
		e := checkpointtest.WriteFile(t, st, 1, "e", data)
		require.NoError(t, st.Commit(ctx, checkpointtest.Manifest(1, a, b, e)))
		c := checkpointtest.WriteFile(t, st, 2, "c", []byte("checkpoint two"))
		require.NoError(t, st.Commit(ctx, checkpointtest.Manifest(2, a, b, c)))

		// a's content is overwritten with as many other bytes.
		flipped := bytes.Clone(data)
		flipped[len(flipped)/2] ^= 1
		rawPut(t, js, st.Bucket(), a.Path, flipped)
		_, err = checkpointtest.ReadFile(st, a)
		require.ErrorIs(t, err, checkpoint.ErrCorrupt)
		require.ErrorContains(t, err, a.Path)
		require.ErrorContains(t, err, st.Bucket())
		require.ErrorContains(t, err, fmt.Sprintf("%08x", a.CRC32C), "names the expected checksum")

		// One of b's chunks is removed from the stream.
		info, err := obs.GetInfo(ctx, b.Path)
		require.NoError(t, err)
		msg, err := stream.GetLastMsgForSubject(ctx, "$O."+st.Bucket()+".C."+info.NUID)
		require.NoError(t, err)
		require.NoError(t, stream.DeleteMsg(ctx, msg.Sequence-3))
		_, err = checkpointtest.ReadFile(st, b)
		require.ErrorIs(t, err, checkpoint.ErrCorrupt)
		require.ErrorContains(t, err, b.Path)

		// All of e's chunks are purged: Open fails at once.
		info, err = obs.GetInfo(ctx, e.Path)
		require.NoError(t, err)
		require.NoError(t, stream.Purge(ctx, njs.WithPurgeSubject("$O."+st.Bucket()+".C."+info.NUID)))
		_, err = st.Open(ctx, e)
		require.ErrorIs(t, err, checkpoint.ErrCorrupt)
		require.ErrorContains(t, err, e.Path)

		m1, err := st.Load(ctx, 1)
		require.NoError(t, err, "a manifest whose files are damaged still loads")
		err = st.Verify(ctx, m1)
		require.ErrorIs(t, err, checkpoint.ErrCorrupt)
		for _, f := range []checkpoint.FileRef{a, b, e} {
			require.ErrorContains(t, err, f.Path)
		}

		// The newest manifest is damaged: Latest fails and does not fall
		// back to checkpoint 1.
		name := checkpoint.ManifestPath(2)
		raw, err := obs.GetBytes(ctx, name)
		require.NoError(t, err)
		raw[bytes.Index(raw, []byte("conformance"))] = 'C'
		rawPut(t, js, st.Bucket(), name, raw)
		_, err = st.Latest(ctx)
		require.ErrorIs(t, err, checkpoint.ErrCorrupt)
		require.ErrorContains(t, err, "checkpoint 2")
		require.ErrorContains(t, err, name)
		require.ErrorContains(t, err, st.Bucket())
		ids, err := st.List(ctx)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 2}, ids)
		require.Error(t, st.Prune(ctx, 1), "pruning needs the kept manifest")
		_, err = st.Load(ctx, 1)
		require.NoError(t, err, "Prune removed nothing")

		// Its chunks are gone.
		info, err = obs.GetInfo(ctx, name)
		require.NoError(t, err)
		require.NoError(t, stream.Purge(ctx, njs.WithPurgeSubject("$O."+st.Bucket()+".C."+info.NUID)))
		_, err = st.Latest(ctx)
		require.ErrorIs(t, err, checkpoint.ErrCorrupt)
		require.ErrorContains(t, err, "none of its chunks")
	})
}

// Committing a manifest never shows a partial one: a reader polling List and
// Latest while checkpoints with large manifests commit sees each either
// complete or not at all.
func TestCheckpointStorageCommitIsAtomic(t *testing.T) {
	srv := newEmbedded(t)
	ctx := context.Background()
	_, js1 := connectJS(t, srv.URL())
	st := newCheckpointStorage(t, js1, jetstream.CheckpointStorageConfig{ChunkSize: 1024})
	_, js2 := connectJS(t, srv.URL())
	reader, err := jetstream.NewCheckpointStorage(ctx, js2, jetstream.CheckpointStorageConfig{Bucket: st.Bucket(), ChunkSize: 1024})
	require.NoError(t, err)

	a := checkpointtest.WriteFile(t, st, 1, "a", []byte("a"))
	manifest := func(id int64) *checkpoint.Manifest {
		m := checkpointtest.Manifest(id)
		m.Operators[0].Parallelism = 200 // a manifest of many chunks
		m.Operators[0].Subtasks = make([]checkpoint.SubtaskState, 200)
		for i := range m.Operators[0].Subtasks {
			m.Operators[0].Subtasks[i].Keyed = []checkpoint.FileRef{a}
		}
		return m
	}
	const n = 10
	done := make(chan error, 1)
	go func() {
		for id := int64(1); id <= n; id++ {
			if err := st.Commit(ctx, manifest(id)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	seen := 0
	for finished := false; !finished; {
		select {
		case err := <-done:
			require.NoError(t, err)
			finished = true
		default:
		}
		m, err := reader.Latest(ctx)
		if errors.Is(err, checkpoint.ErrNoCheckpoint) {
			continue
		}
		require.NoError(t, err, "Latest while committing")
		require.Equal(t, manifest(m.ID), m)
		seen++
	}
	m, err := reader.Latest(ctx)
	require.NoError(t, err)
	require.EqualValues(t, n, m.ID)
	t.Logf("%d reads of a completed manifest while committing", seen)
}

func TestCheckpointStorageBadInput(t *testing.T) {
	ctx := context.Background()
	srv := newEmbedded(t)
	_, js := connectJS(t, srv.URL())

	for _, cfg := range []jetstream.CheckpointStorageConfig{{}, {Bucket: "a.b"}, {Bucket: "ok", Replicas: -1}, {Bucket: "ok", ChunkSize: -1}} {
		_, err := jetstream.NewCheckpointStorage(ctx, js, cfg)
		require.ErrorIs(t, err, jetstream.ErrConfig, "%+v", cfg)
	}
	_, err := jetstream.NewCheckpointStorage(ctx, nil, jetstream.CheckpointStorageConfig{Bucket: "ok"})
	require.ErrorIs(t, err, jetstream.ErrConfig)

	// A missing bucket, and one without a checkpoint, cannot be restored from.
	_, err = jetstream.OpenCheckpointStorage(ctx, js, "MISSING")
	require.ErrorIs(t, err, njs.ErrBucketNotFound)
	require.ErrorContains(t, err, "bucket MISSING on "+srv.URL())
	empty := newCheckpointStorage(t, js, jetstream.CheckpointStorageConfig{})
	_, err = jetstream.OpenCheckpointStorage(ctx, js, empty.Bucket())
	require.ErrorIs(t, err, checkpoint.ErrNoCheckpoint)
	require.ErrorContains(t, err, empty.Bucket())

	// The server goes away.
	gone := make(chan struct{}, 1)
	nc, js2 := connectJS(t, srv.URL(), nats.DisconnectErrHandler(func(*nats.Conn, error) {
		select {
		case gone <- struct{}{}:
		default:
		}
	}))
	st := newCheckpointStorage(t, js2, jetstream.CheckpointStorageConfig{Bucket: "STAYS"})
	srv.Shutdown()
	<-gone
	require.False(t, nc.IsConnected())
	_, err = jetstream.NewCheckpointStorage(ctx, js2, jetstream.CheckpointStorageConfig{Bucket: "LATE"})
	require.ErrorIs(t, err, jetstream.ErrConnect)
	require.ErrorContains(t, err, "LATE")
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = st.Latest(tctx)
	require.Error(t, err)
	require.ErrorContains(t, err, "STAYS")
	require.NoError(t, srv.Restart())
	// The bucket STAYS is deleted at the end by newCheckpointStorage, once
	// the connection is back.
	_, err = st.Latest(ctx)
	require.ErrorIs(t, err, checkpoint.ErrNoCheckpoint)

	// No server at all: Connect fails, naming the URL.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	_, err = jetstream.Connect(ctx, jetstream.ConnConfig{URL: "nats://" + addr, ConnectTimeout: time.Second})
	require.ErrorIs(t, err, jetstream.ErrConnect)
	require.ErrorContains(t, err, addr)
}

// A user the server does not allow to use the bucket gets an error naming
// it, not a hang.
func TestCheckpointStorageUnauthorized(t *testing.T) {
	opts := &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(),
		Users: []*server.User{
			{Username: "admin", Password: "pw"},
			// May use the JetStream API but not write objects of DENIED.
			{Username: "nowrite", Password: "pw", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Deny: []string{"$O.DENIED.>"}},
			}},
			// May not use the JetStream API at all.
			{Username: "noapi", Password: "pw", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Deny: []string{"$JS.API.>"}},
			}},
		},
	}
	srv, err := server.NewServer(opts)
	require.NoError(t, err)
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	require.True(t, srv.ReadyForConnections(10*time.Second))
	url := srv.ClientURL()
	ctx := context.Background()

	_, admin := connectJS(t, url, nats.UserInfo("admin", "pw"))
	_, err = jetstream.NewCheckpointStorage(ctx, admin, jetstream.CheckpointStorageConfig{Bucket: "ALLOWED"})
	require.NoError(t, err)

	for _, c := range []struct{ user, bucket, want string }{
		{"nowrite", "DENIED", "is not writable"},
		{"noapi", "ALLOWED", "$JS.API"},
	} {
		_, js := connectJS(t, url, nats.UserInfo(c.user, "pw"), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		start := time.Now()
		_, err := jetstream.NewCheckpointStorage(tctx, js, jetstream.CheckpointStorageConfig{Bucket: c.bucket})
		cancel()
		require.Error(t, err, c.user)
		require.ErrorContains(t, err, "bucket "+c.bucket, c.user)
		require.ErrorContains(t, err, c.want, c.user)
		t.Logf("%s: %v after %v", c.user, err, time.Since(start).Round(time.Millisecond))
	}
}

// Abort of a large file leaves nothing in the bucket, not even chunks.
func TestCheckpointStorageAbortLeavesNoChunks(t *testing.T) {
	srv := newEmbedded(t)
	ctx := context.Background()
	_, js := connectJS(t, srv.URL())
	st := newCheckpointStorage(t, js, jetstream.CheckpointStorageConfig{})
	stream, err := js.Stream(ctx, "OBJ_"+st.Bucket())
	require.NoError(t, err)
	base, err := stream.Info(ctx)
	require.NoError(t, err)

	w, err := st.Create(ctx, 1, "big")
	require.NoError(t, err)
	_, err = w.Write(make([]byte, 3<<20))
	require.NoError(t, err)
	require.NoError(t, w.Abort())
	ref := checkpointtest.WriteFile(t, st, 1, "small", []byte("x"))
	require.NoError(t, st.Discard(ctx, 1))
	_, err = checkpointtest.ReadFile(st, ref)
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)

	info, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, base.State.Msgs, info.State.Msgs, "no chunk, object or delete marker is left")
	require.Equal(t, base.State.Bytes, info.State.Bytes)
}

// A reader whose chunks stopped coming (here: the server is gone) ends as
// soon as its context does, and so does closing it. The object store's own
// reader held both until its deadline, up to ReadTimeout.
func TestCheckpointStorageReaderEndsWithItsContext(t *testing.T) {
	srv := newEmbedded(t)
	_, js := connectJS(t, srv.URL())
	st := newCheckpointStorage(t, js, jetstream.CheckpointStorageConfig{ChunkSize: 1024})
	data := bytes.Repeat([]byte("0123456789"), 20_000) // 196 chunks, far more than one pull
	ref := checkpointtest.WriteFile(t, st, 1, "big", data)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := st.Open(ctx, ref)
	require.NoError(t, err)
	_, err = io.ReadFull(r, make([]byte, 10))
	require.NoError(t, err)
	srv.Shutdown()
	t.Cleanup(func() { require.NoError(t, srv.Restart()) })

	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(r)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the read did not end with its context")
	}
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
}
