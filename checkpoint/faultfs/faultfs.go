package faultfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sluicedata/sluice/checkpoint"
)

// ErrCrashed is returned by every operation after a simulated crash, until
// Recover.
var ErrCrashed = errors.New("faultfs: crashed")

// Op is a kind of file system operation.
type Op int

// The operations an FS counts and can fail.
const (
	OpCreate Op = iota
	OpWrite     // a Write on a created File
	OpSync      // a Sync on a created File
	OpClose     // a Close on a created File
	OpOpen
	OpRead // a Read on an opened file
	OpRename
	OpRemove
	OpRemoveAll
	OpMkdirAll
	OpReadDir
	OpSyncDir
	OpStat
	numOps
	// OpAny, in a Fault, matches every operation.
	OpAny Op = -1
)

var opNames = [numOps]string{"create", "write", "sync", "close", "open", "read", "rename", "remove", "removeall", "mkdirall", "readdir", "syncdir", "stat"}

func (o Op) String() string {
	if o >= 0 && o < numOps {
		return opNames[o]
	}
	if o == OpAny {
		return "any"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Crash says whether and how a Fault crashes the file system.
type Crash int

const (
	// NoCrash: the fault returns Err.
	NoCrash Crash = iota
	// CrashBefore: the operation is not performed; it and every later
	// operation fail with ErrCrashed.
	CrashBefore
	// CrashAfter: the operation is performed and returns its result; every
	// later operation fails with ErrCrashed.
	CrashAfter
)

// Fault is an injected failure: the N-th operation Op on a path containing
// Path, counted from when the fault was injected, fails.
type Fault struct {
	Op Op
	// Path selects operations whose path contains it ("" for any). For Write,
	// Sync, Close and Read it is the path the file was created or opened as;
	// for Rename it is "old -> new".
	Path string
	// N is the matching operation that fails, from 1; 0 fails every one.
	N int
	// Err is the error returned (without a crash). Nil means an error
	// wrapping ErrInjected.
	Err error
	// Torn makes a failing Write write the first half of its bytes before
	// failing, as a disk filling up mid-write does.
	Torn bool
	// Crash makes the fault a crash instead of an error.
	Crash Crash

	seen int
}

// ErrInjected is what a Fault without Err returns.
var ErrInjected = errors.New("faultfs: injected fault")

// FS wraps a checkpoint.FS, counts its operations, fails those that match an
// injected Fault and simulates crashes.
//
// The crash model: after a crash every operation fails with ErrCrashed.
// Recover then makes the wrapped file system look as a machine would after a
// power loss, for the files written through this FS since it was made (or
// last recovered):
//   - a file keeps only the bytes written before its last Sync (none if it
//     was never synced): unsynced data is lost;
//   - a rename not followed by a SyncDir of the target's directory is undone
//     (unless it replaced an existing file);
//   - a file created by Create, or moved there by a rename, whose directory
//     was not synced afterwards disappears, unless the name existed before.
//
// Removals are kept. Directories are not modelled.
//
// FS is safe for concurrent use.
type FS struct {
	inner checkpoint.FS

	mu      sync.Mutex
	counts  [numOps]int
	faults  []*Fault
	crashed bool
	files   map[string]*node // by current path
	renames []renameRec      // not yet made durable by SyncDir
}

// node tracks a file written through the FS for the crash model.
type node struct {
	path    string
	written int64
	synced  int64
	// durable: the directory entry survives a crash.
	durable bool
}

type renameRec struct {
	n        *node
	old, new string
	// oldDurable is n.durable before the rename.
	oldDurable bool
}

var _ checkpoint.FS = (*FS)(nil)

// New wraps inner.
func New(inner checkpoint.FS) *FS {
	return &FS{inner: inner, files: map[string]*node{}}
}

// Inject adds faults. Each fires on its N-th matching operation (or on every
// one with N 0) until Clear.
func (f *FS) Inject(faults ...Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ft := range faults {
		ft.seen = 0
		f.faults = append(f.faults, &ft)
	}
}

// Clear removes every injected fault.
func (f *FS) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = nil
}

// Count returns how many operations op (OpAny: of any kind) were attempted
// since New.
func (f *FS) Count(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if op == OpAny {
		n := 0
		for _, c := range f.counts {
			n += c
		}
		return n
	}
	return f.counts[op]
}

// Crash crashes the file system now.
func (f *FS) Crash() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.crashed = true
}

// Crashed reports whether the file system has crashed.
func (f *FS) Crashed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.crashed
}

