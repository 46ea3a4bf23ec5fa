package file

// PartFile is the file a part is written to, for the crash tests of package
// file_test.
type PartFile = partFile

// SetCreateFile makes the sink create its part files with create, which gets
// the default way of creating them, until the returned restore is called.
// Tests that use it must not run in parallel with other sink tests.
func SetCreateFile(create func(name string, real func(string) (PartFile, error)) (PartFile, error)) (restore func()) {
	real := createFile
	createFile = func(name string) (partFile, error) { return create(name, real) }
	return func() { createFile = real }
}
