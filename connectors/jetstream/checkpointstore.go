package jetstream

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/sluicedata/sluice/checkpoint"
)

// DefaultReadTimeout bounds the reading of one file of a CheckpointStorage
// when the context given to Open has no deadline.
const DefaultReadTimeout = 10 * time.Minute

// CheckpointStorageConfig configures NewCheckpointStorage. Only Bucket is
// required.
type CheckpointStorageConfig struct {
	// Bucket is the object store bucket that holds the checkpoints (the
	// stream OBJ_<Bucket>). Letters, digits, '-' and '_'.
	Bucket string
	// Description is the bucket's description.
	Description string
	// Replicas is the number of servers that store the bucket; 0 means 1.
	// On a NATS cluster use 3, so that checkpoints survive the loss of a
	// server.
	Replicas int
	// Storage is where the servers keep the bucket: njs.FileStorage (the
	// zero value) or njs.MemoryStorage.
	Storage njs.StorageType
	// MaxBytes limits the bucket's size; 0 means no limit. A checkpoint that
	// does not fit fails.
	MaxBytes int64
	// ChunkSize is the size of the messages a file is cut into; 0 means
	// 128 KiB (the object store's default). It must not exceed the
	// server's max_payload (1 MiB by default).
	ChunkSize int
	// ReadTimeout bounds reading one file, from Open to its last byte, when
	// Open's context has no deadline; 0 means DefaultReadTimeout. (Without a
	// deadline the object store bounds a whole download by the JetStream
	// API timeout, 5 s, too short for large state.)
	ReadTimeout time.Duration
}

// maxChunkSize is far above a server's max_payload; the server refuses
// larger chunks anyway.
const maxChunkSize = 64 << 20

// Validate checks the settings without connecting.
func (c CheckpointStorageConfig) Validate() error {
	if c.Bucket == "" {
		return fmt.Errorf("%w: checkpoint storage: no bucket", ErrConfig)
	}
	for _, r := range c.Bucket {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("%w: checkpoint storage: bucket %q: use letters, digits, '-' and '_'", ErrConfig, c.Bucket)
		}
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("%w: checkpoint storage bucket %s: %d replicas, want 1 to 5", ErrConfig, c.Bucket, c.Replicas)
	}
	if c.Storage != njs.FileStorage && c.Storage != njs.MemoryStorage {
		return fmt.Errorf("%w: checkpoint storage bucket %s: unknown storage type %d", ErrConfig, c.Bucket, c.Storage)
	}
	if c.MaxBytes < 0 || c.ChunkSize < 0 || c.ChunkSize > maxChunkSize || c.ReadTimeout < 0 {
		return fmt.Errorf("%w: checkpoint storage bucket %s: negative size or timeout, or a chunk size above %d", ErrConfig, c.Bucket, maxChunkSize)
	}
	return nil
}

// CheckpointStorage is a checkpoint.Storage in a JetStream object store
// bucket, which every node connected to the NATS system can read: a job can
// restore any subtask's checkpoint on any node. See the package
// documentation, section Checkpoint storage, for the layout and guarantees.
//
// All methods may be called from several goroutines at once: Create, Open,
// Latest, Load, List and Verify run in parallel; Commit, Discard and Prune
// are serialised with each other. One process writes to a bucket at a time.
type CheckpointStorage struct {
	obs      njs.ObjectStore
	stream   njs.Stream    // OBJ_<bucket>, to purge chunks and delete markers
	pub      njs.JetStream // this storage's own publisher of chunks
	bufs     sync.Pool     // *[]byte chunk buffers
	bucket   string
	where    string // for messages: bucket and server
	readOnly bool
	chunk    uint32
	readTO   time.Duration

	// admin serialises Commit, Discard and Prune.
	admin sync.Mutex

	mu sync.Mutex
	// open maps the name of each file being written to its checkpoint id.
	open map[string]int64
}

var (
	_ checkpoint.Storage = (*CheckpointStorage)(nil)
	_ checkpoint.Prober  = (*CheckpointStorage)(nil)
)

// NewCheckpointStorage opens the checkpoint storage in bucket cfg.Bucket for
// writing, creating the bucket if it is missing or updating its settings
// (replicas, size limit, description) to cfg's. It fails with an error
// naming the bucket and the server if JetStream cannot be reached, the
// bucket cannot be created, or a probe object cannot be written to it and
// removed (an account whose permissions forbid it, a full bucket).
func NewCheckpointStorage(ctx context.Context, js njs.JetStream, cfg CheckpointStorageConfig) (*CheckpointStorage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := newCheckpointStorage(js, cfg)
	if err != nil {
		return nil, err
	}
	obs, err := js.CreateOrUpdateObjectStore(ctx, njs.ObjectStoreConfig{
		Bucket: cfg.Bucket, Description: cfg.Description, Replicas: cfg.Replicas,
		Storage: cfg.Storage, MaxBytes: cfg.MaxBytes,
	})
	if err != nil {
		return nil, s.bucketErr("cannot create or update", js, err)
	}
	if err := s.bind(ctx, js, obs); err != nil {
		return nil, err
	}
	if err := s.probe(ctx); err != nil {
		hint := ""
		if errors.Is(err, njs.ErrAsyncPublishTimeout) || errors.Is(err, context.DeadlineExceeded) {
			hint = fmt.Sprintf(" (no ack: may this user publish to $O.%s.>?)", s.bucket)
		}
		return nil, fmt.Errorf("checkpoint: %s is not writable%s: %w", s.where, hint, err)
	}
	return s, nil
}

