package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// session is one subtask's connection, reopened after transient errors. It
// is used from the subtask's goroutine only.
type session struct {
	sink  string // for messages
	cfg   *pgx.ConnConfig
	retry RetryPolicy
	log   *slog.Logger
	conn  *pgx.Conn
	// staged holds the temporary stage tables created on conn.
	staged map[string]bool
	// retries counts the tries that followed a transient error, and
	// fallbacks the batches MERGE left to INSERT ... ON CONFLICT.
	retries, fallbacks int
	// hook, set by tests, runs at named steps of a write with its connection.
	hook func(ctx context.Context, step string, conn *pgx.Conn) error
}

// parseConnString parses a connection string; empty means DATABASE_URL or
// the PG* environment variables.
func parseConnString(s string) (*pgx.ConnConfig, error) {
	if s == "" {
		s = os.Getenv("DATABASE_URL")
	}
	cfg, err := pgx.ParseConfig(s)
	if err != nil {
		return nil, fmt.Errorf("%w: connection string: %v", ErrConfig, err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	return cfg, nil
}

// where names the server and database for messages: "host:port database d as user u".
func (s *session) where() string {
	return fmt.Sprintf("%s database %q as user %q", net.JoinHostPort(s.cfg.Host, fmt.Sprint(s.cfg.Port)), s.cfg.Database, s.cfg.User)
}

func (s *session) close() error {
	if s.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.conn.Close(ctx)
	s.conn, s.staged = nil, nil
	return err
}

func (s *session) runHook(ctx context.Context, step string, conn *pgx.Conn) error {
	if s.hook == nil {
		return nil
	}
	return s.hook(ctx, step, conn)
}

// run calls f with a live connection, (re)connecting as needed, and retries
// it after transient errors under the retry policy. f must be safe to repeat:
// a transaction that commits at most once (a marker guards it), or a write
// whose repetition is acceptable (at-least-once). Other errors are returned
// as they are.
func (s *session) run(ctx context.Context, what string, f func(ctx context.Context, conn *pgx.Conn) error) error {
	backoff := s.retry.InitialBackoff
	for attempt := 1; ; attempt++ {
		err := s.attempt(ctx, f)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("postgres: sink %q: %s: %w", s.sink, what, ctx.Err())
		}
		var ce *connectError
		isConnect := errors.As(err, &ce)
		if !isTransient(err, s.conn) || attempt >= s.retry.MaxAttempts {
			if isConnect {
				return fmt.Errorf("%w: sink %q: %s after %d attempt(s): %w", ErrConnect, s.sink, s.where(), attempt, ce.err)
			}
			return err
		}
		s.log.Warn("postgres sink: transient error, retrying", "sink", s.sink, "step", what, "attempt", attempt, "backoff", backoff, "err", err)
		if s.conn != nil {
			_ = s.close()
		}
		s.retries++
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("postgres: sink %q: %s: %w", s.sink, what, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, s.retry.MaxBackoff)
	}
}

// connectError marks a failure to connect, as opposed to one of f.
type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

func (s *session) attempt(ctx context.Context, f func(ctx context.Context, conn *pgx.Conn) error) error {
	if s.conn == nil || s.conn.IsClosed() {
		if s.conn != nil {
			_ = s.close()
		}
		conn, err := pgx.ConnectConfig(ctx, s.cfg)
		if err != nil {
			return &connectError{err}
		}
		s.conn, s.staged = conn, map[string]bool{}
	}
	return f(ctx, s.conn)
}

// isTransient tells whether err is worth another try on a new connection:
// the connection failed or was closed by the server, the server is starting
// or stopping, or the transaction lost a serialization race.
func isTransient(err error, conn *pgx.Conn) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", // admin_shutdown (pg_terminate_backend, server stopping)
			"57P02", // crash_shutdown
			"57P03", // cannot_connect_now (server starting)
			"40001", // serialization_failure
			"40P01", // deadlock_detected
			"53300", // too_many_connections
			"55P03": // lock_not_available
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08") // connection_exception
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ce *connectError
	if errors.As(err, &ce) {
		// A failed dial that is none of the above: the server did not answer
		// (a refusal from the server itself, such as a missing database or a
		// bad password, is a PgError).
		return true
	}
	// Any other failure that cost the connection (the server went away
	// mid-message).
	return conn != nil && conn.IsClosed()
}

