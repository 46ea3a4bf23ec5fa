package faultfs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/checkpoint/faultfs"
)

// A checkpoint storage on a disk that fills up during the second write into
// checkpoint 1's files.
func Example() {
	dir, err := os.MkdirTemp("", "faultfs-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	fsys := faultfs.New(checkpoint.OSFS{})
	fsys.Inject(faultfs.Fault{Op: faultfs.OpWrite, Path: "chk-1", N: 2, Err: syscall.ENOSPC})
	st, err := checkpoint.NewLocalStorage(dir, checkpoint.WithFS(fsys), checkpoint.WithBufferSize(4))
	if err != nil {
		panic(err)
	}
	w, err := st.Create(ctx, 1, "state")
	if err != nil {
		panic(err)
	}
	for _, chunk := range []string{"01234", "56789"} {
		if _, err = w.Write([]byte(chunk)); err != nil {
			break
		}
	}
	fmt.Println("disk full:", errors.Is(err, syscall.ENOSPC))
	fmt.Println(strings.ReplaceAll(err.Error(), dir, "<dir>"))
	fmt.Println("abort:", w.Abort())
	fmt.Println("writes attempted:", fsys.Count(faultfs.OpWrite)-1) // one was the storage's probe file
	// Output:
	// disk full: true
	// checkpoint: write chk-1/state of checkpoint 1 in <dir>: write <dir>/chk-1/state: no space left on device
	// abort: <nil>
	// writes attempted: 2
}

// A crash just before a file is renamed into place: after recovery the
// renamed name does not exist and the temporary file kept its synced bytes.
func ExampleFS_Recover() {
	dir, err := os.MkdirTemp("", "faultfs-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	fsys := faultfs.New(checkpoint.OSFS{})
	fsys.Inject(faultfs.Fault{Op: faultfs.OpRename, N: 1, Crash: faultfs.CrashBefore})
	tmp, final := filepath.Join(dir, "tmp"), filepath.Join(dir, "final")
	f, _ := fsys.Create(tmp)
	f.Write([]byte("synced"))
	f.Sync()
	f.Write([]byte(" and lost"))
	f.Close()
	fsys.SyncDir(dir)
	fmt.Println(fsys.Rename(tmp, final) != nil, fsys.Crashed())

	if err := fsys.Recover(); err != nil {
		panic(err)
	}
	b, _ := os.ReadFile(tmp)
	_, err = os.Stat(final)
	fmt.Printf("%q %v\n", b, errors.Is(err, os.ErrNotExist))
	// Output:
	// true true
	// "synced" true
}