// OpenCheckpointStorage opens the checkpoint storage in an existing bucket
// read-only, to restore from a checkpoint or a savepoint: Create, Commit,
// Discard and Prune fail with checkpoint.ErrReadOnly, and the bucket's
// settings are left as they are. It fails if the bucket does not exist
// (wrapping njs.ErrBucketNotFound) or holds no completed checkpoint
// (wrapping checkpoint.ErrNoCheckpoint).
func OpenCheckpointStorage(ctx context.Context, js njs.JetStream, bucket string) (*CheckpointStorage, error) {
	cfg := CheckpointStorageConfig{Bucket: bucket}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := newCheckpointStorage(js, cfg)
	if err != nil {
		return nil, err
	}
	s.readOnly = true
	obs, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		return nil, s.bucketErr("cannot open", js, err)
	}
	if err := s.bind(ctx, js, obs); err != nil {
		return nil, err
	}
	ids, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("checkpoint: %s holds no manifest (manifests/chk-<id>.json): %w", s.where, checkpoint.ErrNoCheckpoint)
	}
	return s, nil
}

func newCheckpointStorage(js njs.JetStream, cfg CheckpointStorageConfig) (*CheckpointStorage, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: checkpoint storage bucket %s: nil JetStream", ErrConfig, cfg.Bucket)
	}
	s := &CheckpointStorage{
		bucket: cfg.Bucket, chunk: uint32(cfg.ChunkSize), readTO: cfg.ReadTimeout,
		open: map[string]int64{},
	}
	if s.chunk == 0 {
		s.chunk = defaultChunkSize
	}
	if s.readTO == 0 {
		s.readTO = DefaultReadTimeout
	}
	nc := js.Conn()
	// Its own publishing context: waiting for the acks of one file's chunks
	// does not wait for anything else published on js.
	pub, err := njs.New(nc, njs.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		return nil, fmt.Errorf("checkpoint storage bucket %s: %w", cfg.Bucket, err)
	}
	s.pub = pub
	url := nc.ConnectedUrlRedacted()
	if url == "" {
		url = "(no server)"
	}
	s.where = fmt.Sprintf("object store bucket %s on %s", cfg.Bucket, url)
	if !nc.IsConnected() {
		return nil, fmt.Errorf("%w: checkpoint storage in %s: the connection is %v", ErrConnect, s.where, nc.Status())
	}
	return s, nil
}

// bind takes obs and its stream.
func (s *CheckpointStorage) bind(ctx context.Context, js njs.JetStream, obs njs.ObjectStore) error {
	// The bucket's stream is OBJ_<bucket> (ADR-20); the object store does
	// not hand it out.
	stream, err := js.Stream(ctx, "OBJ_"+s.bucket)
	if err != nil {
		return s.bucketErr("cannot open the stream of", js, err)
	}
	s.obs, s.stream = obs, stream
	return nil
}

// bucketErr explains a failure to reach or create the bucket.
func (s *CheckpointStorage) bucketErr(what string, js njs.JetStream, err error) error {
	var hint string
	switch {
	case errors.Is(err, njs.ErrBucketNotFound):
		hint = " (it does not exist)"
	case errors.Is(err, njs.ErrInvalidStoreName):
		return fmt.Errorf("%w: checkpoint storage: invalid bucket name %q: %w", ErrConfig, s.bucket, err)
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrNoServers), !js.Conn().IsConnected():
		return fmt.Errorf("%w: checkpoint storage: %s %s: %w", ErrConnect, what, s.where, err)
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, njs.ErrJetStreamNotEnabled), errors.Is(err, njs.ErrJetStreamNotEnabledForAccount):
		hint = " (is JetStream enabled on the server and for this account?)"
	case errors.Is(err, nats.ErrPermissionViolation), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		hint = fmt.Sprintf(" (may this user use $JS.API.> and publish and subscribe on $O.%s.>?)", s.bucket)
	}
	return fmt.Errorf("checkpoint: %s %s%s: %w", what, s.where, hint, err)
}

// Location returns "object store bucket <bucket> on <server URL>".
func (s *CheckpointStorage) Location() string { return s.where }

