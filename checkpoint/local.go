package checkpoint

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ErrReadOnly: a write to a storage opened read-only with OpenLocalStorage.
var ErrReadOnly = errors.New("checkpoint: storage is read-only")

// DefaultBufferSize is the write buffer of each file LocalStorage writes.
const DefaultBufferSize = 256 << 10

const (
	manifestDir    = "manifests"
	manifestPrefix = "chk-"
	manifestSuffix = ".json"
	tmpSuffix      = ".tmp"
	probePrefix    = ".probe-"
)

// LocalStorage is a Storage in a directory of a local file system. See the
// package documentation for its layout and guarantees.
//
// All methods may be called from several goroutines at once: Create, Open,
// Latest, Load, List and Verify run in parallel; Commit, Discard and Prune
// are serialised with each other. One process writes to a directory at a
// time.
type LocalStorage struct {
	fs       FS
	root     string
	readOnly bool
	bufSize  int
	bufPool  sync.Pool // *bufio.Writer of bufSize

	// admin serialises Commit, Discard and Prune.
	admin sync.Mutex

	mu sync.Mutex
	// open maps the relative path of each file being written to its
	// checkpoint id.
	open map[string]int64
	// dirs holds the directories (relative) known to exist.
	dirs map[string]struct{}
	// dirty holds the directories (relative, "." for the root) with entries
	// not yet made durable; Commit syncs them before writing a manifest.
	dirty map[string]struct{}
}

var _ Storage = (*LocalStorage)(nil)

// LocalOption configures NewLocalStorage and OpenLocalStorage.
type LocalOption func(*localOptions)

type localOptions struct {
	fs      FS
	bufSize int
}

// WithFS makes the storage use fsys instead of the operating system's file
// system (tests inject faults with package checkpoint/faultfs).
func WithFS(fsys FS) LocalOption { return func(o *localOptions) { o.fs = fsys } }

// WithBufferSize sets the write buffer of each file (DefaultBufferSize,
// 256 KiB, when not set or n <= 0).
func WithBufferSize(n int) LocalOption { return func(o *localOptions) { o.bufSize = n } }

func newLocal(dir string, readOnly bool, opts []LocalOption) (*LocalStorage, error) {
	if dir == "" {
		return nil, errors.New("checkpoint: storage directory is empty")
	}
	o := localOptions{fs: OSFS{}, bufSize: DefaultBufferSize}
	for _, opt := range opts {
		opt(&o)
	}
	if o.bufSize <= 0 {
		o.bufSize = DefaultBufferSize
	}
	if o.fs == nil {
		o.fs = OSFS{}
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: storage directory %s: %w", dir, err)
	}
	return &LocalStorage{
		fs: o.fs, root: root, readOnly: readOnly, bufSize: o.bufSize,
		open: map[string]int64{},
		dirs: map[string]struct{}{}, dirty: map[string]struct{}{},
	}, nil
}

// NewLocalStorage opens the checkpoint storage in dir for writing, creating
// dir if needed. It fails with an error naming dir if dir cannot be created
// or a probe file cannot be written, synced and removed in it.
func NewLocalStorage(dir string, opts ...LocalOption) (*LocalStorage, error) {
	s, err := newLocal(dir, false, opts)
	if err != nil {
		return nil, err
	}
	if err := s.fs.MkdirAll(s.abs(manifestDir)); err != nil {
		return nil, fmt.Errorf("checkpoint: cannot create storage directory %s: %w", s.root, err)
	}
	if err := s.probe(); err != nil {
		return nil, fmt.Errorf("checkpoint: storage directory %s is not writable: %w", s.root, err)
	}
	s.dirs["."], s.dirs[manifestDir] = struct{}{}, struct{}{}
	s.dirty["."] = struct{}{}
	return s, nil
}

// OpenLocalStorage opens the checkpoint storage in dir read-only, to restore
// from a checkpoint or a savepoint: Create, Commit, Discard and Prune fail
// with ErrReadOnly. It fails if dir does not exist (wrapping fs.ErrNotExist)
// or holds no completed checkpoint (wrapping ErrNoCheckpoint).
func OpenLocalStorage(dir string, opts ...LocalOption) (*LocalStorage, error) {
	s, err := newLocal(dir, true, opts)
	if err != nil {
		return nil, err
	}
	fi, err := s.fs.Stat(s.root)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: cannot open checkpoint directory %s: %w", s.root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("checkpoint: checkpoint path %s is not a directory", s.root)
	}
	ids, err := s.List(context.Background())
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("checkpoint: directory %s holds no manifest (%s/chk-<id>.json): %w", s.root, manifestDir, ErrNoCheckpoint)
	}
	return s, nil
}

