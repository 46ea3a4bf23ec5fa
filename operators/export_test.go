package operators

// SetMaxCachedKeys sets the bound of the keyed Reduce and Aggregate key
// cache (0: no cache) for operators opened afterwards, and returns a
// function that restores it.
func SetMaxCachedKeys(n int) (restore func()) {
	old := maxCachedKeys
	maxCachedKeys = n
	return func() { maxCachedKeys = old }
}