// ddlLockKey serialises the DDL of concurrent subtasks: CREATE TABLE IF NOT
// EXISTS races with itself.
const ddlLockKey = 0x736c75696365 // "sluice"

func execDDL(ctx context.Context, conn *pgx.Conn, sql string) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(ddlLockKey)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sql)
		return err
	})
}

func markerTableSQL(t tableName) string {
	return "CREATE TABLE IF NOT EXISTS " + t.String() + ` (
    job text NOT NULL,
    sink text NOT NULL,
    subtask integer NOT NULL,
    checkpoint_id bigint NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, sink, subtask, checkpoint_id)
)`
}

// describeTable reads the columns of t; ok is false if t does not exist.
func describeTable(ctx context.Context, conn *pgx.Conn, t tableName) (cols map[string]columnInfo, order []string, ok bool, err error) {
	rows, err := conn.Query(ctx, `SELECT a.attname,
       CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       format_type(a.atttypid, a.atttypmod),
       a.attnotnull,
       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`, t.String())
	if err != nil {
		return nil, nil, false, err
	}
	cols = map[string]columnInfo{}
	for rows.Next() {
		var c columnInfo
		if err := rows.Scan(&c.name, &c.oid, &c.typmod, &c.typName, &c.notNull, &c.hasDefault); err != nil {
			rows.Close()
			return nil, nil, false, err
		}
		cols[c.name] = c
		order = append(order, c.name)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, false, err
	}
	return cols, order, len(order) > 0, nil
}

