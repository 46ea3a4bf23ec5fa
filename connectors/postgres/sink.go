package postgres

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sluicedata/sluice/dataflow"
)

// Sink ends in with a sink writing records to a Postgres table as cfg says.
// An invalid cfg is reported on the job (Validate, Plan and Run return it).
func Sink[T any](in dataflow.Stream[T], name string, cfg Config[T], opts ...dataflow.Option) {
	newOp, err := newOperator(name, cfg)
	if err != nil {
		if job := in.Job(); job != nil {
			job.ReportError(name, err)
		}
		newOp = func() dataflow.Operator[T] { return nil }
	}
	dataflow.AddSink(in, name, newOp, opts...)
}

// newOperator checks cfg and returns the factory of the sink's subtasks.
func newOperator[T any](name string, cfg Config[T]) (func() dataflow.Operator[T], error) {
	cfg = cfg.withDefaults()
	m, err := cfg.plan()
	if err != nil {
		return nil, err
	}
	connCfg, err := parseConnString(cfg.ConnString)
	if err != nil {
		return nil, err
	}
	newWriter := func() *writer[T] {
		return &writer[T]{name: name, cfg: cfg, m: m, sess: &session{sink: name, cfg: connCfg.Copy(), retry: cfg.Retry, log: cfg.Logger}}
	}
	if cfg.Mode == ExactlyOnce {
		return func() dataflow.Operator[T] {
			c := &committer[T]{w: newWriter()}
			inner := dataflow.TwoPhaseCommitSink(func() dataflow.TwoPhaseCommitter[T, *epoch] { return c })()
			return &exactlyOnceOp[T]{Operator: inner, c: c}
		}, nil
	}
	return func() dataflow.Operator[T] { return &batchOp[T]{w: newWriter()} }, nil
}

// writer is what both kinds of sink operator share: the mapping, the
// connection and the encoder of one subtask.
type writer[T any] struct {
	name    string
	cfg     Config[T]
	m       *tableMapping
	sess    *session
	enc     *rowEncoder
	st      *statements
	job     string
	subtask int
}