var _ Prober = (*LocalStorage)(nil)

// Probe implements Prober: the directory (and its manifests directory) must
// exist or be creatable, and a probe file must be written, synced and removed
// in it, as NewLocalStorage checks. A storage opened read-only fails with
// ErrReadOnly.
func (s *LocalStorage) Probe(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.readOnly {
		return fmt.Errorf("checkpoint: storage directory %s was opened read-only (to restore from), it cannot take checkpoints: %w", s.root, ErrReadOnly)
	}
	if err := s.fs.MkdirAll(s.abs(manifestDir)); err != nil {
		return fmt.Errorf("checkpoint: cannot create storage directory %s: %w", s.root, err)
	}
	if err := s.probe(); err != nil {
		return fmt.Errorf("checkpoint: storage directory %s is not writable: %w", s.root, err)
	}
	return nil
}

// probe writes, syncs and removes a file in the root.
func (s *LocalStorage) probe() error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := s.abs(probePrefix + hex.EncodeToString(b[:]))
	f, err := s.fs.Create(name)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte("sluice\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := s.fs.Remove(name); err == nil {
		err = rerr
	}
	return err
}

// Location returns the storage's directory.
func (s *LocalStorage) Location() string { return s.root }

// abs returns the OS path of rel, a slash-separated path relative to the
// root.
func (s *LocalStorage) abs(rel string) string {
	return filepath.Join(s.root, filepath.FromSlash(rel))
}

func manifestName(id int64) string {
	return manifestDir + "/" + manifestPrefix + strconv.FormatInt(id, 10) + manifestSuffix
}

func manifestTmpName(id int64) string {
	return manifestDir + "/." + manifestPrefix + strconv.FormatInt(id, 10) + manifestSuffix + tmpSuffix
}

// parseManifestName returns the id of a manifest file named chk-<id>.json.
func parseManifestName(name string) (int64, bool) {
	s, ok := strings.CutSuffix(name, manifestSuffix)
	if !ok {
		return 0, false
	}
	return parseCheckpointDir(s)
}

// Create implements Storage. name is a slash-separated relative path (it
// may have directories) without elements starting with '.'; the file is
// chk-<checkpointID>/<name>. checkpointID must be positive, not the id of a
// completed checkpoint, and name not being written already.
func (s *LocalStorage) Create(ctx context.Context, checkpointID int64, name string) (Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.readOnly {
		return nil, fmt.Errorf("checkpoint: create %s for checkpoint %d in %s: %w", name, checkpointID, s.root, ErrReadOnly)
	}
	rel, err := FilePath(checkpointID, name)
	if err != nil {
		return nil, err
	}
	if _, err := s.fs.Stat(s.abs(manifestName(checkpointID))); err == nil {
		return nil, fmt.Errorf("checkpoint: create %s in %s: checkpoint %d is already completed", rel, s.root, checkpointID)
	}
	dir := path.Dir(rel)

	s.mu.Lock()
	if _, busy := s.open[rel]; busy {
		s.mu.Unlock()
		return nil, fmt.Errorf("checkpoint: create %s in %s: the file is already being written", rel, s.root)
	}
	s.open[rel] = checkpointID
	_, haveDir := s.dirs[dir]
	s.mu.Unlock()

	fail := func(err error) (Writer, error) {
		s.mu.Lock()
		delete(s.open, rel)
		s.mu.Unlock()
		return nil, fmt.Errorf("checkpoint: create %s in %s: %w", rel, s.root, err)
	}
	if !haveDir {
		if err := s.fs.MkdirAll(s.abs(dir)); err != nil {
			return fail(err)
		}
		s.mu.Lock()
		for d := dir; d != "."; d = path.Dir(d) {
			s.dirs[d] = struct{}{}
		}
		s.mu.Unlock()
	}
	f, err := s.fs.Create(s.abs(rel))
	if err != nil {
		s.mu.Lock()
		s.forgetDir(dir) // removed meanwhile, perhaps: MkdirAll again next time
		s.mu.Unlock()
		return fail(err)
	}
	return s.newWriter(f, rel, checkpointID), nil
}

// release forgets the open file rel, written for checkpoint id. If it was
// committed, its directory and those above it are marked for syncing.
func (s *LocalStorage) release(rel string, committed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.open, rel)
	if committed {
		for d := path.Dir(rel); ; d = path.Dir(d) {
			s.dirty[d] = struct{}{}
			if d == "." {
				break
			}
		}
	}
}