// hasUniqueIndex tells whether t has a unique index (or primary key) on
// exactly the columns keys, as ON CONFLICT (keys) needs.
func hasUniqueIndex(ctx context.Context, conn *pgx.Conn, t tableName, keys []string) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (
    SELECT 1 FROM pg_index i
    WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
      AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a
           WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
          = (SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) k))`, t.String(), keys).Scan(&ok)
	return ok, err
}

// statements are the SQL of writing rows with given columns to a table.
type statements struct {
	table  tableName
	cols   []string
	keys   []string // non-empty: upsert
	copy   string   // COPY into the table (append) or the stage (upsert)
	stage  string   // CREATE of the temporary stage table
	merge  string   // MERGE from the stage (Postgres 15 and later)
	insert string   // INSERT ... SELECT ... ON CONFLICT from the stage
	stageN string   // the stage's name
}

func newStatements(t tableName, cols, keys []string) *statements {
	st := &statements{table: t, cols: cols, keys: keys}
	colList := joinIdents(cols)
	if len(keys) == 0 {
		st.copy = fmt.Sprintf("COPY %s (%s) FROM STDIN BINARY", t, colList)
		return st
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%q\x00%q", t, cols, keys)
	st.stageN = fmt.Sprintf("sluice_stage_%016x", h.Sum64())
	st.stage = fmt.Sprintf("CREATE TEMPORARY TABLE IF NOT EXISTS %s ON COMMIT DELETE ROWS AS SELECT %s FROM %s WITH NO DATA", st.stageN, colList, t)
	st.copy = fmt.Sprintf("COPY %s (%s) FROM STDIN BINARY", st.stageN, colList)
	var set, mergeSet, on, values []string
	for _, c := range cols {
		q := quoteIdent(c)
		values = append(values, "s."+q)
		if contains(keys, c) {
			on = append(on, fmt.Sprintf("d.%s = s.%s", q, q))
		} else {
			set = append(set, fmt.Sprintf("%s = EXCLUDED.%s", q, q))
			mergeSet = append(mergeSet, fmt.Sprintf("%s = s.%s", q, q))
		}
	}
	action := "DO NOTHING"
	if len(set) > 0 {
		action = "DO UPDATE SET " + strings.Join(set, ", ")
	}
	st.insert = fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s ON CONFLICT (%s) %s", t, colList, colList, st.stageN, joinIdents(keys), action)
	st.merge = fmt.Sprintf("MERGE INTO %s AS d USING %s AS s ON %s", t, st.stageN, strings.Join(on, " AND "))
	if len(mergeSet) > 0 {
		st.merge += " WHEN MATCHED THEN UPDATE SET " + strings.Join(mergeSet, ", ")
	}
	st.merge += fmt.Sprintf(" WHEN NOT MATCHED THEN INSERT (%s) VALUES (%s)", colList, strings.Join(values, ", "))
	return st
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

var (
	copyHeader  = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	copyTrailer = []byte{0xff, 0xff}
)

// prepareStage creates the upsert stage table on conn if needed. It runs
// outside a transaction, so that a rolled back write does not drop it.
func (s *session) prepareStage(ctx context.Context, conn *pgx.Conn, st *statements) error {
	if len(st.keys) == 0 || s.staged[st.stageN] {
		return nil
	}
	if _, err := conn.Exec(ctx, st.stage); err != nil {
		return err
	}
	s.staged[st.stageN] = true
	return nil
}

// writeRows writes encoded tuples (n rows) with st on conn: COPY into the
// table, or COPY into the stage and merge. For upsert conn must be in a
// transaction (the stage is emptied at commit).
func (s *session) writeRows(ctx context.Context, conn *pgx.Conn, st *statements, data []byte) error {
	r := io.MultiReader(bytes.NewReader(copyHeader), bytes.NewReader(data), bytes.NewReader(copyTrailer))
	if _, err := conn.PgConn().CopyFrom(ctx, r, st.copy); err != nil {
		return err
	}
	if err := s.runHook(ctx, "copied", conn); err != nil {
		return err
	}
	if len(st.keys) == 0 {
		return nil
	}
	if !s.canMerge(conn) {
		_, err := conn.Exec(ctx, st.insert)
		return err
	}
	// MERGE skips the speculative insertion of INSERT ... ON CONFLICT: 15%
	// faster into an empty table, 30% to 40% when it updates. The join is
	// kept to index probes of the key, as ON CONFLICT does: the stage has no
	// statistics, and a merge join can read the whole key index for a batch
	// of keys at its end. A key inserted by a concurrent transaction makes
	// MERGE fail where ON CONFLICT would update: then the batch is written
	// again that way.
	if _, err := conn.Exec(ctx, "SET LOCAL enable_mergejoin = off; SET LOCAL enable_hashjoin = off; SAVEPOINT sluice_merge"); err != nil {
		return err
	}
	_, err := conn.Exec(ctx, st.merge)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.TableName == st.table.name {
		if _, err := conn.Exec(ctx, "ROLLBACK TO SAVEPOINT sluice_merge"); err != nil {
			return err
		}
		s.fallbacks++
		_, err = conn.Exec(ctx, st.insert)
	}
	return err
}

// canMerge tells whether the server has MERGE (Postgres 15 and later).
func (s *session) canMerge(conn *pgx.Conn) bool {
	v := conn.PgConn().ParameterStatus("server_version")
	major, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(strings.TrimSpace(major))
	return err == nil && n >= 15
}

var (
	whereColumn = regexp.MustCompile(`, column ([^:]+?)(?::|$)`)
	whereLine   = regexp.MustCompile(`, line (\d+)`)
)

// describeError turns an error of writing to table into one that names the
// sink, the table and, where Postgres says, the column and constraint.
func describeError(sink string, table tableName, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("postgres: sink %q, table %s: %w", sink, table.raw, err)
	}
	col := pgErr.ColumnName
	if m := whereColumn.FindStringSubmatch(pgErr.Where); col == "" && m != nil {
		col = m[1]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "sink %q, table %s", sink, table.raw)
	if col != "" {
		fmt.Fprintf(&b, ", column %s", col)
	}
	if pgErr.ConstraintName != "" {
		fmt.Fprintf(&b, ", constraint %s", pgErr.ConstraintName)
	}
	if m := whereLine.FindStringSubmatch(pgErr.Where); m != nil {
		fmt.Fprintf(&b, ", row %s of the batch", m[1])
	}
	switch {
	case pgErr.Code == "42P01":
		return fmt.Errorf("%w: %s: %w", ErrTableNotFound, b.String(), err)
	case pgErr.Code == "42P10":
		return fmt.Errorf("%w: %s: no unique index or primary key on the key columns: %w", ErrConfig, b.String(), err)
	case pgErr.Code == "42703", pgErr.Code == "42804":
		return fmt.Errorf("%w: %s: %w", ErrColumn, b.String(), err)
	case strings.HasPrefix(pgErr.Code, "22"), strings.HasPrefix(pgErr.Code, "23"):
		if pgErr.Detail != "" {
			return fmt.Errorf("%w: %s: %w (%s)", ErrInvalidValue, b.String(), err, pgErr.Detail)
		}
		return fmt.Errorf("%w: %s: %w", ErrInvalidValue, b.String(), err)
	}
	return fmt.Errorf("postgres: %s: %w", b.String(), err)
}