func (w *writer[T]) open(ctx context.Context, oc *dataflow.OperatorContext) error {
	w.job, w.subtask = oc.Job, oc.Subtask
	if w.sess.cfg.RuntimeParams["application_name"] == "" {
		w.sess.cfg.RuntimeParams["application_name"] = fmt.Sprintf("sluice %s/%s#%d", oc.Job, w.name, oc.Subtask)
	}
	var keys []string
	if w.cfg.Mode != Append {
		keys = w.m.keyNames()
	}
	w.st = newStatements(w.m.table, w.m.colNames(), keys)
	markers, _ := parseTableName(w.cfg.MarkerTable) // checked by plan
	var info map[string]columnInfo
	var order []string
	err := w.sess.run(ctx, "open", func(ctx context.Context, conn *pgx.Conn) error {
		if w.cfg.CreateTable {
			if err := execDDL(ctx, conn, w.m.createTableSQL()); err != nil {
				return fmt.Errorf("postgres: sink %q: create table %s: %w", w.name, w.m.table.raw, err)
			}
		}
		if w.cfg.Mode == ExactlyOnce {
			if err := execDDL(ctx, conn, markerTableSQL(markers)); err != nil {
				return fmt.Errorf("postgres: sink %q: create marker table %s: %w", w.name, markers.raw, err)
			}
		}
		var ok bool
		var err error
		info, order, ok, err = describeTable(ctx, conn, w.m.table)
		if err != nil {
			return fmt.Errorf("postgres: sink %q: read columns of table %s: %w", w.name, w.m.table.raw, err)
		}
		if !ok {
			return fmt.Errorf("%w: sink %q: table %s does not exist in %s (set CreateTable to create it)", ErrTableNotFound, w.name, w.m.table.raw, w.sess.where())
		}
		if len(keys) > 0 {
			ok, err := hasUniqueIndex(ctx, conn, w.m.table, keys)
			if err != nil {
				return fmt.Errorf("postgres: sink %q: read indexes of table %s: %w", w.name, w.m.table.raw, err)
			}
			if !ok {
				return fmt.Errorf("%w: sink %q: table %s has no primary key or unique index on exactly the key columns (%s), which upsert needs", ErrConfig, w.name, w.m.table.raw, strings.Join(keys, ", "))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	cols := make([]columnInfo, len(w.m.cols))
	for i, c := range w.m.cols {
		ci, ok := info[c.name]
		if !ok {
			return fmt.Errorf("%w: sink %q: table %s has no column %q for field %s (it has %s)", ErrColumn, w.name, w.m.table.raw, c.name, c.field, strings.Join(order, ", "))
		}
		cols[i] = ci
	}
	for _, name := range order {
		ci := info[name]
		if ci.notNull && !ci.hasDefault && !slices.ContainsFunc(w.m.cols, func(c column) bool { return c.name == name }) {
			return fmt.Errorf("%w: sink %q: table %s column %s is NOT NULL without a default, and no field of %s maps to it", ErrColumn, w.name, w.m.table.raw, name, w.m.typ)
		}
	}
	enc, err := newRowEncoder(pgtype.NewMap(), w.m, cols)
	if err != nil {
		return fmt.Errorf("postgres: sink %q: %w", w.name, err)
	}
	w.enc = enc
	return nil
}

// add encodes v into b.
func (w *writer[T]) add(b *rowBuffer, v T) error {
	col, err := b.add(w.enc, reflect.ValueOf(&v).Elem())
	if err != nil {
		c, info := w.m.cols[col], w.enc.info[col]
		return fmt.Errorf("%w: sink %q, table %s, column %s (%s), field %s: %v", ErrInvalidValue, w.name, w.m.table.raw, c.name, info.typName, c.field, err)
	}
	return nil
}

// batchOp is the Append and Upsert sink: it buffers up to BatchSize rows and
// writes them in one statement (a transaction for upsert), and writes what it
// holds when a checkpoint barrier arrives, so that every record before the
// barrier is in the table when the checkpoint completes (at least once).
type batchOp[T any] struct {
	w     *writer[T]
	ctx   context.Context // the subtask's, from Open: Process has none
	buf   *rowBuffer
	first time.Time // when the oldest buffered row arrived
}

var _ dataflow.Snapshotter = (*batchOp[int])(nil)

func (o *batchOp[T]) Open(ctx context.Context, oc *dataflow.OperatorContext) error {
	o.ctx = ctx
	o.buf = newRowBuffer(o.w.cfg.Mode == Upsert)
	return o.w.open(ctx, oc)
}

func (o *batchOp[T]) Process(v T, _ dataflow.Timestamp) error {
	if err := o.w.add(o.buf, v); err != nil {
		return err
	}
	if o.buf.rows == 1 && o.w.cfg.FlushInterval > 0 {
		o.first = time.Now()
	}
	if o.buf.rows >= o.w.cfg.BatchSize {
		return o.flush(o.ctx)
	}
	return o.flushIfOld()
}

func (o *batchOp[T]) flushIfOld() error {
	if o.buf.rows > 0 && o.w.cfg.FlushInterval > 0 && time.Since(o.first) >= o.w.cfg.FlushInterval {
		return o.flush(o.ctx)
	}
	return nil
}

func (o *batchOp[T]) ProcessWatermark(dataflow.Timestamp) error { return o.flushIfOld() }

func (o *batchOp[T]) Finish(ctx context.Context) error { return o.flush(ctx) }

// SnapshotState writes the buffered rows: the sink keeps no state of its own.
func (o *batchOp[T]) SnapshotState(ctx context.Context, _ int64) ([]byte, error) {
	return nil, o.flush(ctx)
}

func (o *batchOp[T]) flush(ctx context.Context) error {
	if o.buf.rows == 0 {
		return nil
	}
	data, n := o.buf.compact()
	w := o.w
	err := w.sess.run(ctx, "write", func(ctx context.Context, conn *pgx.Conn) error {
		if len(w.st.keys) == 0 {
			// One COPY is one statement: all or nothing.
			return w.sess.writeRows(ctx, conn, w.st, data)
		}
		if err := w.sess.prepareStage(ctx, conn, w.st); err != nil {
			return err
		}
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			return w.sess.writeRows(ctx, conn, w.st, data)
		})
	})
	if err != nil {
		return fmt.Errorf("write %d rows: %w", n, describeError(w.name, w.m.table, err))
	}
	o.buf.reset()
	return nil
}

func (o *batchOp[T]) Close() error { return o.w.sess.close() }

// epoch is the transaction of an exactly-once sink: the rows of one
// checkpoint epoch, encoded, with everything Commit needs to write them from
// a checkpoint after a restart. Its exported fields are recorded in the
// checkpoint with msgpack.
type epoch struct {
	Job        string   `msgpack:"job"`
	Sink       string   `msgpack:"sink"`
	Subtask    int      `msgpack:"subtask"`
	Checkpoint int64    `msgpack:"checkpoint"`
	Table      string   `msgpack:"table"`
	Columns    []string `msgpack:"columns"`
	Keys       []string `msgpack:"keys,omitempty"` // upsert by these
	Rows       int      `msgpack:"rows"`
	Data       []byte   `msgpack:"data"` // binary COPY tuples

	buf *rowBuffer // while being written
}

// committer is the exactly-once sink's dataflow.TwoPhaseCommitter.
type committer[T any] struct {
	w *writer[T]
	// checkpoint is the id of the checkpoint being taken, set by
	// exactlyOnceOp before Prepare runs: it names the epoch's marker.
	checkpoint int64
	markers    tableName
	restoredID int64
	oc         *dataflow.OperatorContext
	stmts      map[string]*statements // of restored epochs, by table, columns and keys
}

var (
	_ dataflow.TwoPhaseCommitter[int, *epoch] = (*committer[int])(nil)
	_ dataflow.OrphanCleaner                  = (*committer[int])(nil)
)

func (c *committer[T]) Open(ctx context.Context, oc *dataflow.OperatorContext) error {
	c.oc = oc
	c.markers, _ = parseTableName(c.w.cfg.MarkerTable)
	c.restoredID = math.MinInt64
	if oc.Restored != nil {
		c.restoredID = oc.Restored.CheckpointID
	}
	return c.w.open(ctx, oc)
}

func (c *committer[T]) Begin(context.Context) (*epoch, error) {
	return &epoch{
		Job: c.w.job, Sink: c.w.name, Subtask: c.w.subtask,
		Table: c.w.m.table.raw, Columns: c.w.st.cols, Keys: c.w.st.keys,
		buf: newRowBuffer(len(c.w.st.keys) > 0),
	}, nil
}

func (c *committer[T]) Write(_ context.Context, e *epoch, v T, _ dataflow.Timestamp) error {
	return c.w.add(e.buf, v)
}

func (c *committer[T]) Prepare(_ context.Context, e *epoch) (*epoch, error) {
	e.Data, e.Rows = e.buf.compact()
	e.buf = nil
	e.Checkpoint = c.checkpoint
	return e, nil
}

// Commit writes the epoch and its marker in one transaction, unless the
// marker shows it was written before. Transient errors are retried on a new
// connection; the marker makes a retry after a commit whose outcome was lost
// do nothing.
func (c *committer[T]) Commit(ctx context.Context, e *epoch) error {
	if e.Rows == 0 {
		return nil // nothing to write, nothing to guard
	}
	st, err := c.statementsFor(e)
	if err != nil {
		return err
	}
	s := c.w.sess
	err = s.run(ctx, "commit", func(ctx context.Context, conn *pgx.Conn) error {
		if err := s.prepareStage(ctx, conn, st); err != nil {
			return err
		}
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, "INSERT INTO "+c.markers.String()+" (job, sink, subtask, checkpoint_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
				e.Job, e.Sink, e.Subtask, e.Checkpoint)
			if err != nil {
				return fmt.Errorf("marker table %s: %w", c.markers.raw, err)
			}
			if tag.RowsAffected() == 0 {
				return nil // committed before: this transaction changed nothing
			}
			if err := s.writeRows(ctx, conn, st, e.Data); err != nil {
				return err
			}
			return s.runHook(ctx, "before-commit", conn)
		})
	})
	if err != nil {
		return fmt.Errorf("commit %d rows of checkpoint %d (subtask %d): %w", e.Rows, e.Checkpoint, e.Subtask, describeError(c.w.name, st.table, err))
	}
	return nil
}