// Bucket returns the bucket's name.
func (s *CheckpointStorage) Bucket() string { return s.bucket }

const probePrefix = ".probe-"

// Probe implements checkpoint.Prober: it writes a small object to the
// bucket and removes it, as NewCheckpointStorage does. A storage opened
// read-only fails with checkpoint.ErrReadOnly.
func (s *CheckpointStorage) Probe(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.readOnly {
		return fmt.Errorf("checkpoint: %s was opened read-only (to restore from), it cannot take checkpoints: %w", s.where, checkpoint.ErrReadOnly)
	}
	if err := s.probe(ctx); err != nil {
		return fmt.Errorf("checkpoint: %s is not writable: %w", s.where, err)
	}
	return nil
}

func (s *CheckpointStorage) probe(ctx context.Context) error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := probePrefix + hex.EncodeToString(b[:])
	if err := s.putBytes(ctx, name, []byte("sluice\n")); err != nil {
		return err
	}
	if err := s.remove(ctx, name); err != nil {
		return fmt.Errorf("remove object %s: %w", name, err)
	}
	return nil
}

// Create implements checkpoint.Storage. name is a slash-separated relative
// path without elements starting with '.'; the file is the object
// chk-<checkpointID>/<name>. checkpointID must be positive, not the id of a
// completed checkpoint, and name not being written already.
//
// The Writer uploads as it is written, one chunk at a time, and Commit
// waits until every chunk is stored before it stores the object's
// metadata. Cancelling ctx after Create returns does not stop the upload.
func (s *CheckpointStorage) Create(ctx context.Context, checkpointID int64, name string) (checkpoint.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.readOnly {
		return nil, fmt.Errorf("checkpoint: create %s for checkpoint %d in %s: %w", name, checkpointID, s.where, checkpoint.ErrReadOnly)
	}
	rel, err := checkpoint.FilePath(checkpointID, name)
	if err != nil {
		return nil, err
	}
	switch _, err := s.obs.GetInfo(ctx, checkpoint.ManifestPath(checkpointID)); {
	case err == nil:
		return nil, fmt.Errorf("checkpoint: create %s in %s: checkpoint %d is already completed", rel, s.where, checkpointID)
	case !errors.Is(err, njs.ErrObjectNotFound):
		return nil, fmt.Errorf("checkpoint: create %s in %s: %w", rel, s.where, err)
	}
	old, err := s.obs.GetInfo(ctx, rel, njs.GetObjectInfoShowDeleted())
	if err != nil && !errors.Is(err, njs.ErrObjectNotFound) {
		return nil, fmt.Errorf("checkpoint: create %s in %s: %w", rel, s.where, err)
	}
	s.mu.Lock()
	if _, busy := s.open[rel]; busy {
		s.mu.Unlock()
		return nil, fmt.Errorf("checkpoint: create %s in %s: the file is already being written", rel, s.where)
	}
	s.open[rel] = checkpointID
	s.mu.Unlock()
	w := s.newWriter(rel, checkpointID)
	if old != nil && !old.Deleted {
		w.old = old.NUID
	}
	return w, nil
}

func (s *CheckpointStorage) release(name string) {
	s.mu.Lock()
	delete(s.open, name)
	s.mu.Unlock()
}

func (s *CheckpointStorage) isOpen(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.open[name]
	return ok
}

// Open implements checkpoint.Storage. The reader checks size and CRC32C as
// it is read (and the SHA-256 digest of its chunks): a mismatch is
// reported at the latest at EOF, wrapping checkpoint.ErrCorrupt, so read to
// EOF. A missing object fails Open, wrapping checkpoint.ErrCorrupt. Reading
// is bounded by ctx's deadline, or by ReadTimeout if it has none.
func (s *CheckpointStorage) Open(ctx context.Context, ref checkpoint.FileRef) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id, err := checkpoint.FileCheckpoint(ref.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v (%s)", checkpoint.ErrCorrupt, err, s.where)
	}
	r, info, err := s.get(ctx, ref.Path)
	if errors.Is(err, njs.ErrObjectNotFound) {
		return nil, fmt.Errorf("%w: file %s of checkpoint %d is missing in %s", checkpoint.ErrCorrupt, ref.Path, id, s.where)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open %s of checkpoint %d in %s: %w", ref.Path, id, s.where, err)
	}
	if int64(info.Size) != ref.Size {
		r.Close()
		return nil, fmt.Errorf("%w: file %s of checkpoint %d in %s has %d bytes, expected %d", checkpoint.ErrCorrupt, ref.Path, id, s.where, info.Size, ref.Size)
	}
	return checkpoint.VerifyingReader(r, ref, s.where), nil
}

