package postgres

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/sluicedata/sluice/connectors/retry"
)

// Errors returned by the sink, wrapped with the sink, the table and, where
// known, the column they concern. Test with errors.Is.
var (
	// ErrConfig reports an invalid Config or a struct type the sink cannot map.
	ErrConfig = errors.New("postgres: invalid sink configuration")
	// ErrConnect reports a database that could not be reached (after retries).
	ErrConnect = errors.New("postgres: cannot connect")
	// ErrTableNotFound reports a missing table while CreateTable is off.
	ErrTableNotFound = errors.New("postgres: table not found")
	// ErrColumn reports a struct field with no column of that name in the
	// table, or a column whose type cannot take the field's Go type.
	ErrColumn = errors.New("postgres: field does not match its column")
	// ErrInvalidValue reports a value its column rejects: out of range, too
	// long, not null, a constraint violation.
	ErrInvalidValue = errors.New("postgres: value does not fit its column")
)

// Mode is how a sink writes rows.
type Mode uint8

const (
	// Append adds every record as a new row with COPY. At least once: after a
	// failure, rows written since the last checkpoint are written again.
	Append Mode = iota
	// Upsert inserts or updates rows by their key columns (INSERT ... ON
	// CONFLICT (key) DO UPDATE), idempotent by key: replayed records overwrite
	// their rows with the same values, so keyed results end up exactly once.
	// The table needs a primary key or unique index on the key columns.
	Upsert
	// ExactlyOnce buffers the records of each checkpoint epoch and writes them
	// when the checkpoint completes, in one transaction with a marker row that
	// makes the write happen once even when it is replayed. Rows are appended,
	// or upserted when the struct has key columns.
	ExactlyOnce
)

func (m Mode) String() string {
	switch m {
	case Append:
		return "append"
	case Upsert:
		return "upsert"
	case ExactlyOnce:
		return "exactly-once"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// DefaultMarkerTable records the epochs exactly-once sinks committed.
const DefaultMarkerTable = "sluice_sink_commits"

// Config configures a sink writing records of type T, a struct, to one table.
//
// Fields map to columns by name: the `db` tag names the column (`db:"qty"`),
// `db:"-"` skips the field, and `db:"id,key"` (or `db:",key"`) marks a key
// column for Upsert. Without a tag a field maps to its name in snake_case
// (UserID to user_id). Unexported fields are skipped and the fields of
// embedded structs are promoted. Table columns that no field names take their
// default.
type Config[T any] struct {
	// ConnString is a libpq connection string or URL. Empty means
	// DATABASE_URL, or else the standard PG* environment variables.
	ConnString string
	// Table is the table to write, "name" or "schema.name". Each part is used
	// as written (quoted), so "Orders" and "orders" are two tables.
	Table string
	// Mode is Append (default), Upsert or ExactlyOnce.
	Mode Mode
	// Key names the key columns, in addition to fields tagged `db:",key"`.
	// Upsert needs at least one.
	Key []string
	// CreateTable creates the table if it does not exist, with columns typed
	// after the fields (see ColumnType) and a primary key on the key columns.
	CreateTable bool
	// BatchSize is the number of rows Append and Upsert buffer before writing
	// them in one statement. Default 10000.
	BatchSize int
	// FlushInterval bounds how long Append and Upsert keep buffered rows while
	// records or watermarks keep arriving (it is checked on each of them; an
	// idle input is flushed at the next checkpoint or at the end). Default 1s;
	// negative means only by BatchSize, at checkpoints and at the end.
	FlushInterval time.Duration
	// MarkerTable records the epochs ExactlyOnce committed; it is created if
	// missing. Default DefaultMarkerTable, "name" or "schema.name".
	MarkerTable string
	// Retry is how writes and connections are retried after transient errors.
	Retry RetryPolicy
	// Logger receives a warning for each retried error. nil means slog.Default().
	Logger *slog.Logger
}

// RetryPolicy retries an operation after a transient error (a dropped
// connection, a server restarting or refusing connections for now, a
// serialization failure or deadlock) with exponential backoff.
type RetryPolicy = retry.Policy

// DefaultRetryPolicy returns retry.Default: 10 attempts with backoff from
// 100ms doubling up to 5s, long enough for a server restart.
func DefaultRetryPolicy() RetryPolicy { return retry.Default() }

func (c Config[T]) withDefaults() Config[T] {
	if c.BatchSize == 0 {
		c.BatchSize = 10000
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = time.Second
	}
	if c.MarkerTable == "" {
		c.MarkerTable = DefaultMarkerTable
	}
	c.Retry = c.Retry.WithDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate checks the settings and that T maps to columns.
func (c Config[T]) Validate() error {
	_, err := c.withDefaults().plan()
	return err
}

// plan checks the (defaulted) settings and maps T.
func (c Config[T]) plan() (*tableMapping, error) {
	if c.Mode > ExactlyOnce {
		return nil, fmt.Errorf("%w: unknown mode %d", ErrConfig, c.Mode)
	}
	if c.BatchSize < 1 {
		return nil, fmt.Errorf("%w: batch size %d must be at least 1", ErrConfig, c.BatchSize)
	}
	if c.Retry.MaxAttempts < 1 || c.Retry.InitialBackoff < 0 || c.Retry.MaxBackoff < 0 {
		return nil, fmt.Errorf("%w: retry policy %+v: attempts must be at least 1 and backoffs not negative", ErrConfig, c.Retry)
	}
	table, err := parseTableName(c.Table)
	if err != nil {
		return nil, fmt.Errorf("%w: table: %v", ErrConfig, err)
	}
	if _, err := parseTableName(c.MarkerTable); err != nil {
		return nil, fmt.Errorf("%w: marker table: %v", ErrConfig, err)
	}
	m, err := mapStruct[T](table, c.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: table %s: %v", ErrConfig, table.raw, err)
	}
	if c.Mode == Upsert && len(m.keys) == 0 {
		return nil, fmt.Errorf("%w: table %s: upsert needs key columns (Config.Key or a `db:\"name,key\"` tag)", ErrConfig, table.raw)
	}
	return m, nil
}

// tableName is a possibly schema-qualified table name.
type tableName struct{ schema, name, raw string }

func parseTableName(s string) (tableName, error) {
	if s == "" {
		return tableName{}, errors.New("no table name")
	}
	parts := strings.Split(s, ".")
	switch {
	case len(parts) == 1:
		return tableName{name: s, raw: s}, nil
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return tableName{schema: parts[0], name: parts[1], raw: s}, nil
	}
	return tableName{}, fmt.Errorf("%q is not \"name\" or \"schema.name\"", s)
}

// String is the quoted SQL form.
func (t tableName) String() string {
	if t.schema == "" {
		return quoteIdent(t.name)
	}
	return quoteIdent(t.schema) + "." + quoteIdent(t.name)
}

func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