// Open implements Storage. The reader checks size and CRC32C as it is read:
// a mismatch is reported at the latest at EOF, so read to EOF (io.ReadAll,
// io.Copy). A missing file fails Open, wrapping ErrCorrupt.
func (s *LocalStorage) Open(ctx context.Context, ref FileRef) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validRefPath(ref.Path); err != nil {
		return nil, fmt.Errorf("%w: %v (storage %s)", ErrCorrupt, err, s.root)
	}
	full := s.abs(ref.Path)
	fi, err := s.fs.Stat(full)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: file %s of checkpoint %d is missing in %s", ErrCorrupt, ref.Path, refCheckpoint(ref.Path), s.root)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open %s of checkpoint %d: %w", full, refCheckpoint(ref.Path), err)
	}
	if fi.Size() != ref.Size {
		return nil, fmt.Errorf("%w: file %s of checkpoint %d in %s has %d bytes, expected %d", ErrCorrupt, ref.Path, refCheckpoint(ref.Path), s.root, fi.Size(), ref.Size)
	}
	r, err := s.fs.Open(full)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: file %s of checkpoint %d is missing in %s", ErrCorrupt, ref.Path, refCheckpoint(ref.Path), s.root)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open %s of checkpoint %d: %w", full, refCheckpoint(ref.Path), err)
	}
	return VerifyingReader(r, ref, s.root), nil
}

// Commit implements Storage. It refuses an invalid manifest
// (ValidateManifest), an id already committed, and a manifest referencing a
// file that is missing or has another size than its FileRef says (the
// checksums are not read again: Verify does that). Before the manifest it
// syncs the directories that received files, so a completed checkpoint's
// files survive a crash.
//
// An error after the rename (syncing the manifest directory) leaves it
// uncertain whether the checkpoint survives a crash; the manifest is left in
// place and Latest may return it.
func (s *LocalStorage) Commit(ctx context.Context, m *Manifest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.readOnly {
		return fmt.Errorf("checkpoint: commit checkpoint to %s: %w", s.root, ErrReadOnly)
	}
	data, err := MarshalManifest(m)
	if err != nil {
		return err
	}
	s.admin.Lock()
	defer s.admin.Unlock()

	final := s.abs(manifestName(m.ID))
	if _, err := s.fs.Stat(final); err == nil {
		return fmt.Errorf("checkpoint: commit checkpoint %d: %s already exists", m.ID, final)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checkpoint: commit checkpoint %d: %w", m.ID, err)
	}
	for _, f := range m.Files() {
		fi, err := s.fs.Stat(s.abs(f.Path))
		if err != nil {
			return fmt.Errorf("checkpoint: commit checkpoint %d: manifest references %s in %s: %w", m.ID, f.Path, s.root, err)
		}
		if fi.Size() != f.Size {
			return fmt.Errorf("checkpoint: commit checkpoint %d: manifest references %s in %s with %d bytes, the file has %d", m.ID, f.Path, s.root, f.Size, fi.Size())
		}
		s.mu.Lock()
		_, busy := s.open[f.Path]
		s.mu.Unlock()
		if busy {
			return fmt.Errorf("checkpoint: commit checkpoint %d: manifest references %s in %s, which is still being written", m.ID, f.Path, s.root)
		}
	}
	if err := s.syncDirty(); err != nil {
		return fmt.Errorf("checkpoint: commit checkpoint %d: %w", m.ID, err)
	}
	tmp := s.abs(manifestTmpName(m.ID))
	if err := s.writeFileSync(tmp, data); err != nil {
		_ = s.fs.Remove(tmp)
		return fmt.Errorf("checkpoint: commit checkpoint %d: write manifest %s: %w", m.ID, tmp, err)
	}
	if err := s.fs.Rename(tmp, final); err != nil {
		_ = s.fs.Remove(tmp)
		return fmt.Errorf("checkpoint: commit checkpoint %d: rename manifest to %s: %w", m.ID, final, err)
	}
	if err := s.fs.SyncDir(s.abs(manifestDir)); err != nil {
		return fmt.Errorf("checkpoint: commit checkpoint %d: sync directory %s after writing its manifest (the checkpoint may not survive a crash): %w", m.ID, s.abs(manifestDir), err)
	}
	return nil
}