// get opens object name for reading; a link (which this storage never
// writes) is refused as corrupt.
func (s *CheckpointStorage) get(ctx context.Context, name string) (io.ReadCloser, *njs.ObjectInfo, error) {
	info, err := s.obs.GetInfo(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	if info.Size > 0 && (info.Opts == nil || info.Opts.Link == nil) {
		// Without any chunk a download would wait for one until its deadline.
		if _, err := s.stream.GetLastMsgForSubject(ctx, s.chunkSubject(info.NUID)); errors.Is(err, njs.ErrMsgNotFound) {
			return nil, nil, fmt.Errorf("%w: object %s in %s has %d bytes but none of its chunks", checkpoint.ErrCorrupt, name, s.where, info.Size)
		} else if err != nil {
			return nil, nil, err
		}
	}
	if info.Opts != nil && info.Opts.Link != nil {
		return nil, nil, fmt.Errorf("%w: object %s in %s is a link, which checkpoint storage never writes", checkpoint.ErrCorrupt, name, s.where)
	}
	var cancel context.CancelFunc
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeout(ctx, s.readTO)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	r := &objectReader{ctx: ctx, cancel: cancel, info: info, sha: sha256.New(), name: name, where: s.where}
	if info.Size == 0 {
		return r, info, nil
	}
	cons, err := s.stream.OrderedConsumer(ctx, njs.OrderedConsumerConfig{
		FilterSubjects: []string{s.chunkSubject(info.NUID)}, DeliverPolicy: njs.DeliverAllPolicy,
		InactiveThreshold: readerInactive,
	})
	if err == nil {
		r.it, err = cons.Messages(njs.PullMaxMessages(int(min(max(info.Chunks, 1), readerPull))))
	}
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return r, info, nil
}

const (
	// readerPull is how many chunks a reader asks the server for at once.
	readerPull = 16
	// readerInactive is how long the server keeps the consumer of a reader
	// dropped without Close.
	readerInactive = 30 * time.Second
)

// objectReader reads the chunks of one object, in order, from an ordered
// consumer, and checks their number, size and SHA-256 digest at the end.
// It is not the object store's own reader: that one holds a lock across a
// read which only its deadline ends, so a download whose chunks stopped
// coming held its caller, and whoever closed it, until that deadline (up to
// ReadTimeout) even after its context was cancelled. Here every wait ends
// when the context does. It is not safe for concurrent use.
type objectReader struct {
	ctx    context.Context
	cancel context.CancelFunc
	it     njs.MessagesContext // nil for an empty object
	info   *njs.ObjectInfo
	sha    hash.Hash
	rest   []byte // what Read has not returned of the current chunk
	chunks uint32
	size   uint64
	err    error
	name   string
	where  string
}

func (r *objectReader) Read(p []byte) (int, error) {
	for len(r.rest) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.next()
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// next reads the next chunk into r.rest, or returns io.EOF after the last
// one once it checked the whole object, or the error that ends the read.
func (r *objectReader) next() error {
	if r.chunks == r.info.Chunks || r.it == nil {
		switch digest := njs.GetObjectDigestValue(r.sha); {
		case r.size != r.info.Size:
			return fmt.Errorf("%w: object %s in %s: its %d chunks hold %d bytes, its metadata says %d", checkpoint.ErrCorrupt, r.name, r.where, r.chunks, r.size, r.info.Size)
		case digest != r.info.Digest:
			return fmt.Errorf("%w: object %s in %s: the chunks read do not match the object's SHA-256 digest (%s, metadata %s)", checkpoint.ErrCorrupt, r.name, r.where, digest, r.info.Digest)
		}
		return io.EOF
	}
	m, err := r.it.Next(njs.NextContext(r.ctx))
	if err != nil {
		if cerr := r.ctx.Err(); cerr != nil {
			err = cerr
		}
		return r.chunkErr(r.chunks+1, err)
	}
	r.chunks++
	r.rest = m.Data()
	r.size += uint64(len(r.rest))
	r.sha.Write(r.rest)
	if r.size > r.info.Size {
		return fmt.Errorf("%w: object %s in %s: its chunks hold more than the %d bytes its metadata says", checkpoint.ErrCorrupt, r.name, r.where, r.info.Size)
	}
	if r.chunks < r.info.Chunks {
		// With no chunk left in the stream the next would never come.
		meta, err := m.Metadata()
		if err != nil {
			return r.chunkErr(r.chunks, err)
		}
		if meta.NumPending == 0 {
			return fmt.Errorf("%w: object %s in %s: the stream holds %d of its %d chunks", checkpoint.ErrCorrupt, r.name, r.where, r.chunks, r.info.Chunks)
		}
	}
	return nil
}

func (r *objectReader) Close() error {
	if r.it != nil {
		r.it.Stop()
	}
	r.cancel()
	if r.err == nil {
		r.err = fmt.Errorf("read object %s in %s after Close", r.name, r.where)
	}
	return nil
}

func (r *objectReader) chunkErr(i uint32, err error) error {
	return fmt.Errorf("read chunk %d of %d of object %s in %s: %w", i, r.info.Chunks, r.name, r.where, err)
}

// Commit implements checkpoint.Storage. It refuses an invalid manifest
// (checkpoint.ValidateManifest), an id already committed, and a manifest
// referencing a file that is missing, has another size than its FileRef
// says, or is still being written (checksums are not read again: Verify
// does that).
//
// The manifest is the object manifests/chk-<id>.json, written like every
// file: its metadata, the one message that makes an object visible, is
// published only once the server acknowledged all of its chunks, so a
// reader sees the whole manifest or none. If publishing that message fails
// it is uncertain whether it was stored: the manifest is then removed, and
// if that fails too Latest may return it.
func (s *CheckpointStorage) Commit(ctx context.Context, m *checkpoint.Manifest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.readOnly {
		return fmt.Errorf("checkpoint: commit checkpoint to %s: %w", s.where, checkpoint.ErrReadOnly)
	}
	data, err := checkpoint.MarshalManifest(m)
	if err != nil {
		return err
	}
	s.admin.Lock()
	defer s.admin.Unlock()

	objs, err := s.objects(ctx)
	if err != nil {
		return fmt.Errorf("checkpoint: commit checkpoint %d: %w", m.ID, err)
	}
	name := checkpoint.ManifestPath(m.ID)
	if _, ok := objs[name]; ok {
		return fmt.Errorf("checkpoint: commit checkpoint %d: %s already exists in %s", m.ID, name, s.where)
	}
	for _, f := range m.Files() {
		info, ok := objs[f.Path]
		if !ok {
			return fmt.Errorf("checkpoint: commit checkpoint %d: manifest references %s, which is not in %s", m.ID, f.Path, s.where)
		}
		if int64(info.Size) != f.Size {
			return fmt.Errorf("checkpoint: commit checkpoint %d: manifest references %s in %s with %d bytes, the object has %d", m.ID, f.Path, s.where, f.Size, info.Size)
		}
		if s.isOpen(f.Path) {
			return fmt.Errorf("checkpoint: commit checkpoint %d: manifest references %s in %s, which is still being written", m.ID, f.Path, s.where)
		}
	}
	if err := s.putBytes(ctx, name, data); err != nil {
		return fmt.Errorf("checkpoint: commit checkpoint %d: %w", m.ID, err)
	}
	return nil
}

// putBytes writes object name (not a checkpoint file) as a Writer does.
func (s *CheckpointStorage) putBytes(ctx context.Context, name string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w := s.newWriter(name, 0)
	if _, err := w.write(ctx, data); err != nil {
		_ = w.Abort()
		return err
	}
	_, err := w.commit(ctx)
	return err
}

// objects lists the bucket's objects by name.
func (s *CheckpointStorage) objects(ctx context.Context) (map[string]*njs.ObjectInfo, error) {
	list, err := s.obs.List(ctx)
	if errors.Is(err, njs.ErrNoObjectsFound) {
		return map[string]*njs.ObjectInfo{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list objects of %s: %w", s.where, err)
	}
	objs := make(map[string]*njs.ObjectInfo, len(list))
	for _, o := range list {
		objs[o.Name] = o
	}
	return objs, nil
}

// manifestIDs returns the sorted ids of the completed checkpoints in objs.
func manifestIDs(objs map[string]*njs.ObjectInfo) []int64 {
	var ids []int64
	for name := range objs {
		if id, ok := checkpoint.ParseManifestPath(name); ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Latest implements checkpoint.Storage.
func (s *CheckpointStorage) Latest(ctx context.Context) (*checkpoint.Manifest, error) {
	ids, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("checkpoint: no manifest in %s: %w", s.where, checkpoint.ErrNoCheckpoint)
	}
	id := ids[len(ids)-1]
	m, err := s.Load(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: latest checkpoint %d in %s cannot be loaded (older checkpoints are not used in its place): %w", id, s.where, err)
	}
	return m, nil
}

// Load implements checkpoint.Storage. A missing manifest is an error
// wrapping checkpoint.ErrNoCheckpoint; a corrupt one wraps
// checkpoint.ErrCorrupt.
func (s *CheckpointStorage) Load(ctx context.Context, id int64) (*checkpoint.Manifest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if id <= 0 {
		return nil, fmt.Errorf("checkpoint: load checkpoint %d from %s: ids start at 1: %w", id, s.where, checkpoint.ErrNoCheckpoint)
	}
	name := checkpoint.ManifestPath(id)
	where := "object " + name + " in " + s.where
	r, _, err := s.get(ctx, name)
	if errors.Is(err, njs.ErrObjectNotFound) {
		return nil, fmt.Errorf("checkpoint: checkpoint %d not found in %s: %w (%w)", id, s.where, checkpoint.ErrNoCheckpoint, err)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: load checkpoint %d: %s: %w", id, where, err)
	}
	data, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read manifest %s: %w", where, err)
	}
	m, err := checkpoint.UnmarshalManifest(data, where)
	if err != nil {
		return nil, err
	}
	if m.ID != id {
		return nil, fmt.Errorf("%w: manifest %s holds checkpoint %d", checkpoint.ErrCorrupt, where, m.ID)
	}
	return m, nil
}

// List implements checkpoint.Storage. It reads the metadata of every object
// in the bucket.
func (s *CheckpointStorage) List(ctx context.Context) ([]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	objs, err := s.objects(ctx)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return manifestIDs(objs), nil
}

// Verify implements checkpoint.Storage: it reads every file m references and
// reports every missing or corrupt one (checkpoint.VerifyFiles).
func (s *CheckpointStorage) Verify(ctx context.Context, m *checkpoint.Manifest) error {
	return checkpoint.VerifyFiles(ctx, s, m)
}

// Discard implements checkpoint.Storage: it removes the objects
// chk-<checkpointID>/... that no completed manifest references, except
// files still being written (their writers' Abort removes them). It fails
// without removing anything if a manifest cannot be loaded.
func (s *CheckpointStorage) Discard(ctx context.Context, checkpointID int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.readOnly {
		return fmt.Errorf("checkpoint: discard checkpoint %d in %s: %w", checkpointID, s.where, checkpoint.ErrReadOnly)
	}
	if checkpointID <= 0 {
		return fmt.Errorf("checkpoint: discard checkpoint %d in %s: ids start at 1", checkpointID, s.where)
	}
	s.admin.Lock()
	defer s.admin.Unlock()
	objs, err := s.objects(ctx)
	if err != nil {
		return fmt.Errorf("checkpoint: discard checkpoint %d: %w", checkpointID, err)
	}
	refs, err := checkpoint.ReferencedFiles(ctx, s, manifestIDs(objs))
	if err != nil {
		return fmt.Errorf("checkpoint: discard checkpoint %d: %w", checkpointID, err)
	}
	var gone []string
	for name := range objs {
		id, err := checkpoint.FileCheckpoint(name)
		if err != nil || id != checkpointID {
			continue
		}
		if _, ok := refs[name]; !ok && !s.isOpen(name) {
			gone = append(gone, name)
		}
	}
	if err := s.removeAll(ctx, gone); err != nil {
		return fmt.Errorf("checkpoint: discard checkpoint %d: %w", checkpointID, err)
	}
	return nil
}

// Prune implements checkpoint.Storage. keep must be at least 1. It fails
// without removing anything if a kept manifest cannot be loaded. It removes
// the older manifests first, then the objects of checkpoints up to the
// newest kept one that no kept manifest references (except files still
// being written), and leftover probe objects. Objects of checkpoints newer
// than the newest completed one belong to checkpoints in progress and are
// left alone.
//
// As with checkpoint.LocalStorage, a checkpoint with a lower id than the
// newest completed one is taken to have failed: its files are removed once
// their writers finish.
func (s *CheckpointStorage) Prune(ctx context.Context, keep int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.readOnly {
		return fmt.Errorf("checkpoint: prune %s: %w", s.where, checkpoint.ErrReadOnly)
	}
	if keep < 1 {
		return fmt.Errorf("checkpoint: prune %s: keep %d, must be at least 1", s.where, keep)
	}
	s.admin.Lock()
	defer s.admin.Unlock()
	objs, err := s.objects(ctx)
	if err != nil {
		return fmt.Errorf("checkpoint: prune: %w", err)
	}
	ids := manifestIDs(objs)
	var newest int64
	refs := map[string]struct{}{}
	if len(ids) > 0 {
		kept := ids[max(0, len(ids)-keep):]
		if refs, err = checkpoint.ReferencedFiles(ctx, s, kept); err != nil {
			return fmt.Errorf("checkpoint: prune %s: %w", s.where, err)
		}
		newest = kept[len(kept)-1]
		for _, id := range ids[:len(ids)-len(kept)] {
			name := checkpoint.ManifestPath(id)
			if err := s.remove(ctx, name); err != nil {
				return fmt.Errorf("checkpoint: prune %s: remove manifest of checkpoint %d: %w", s.where, id, err)
			}
			delete(objs, name)
		}
	}
	var gone []string
	for name := range objs {
		if strings.HasPrefix(name, probePrefix) {
			gone = append(gone, name)
			continue
		}
		id, err := checkpoint.FileCheckpoint(name)
		if err != nil || id > newest {
			continue
		}
		if _, ok := refs[name]; !ok && !s.isOpen(name) {
			gone = append(gone, name)
		}
	}
	if err := s.removeAll(ctx, gone); err != nil {
		return fmt.Errorf("checkpoint: prune %s: %w", s.where, err)
	}
	return nil
}

// removeAll removes the objects names.
func (s *CheckpointStorage) removeAll(ctx context.Context, names []string) error {
	slices.Sort(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.remove(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// remove deletes object name and then purges the delete marker the object
// store leaves on the object's meta subject: every checkpoint's files have
// new names, so markers would pile up without end. A missing object is not
// an error.
func (s *CheckpointStorage) remove(ctx context.Context, name string) error {
	if err := s.obs.Delete(ctx, name); err != nil && !errors.Is(err, njs.ErrObjectNotFound) {
		return fmt.Errorf("remove object %s: %w", name, err)
	}
	if err := s.stream.Purge(ctx, njs.WithPurgeSubject(s.metaSubject(name))); err != nil {
		return fmt.Errorf("remove object %s: purge its delete marker: %w", name, err)
	}
	return nil
}

const (
	defaultChunkSize = 128 << 10 // the object store's default
	// ackTimeout bounds the wait for the server's ack of a chunk or of an
	// object's metadata.
	ackTimeout = 10 * time.Second
	// window is the number of chunks of a file sent and not yet
	// acknowledged, at most.
	window = 32
)

// objectWriter uploads one object as the object store lays it out (ADR-20):
// chunks on the subject $O.<bucket>.C.<nuid>, then one metadata message
// (name, size, chunk count, SHA-256 digest) on $O.<bucket>.M.<name in
// base64url>, which replaces the previous one and makes the object visible.
// Unlike njs.ObjectStore.Put, which publishes the metadata right after the
// last chunk without waiting for the chunks' acks (so that a chunk the
// server rejects, or loses in a leader change, leaves a visible object
// without it), it publishes the metadata only once every chunk is
// acknowledged. Any object store client reads what it writes. It is used by
// one goroutine at a time.
type objectWriter struct {
	s       *CheckpointStorage
	name    string
	id      int64
	nuid    string
	old     string  // NUID of the version being replaced, whose chunks are purged after
	buf     *[]byte // the chunk being filled
	pending []pendingChunk
	chunks  uint32
	size    int64
	crc     uint32
	sha     hash.Hash
	err     error // sticky: the first error
	end     bool  // committed or aborted
	ref     checkpoint.FileRef
}

type pendingChunk struct {
	ack njs.PubAckFuture
	buf *[]byte
}

func (s *CheckpointStorage) newWriter(name string, id int64) *objectWriter {
	return &objectWriter{s: s, name: name, id: id, nuid: nuid.Next(), sha: sha256.New(), buf: s.getBuf()}
}

func (s *CheckpointStorage) getBuf() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, s.chunk)
	return &b
}

func (s *CheckpointStorage) chunkSubject(nuid string) string { return "$O." + s.bucket + ".C." + nuid }

func (s *CheckpointStorage) metaSubject(name string) string {
	return "$O." + s.bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(name))
}

func (w *objectWriter) fail(op string, err error) error {
	if w.id == 0 {
		return fmt.Errorf("%s object %s in %s: %w", op, w.name, w.s.where, err)
	}
	return fmt.Errorf("checkpoint: %s %s of checkpoint %d in %s: %w", op, w.name, w.id, w.s.where, err)
}

// Write implements io.Writer. After an error every Write and Commit fails
// with it.
func (w *objectWriter) Write(p []byte) (int, error) { return w.write(context.Background(), p) }

// write writes p, waiting for acks at most until ctx ends.
func (w *objectWriter) write(ctx context.Context, p []byte) (int, error) {
	if w.end {
		return 0, w.fail("write", errors.New("writer already committed or aborted"))
	}
	if w.err != nil {
		return 0, w.err
	}
	n := 0
	for len(p) > 0 {
		b := *w.buf
		k := min(len(p), cap(b)-len(b))
		*w.buf = append(b, p[:k]...)
		w.crc = checkpoint.UpdateCRC32C(w.crc, p[:k])
		w.sha.Write(p[:k])
		w.size += int64(k)
		n += k
		p = p[k:]
		if len(*w.buf) == cap(*w.buf) {
			if err := w.send(ctx); err != nil {
				w.err = w.fail("write", err)
				return n, w.err
			}
		}
	}
	return n, nil
}

// send publishes the chunk in buf and takes a new buffer, first waiting
// for the oldest chunk's ack if window chunks are unacknowledged.
func (w *objectWriter) send(ctx context.Context) error {
	if len(w.pending) >= window {
		if err := w.waitOldest(ctx); err != nil {
			return err
		}
	}
	// Each chunk keeps its buffer until its ack: the client publishes a
	// message again from its Data when no server answered.
	ack, err := w.s.pub.PublishMsgAsync(&nats.Msg{Subject: w.s.chunkSubject(w.nuid), Data: *w.buf})
	if err != nil {
		return fmt.Errorf("publish chunk %d: %w", w.chunks+1, err)
	}
	w.pending = append(w.pending, pendingChunk{ack: ack, buf: w.buf})
	w.chunks++
	w.buf = w.s.getBuf()
	return nil
}

func (w *objectWriter) waitOldest(ctx context.Context) error {
	p := w.pending[0]
	select {
	case <-p.ack.Ok():
		w.s.bufs.Put(p.buf)
	case err := <-p.ack.Err():
		w.pending = w.pending[1:]
		return fmt.Errorf("chunk not stored: %w", err)
	case <-ctx.Done():
		// The chunks stay pending (their buffers too): Abort or Commit
		// waits for them without ctx before purging them.
		return ctx.Err()
	}
	w.pending = w.pending[1:]
	return nil
}

// waitAll waits for the ack of every chunk sent, and returns the first
// error. If ctx ends first it returns at once: the caller purges the
// chunks, and a chunk stored after that purge stays in the bucket unseen
// (only putBytes passes a ctx that can end).
func (w *objectWriter) waitAll(ctx context.Context) error {
	var first error
	for len(w.pending) > 0 {
		err := w.waitOldest(ctx)
		if err != nil && first == nil {
			first = err
		}
		if ctx.Err() != nil {
			w.pending = nil // their buffers go to the garbage collector
			break
		}
	}
	return first
}

// Commit implements checkpoint.Writer: it sends the last chunk, waits until
// the server has stored every chunk, and then publishes the object's
// metadata and waits until it is stored. On failure the object is removed
// and the error names it.
func (w *objectWriter) Commit() (checkpoint.FileRef, error) { return w.commit(context.Background()) }

// commit commits, waiting for acks at most until ctx ends.
func (w *objectWriter) commit(ctx context.Context) (checkpoint.FileRef, error) {
	if w.end {
		if w.ref.Path != "" {
			return checkpoint.FileRef{}, w.fail("commit", errors.New("already committed"))
		}
		return checkpoint.FileRef{}, w.fail("commit", errors.New("already aborted"))
	}
	w.end = true
	defer w.finish()
	err := w.err
	if err == nil && len(*w.buf) > 0 {
		if serr := w.send(ctx); serr != nil {
			err = w.fail("write", serr)
		}
	}
	if werr := w.waitAll(ctx); err == nil && werr != nil {
		err = w.fail("write", werr)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
	defer cancel()
	if err == nil {
		if merr := w.publishMeta(ctx); merr != nil {
			err = w.fail("commit", merr)
			// The metadata may have been stored all the same.
			if rerr := w.s.remove(ctx, w.name); rerr != nil {
				err = errors.Join(err, w.fail("remove", rerr))
			}
		}
	}
	if err != nil {
		if w.chunks > 0 {
			if perr := w.purge(ctx, w.nuid); perr != nil {
				err = errors.Join(err, w.fail("remove the chunks of", perr))
			}
		}
		return checkpoint.FileRef{}, err
	}
	if w.old != "" {
		// The replaced version's chunks: nothing refers to them now.
		_ = w.purge(ctx, w.old)
	}
	w.ref = checkpoint.FileRef{Path: w.name, Size: w.size, CRC32C: w.crc}
	return w.ref, nil
}

func (w *objectWriter) publishMeta(ctx context.Context) error {
	info := njs.ObjectInfo{
		ObjectMeta: njs.ObjectMeta{Name: w.name, Opts: &njs.ObjectMetaOptions{ChunkSize: w.s.chunk}},
		Bucket:     w.s.bucket, NUID: w.nuid, Size: uint64(w.size), Chunks: w.chunks,
		Digest: njs.GetObjectDigestValue(w.sha),
	}
	data, err := json.Marshal(info)
	if err != nil {
		return err
	}
	m := nats.NewMsg(w.s.metaSubject(w.name))
	m.Header.Set(njs.MsgRollup, njs.MsgRollupSubject)
	m.Data = data
	_, err = w.s.pub.PublishMsg(ctx, m)
	return err
}

func (w *objectWriter) purge(ctx context.Context, nuid string) error {
	return w.s.stream.Purge(ctx, njs.WithPurgeSubject(w.s.chunkSubject(nuid)))
}

// finish returns the chunk buffer and forgets the file.
func (w *objectWriter) finish() {
	w.s.bufs.Put(w.buf)
	w.buf = nil
	w.s.release(w.name)
}

// Abort implements checkpoint.Writer: the object's metadata is never sent,
// so the object does not appear, and the chunks sent are purged once
// acknowledged.
func (w *objectWriter) Abort() error {
	if w.end {
		return nil
	}
	w.end = true
	defer w.finish()
	_ = w.waitAll(context.Background())
	if w.chunks == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	if err := w.purge(ctx, w.nuid); err != nil {
		return w.fail("abort: remove the chunks of", err)
	}
	return nil
}
