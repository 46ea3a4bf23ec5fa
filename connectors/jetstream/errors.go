package jetstream

import "errors"

// Errors of the source and the sink. They are wrapped with the stream,
// subject and sequence they concern; test with errors.Is.
var (
	// ErrConfig: a source or sink configuration is invalid (reported when
	// the job is built).
	ErrConfig = errors.New("jetstream: invalid configuration")
	// ErrConnect: the server cannot be reached or refused the connection
	// (for example wrong credentials).
	ErrConnect = errors.New("jetstream: cannot connect")
	// ErrStreamNotFound: the stream does not exist when the source opens.
	ErrStreamNotFound = errors.New("jetstream: stream not found")
	// ErrStreamDeleted: the stream was deleted (or deleted and created
	// again) while the source read it, or since the checkpoint the job
	// restores from.
	ErrStreamDeleted = errors.New("jetstream: stream deleted")
	// ErrNoSubjectMatch: a partition's subject filter cannot match any
	// subject of the stream.
	ErrNoSubjectMatch = errors.New("jetstream: subject filter matches no subject of the stream")
	// ErrStartPosition: the start position (a sequence beyond the end, or a
	// checkpointed position beyond the stream's last sequence) is invalid.
	ErrStartPosition = errors.New("jetstream: invalid start position")
	// ErrPurged: messages the source had still to read were removed from the
	// stream (purged, or expired by the stream's limits).
	ErrPurged = errors.New("jetstream: stream purged past the read position")
	// ErrDecode: a record could not be decoded (policy Fail).
	ErrDecode = errors.New("jetstream: cannot decode record")
	// ErrPublish: a message could not be published, or its ack did not come.
	ErrPublish = errors.New("jetstream: publish failed")
	// ErrUnavailable: JetStream could not be reached again within the
	// source's RecoveryTimeout after the connection or consumer was lost.
	ErrUnavailable = errors.New("jetstream: unavailable")
)
