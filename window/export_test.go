package window

// SetMaxCachedKeys sets the bound of the window operator's key cache (0:
// no cache) for operators opened afterwards, and returns a function that
// restores it.
func SetMaxCachedKeys(n int) (restore func()) {
	old := maxCachedKeys
	maxCachedKeys = n
	return func() { maxCachedKeys = old }
}

// SetRunBufferKeys sets the size of the runs' buffer (0: the backend's
// cache size) and returns a function restoring the old one.
func SetRunBufferKeys(n int) (restore func()) {
	old := runBufferKeys
	runBufferKeys = n
	return func() { runBufferKeys = old }
}

// SetHeapRuns sets whether the window operator keeps runs on the heap
// backend (as it does by default) and returns a function restoring the old
// setting.
func SetHeapRuns(on bool) (restore func()) {
	old := heapRuns
	heapRuns = on
	return func() { heapRuns = old }
}