// syncDirty syncs the directories that received files since the last
// commit, the deepest first.
func (s *LocalStorage) syncDirty() error {
	s.mu.Lock()
	dirs := make([]string, 0, len(s.dirty))
	for d := range s.dirty {
		dirs = append(dirs, d)
	}
	s.mu.Unlock()
	slices.SortFunc(dirs, func(a, b string) int {
		if c := strings.Count(b, "/") - strings.Count(a, "/"); c != 0 {
			return c
		}
		if a == "." || b == "." {
			return strings.Compare(b, a) // "." last
		}
		return strings.Compare(a, b)
	})
	for _, d := range dirs {
		if err := s.fs.SyncDir(s.abs(d)); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// Removed since (Discard, Prune): nothing to make durable.
				s.mu.Lock()
				delete(s.dirty, d)
				s.mu.Unlock()
				continue
			}
			return fmt.Errorf("sync directory %s: %w", s.abs(d), err)
		}
		s.mu.Lock()
		delete(s.dirty, d)
		s.mu.Unlock()
	}
	return nil
}

// writeFileSync writes data to name and syncs it.
func (s *LocalStorage) writeFileSync(name string, data []byte) error {
	f, err := s.fs.Create(name)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Latest implements Storage.
func (s *LocalStorage) Latest(ctx context.Context) (*Manifest, error) {
	ids, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("checkpoint: no manifest in %s: %w", s.abs(manifestDir), ErrNoCheckpoint)
	}
	id := ids[len(ids)-1]
	m, err := s.Load(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: latest checkpoint %d in %s cannot be loaded (older checkpoints are not used in its place): %w", id, s.root, err)
	}
	return m, nil
}

// Load implements Storage. A missing manifest is an error wrapping
// ErrNoCheckpoint and fs.ErrNotExist; a corrupt one wraps ErrCorrupt.
func (s *LocalStorage) Load(ctx context.Context, id int64) (*Manifest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if id <= 0 {
		return nil, fmt.Errorf("checkpoint: load checkpoint %d from %s: ids start at 1: %w", id, s.root, ErrNoCheckpoint)
	}
	name := s.abs(manifestName(id))
	r, err := s.fs.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("checkpoint: checkpoint %d not found in %s: %w (%w)", id, s.root, ErrNoCheckpoint, err)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open manifest %s: %w", name, err)
	}
	data, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read manifest %s: %w", name, err)
	}
	m, err := UnmarshalManifest(data, name)
	if err != nil {
		return nil, err
	}
	if m.ID != id {
		return nil, fmt.Errorf("%w: manifest %s holds checkpoint %d", ErrCorrupt, name, m.ID)
	}
	return m, nil
}

// List implements Storage.
func (s *LocalStorage) List(ctx context.Context) ([]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir := s.abs(manifestDir)
	ents, err := s.fs.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list manifests in %s: %w", dir, err)
	}
	var ids []int64
	for _, e := range ents {
		if id, ok := parseManifestName(e.Name()); ok && !e.IsDir() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Verify implements Storage: it reads every file m references and reports
// every missing or corrupt one (VerifyFiles).
func (s *LocalStorage) Verify(ctx context.Context, m *Manifest) error {
	return VerifyFiles(ctx, s, m)
}

// Discard implements Storage: it removes the files of chk-<checkpointID>/
// that no completed manifest references, except files still being written
// (their writers' Abort removes them), and the checkpoint's temporary
// manifest. It fails without removing anything if a manifest cannot be
// loaded.
func (s *LocalStorage) Discard(ctx context.Context, checkpointID int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.readOnly {
		return fmt.Errorf("checkpoint: discard checkpoint %d in %s: %w", checkpointID, s.root, ErrReadOnly)
	}
	if checkpointID <= 0 {
		return fmt.Errorf("checkpoint: discard checkpoint %d in %s: ids start at 1", checkpointID, s.root)
	}
	s.admin.Lock()
	defer s.admin.Unlock()
	ids, err := s.List(ctx)
	if err != nil {
		return err
	}
	refs, err := ReferencedFiles(ctx, s, ids)
	if err != nil {
		return fmt.Errorf("checkpoint: discard checkpoint %d: %w", checkpointID, err)
	}
	if err := s.fs.Remove(s.abs(manifestTmpName(checkpointID))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checkpoint: discard checkpoint %d: %w", checkpointID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cleanDir(checkpointDir(checkpointID), refs); err != nil {
		return fmt.Errorf("checkpoint: discard checkpoint %d: %w", checkpointID, err)
	}
	return nil
}

// Prune implements Storage. keep must be at least 1. It fails without
// removing anything if a kept manifest cannot be loaded. It removes the
// older manifests first, then in the directories of checkpoints up to the
// newest kept one every file no kept manifest references (except files
// still being written), then leftover temporary files. Directories of
// checkpoints newer than the newest completed one belong to checkpoints in
// progress and are left alone.
//
// A checkpoint with a lower id than the newest completed one is taken to
// have failed: its files are removed once their writers finish. Run one
// checkpoint at a time, or give a checkpoint that completes out of order an
// id above every completed one.
func (s *LocalStorage) Prune(ctx context.Context, keep int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.readOnly {
		return fmt.Errorf("checkpoint: prune %s: %w", s.root, ErrReadOnly)
	}
	if keep < 1 {
		return fmt.Errorf("checkpoint: prune %s: keep %d, must be at least 1", s.root, keep)
	}
	s.admin.Lock()
	defer s.admin.Unlock()
	ids, err := s.List(ctx)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return s.removeTemps()
	}
	kept := ids[max(0, len(ids)-keep):]
	refs, err := ReferencedFiles(ctx, s, kept)
	if err != nil {
		return fmt.Errorf("checkpoint: prune %s: %w", s.root, err)
	}
	newest := kept[len(kept)-1]
	for _, id := range ids[:len(ids)-len(kept)] {
		if err := s.fs.Remove(s.abs(manifestName(id))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("checkpoint: prune %s: remove manifest of checkpoint %d: %w", s.root, id, err)
		}
	}
	ents, err := s.fs.ReadDir(s.root)
	if err != nil {
		return fmt.Errorf("checkpoint: prune %s: %w", s.root, err)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		id, ok := parseCheckpointDir(e.Name())
		if !ok || !e.IsDir() || id > newest {
			continue
		}
		s.mu.Lock()
		err = s.cleanDir(e.Name(), refs)
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("checkpoint: prune %s: %w", s.root, err)
		}
	}
	return s.removeTemps()
}

