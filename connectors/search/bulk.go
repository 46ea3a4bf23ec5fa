package search

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluicedata/sluice/dataflow"
)

// Defaults of BulkConfig.
const (
	// DefaultMaxBatchBytes bounds the body of one bulk request: 5 MiB, within
	// the usual advice of 5-15 MB per bulk request.
	DefaultMaxBatchBytes = 5 << 20
	// DefaultTimeout bounds one HTTP request.
	DefaultTimeout = 30 * time.Second
)

// BulkConfig configures a sink writing records of type T to OpenSearch or
// Elasticsearch with the Bulk API.
type BulkConfig[T any] struct {
	// URLs are the base URLs of the cluster's nodes ("https://host:9200", or
	// with a path prefix behind a proxy). Requests go to one node and move to
	// the next on a connection error or a retryable status.
	URLs []string
	// Index is the index (or alias) every document goes to.
	Index string
	// IndexFunc, instead of Index, returns the index of a record (a daily
	// index, say). It is called for every record, so it should be cheap.
	IndexFunc func(T) string
	// ID returns a record's document id, the bulk action's _id: deterministic,
	// so that a replayed record overwrites its document instead of adding
	// another. Non-empty valid UTF-8 of at most 512 bytes. nil means a hash
	// (SHA-256, 128 bits in hex) of the encoded record: identical records
	// then become one document.
	ID func(T) string
	// Version returns a record's external version (a sequence number, an
	// event time in milliseconds): a document is replaced only by a higher
	// version. nil means the epoch's version (see the package documentation).
	// Versions must be between 1 and 2^63-2.
	Version func(T) int64
	// Encode returns a record's document source, a JSON object. nil means
	// encoding/json.
	Encode func(T) ([]byte, error)

	// Username and Password, if Username is set, authenticate with HTTP
	// basic authentication.
	Username, Password string
	// APIKey, if set, is sent as "Authorization: ApiKey <APIKey>"
	// (Elasticsearch's encoded API key).
	APIKey string
	// Header holds extra headers sent with every request.
	Header http.Header
	// TLS configures HTTPS (root CAs, client certificates); nil means Go's
	// defaults. Ignored when HTTPClient is set.
	TLS *tls.Config
	// HTTPClient, if set, sends the requests (a client with a signing
	// transport for a managed service, say). Its Timeout should be zero or
	// longer than Timeout.
	HTTPClient *http.Client
	// Timeout bounds one request, response included. Default DefaultTimeout.
	Timeout time.Duration
	// Refresh is the bulk request's refresh parameter: "" (the server's
	// refresh interval decides), "true" or "wait_for".
	Refresh string

	// MaxBatchBytes bounds the body of one bulk request; an epoch larger than
	// that is sent in several. A single document larger than it is sent alone.
	// Default DefaultMaxBatchBytes.
	MaxBatchBytes int
	// MaxEpochBytes bounds the encoded documents a subtask holds for one
	// checkpoint epoch; more fails the job with ErrEpochTooLarge. Default
	// DefaultMaxEpochBytes; negative means no limit.
	MaxEpochBytes int
	// Retry is how requests are retried after connection errors and 429 or
	// 5xx answers, and documents after 429 or 5xx items.
	Retry RetryPolicy
	// OnRejected is called at commit for each document the server rejected
	// for good (a 4xx item other than a version conflict, such as a
	// mapper_parsing_exception). Returning nil drops the document (log it,
	// send it to a dead-letter store); returning an error fails the commit.
	// nil fails the commit with ErrDocument, which fails the job.
	OnRejected func(ctx context.Context, r Rejection) error
	// Logger receives a warning for each retry. nil means slog.Default().
	Logger *slog.Logger
}

// Rejection is a document the server rejected.
type Rejection struct {
	// Index and ID name the document.
	Index, ID string
	// Version is the external version it was sent with.
	Version int64
	// Status is the item's HTTP status; Type and Reason the error's
	// (mapper_parsing_exception, "failed to parse field [n] ...").
	Status       int
	Type, Reason string
	// Source is the document.
	Source []byte
}

func (r Rejection) String() string {
	return fmt.Sprintf("index %q, _id %q: rejected with %d %s: %s", r.Index, r.ID, r.Status, r.Type, r.Reason)
}

