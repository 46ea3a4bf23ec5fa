package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicedata/sluice/dataflow"
)

// Sink ends in with an exactly-once file sink named name writing under
// cfg.Dir (see the package documentation for the file lifecycle). A bad
// configuration is reported by the job's Validate, Plan and Run.
func Sink[T any](in dataflow.Stream[T], name string, cfg Config[T], opts ...dataflow.Option) {
	newOp, err := NewSink(name, cfg)
	if err != nil {
		if job := in.Job(); job != nil {
			job.ReportError(name, err)
		}
		newOp = func() dataflow.Operator[T] { return nil } // never built: the job is invalid
	}
	dataflow.AddSink(in, name, newOp, opts...)
}

// NewSink checks cfg and returns the factory of the sink's operator, one per
// subtask, for dataflow.AddSink. Sink is the usual way to add the sink; NewSink
// serves custom wiring and tests that drive the operator by hand. The operator
// is a dataflow.TwoPhaseCommitSink: it implements dataflow.Snapshotter and
// dataflow.CheckpointListener.
func NewSink[T any](name string, cfg Config[T]) (func() dataflow.Operator[T], error) {
	fail := func(err error) (func() dataflow.Operator[T], error) {
		return nil, fmt.Errorf("%w: sink %q: %w", ErrConfig, name, err)
	}
	if err := cfg.validate(); err != nil {
		return fail(err)
	}
	cfg = cfg.withDefaults()
	if _, err := newPartitioner(cfg); err != nil {
		return fail(err)
	}
	var newEnc func() (recordEncoder[T], error)
	switch cfg.Format {
	case JSONLines:
		newEnc = func() (recordEncoder[T], error) { return newJSONEncoder[T](cfg.Compression) }
	case CSV:
		newEnc = func() (recordEncoder[T], error) { return newCSVEncoder(cfg.Compression, cfg.CSV) }
		if _, err := newCSVEncoder(Uncompressed, cfg.CSV); err != nil {
			return fail(err)
		}
	case Parquet:
		newEnc = func() (recordEncoder[T], error) { return newParquetEncoder[T](cfg.Compression, cfg.ParquetOptions) }
		// Write a zero record into the void: parquet-go reports some schema
		// problems (duplicate column names, no columns) only when writing.
		enc, err := newParquetEncoder[T](Uncompressed, cfg.ParquetOptions)
		if err == nil {
			var zero T
			_ = enc.reset(&countingWriter{w: io.Discard})
			if _, err = enc.write(zero); err == nil {
				err = enc.finish()
			}
		}
		if err != nil {
			return fail(fmt.Errorf("Parquet schema of %s: %w", typeName[T](), err))
		}
	}
	ext := cfg.Format.ext()
	if cfg.Format != Parquet {
		ext += cfg.Compression.ext()
	}
	return func() dataflow.Operator[T] {
		part, _ := newPartitioner(cfg) // checked above
		c := &committer[T]{name: name, cfg: cfg, newEnc: newEnc, ext: ext, tname: typeName[T](), part: part, maxSize: cfg.MaxPartSize}
		if c.maxSize < 0 {
			c.maxSize = math.MaxInt64
		}
		op := dataflow.TwoPhaseCommitSink(func() dataflow.TwoPhaseCommitter[T, *Txn] { return c })()
		return &sinkOp[T]{Operator: op, c: c}
	}, nil
}

// sinkOp is the two-phase commit sink, told the id of the checkpoint each
// transaction is prepared for: final file names carry it.
type sinkOp[T any] struct {
	dataflow.Operator[T]
	c *committer[T]
}

func (o *sinkOp[T]) SnapshotState(ctx context.Context, id int64) ([]byte, error) {
	o.c.checkpoint = id
	return o.Operator.(dataflow.Snapshotter).SnapshotState(ctx, id)
}

