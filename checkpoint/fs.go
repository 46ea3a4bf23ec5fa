package checkpoint

import (
	"io"
	"io/fs"
	"os"
)

// FS is the file system LocalStorage writes through. OSFS is the real disk;
// package checkpoint/faultfs wraps an FS to inject errors, torn writes and
// crashes in tests.
//
// Names are operating-system paths as LocalStorage builds them with
// path/filepath. Implementations must be safe for concurrent use; a File is
// used by one goroutine at a time.
type FS interface {
	// Create creates or truncates the file name for writing.
	Create(name string) (File, error)
	// Open opens the file name for reading.
	Open(name string) (io.ReadCloser, error)
	// Rename renames oldname to newname, replacing newname if it exists.
	Rename(oldname, newname string) error
	// Remove removes a file or an empty directory.
	Remove(name string) error
	// RemoveAll removes name and everything below it. A missing name is not
	// an error.
	RemoveAll(name string) error
	// MkdirAll creates dir and any missing parents.
	MkdirAll(dir string) error
	// ReadDir lists dir, sorted by name.
	ReadDir(dir string) ([]fs.DirEntry, error)
	// SyncDir makes the entries of dir (files created, renamed or removed in
	// it) durable.
	SyncDir(dir string) error
	// Stat describes name.
	Stat(name string) (fs.FileInfo, error)
}

// File is a file open for writing. Its data is durable once Sync returned.
type File interface {
	io.Writer
	Sync() error
	Close() error
}

// OSFS is the FS of the operating system.
type OSFS struct{}

var _ FS = OSFS{}

// Create implements FS.
func (OSFS) Create(name string) (File, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
}

// Open implements FS.
func (OSFS) Open(name string) (io.ReadCloser, error) { return os.Open(name) }

// Rename implements FS.
func (OSFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// Remove implements FS.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// RemoveAll implements FS.
func (OSFS) RemoveAll(name string) error { return os.RemoveAll(name) }

// MkdirAll implements FS.
func (OSFS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

// ReadDir implements FS.
func (OSFS) ReadDir(dir string) ([]fs.DirEntry, error) { return os.ReadDir(dir) }

// SyncDir implements FS.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

// Stat implements FS.
func (OSFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }
