// Package testlock serializes test binaries that share an external service
// in a way that disturbs each other: `go test ./...` runs packages in
// parallel, and a test that restarts the local Postgres server would break a
// test of another package that uses it at that moment.
package testlock

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Hold takes the machine-wide lock called name, waiting for it, and returns
// the function that releases it. Processes holding the same name run one at
// a time; the lock goes with the process if it dies.
func Hold(name string) (release func(), err error) {
	path := filepath.Join(os.TempDir(), "sluice-test-"+name+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("testlock %s: %w", name, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("testlock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// Postgres is the lock of test binaries that use the local Postgres server:
// one of them restarts it.
const Postgres = "postgres"