func (o *sinkOp[T]) NotifyCheckpointComplete(ctx context.Context, id int64) error {
	return o.Operator.(dataflow.CheckpointListener).NotifyCheckpointComplete(ctx, id)
}

// PendingFile is a part file of a prepared transaction: closed, synced and
// under its hidden pending name until its checkpoint completes.
type PendingFile struct {
	// Pending is the hidden pending path, relative to Dir, "/"-separated.
	Pending string `msgpack:"p"`
	// Final is the visible path it is renamed to on commit, relative to Dir.
	Final string `msgpack:"f"`
}

// Txn is a transaction of the file sink: the part files of one checkpoint
// epoch of one subtask. Its exported fields are what checkpoints record; the
// part files being written are not recorded.
type Txn struct {
	// Files are the part files closed so far (rolled by size or age, and at
	// Prepare all of them), in the order they were closed. Final names are set
	// by Prepare.
	Files []PendingFile `msgpack:"files"`
	parts any           // *partSet[T]: the part files being written, nil until a Write
}

// partFile is an open part file. createFile is a variable so that a test can
// make writes fail like a full disk.
type partFile interface {
	io.Writer
	Sync() error
	Close() error
}

var createFile = func(name string) (partFile, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
}

// part is a part file being written.
type part[T any] struct {
	dir    string // partition directory, "" for Dir
	rel    string // in-progress path relative to Dir
	f      partFile
	cw     countingWriter
	enc    recordEncoder[T]
	opened time.Time
}

// partSet is the part files of a transaction being written, at most one per
// partition directory, in the order they were opened.
type partSet[T any] struct {
	order []*part[T]
	byDir map[string]*part[T]
	last  *part[T]
}

// committer is the sink's TwoPhaseCommitter. Like every TwoPhaseCommitter it
// is used from its subtask's goroutine only.
type committer[T any] struct {
	name    string
	cfg     Config[T]
	newEnc  func() (recordEncoder[T], error)
	ext     string
	tname   string
	part    *partitioner
	maxSize int64 // MaxPartSize, or the largest int64 for no limit

	oc         *dataflow.OperatorContext
	run        string // tells this run's in-progress files from other runs'
	seq        int64
	checkpoint int64 // set before Prepare by sinkOp
	free       []recordEncoder[T]
	dirs       map[string]bool // partition directories known to exist
}

const (
	inProgressSuffix = ".inprogress"
	pendingSuffix    = ".pending"
)

func (c *committer[T]) abs(rel string) string {
	return filepath.Join(c.cfg.Dir, filepath.FromSlash(rel))
}

func (c *committer[T]) errorf(format string, args ...any) error {
	return fmt.Errorf("file: sink %q: "+format, append([]any{c.name}, args...)...)
}

func (c *committer[T]) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	c.oc = oc
	c.run = fmt.Sprintf("%08x", rand.Uint32())
	if err := os.MkdirAll(c.cfg.Dir, 0o755); err != nil {
		return c.fileErr("create directory", c.cfg.Dir, err)
	}
	c.dirs = map[string]bool{"": true}
	return nil
}

// Begin is cheap: part files are created by the first Write to them.
func (c *committer[T]) Begin(context.Context) (*Txn, error) { return &Txn{}, nil }

func (c *committer[T]) Write(_ context.Context, txn *Txn, v T, ts dataflow.Timestamp) error {
	ps, _ := txn.parts.(*partSet[T])
	if ps == nil {
		ps = &partSet[T]{byDir: map[string]*part[T]{}}
		txn.parts = ps
	}
	dir, err := c.part.partition(ts)
	if err != nil {
		return c.errorf("%w", err)
	}
	p := ps.last
	if p == nil || p.dir != dir {
		p = ps.byDir[dir]
	}
	if p != nil && c.cfg.MaxPartAge > 0 && c.cfg.Clock().Sub(p.opened) >= c.cfg.MaxPartAge {
		if err := c.roll(txn, ps, p); err != nil {
			return err
		}
		p = nil
	}
	if p == nil {
		if p, err = c.openPart(dir); err != nil {
			return err
		}
		ps.byDir[dir] = p
		ps.order = append(ps.order, p)
	}
	ps.last = p
	size, err := p.enc.write(v)
	if err != nil {
		return c.writeErr(p, err)
	}
	if size > c.maxSize {
		return c.roll(txn, ps, p)
	}
	return nil
}

