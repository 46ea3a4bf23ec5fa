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
	"testing"

	"go.uber.org/goleak"
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

// Main is a TestMain for test binaries that hold the lock called name while
// their tests run, then check for leaked goroutines: it holds the lock, runs
// m, releases the lock and exits with m's code (1 if goroutines leaked).
func Main(m *testing.M, name string) {
	release, err := Hold(name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	release()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
