// Package faultfs wraps a checkpoint.FS for tests: it counts operations,
// fails the N-th create, write, sync, rename or any other operation with a
// chosen error (syscall.ENOSPC for a full disk, syscall.EACCES for a
// permission problem), tears writes (half the bytes land, then the error),
// and simulates crashes.
//
// After a crash (a Fault with Crash set, or FS.Crash) every operation fails
// with ErrCrashed, as if the machine had stopped. FS.Recover then rewinds the
// wrapped file system to what a power loss would leave: data written since a
// file's last Sync is lost, files whose directory was not synced since they
// were created disappear, and renames not followed by a sync of the target
// directory are undone. Code that writes a file, syncs it, renames it into
// place and syncs the directory survives; code that skips a step is caught.
//
// The model follows pebble's vfs/errorfs and crash-clone file systems, kept
// small: it tracks files written through the wrapper, not directories, and
// removals are durable at once.
package faultfs