// roll closes part p of ps before the checkpoint: it becomes pending in txn.
func (c *committer[T]) roll(txn *Txn, ps *partSet[T], p *part[T]) error {
	if err := c.closePart(txn, p); err != nil {
		return err
	}
	delete(ps.byDir, p.dir)
	ps.order = slices.DeleteFunc(ps.order, func(q *part[T]) bool { return q == p })
	ps.last = nil
	return nil
}

// writeErr names what failed: the file (its write error) or the record.
func (c *committer[T]) writeErr(p *part[T], err error) error {
	if p.cw.err != nil {
		return c.fileErr("write", c.abs(p.rel), p.cw.err)
	}
	return fmt.Errorf("%w: sink %q: record of type %s as %v: %w", ErrEncode, c.name, c.tname, c.cfg.Format, err)
}

// openPart creates an in-progress part file in partition directory dir.
func (c *committer[T]) openPart(dir string) (*part[T], error) {
	if !c.dirs[dir] {
		if err := c.makeDir(dir); err != nil {
			return nil, err
		}
		c.dirs[dir] = true
	}
	c.seq++
	name := fmt.Sprintf(".part-%d-%s-%06d%s%s", c.oc.Subtask, c.run, c.seq, c.ext, inProgressSuffix)
	p := &part[T]{dir: dir, rel: path.Join(dir, name)}
	f, err := createFile(c.abs(p.rel))
	if err != nil {
		return nil, c.fileErr("create", c.abs(p.rel), err)
	}
	p.f, p.cw.w = f, f
	if n := len(c.free); n > 0 {
		p.enc, c.free = c.free[n-1], c.free[:n-1]
	} else if p.enc, err = c.newEnc(); err != nil {
		_ = f.Close()
		_ = os.Remove(c.abs(p.rel))
		return nil, c.errorf("make %v encoder: %w", c.cfg.Format, err)
	}
	if c.cfg.MaxPartAge > 0 {
		p.opened = c.cfg.Clock()
	}
	if err := p.enc.reset(&p.cw); err != nil {
		c.abortPart(p)
		return nil, c.writeErr(p, err)
	}
	return p, nil
}

// makeDir creates partition directory dir and syncs the directories above
// it, so that the new entries survive a crash.
func (c *committer[T]) makeDir(dir string) error {
	if err := os.MkdirAll(c.abs(dir), 0o755); err != nil {
		return c.fileErr("create directory", c.abs(dir), err)
	}
	for d := path.Dir(dir); ; d = path.Dir(d) {
		if d == "." {
			d = ""
		}
		if err := syncDir(c.abs(d)); err != nil {
			return c.errorf("%w", err)
		}
		if d == "" {
			return nil
		}
	}
}

// closePart finishes part p, syncs and closes its file and renames it to its
// pending name, recorded in txn.
func (c *committer[T]) closePart(txn *Txn, p *part[T]) error {
	if err := p.enc.finish(); err != nil {
		return c.writeErr(p, err)
	}
	if err := p.f.Sync(); err != nil {
		return c.fileErr("sync", c.abs(p.rel), err)
	}
	err := p.f.Close()
	p.f = nil
	if err != nil {
		return c.fileErr("close", c.abs(p.rel), err)
	}
	c.free = append(c.free, p.enc)
	pending := strings.TrimSuffix(p.rel, inProgressSuffix) + pendingSuffix
	if err := os.Rename(c.abs(p.rel), c.abs(pending)); err != nil {
		return c.errorf("make pending: %w", err) // an *os.LinkError names both paths
	}
	p.rel = pending
	txn.Files = append(txn.Files, PendingFile{Pending: pending})
	return nil
}