// removeTemps removes leftover temporary manifests and probe files. Commit
// holds admin, so no temporary manifest is being written.
func (s *LocalStorage) removeTemps() error {
	for _, dir := range []string{manifestDir, "."} {
		ents, err := s.fs.ReadDir(s.abs(dir))
		if err != nil {
			return fmt.Errorf("checkpoint: clean temporary files in %s: %w", s.abs(dir), err)
		}
		for _, e := range ents {
			n := e.Name()
			tmp := dir == manifestDir && strings.HasPrefix(n, ".") && strings.HasSuffix(n, tmpSuffix)
			probe := dir == "." && strings.HasPrefix(n, probePrefix)
			if (tmp || probe) && !e.IsDir() {
				if err := s.fs.Remove(s.abs(path.Join(dir, n))); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("checkpoint: clean temporary files in %s: %w", s.abs(dir), err)
				}
			}
		}
	}
	return nil
}

// cleanDir removes from dir (relative) every file not in keep and not being
// written, and then the directories left empty, dir included, unless a file
// is being created in them. s.mu is held.
func (s *LocalStorage) cleanDir(dir string, keep map[string]struct{}) error {
	ents, err := s.fs.ReadDir(s.abs(dir))
	if errors.Is(err, fs.ErrNotExist) {
		s.forgetDir(dir)
		return nil
	}
	if err != nil {
		return err
	}
	left := 0
	for _, e := range ents {
		rel := dir + "/" + e.Name()
		if e.IsDir() {
			if err := s.cleanDir(rel, keep); err != nil {
				return err
			}
			if _, err := s.fs.Stat(s.abs(rel)); err == nil {
				left++
			}
			continue
		}
		if _, ok := keep[rel]; ok {
			left++
			continue
		}
		if _, ok := s.open[rel]; ok {
			left++
			continue
		}
		if err := s.fs.Remove(s.abs(rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if left == 0 && !s.openUnder(dir) {
		if err := s.fs.Remove(s.abs(dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		s.forgetDir(dir)
	}
	return nil
}

// openUnder reports whether a file below dir is being written (perhaps not
// created yet). s.mu is held.
func (s *LocalStorage) openUnder(dir string) bool {
	for p := range s.open {
		if strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return false
}

// forgetDir drops dir and what lies below from the known directories (the
// dirty ones stay: syncDirty skips those that no longer exist). s.mu is held.
func (s *LocalStorage) forgetDir(dir string) {
	for d := range s.dirs {
		if d == dir || strings.HasPrefix(d, dir+"/") {
			delete(s.dirs, d)
		}
	}
}