func (c BulkConfig[T]) withDefaults() BulkConfig[T] {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.MaxEpochBytes == 0 {
		c.MaxEpochBytes = DefaultMaxEpochBytes
	} else if c.MaxEpochBytes < 0 {
		c.MaxEpochBytes = math.MaxInt
	}
	c.Retry = c.Retry.WithDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate checks the settings.
func (c BulkConfig[T]) Validate() error {
	if _, err := c.withDefaults().parse(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// parse checks the (defaulted) settings and returns the parsed URLs.
func (c BulkConfig[T]) parse() ([]*url.URL, error) {
	if len(c.URLs) == 0 {
		return nil, errors.New("no URLs")
	}
	urls := make([]*url.URL, len(c.URLs))
	for i, s := range c.URLs {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("URL %q: %w", s, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("URL %q: want http://host:port or https://host:port", s)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("URL %q: a base URL has no query or fragment", s)
		}
		urls[i] = u
	}
	switch {
	case c.Index == "" && c.IndexFunc == nil:
		return nil, errors.New("set Index or IndexFunc")
	case c.Index != "" && c.IndexFunc != nil:
		return nil, errors.New("set Index or IndexFunc, not both")
	case c.Index != "":
		if err := checkIndexName(c.Index); err != nil {
			return nil, err
		}
	}
	if c.APIKey != "" && c.Username != "" {
		return nil, errors.New("set Username and Password or APIKey, not both")
	}
	if c.Password != "" && c.Username == "" {
		return nil, errors.New("Password without Username")
	}
	switch c.Refresh {
	case "", "true", "false", "wait_for":
	default:
		return nil, fmt.Errorf("Refresh %q: want \"\", \"true\", \"false\" or \"wait_for\"", c.Refresh)
	}
	if c.Timeout < 0 {
		return nil, fmt.Errorf("Timeout %v is negative", c.Timeout)
	}
	if c.MaxBatchBytes < 1 {
		return nil, fmt.Errorf("MaxBatchBytes %d must be positive", c.MaxBatchBytes)
	}
	if err := c.Retry.Validate(); err != nil {
		return nil, err
	}
	return urls, nil
}

// checkIndexName applies OpenSearch's and Elasticsearch's rules for index
// names, so that a bad name fails before anything is sent.
func checkIndexName(name string) error {
	switch {
	case name == "":
		return errors.New("empty index name")
	case len(name) > 255:
		return fmt.Errorf("index name %.40q... is longer than 255 bytes", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("index name %q is not valid UTF-8", name)
	case name == "." || name == "..":
		return fmt.Errorf("index name %q is not allowed", name)
	case strings.ContainsAny(name[:1], "-_+"):
		return fmt.Errorf("index name %q starts with %q", name, name[:1])
	case strings.ToLower(name) != name:
		return fmt.Errorf("index name %q is not lowercase", name)
	}
	if i := strings.IndexAny(name, `\/*?"<>| ,#:`); i >= 0 {
		return fmt.Errorf("index name %q contains %q", name, name[i:i+1])
	}
	return nil
}

// BulkSink ends in with an exactly-once sink named name writing records to
// OpenSearch or Elasticsearch with the Bulk API (see the package
// documentation). A bad configuration is reported by the job's Validate,
// Plan and Run.
func BulkSink[T any](in dataflow.Stream[T], name string, cfg BulkConfig[T], opts ...dataflow.Option) {
	newOp, err := NewBulkSink(name, cfg)
	if err != nil {
		if job := in.Job(); job != nil {
			job.ReportError(name, err)
		}
		newOp = func() dataflow.Operator[T] { return nil } // never built: the job is invalid
	}
	dataflow.AddSink(in, name, newOp, opts...)
}

// NewBulkSink checks cfg and returns the factory of the sink's operator, one
// per subtask, for dataflow.AddSink. BulkSink is the usual way to add the
// sink; NewBulkSink serves custom wiring and tests that drive the operator by
// hand. The operator is a dataflow.TwoPhaseCommitSink: it implements
// dataflow.Snapshotter and dataflow.CheckpointListener.
func NewBulkSink[T any](name string, cfg BulkConfig[T]) (func() dataflow.Operator[T], error) {
	cfg = cfg.withDefaults()
	urls, err := cfg.parse()
	if err != nil {
		return nil, fmt.Errorf("%w: bulk sink %q: %w", ErrConfig, name, err)
	}
	return func() dataflow.Operator[T] {
		c := &bulkCommitter[T]{name: name, cfg: cfg, enc: newEncoder(cfg.Encode, cfg.ID)}
		c.client = newBulkClient(name, urls, bulkClientConfig{
			username: cfg.Username, password: cfg.Password, apiKey: cfg.APIKey, header: cfg.Header,
			tls: cfg.TLS, httpClient: cfg.HTTPClient, timeout: cfg.Timeout, refresh: cfg.Refresh,
			maxBatchBytes: cfg.MaxBatchBytes, retry: cfg.Retry, onRejected: cfg.OnRejected, log: cfg.Logger,
		})
		op := dataflow.TwoPhaseCommitSink(func() dataflow.TwoPhaseCommitter[T, *bulkEpoch] { return c })()
		return &checkpointOp[T]{Operator: op, setCheckpoint: func(id int64) { c.checkpoint = id }}
	}, nil
}

// bulkEpoch is a transaction of the bulk sink: the documents of one
// checkpoint epoch of one subtask and the version they are written with.
// Its exported fields are what checkpoints record.
type bulkEpoch struct {
	Sink       string `msgpack:"sink"`
	Subtask    int    `msgpack:"subtask"`
	Checkpoint int64  `msgpack:"checkpoint"`
	// Version is the external version of documents without a record
	// version, fixed at Prepare.
	Version int64 `msgpack:"version"`
	Docs    []Doc `msgpack:"docs"`

	buf *epochDocs // while being written
}

// bulkCommitter is the bulk sink's TwoPhaseCommitter, used from its
// subtask's goroutine only.
type bulkCommitter[T any] struct {
	name   string
	cfg    BulkConfig[T]
	enc    encoder[T]
	client *bulkClient

	oc          *dataflow.OperatorContext
	checkpoint  int64 // set before Prepare by checkpointOp
	lastDocs    int   // documents in the last epoch prepared
	lastVersion int64
	lastIndex   string // the last index name IndexFunc returned that passed the checks
	now         func() time.Time
}

var _ dataflow.TwoPhaseCommitter[int, *bulkEpoch] = (*bulkCommitter[int])(nil)

func (c *bulkCommitter[T]) errorf(sentinel error, index, format string, args ...any) error {
	return fmt.Errorf("%w: bulk sink %q, index %q: "+format, append([]any{sentinel, c.name, index}, args...)...)
}

// Open checks that a node answers, so that a wrong URL or bad credentials
// fail the job at start rather than at its first checkpoint.
func (c *bulkCommitter[T]) Open(ctx context.Context, oc *dataflow.OperatorContext) error {
	c.oc = oc
	if c.now == nil {
		c.now = time.Now
	}
	return c.client.ping(ctx, c.indexHint())
}

// indexHint names the index in errors that concern no document.
func (c *bulkCommitter[T]) indexHint() string {
	if c.cfg.Index != "" {
		return c.cfg.Index
	}
	return "(IndexFunc)"
}

func (c *bulkCommitter[T]) Begin(context.Context) (*bulkEpoch, error) {
	return &bulkEpoch{Sink: c.name, Subtask: c.oc.Subtask, buf: newEpochDocs(c.lastDocs)}, nil
}

func (c *bulkCommitter[T]) Write(_ context.Context, e *bulkEpoch, v T, _ dataflow.Timestamp) error {
	index := c.cfg.Index
	if c.cfg.IndexFunc != nil {
		index = c.cfg.IndexFunc(v)
		if index != c.lastIndex {
			if err := checkIndexName(index); err != nil {
				return c.errorf(ErrDocument, index, "IndexFunc: %v", err)
			}
			c.lastIndex = index
		}
	}
	id, src, err := c.enc.doc(v)
	if err != nil {
		return c.errorf(ErrDocument, index, "%w", err)
	}
	var version int64
	if c.cfg.Version != nil {
		version = c.cfg.Version(v)
		if version < 1 || version > math.MaxInt64-1 {
			return c.errorf(ErrDocument, index, "_id %q: Version returned %d, outside 1 to 2^63-2", id, version)
		}
	}
	e.buf.add(Doc{Index: index, ID: id, Version: version, Source: src}, c.cfg.Version != nil)
	if e.buf.bytes > c.cfg.MaxEpochBytes {
		return c.errorf(ErrEpochTooLarge, index, "subtask %d holds %d documents in %d bytes since the last checkpoint, more than %d: shorten the checkpoint interval or raise MaxEpochBytes",
			c.oc.Subtask, len(e.buf.docs), e.buf.bytes, c.cfg.MaxEpochBytes)
	}
	return nil
}

// Prepare hands the epoch's documents to the checkpoint and fixes their
// version: microseconds since the Unix epoch, above the subtask's previous
// epoch's. Nothing is sent before the checkpoint completes.
func (c *bulkCommitter[T]) Prepare(_ context.Context, e *bulkEpoch) (*bulkEpoch, error) {
	e.Docs, e.buf = e.buf.docs, nil
	c.lastDocs = len(e.Docs)
	e.Checkpoint = c.checkpoint
	e.Version = max(c.now().UnixMicro(), c.lastVersion+1)
	c.lastVersion = e.Version
	return e, nil
}

// Commit sends the epoch's documents. Sending it again is harmless: each
// document either replaces an older version of itself or is refused as a
// version conflict, which means the index already holds it or a newer one.
func (c *bulkCommitter[T]) Commit(ctx context.Context, e *bulkEpoch) error {
	// Epochs prepared after this one get higher versions, even if this
	// one was prepared by another process whose clock ran ahead.
	c.lastVersion = max(c.lastVersion, e.Version)
	if len(e.Docs) == 0 {
		return nil
	}
	if err := c.client.commit(ctx, e.Docs, e.Version); err != nil {
		return fmt.Errorf("commit %d documents of checkpoint %d (subtask %d): %w", len(e.Docs), e.Checkpoint, e.Subtask, err)
	}
	return nil
}

func (c *bulkCommitter[T]) Abort(_ context.Context, e *bulkEpoch) error {
	e.buf, e.Docs = nil, nil
	return nil
}

func (c *bulkCommitter[T]) Close() error {
	c.client.close()
	return nil
}
