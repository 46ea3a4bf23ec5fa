package checkpoint

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
)

// localWriter writes one file of a LocalStorage through a buffer, counting
// its size and CRC32C as the bytes come in. It is used by one goroutine at a
// time.
type localWriter struct {
	s    *LocalStorage
	f    File
	bw   *bufio.Writer
	rel  string
	id   int64
	size int64
	crc  uint32
	err  error // sticky: the first write error
	done bool  // committed or aborted
	ref  FileRef
}

func (s *LocalStorage) newWriter(f File, rel string, id int64) *localWriter {
	var bw *bufio.Writer
	if v := s.bufPool.Get(); v != nil {
		bw = v.(*bufio.Writer)
		bw.Reset(f)
	} else {
		bw = bufio.NewWriterSize(f, s.bufSize)
	}
	return &localWriter{s: s, f: f, bw: bw, rel: rel, id: id}
}

func (w *localWriter) fail(op string, err error) error {
	return fmt.Errorf("checkpoint: %s %s of checkpoint %d in %s: %w", op, w.rel, w.id, w.s.root, err)
}

// Write implements io.Writer. After an error every Write and Commit fails
// with it.
func (w *localWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, w.fail("write", errors.New("writer already committed or aborted"))
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.bw.Write(p)
	w.crc = crc32.Update(w.crc, castagnoli, p[:n])
	w.size += int64(n)
	if err != nil {
		w.err = w.fail("write", err)
		return n, w.err
	}
	return n, nil
}

// Commit implements Writer: flush, fsync, close. On failure the file is
// removed and the error names it.
func (w *localWriter) Commit() (FileRef, error) {
	if w.done {
		if w.ref.Path != "" {
			return FileRef{}, w.fail("commit", errors.New("already committed"))
		}
		return FileRef{}, w.fail("commit", errors.New("already aborted"))
	}
	err := w.err
	if err == nil {
		if ferr := w.bw.Flush(); ferr != nil {
			err = w.fail("write", ferr)
		}
	}
	if err == nil {
		if serr := w.f.Sync(); serr != nil {
			err = w.fail("sync", serr)
		}
	}
	cerr := w.f.Close()
	if err == nil && cerr != nil {
		err = w.fail("close", cerr)
	}
	w.finish()
	if err != nil {
		if rerr := w.s.fs.Remove(w.s.abs(w.rel)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, w.fail("remove", rerr))
		}
		w.s.release(w.rel, false)
		return FileRef{}, err
	}
	w.ref = FileRef{Path: w.rel, Size: w.size, CRC32C: w.crc}
	w.s.release(w.rel, true)
	return w.ref, nil
}

// Abort implements Writer.
func (w *localWriter) Abort() error {
	if w.done {
		return nil
	}
	w.f.Close()
	w.finish()
	err := w.s.fs.Remove(w.s.abs(w.rel))
	w.s.release(w.rel, false)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return w.fail("abort: remove", err)
	}
	return nil
}

// finish returns the buffer to the pool.
func (w *localWriter) finish() {
	w.done = true
	w.bw.Reset(nil)
	w.s.bufPool.Put(w.bw)
	w.bw = nil
}

// VerifyingReader returns a reader of r, the content of the file ref
// names, that checks its size and CRC32C as it is read, as Storage.Open
// requires: at EOF it returns an error wrapping ErrCorrupt instead of io.EOF
// if the size or checksum differs from ref's, and it fails as soon as the
// content is longer than ref.Size. where names the storage in errors (a
// directory, a bucket). Close closes r.
func VerifyingReader(r io.ReadCloser, ref FileRef, where string) io.ReadCloser {
	return &verifyingReader{r: r, ref: ref, where: where}
}

// verifyingReader reads a file and checks its size and CRC32C against ref.
type verifyingReader struct {
	r     io.ReadCloser
	ref   FileRef
	where string
	n     int64
	crc   uint32
	err   error
}

func (v *verifyingReader) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: file %s of checkpoint %d in %s: %s", ErrCorrupt, v.ref.Path, refCheckpoint(v.ref.Path), v.where, fmt.Sprintf(format, args...))
}

// Read implements io.Reader. At EOF it returns an error wrapping ErrCorrupt
// instead of io.EOF if the size or checksum differs from the FileRef's; it
// fails as soon as the file is longer than expected.
func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.crc = crc32.Update(v.crc, castagnoli, p[:n])
	v.n += int64(n)
	switch {
	case v.n > v.ref.Size:
		v.err = v.corrupt("longer than the expected %d bytes", v.ref.Size)
		return n, v.err
	case err == io.EOF:
		if v.n != v.ref.Size {
			v.err = v.corrupt("%d bytes, expected %d", v.n, v.ref.Size)
		} else if v.crc != v.ref.CRC32C {
			v.err = v.corrupt("checksum crc32c %08x, expected %08x", v.crc, v.ref.CRC32C)
		} else {
			v.err = io.EOF
		}
		return n, v.err
	case err != nil:
		v.err = fmt.Errorf("checkpoint: read %s of checkpoint %d in %s: %w", v.ref.Path, refCheckpoint(v.ref.Path), v.where, err)
		return n, v.err
	}
	return n, nil
}

// Close implements io.Closer.
func (v *verifyingReader) Close() error { return v.r.Close() }

// ReferencedFiles returns the paths of the files that the completed
// manifests ids of st reference, for Discard and Prune. It fails if any of
// them cannot be loaded: files could then not be told apart.
func ReferencedFiles(ctx context.Context, st Storage, ids []int64) (map[string]struct{}, error) {
	refs := map[string]struct{}{}
	for _, id := range ids {
		m, err := st.Load(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, f := range m.Files() {
			refs[f.Path] = struct{}{}
		}
	}
	return refs, nil
}

// VerifyFiles implements Storage.Verify on top of st.Open: it reads every
// file m references once and reports every missing or corrupt one
// (errors.Join), each wrapping ErrCorrupt.
func VerifyFiles(ctx context.Context, st Storage, m *Manifest) error {
	if m == nil {
		return errors.New("checkpoint: verify: nil manifest")
	}
	buf := make([]byte, 64<<10)
	var errs []error
	seen := map[string]struct{}{}
	for _, f := range m.Files() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, dup := seen[f.Path]; dup {
			continue
		}
		seen[f.Path] = struct{}{}
		r, err := st.Open(ctx, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, err = io.CopyBuffer(io.Discard, r, buf)
		r.Close()
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("checkpoint: verify checkpoint %d in %s: %w", m.ID, st.Location(), errors.Join(errs...))
	}
	return nil
}