func (c *committer[T]) statementsFor(e *epoch) (*statements, error) {
	if e.Table == c.w.m.table.raw && slices.Equal(e.Columns, c.w.st.cols) && slices.Equal(e.Keys, c.w.st.keys) {
		return c.w.st, nil
	}
	// An epoch restored from a checkpoint of an earlier version of the job:
	// write it as it was recorded.
	k := fmt.Sprintf("%s\x00%q\x00%q", e.Table, e.Columns, e.Keys)
	if st := c.stmts[k]; st != nil {
		return st, nil
	}
	t, err := parseTableName(e.Table)
	if err != nil {
		return nil, fmt.Errorf("postgres: sink %q: restored epoch of checkpoint %d: %w", c.w.name, e.Checkpoint, err)
	}
	st := newStatements(t, e.Columns, e.Keys)
	if c.stmts == nil {
		c.stmts = map[string]*statements{}
	}
	c.stmts[k] = st
	return st, nil
}

func (c *committer[T]) Abort(_ context.Context, e *epoch) error {
	e.buf = nil
	return nil
}

// Cleanup forgets the markers of epochs after the checkpoint restored from
// (all of them on a fresh start) of the old subtasks this subtask owns: no
// completed checkpoint recorded those epochs, so this run writes their
// records again, in new epochs that may reuse their checkpoint ids.
func (c *committer[T]) Cleanup(ctx context.Context) error {
	err := c.w.sess.run(ctx, "clean up markers", func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "DELETE FROM "+c.markers.String()+" WHERE job = $1 AND sink = $2 AND subtask % $3 = $4 AND checkpoint_id > $5",
			c.oc.Job, c.w.name, c.oc.Parallelism, c.oc.Subtask, c.restoredID)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: sink %q: marker table %s: %w", c.w.name, c.markers.raw, err)
	}
	return nil
}

func (c *committer[T]) Close() error { return c.w.sess.close() }

// exactlyOnceOp is the operator of dataflow.TwoPhaseCommitSink, told the id
// of each checkpoint before its epoch is prepared.
type exactlyOnceOp[T any] struct {
	dataflow.Operator[T]
	c *committer[T]
}

var (
	_ dataflow.Snapshotter        = (*exactlyOnceOp[int])(nil)
	_ dataflow.CheckpointListener = (*exactlyOnceOp[int])(nil)
)

func (o *exactlyOnceOp[T]) SnapshotState(ctx context.Context, id int64) ([]byte, error) {
	o.c.checkpoint = id
	return o.Operator.(dataflow.Snapshotter).SnapshotState(ctx, id)
}

func (o *exactlyOnceOp[T]) NotifyCheckpointComplete(ctx context.Context, id int64) error {
	return o.Operator.(dataflow.CheckpointListener).NotifyCheckpointComplete(ctx, id)
}
