// Package checkpointtest holds the conformance suite every
// checkpoint.Storage must pass: StorageConformance. Run it from a test of
// the implementation's package, with a function making an empty storage:
//
//	func TestConformance(t *testing.T) {
//		checkpointtest.StorageConformance(t, func(t *testing.T) checkpoint.Storage {
//			st, err := checkpoint.NewLocalStorage(t.TempDir())
//			require.NoError(t, err)
//			return st
//		})
//	}
//
// The suite uses only the Storage interface: corruption is simulated by
// references whose size or checksum is wrong. Corruption on the medium
// itself (a flipped byte, a truncated file, a damaged manifest) needs access
// to it and is tested by each implementation.
package checkpointtest