// Recover applies the crash model to the wrapped file system (see FS) and
// makes the FS usable again, with no faults injected. Files still open
// through the FS must not be used any more. Recover without a crash does the
// same, as if the power had been cut just now.
func (f *FS) Recover() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	// Undo renames, the latest first.
	for i := len(f.renames) - 1; i >= 0; i-- {
		r := f.renames[i]
		if f.files[r.new] != r.n {
			continue // removed or replaced since
		}
		if err := f.inner.Rename(r.new, r.old); err != nil {
			errs = append(errs, fmt.Errorf("faultfs: recover: undo rename %s -> %s: %w", r.old, r.new, err))
			continue
		}
		delete(f.files, r.new)
		r.n.path, r.n.durable = r.old, r.oldDurable
		f.files[r.old] = r.n
	}
	for p, n := range f.files {
		if !n.durable {
			if err := f.inner.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("faultfs: recover: remove %s: %w", p, err))
			}
			continue
		}
		if n.synced < n.written {
			if err := f.truncate(p, n.synced); err != nil {
				errs = append(errs, fmt.Errorf("faultfs: recover: truncate %s to %d bytes: %w", p, n.synced, err))
			}
		}
	}
	f.files = map[string]*node{}
	f.renames = nil
	f.faults = nil
	f.crashed = false
	return errors.Join(errs...)
}