// Prepare closes the transaction's part files, names their final files after
// the subtask, the checkpoint and their order, and syncs their directories.
// An empty transaction prepares to nothing.
func (c *committer[T]) Prepare(_ context.Context, txn *Txn) (*Txn, error) {
	if ps, _ := txn.parts.(*partSet[T]); ps != nil {
		for len(ps.order) > 0 {
			if err := c.closePart(txn, ps.order[0]); err != nil {
				return nil, err
			}
			ps.order = ps.order[1:]
		}
		txn.parts = nil
	}
	dirs := map[string]bool{}
	for i := range txn.Files {
		f := &txn.Files[i]
		dir := path.Dir(f.Pending)
		f.Final = path.Join(dir, "part-"+strconv.Itoa(c.oc.Subtask)+"-"+strconv.FormatInt(c.checkpoint, 10)+"-"+strconv.Itoa(i)+c.ext)
		dirs[dir] = true
		// Fail the checkpoint, not its commit, if the name is taken: a
		// commit that cannot happen would fail every restore from it too.
		if _, err := os.Lstat(c.abs(f.Final)); err == nil {
			return nil, fmt.Errorf("%w: sink %q: preparing %s for checkpoint %d", ErrFileExists, c.name, c.abs(f.Final), c.checkpoint)
		}
	}
	if err := c.syncDirs(dirs); err != nil {
		return nil, err
	}
	return txn, nil
}

// Commit gives each pending file its final name. It never replaces a file:
// the pending file is hard-linked to its final name (which fails if that name
// exists) and then unlinked, so a commit interrupted between the two finds
// both names on the same file and completes. A pending file that is gone while
// its final file exists was committed before: that is success. If both are
// gone the data is lost: ErrLostFile. A final name held by another file (the
// output of an earlier run) fails with ErrFileExists.
func (c *committer[T]) Commit(_ context.Context, txn *Txn) error {
	dirs := map[string]bool{}
	for _, f := range txn.Files {
		committed, err := c.commitFile(f)
		if err != nil {
			return err
		}
		if committed {
			dirs[path.Dir(f.Final)] = true
		}
	}
	return c.syncDirs(dirs)
}

// commitFile commits one file and reports whether it renamed anything.
func (c *committer[T]) commitFile(f PendingFile) (bool, error) {
	pending, final := c.abs(f.Pending), c.abs(f.Final)
	err := os.Link(pending, final)
	switch {
	case err == nil:
		if err := os.Remove(pending); err != nil {
			return false, c.fileErr("commit", pending, err)
		}
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		// The pending file is gone (or its directory): committed before?
		if _, serr := os.Stat(final); serr != nil {
			return false, fmt.Errorf("%w: sink %q: neither the pending file %s nor its final file %s exists", ErrLostFile, c.name, pending, final)
		}
		return false, nil
	case errors.Is(err, fs.ErrExist):
		pst, perr := os.Stat(pending)
		fst, ferr := os.Stat(final)
		switch {
		case errors.Is(perr, fs.ErrNotExist) && ferr == nil:
			return false, nil // committed meanwhile
		case perr == nil && ferr == nil && os.SameFile(pst, fst):
			// An earlier commit linked the file and stopped before unlinking.
			if err := os.Remove(pending); err != nil {
				return false, c.fileErr("commit", pending, err)
			}
			return true, nil
		}
		return false, fmt.Errorf("%w: sink %q: committing %s", ErrFileExists, c.name, final)
	}
	// No hard links on this file system: check, then rename.
	if _, serr := os.Lstat(final); serr == nil {
		if _, perr := os.Lstat(pending); errors.Is(perr, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("%w: sink %q: committing %s", ErrFileExists, c.name, final)
	}
	if rerr := os.Rename(pending, final); rerr != nil {
		if errors.Is(rerr, fs.ErrNotExist) {
			return false, fmt.Errorf("%w: sink %q: neither the pending file %s nor its final file %s exists", ErrLostFile, c.name, pending, final)
		}
		return false, c.errorf("commit %s: %w (hard link: %v)", pending, rerr, err)
	}
	return true, nil
}

func (c *committer[T]) syncDirs(dirs map[string]bool) error {
	for dir := range dirs {
		if dir == "." {
			dir = ""
		}
		if err := syncDir(c.abs(dir)); err != nil {
			return c.errorf("%w", err)
		}
	}
	return nil
}

// Abort deletes the transaction's files: those being written and those it
// rolled.
func (c *committer[T]) Abort(_ context.Context, txn *Txn) error {
	if ps, _ := txn.parts.(*partSet[T]); ps != nil {
		for _, p := range ps.order {
			c.abortPart(p)
		}
		txn.parts = nil
	}
	var errs []error
	for _, f := range txn.Files {
		if err := os.Remove(c.abs(f.Pending)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, c.errorf("abort: %w", err))
		}
	}
	txn.Files = nil
	return errors.Join(errs...)
}

