package state

// SetSpillBatch sets the size of a batch of WithWriteThrough values (see
// spillBatchBytes): the tests make it small.
func SetSpillBatch(bytes, keys int) { spillBatchBytes, spillBatchKeys = bytes, keys }
