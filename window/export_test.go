package window

// SetMaxCachedKeys sets the bound of the window operator's key cache (0:
// no cache) for operators opened afterwards, and returns a function that
// restores it.
func SetMaxCachedKeys(n int) (restore func()) {
	old := maxCachedKeys
	maxCachedKeys = n
	return func() { maxCachedKeys = old }
}