// truncate cuts the file p to its first size bytes through inner.
func (f *FS) truncate(p string, size int64) error {
	r, err := f.inner.Open(p)
	if err != nil {
		return err
	}
	keep, err := io.ReadAll(io.LimitReader(r, size))
	r.Close()
	if err != nil {
		return err
	}
	w, err := f.inner.Create(p)
	if err != nil {
		return err
	}
	_, err = w.Write(keep)
	if err == nil {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return err
}

// check counts op on path and returns the fault to apply, if any. It
// returns ErrCrashed once crashed. f.mu is held.
func (f *FS) check(op Op, path string) (*Fault, error) {
	f.counts[op]++
	if f.crashed {
		return nil, fmt.Errorf("faultfs: %s %s: %w", op, path, ErrCrashed)
	}
	for _, ft := range f.faults {
		if (ft.Op != op && ft.Op != OpAny) || !strings.Contains(path, ft.Path) {
			continue
		}
		ft.seen++
		if ft.N == 0 || ft.seen == ft.N {
			return ft, nil
		}
	}
	return nil, nil
}

// begin runs the fault logic before an operation: it returns whether to
// crash after the operation, or the error to return instead of running it.
// f.mu is held.
func (f *FS) begin(op Op, path string) (crashAfter bool, err error) {
	ft, err := f.check(op, path)
	if err != nil || ft == nil {
		return false, err
	}
	switch ft.Crash {
	case CrashBefore:
		f.crashed = true
		return false, fmt.Errorf("faultfs: %s %s: %w", op, path, ErrCrashed)
	case CrashAfter:
		return true, nil
	}
	return false, ft.error(op, path)
}

func (ft *Fault) error(op Op, path string) error {
	if ft.Err != nil {
		return &fs.PathError{Op: op.String(), Path: path, Err: ft.Err}
	}
	return &fs.PathError{Op: op.String(), Path: path, Err: ErrInjected}
}

// do runs a path operation with fault injection.
func (f *FS) do(op Op, path string, run func() error) error {
	f.mu.Lock()
	crashAfter, err := f.begin(op, path)
	f.mu.Unlock()
	if err != nil {
		return err
	}
	err = run()
	if crashAfter {
		f.Crash()
	}
	return err
}

// Create implements checkpoint.FS.
func (f *FS) Create(name string) (checkpoint.File, error) {
	f.mu.Lock()
	crashAfter, err := f.begin(OpCreate, name)
	if err != nil {
		f.mu.Unlock()
		return nil, err
	}
	_, existed := f.files[name]
	if !existed {
		_, serr := f.inner.Stat(name)
		existed = serr == nil
	}
	inner, err := f.inner.Create(name)
	var h *file
	if err == nil {
		n := &node{path: name, durable: existed}
		f.files[name] = n
		h = &file{fs: f, inner: inner, n: n, name: name}
	}
	if crashAfter {
		f.crashed = true
	}
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return h, nil
}

// Open implements checkpoint.FS.
func (f *FS) Open(name string) (io.ReadCloser, error) {
	var r io.ReadCloser
	err := f.do(OpOpen, name, func() (err error) {
		r, err = f.inner.Open(name)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &reader{fs: f, inner: r, name: name}, nil
}

// Rename implements checkpoint.FS.
func (f *FS) Rename(oldname, newname string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	crashAfter, err := f.begin(OpRename, oldname+" -> "+newname)
	if err != nil {
		return err
	}
	_, replaced := f.files[newname]
	if !replaced {
		_, serr := f.inner.Stat(newname)
		replaced = serr == nil
	}
	err = f.inner.Rename(oldname, newname)
	if err == nil {
		n := f.files[oldname]
		delete(f.files, oldname)
		if n == nil {
			// Written before this FS: its data is durable.
			n = &node{durable: true}
		}
		rec := renameRec{n: n, old: oldname, new: newname, oldDurable: n.durable}
		n.path = newname
		n.durable = replaced
		f.files[newname] = n
		if !replaced {
			f.renames = append(f.renames, rec)
		}
	}
	if crashAfter {
		f.crashed = true
	}
	return err
}

// Remove implements checkpoint.FS.
func (f *FS) Remove(name string) error {
	return f.do(OpRemove, name, func() error {
		err := f.inner.Remove(name)
		if err == nil {
			f.forget(name)
		}
		return err
	})
}

// RemoveAll implements checkpoint.FS.
func (f *FS) RemoveAll(name string) error {
	return f.do(OpRemoveAll, name, func() error {
		err := f.inner.RemoveAll(name)
		if err == nil {
			f.forget(name)
		}
		return err
	})
}

// forget drops the tracked files at or below name.
func (f *FS) forget(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	prefix := name + string(filepath.Separator)
	for p := range f.files {
		if p == name || strings.HasPrefix(p, prefix) {
			delete(f.files, p)
		}
	}
}

// MkdirAll implements checkpoint.FS.
func (f *FS) MkdirAll(dir string) error {
	return f.do(OpMkdirAll, dir, func() error { return f.inner.MkdirAll(dir) })
}

// ReadDir implements checkpoint.FS.
func (f *FS) ReadDir(dir string) ([]fs.DirEntry, error) {
	var ents []fs.DirEntry
	err := f.do(OpReadDir, dir, func() (err error) {
		ents, err = f.inner.ReadDir(dir)
		return err
	})
	return ents, err
}

// SyncDir implements checkpoint.FS: the entries of dir become durable.
func (f *FS) SyncDir(dir string) error {
	return f.do(OpSyncDir, dir, func() error {
		if err := f.inner.SyncDir(dir); err != nil {
			return err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		dir = filepath.Clean(dir)
		for p, n := range f.files {
			if filepath.Dir(p) == dir {
				n.durable = true
			}
		}
		kept := f.renames[:0]
		for _, r := range f.renames {
			if filepath.Dir(r.new) != dir {
				kept = append(kept, r)
			}
		}
		f.renames = kept
		return nil
	})
}

// Stat implements checkpoint.FS.
func (f *FS) Stat(name string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := f.do(OpStat, name, func() (err error) {
		fi, err = f.inner.Stat(name)
		return err
	})
	return fi, err
}

// file is a File created through the FS.
type file struct {
	fs    *FS
	inner checkpoint.File
	n     *node
	name  string
}

func (h *file) Write(p []byte) (int, error) {
	f := h.fs
	f.mu.Lock()
	ft, err := f.check(OpWrite, h.name)
	f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	crashAfter := false
	if ft != nil {
		switch ft.Crash {
		case CrashBefore:
			f.Crash()
			return 0, fmt.Errorf("faultfs: write %s: %w", h.name, ErrCrashed)
		case CrashAfter:
			crashAfter = true
		default:
			n := 0
			if ft.Torn {
				n, _ = h.inner.Write(p[:len(p)/2])
				h.wrote(n)
			}
			return n, ft.error(OpWrite, h.name)
		}
	}
	n, err := h.inner.Write(p)
	h.wrote(n)
	if crashAfter {
		f.Crash()
	}
	return n, err
}

func (h *file) wrote(n int) {
	h.fs.mu.Lock()
	h.n.written += int64(n)
	h.fs.mu.Unlock()
}

func (h *file) Sync() error {
	return h.fs.do(OpSync, h.name, func() error {
		if err := h.inner.Sync(); err != nil {
			return err
		}
		h.fs.mu.Lock()
		h.n.synced = h.n.written
		h.fs.mu.Unlock()
		return nil
	})
}

func (h *file) Close() error {
	f := h.fs
	f.mu.Lock()
	crashAfter, err := f.begin(OpClose, h.name)
	f.mu.Unlock()
	// The descriptor is released even when the close "fails".
	cerr := h.inner.Close()
	if crashAfter {
		f.Crash()
	}
	if err != nil {
		return err
	}
	return cerr
}

// reader is a file opened through the FS.
type reader struct {
	fs    *FS
	inner io.ReadCloser
	name  string
}

func (r *reader) Read(p []byte) (int, error) {
	var n int
	err := r.fs.do(OpRead, r.name, func() (err error) {
		n, err = r.inner.Read(p)
		return err
	})
	return n, err
}

func (r *reader) Close() error { return r.inner.Close() }