// abortPart closes and deletes a part file being written. Errors are
// ignored: Cleanup deletes what is left on the next start.
func (c *committer[T]) abortPart(p *part[T]) {
	if p.f != nil {
		_ = p.f.Close()
		p.f = nil
	}
	_ = os.Remove(c.abs(p.rel))
}

func (c *committer[T]) Close() error {
	c.free = nil
	return nil
}

// Cleanup deletes the in-progress and pending part files under Dir that
// earlier runs of the subtasks this subtask owns left behind. It runs after
// the restored transactions were committed, so none of them is still
// wanted. Every subtask index i, of any earlier parallelism, is owned by
// exactly one subtask of this run (i modulo the parallelism), and no subtask
// of this run has created a file yet when its Cleanup runs.
func (c *committer[T]) Cleanup(context.Context) error {
	var errs []error
	err := filepath.WalkDir(c.cfg.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != c.cfg.Dir {
				return nil // renamed or removed meanwhile by another subtask
			}
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != c.cfg.Dir && strings.HasPrefix(name, ".") {
				return fs.SkipDir
			}
			return nil
		}
		if sub, ok := hiddenPartSubtask(name); ok && c.oc.Owns(sub) {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return c.errorf("delete files of earlier runs under %s: %w", c.cfg.Dir, err)
	}
	return nil
}

// hiddenPartSubtask parses an in-progress or pending part file name,
// ".part-<subtask>-<run>-<seq><ext>.inprogress" or "....pending", and
// returns its subtask.
func hiddenPartSubtask(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, ".part-")
	if !ok || !strings.HasSuffix(name, inProgressSuffix) && !strings.HasSuffix(name, pendingSuffix) {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	sub, err := strconv.Atoi(num)
	if err != nil || sub < 0 {
		return 0, false
	}
	return sub, true
}

// syncDir makes the entries of directory dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return &opError{op: "sync directory", path: dir, err: err}
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &opError{op: "sync directory", path: dir, err: err}
	}
	return nil
}

// opError is a failed file operation of the sink, "<op> <path>: <cause>".
// The errors of package os name their operation and path already
// (*fs.PathError); when that path is the same, only their cause is printed,
// so that a message says the path once. Unwrap gives the original error.
type opError struct {
	op, path string
	err      error
}

func (e *opError) Error() string {
	cause := e.err
	if pe, ok := errors.AsType[*fs.PathError](e.err); ok && pe.Path == e.path {
		cause = pe.Err
	}
	return e.op + " " + e.path + ": " + cause.Error()
}

func (e *opError) Unwrap() error { return e.err }

// fileErr reports a failed operation op on path.
func (c *committer[T]) fileErr(op, path string, err error) error {
	return c.errorf("%w", &opError{op: op, path: path, err: err})
}
