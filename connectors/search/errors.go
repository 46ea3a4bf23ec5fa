package search

import "errors"

// Errors returned by the sinks and by Search, wrapped with the sink's name and
// the index (path or name) and, where known, the document id they concern.
// Test with errors.Is.
var (
	// ErrConfig reports an invalid BleveConfig or BulkConfig.
	ErrConfig = errors.New("search: invalid sink configuration")
	// ErrDocument reports a record that cannot be indexed: its encoding failed
	// (a NaN, a channel), it is not a JSON object, its id or index name is
	// invalid, or the server rejected it (a mapper_parsing_exception).
	ErrDocument = errors.New("search: record cannot be indexed")
	// ErrEpochTooLarge reports a checkpoint epoch whose encoded documents
	// exceed MaxEpochBytes: shorten the checkpoint interval or raise the limit.
	ErrEpochTooLarge = errors.New("search: epoch exceeds MaxEpochBytes")
	// ErrIndex reports a Bleve index that cannot be created, opened, written
	// (a full disk) or read.
	ErrIndex = errors.New("search: index failure")
	// ErrIndexLocked reports a Bleve index held by another process: Bleve
	// allows one process per index directory.
	ErrIndexLocked = errors.New("search: index is locked by another process")
	// ErrIndexNotFound reports a Bleve index directory that does not exist.
	ErrIndexNotFound = errors.New("search: index not found")
	// ErrUnavailable reports a search server that could not be reached, or
	// kept answering with retryable failures (429, 5xx), after every retry.
	ErrUnavailable = errors.New("search: server unavailable")
	// ErrRequest reports a request the server refused as a whole and that a
	// retry cannot fix: bad credentials (401, 403), a malformed request (400),
	// a missing endpoint (404), or a server certificate that does not verify.
	ErrRequest = errors.New("search: request refused")
)
