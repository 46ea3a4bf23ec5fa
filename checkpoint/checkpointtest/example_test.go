package checkpointtest_test

import (
	"testing"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/checkpoint/checkpointtest"
)

// An implementation's test runs the suite with a function that makes an
// empty storage for each subtest. (Compiled, not run: it needs the
// implementation's *testing.T.)
func ExampleStorageConformance() {
	_ = func(t *testing.T) {
		checkpointtest.StorageConformance(t, func(t *testing.T) checkpoint.Storage {
			st, err := checkpoint.NewLocalStorage(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return st
		})
	}
}
