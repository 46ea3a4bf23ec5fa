package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
)

func TestAppendJobWritesEveryRow(t *testing.T) {
	dsn, conn := testDB(t)
	events := eventsOf(0, 10_000)
	job := dataflow.NewJob("append")
	src := memory.FromSlice(job, "src", events, dataflow.Parallelism(2))
	Sink(src, "pg", Config[event]{ConnString: dsn, Table: "public.events", CreateTable: true, BatchSize: 999}, dataflow.Parallelism(2))
	require.NoError(t, job.Run(context.Background()))

	require.Equal(t, int64(10_000), queryInt(t, conn, "SELECT count(DISTINCT id) FROM events"))
	require.Equal(t, int64(10_000), queryInt(t, conn, "SELECT count(*) FROM events"))
	rows, err := conn.Query(context.Background(), "SELECT id, name, qty, at FROM events ORDER BY id")
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[event])
	require.NoError(t, err)
	for i := range got {
		got[i].At = got[i].At.UTC()
	}
	require.Equal(t, events, got)
}

func TestAppendFlushesAtCheckpointBarrier(t *testing.T) {
	dsn, conn := testDB(t)
	exec(t, conn, eventsTable)
	op := openOp(t, "pg", Config[event]{ConnString: dsn, Table: "events", BatchSize: 1 << 20, FlushInterval: -1}, subtask(0, 1, nil))
	process(t, op, eventsOf(0, 10)...)
	require.Zero(t, queryInt(t, conn, "SELECT count(*) FROM events"), "rows wait for the batch to fill")
	state := snapshot(t, op, 1)
	require.Nil(t, state)
	require.Equal(t, int64(10), queryInt(t, conn, "SELECT count(*) FROM events"), "the barrier flushes: at least once")
	process(t, op, eventsOf(10, 5)...)
	require.NoError(t, op.Finish(context.Background()))
	require.Equal(t, int64(15), queryInt(t, conn, "SELECT count(*) FROM events"))
}

func TestUpsertJobKeepsLastValuePerKey(t *testing.T) {
	dsn, conn := testDB(t)
	var in []total
	want := map[string]total{}
	for i := range 5000 {
		v := total{Key: fmt.Sprintf("k%d", i%700), Count: int64(i), Sum: float64(i) / 2}
		in = append(in, v)
		want[v.Key] = v
	}
	job := dataflow.NewJob("upsert")
	src := memory.FromSlice(job, "src", in)
	Sink(src, "pg", Config[total]{ConnString: dsn, Table: "totals", Mode: Upsert, CreateTable: true, BatchSize: 256})
	require.NoError(t, job.Run(context.Background()))
	// Run again: a replay overwrites with the same values.
	job = dataflow.NewJob("upsert")
	Sink(memory.FromSlice(job, "src", in), "pg", Config[total]{ConnString: dsn, Table: "totals", Mode: Upsert, BatchSize: 1000})
	require.NoError(t, job.Run(context.Background()))

	rows, err := conn.Query(context.Background(), "SELECT k, count, sum FROM totals")
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[total])
	require.NoError(t, err)
	require.Len(t, got, len(want))
	for _, g := range got {
		require.Equal(t, want[g.Key], g)
	}
}

func TestUpsertUpdatesOnlyNonKeyColumnsAndAllKeyTableDoesNothing(t *testing.T) {
	dsn, conn := testDB(t)
	type pair struct {
		A int64 `db:"a,key"`
		B int64 `db:"b,key"`
	}
	op := openOp(t, "pg", Config[pair]{ConnString: dsn, Table: "pairs", Mode: Upsert, CreateTable: true}, subtask(0, 1, nil))
	process(t, op, pair{1, 2}, pair{1, 2}, pair{2, 1})
	require.NoError(t, op.Finish(context.Background()))
	process(t, op, pair{1, 2})
	require.NoError(t, op.Finish(context.Background()))
	require.Equal(t, int64(2), queryInt(t, conn, "SELECT count(*) FROM pairs"))
}

func TestExactlyOnceCommitsWholeEpochsAtCheckpointCompletion(t *testing.T) {
	dsn, conn := testDB(t)
	exec(t, conn, eventsTable)
	cfg := Config[event]{ConnString: dsn, Table: "events", Mode: ExactlyOnce}
	op := openOp(t, "pg", cfg, subtask(0, 1, nil))

	process(t, op, eventsOf(0, 100)...)
	snapshot(t, op, 1)
	process(t, op, eventsOf(100, 50)...)
	require.Zero(t, queryInt(t, conn, "SELECT count(*) FROM events"), "nothing is visible before the checkpoint completes")
	notify(t, op, 1)
	require.Equal(t, int64(100), queryInt(t, conn, "SELECT count(*) FROM events"))
	snapshot(t, op, 2)
	snapshot(t, op, 3) // an empty epoch
	process(t, op, eventsOf(150, 7)...)
	snapshot(t, op, 4)
	require.Equal(t, int64(100), queryInt(t, conn, "SELECT count(*) FROM events"))
	notify(t, op, 4) // merged notices commit everything up to 4
	require.Equal(t, int64(157), queryInt(t, conn, "SELECT count(*) FROM events"))
	notify(t, op, 4) // a repeated notice does nothing more
	notify(t, op, 2)
	require.Equal(t, int64(157), queryInt(t, conn, "SELECT count(DISTINCT id) FROM events"))
	// Markers of epochs that wrote rows.
	rows, err := conn.Query(context.Background(), "SELECT checkpoint_id FROM sluice_sink_commits WHERE job = 'job' AND sink = 'pg' AND subtask = 0 ORDER BY 1")
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2, 4}, ids)
}

func TestExactlyOnceUpsertsWithKeyColumns(t *testing.T) {
	dsn, conn := testDB(t)
	cfg := Config[total]{ConnString: dsn, Table: "totals", Mode: ExactlyOnce, CreateTable: true}
	op := openOp(t, "pg", cfg, subtask(0, 1, nil))
	process(t, op, total{"a", 1, 1}, total{"b", 1, 2}, total{"a", 2, 3})
	snapshot(t, op, 1)
	process(t, op, total{"b", 2, 5}, total{"c", 1, 1})
	snapshot(t, op, 2)
	notify(t, op, 2)
	rows, err := conn.Query(context.Background(), "SELECT k, count, sum FROM totals ORDER BY k")
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[total])
	require.NoError(t, err)
	require.Equal(t, []total{{"a", 2, 3}, {"b", 2, 5}, {"c", 1, 1}}, got)
}

func TestExactlyOnceCrashBeforeCommitCommitsOnRestoreOnce(t *testing.T) {
	dsn, conn := testDB(t)
	exec(t, conn, eventsTable)
	cfg := Config[event]{ConnString: dsn, Table: "events", Mode: ExactlyOnce}

	op := openOp(t, "pg", cfg, subtask(0, 1, nil))
	process(t, op, eventsOf(0, 300)...)
	state := snapshot(t, op, 7)
	process(t, op, eventsOf(300, 20)...) // after the checkpoint: lost with the crash
	require.NoError(t, op.Close())       // the crash: checkpoint 7 completed, but its notice never came
	require.Zero(t, queryInt(t, conn, "SELECT count(*) FROM events"))

	restored := &dataflow.RestoredState{CheckpointID: 7, Subtasks: [][]byte{state}}
	op2 := openOp(t, "pg", cfg, subtask(0, 1, restored))
	require.Equal(t, int64(300), queryInt(t, conn, "SELECT count(*) FROM events"), "restore commits what checkpoint 7 prepared")
	// The replayed records after the checkpoint go into the next epoch.
	process(t, op2, eventsOf(300, 20)...)
	snapshot(t, op2, 8)
	notify(t, op2, 8)
	require.Equal(t, int64(320), queryInt(t, conn, "SELECT count(*) FROM events"))
	require.NoError(t, op2.Close())

	// Crash again and restore from 7 once more: the marker stops a second write.
	op3 := openOp(t, "pg", cfg, subtask(0, 1, restored))
	require.NoError(t, op3.Close())
	require.Equal(t, int64(320), queryInt(t, conn, "SELECT count(*) FROM events"))
}

func TestExactlyOnceCrashAfterCommitBeforeNotifyDoesNotDuplicate(t *testing.T) {
	dsn, conn := testDB(t)
	exec(t, conn, eventsTable)
	cfg := Config[event]{ConnString: dsn, Table: "events", Mode: ExactlyOnce}
	op := openOp(t, "pg", cfg, subtask(0, 1, nil))
	process(t, op, eventsOf(0, 40)...)
	s1 := snapshot(t, op, 1)
	notify(t, op, 1)
	process(t, op, eventsOf(40, 60)...)
	s2 := snapshot(t, op, 2) // records epoch 2 as prepared
	// The commit transaction of epoch 2 runs and commits, then the process
	// dies before the sink hears of it.
	c := op.(*exactlyOnceOp[event]).c
	pending := lastPending(t, s2)
	require.NoError(t, c.Commit(context.Background(), pending))
	require.NoError(t, op.Close())
	require.Equal(t, int64(100), queryInt(t, conn, "SELECT count(*) FROM events"))

	// The restart restores checkpoint 2, which says epoch 2 is still to commit.
	op2 := openOp(t, "pg", cfg, subtask(0, 1, &dataflow.RestoredState{CheckpointID: 2, Subtasks: [][]byte{s2}}))
	require.Equal(t, int64(100), queryInt(t, conn, "SELECT count(*) FROM events"), "the marker makes the second commit a no-op")
	process(t, op2, eventsOf(100, 1)...)
	snapshot(t, op2, 3)
	notify(t, op2, 3)
	require.Equal(t, int64(101), queryInt(t, conn, "SELECT count(DISTINCT id) FROM events"))
	require.NotEqual(t, s1, s2)
}

// lastPending decodes the last epoch a sink recorded in its checkpoint state.
func lastPending(t *testing.T, state []byte) *epoch {
	t.Helper()
	var ps []struct {
		Checkpoint int64  `msgpack:"c"`
		Txn        *epoch `msgpack:"t"`
	}
	require.NoError(t, msgpack.Unmarshal(state, &ps))
	require.NotEmpty(t, ps)
	return ps[len(ps)-1].Txn
}

func TestExactlyOnceRescaledRestoreCommitsEachOldSubtaskUnderItsMarker(t *testing.T) {
	dsn, conn := testDB(t)
	exec(t, conn, eventsTable)
	cfg := Config[event]{ConnString: dsn, Table: "events", Mode: ExactlyOnce}
	var states [][]byte
	for i := range 3 {
		op := openOp(t, "pg", cfg, subtask(i, 3, nil))
		process(t, op, eventsOf(i*1000, 100+i)...)
		states = append(states, snapshot(t, op, 5))
		if i == 1 {
			notify(t, op, 5) // this one heard of the completion before the crash
		}
		require.NoError(t, op.Close())
	}
	require.Equal(t, int64(101), queryInt(t, conn, "SELECT count(*) FROM events"))
	restored := &dataflow.RestoredState{CheckpointID: 5, Subtasks: states}
	for i := range 2 {
		op := openOp(t, "pg", cfg, subtask(i, 2, restored))
		require.NoError(t, op.Close())
	}
	require.Equal(t, int64(100+101+102), queryInt(t, conn, "SELECT count(*) FROM events"))
	rows, err := conn.Query(context.Background(), "SELECT subtask FROM sluice_sink_commits WHERE checkpoint_id = 5 ORDER BY 1")
	require.NoError(t, err)
	subtasks, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(t, err)
	require.Equal(t, []int32{0, 1, 2}, subtasks)
}

func TestExactlyOnceFreshStartForgetsOldMarkers(t *testing.T) {
	dsn, conn := testDB(t)
	exec(t, conn, eventsTable)
	cfg := Config[event]{ConnString: dsn, Table: "events", Mode: ExactlyOnce}
	op := openOp(t, "pg", cfg, subtask(0, 1, nil))
	process(t, op, eventsOf(0, 10)...)
	snapshot(t, op, 1)
	notify(t, op, 1)
	require.NoError(t, op.Close())
	// A new run of the same job, not restored: its checkpoint 1 is new data.
	op = openOp(t, "pg", cfg, subtask(0, 1, nil))
	process(t, op, eventsOf(10, 10)...)
	snapshot(t, op, 1)
	notify(t, op, 1)
	require.Equal(t, int64(20), queryInt(t, conn, "SELECT count(*) FROM events"))
}

func TestReadCommittedReaderSeesOnlyWholeEpochs(t *testing.T) {
	dsn, conn := testDB(t)
	exec(t, conn, eventsTable)
	sizes := []int{1, 500, 3000, 7, 10_000, 250, 4096, 1, 2000}
	valid := map[int64]bool{0: true}
	sum := 0
	for _, n := range sizes {
		sum += n
		valid[int64(sum)] = true
	}
	reader, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	defer reader.Close(context.Background())

	done := make(chan struct{})
	var seen []int64
	var readErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			var n int64
			if err := reader.QueryRow(context.Background(), "SELECT count(*) FROM events").Scan(&n); err != nil {
				readErr = err
				return
			}
			seen = append(seen, n)
		}
	})
	op := openOp(t, "pg", Config[event]{ConnString: dsn, Table: "events", Mode: ExactlyOnce}, subtask(0, 1, nil))
	next := 0
	for i, n := range sizes {
		process(t, op, eventsOf(next, n)...)
		next += n
		snapshot(t, op, int64(i+1))
		notify(t, op, int64(i+1))
	}
	close(done)
	wg.Wait()
	require.NoError(t, readErr)
	require.NotEmpty(t, seen)
	for _, n := range seen {
		require.True(t, valid[n], "reader saw %d rows, not a sum of whole epochs %v", n, sizes)
	}
	require.Equal(t, int64(sum), queryInt(t, conn, "SELECT count(*) FROM events"))
	t.Logf("reader polled %d times, saw %d distinct counts", len(seen), len(slices.Compact(seen)))
}

func TestExactlyOnceConnectionKilledMidCommitIsRetried(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		t.Run(fmt.Sprintf("keyed=%v", keyed), func(t *testing.T) {
			dsn, conn := testDB(t)
			exec(t, conn, eventsTable)
			cfg := Config[event]{ConnString: dsn, Table: "events", Mode: ExactlyOnce, Retry: RetryPolicy{InitialBackoff: time.Millisecond}}
			if keyed {
				cfg.Key = []string{"id"}
			}
			op := openOp(t, "pg", cfg, subtask(0, 1, nil))
			sess := sessionOf(op)
			kills := 0
			sess.hook = func(ctx context.Context, step string, c *pgx.Conn) error {
				// Kill the connection in the middle of the first two commits:
				// after the rows were copied, before COMMIT.
				if step == "before-commit" && kills < 2 {
					kills++
					killBackend(t, conn, c)
				}
				return nil
			}
			for id := int64(1); id <= 4; id++ {
				process(t, op, eventsOf(int(id-1)*1000, 1000)...)
				snapshot(t, op, id)
				notify(t, op, id)
			}
			require.Equal(t, 2, kills)
			require.GreaterOrEqual(t, sess.retries, 2)
			require.Equal(t, int64(4000), queryInt(t, conn, "SELECT count(*) FROM events"))
			require.Equal(t, int64(4000), queryInt(t, conn, "SELECT count(DISTINCT id) FROM events"))
		})
	}
}

func TestCommitRetriedAfterLostCommitAnswerFindsMarker(t *testing.T) {
	dsn, conn := testDB(t)
	exec(t, conn, eventsTable)
	op := openOp(t, "pg", Config[event]{ConnString: dsn, Table: "events", Mode: ExactlyOnce, Retry: RetryPolicy{InitialBackoff: time.Millisecond}}, subtask(0, 1, nil))
	sess := sessionOf(op)
	failed := false
	sess.hook = func(ctx context.Context, step string, c *pgx.Conn) error {
		if step != "before-commit" || failed {
			return nil
		}
		failed = true
		// COMMIT reaches the server, then the connection dies before the
		// answer: commit here, then kill.
		_, err := c.Exec(ctx, "COMMIT")
		require.NoError(t, err)
		killBackend(t, conn, c)
		return nil
	}
	process(t, op, eventsOf(0, 500)...)
	snapshot(t, op, 1)
	notify(t, op, 1)
	require.True(t, failed)
	require.Equal(t, 1, sess.retries)
	require.Equal(t, int64(500), queryInt(t, conn, "SELECT count(*) FROM events"))
}

func TestAppendAndUpsertRetryAfterKilledConnection(t *testing.T) {
	for _, mode := range []Mode{Append, Upsert} {
		t.Run(mode.String(), func(t *testing.T) {
			dsn, conn := testDB(t)
			exec(t, conn, eventsTable)
			op := openOp(t, "pg", Config[event]{ConnString: dsn, Table: "events", Mode: mode, Key: []string{"id"}, BatchSize: 100, FlushInterval: -1,
				Retry: RetryPolicy{InitialBackoff: time.Millisecond}}, subtask(0, 1, nil))
			sess := sessionOf(op)
			process(t, op, eventsOf(0, 150)...) // one batch written, 50 rows buffered
			killBackend(t, conn, sess.conn)     // the idle connection dies between batches
			process(t, op, eventsOf(150, 150)...)
			require.NoError(t, op.Finish(context.Background()))
			require.Equal(t, 1, sess.retries)
			require.Equal(t, int64(300), queryInt(t, conn, "SELECT count(DISTINCT id) FROM events"))
			require.Equal(t, int64(300), queryInt(t, conn, "SELECT count(*) FROM events"))
		})
	}
}

func TestWriteFailsAfterRetriesRunOut(t *testing.T) {
	dsn, conn := testDB(t)
	exec(t, conn, eventsTable)
	op := openOp(t, "pg", Config[event]{ConnString: dsn, Table: "events", Mode: ExactlyOnce, Retry: RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond}}, subtask(0, 1, nil))
	sess := sessionOf(op)
	sess.hook = func(ctx context.Context, step string, c *pgx.Conn) error {
		if step == "before-commit" {
			killBackend(t, conn, c)
		}
		return nil
	}
	process(t, op, eventsOf(0, 10)...)
	snapshot(t, op, 1)
	err := op.(dataflow.CheckpointListener).NotifyCheckpointComplete(context.Background(), 1)
	require.Error(t, err)
	require.ErrorContains(t, err, `sink "pg", table events`)
	require.ErrorContains(t, err, "checkpoint 1")
	require.Equal(t, 2, sess.retries)
	require.Zero(t, queryInt(t, conn, "SELECT count(*) FROM events"))
}

func TestMissingTable(t *testing.T) {
	dsn, _ := testDB(t)
	for _, mode := range []Mode{Append, Upsert, ExactlyOnce} {
		newOp, err := newOperator("pg", Config[event]{ConnString: dsn, Table: "public.nope", Mode: mode, Key: []string{"id"}})
		require.NoError(t, err)
		op := newOp()
		err = op.Open(context.Background(), subtask(0, 1, nil))
		require.ErrorIs(t, err, ErrTableNotFound)
		require.ErrorContains(t, err, `sink "pg": table public.nope does not exist in 127.0.0.1:5432 database "sluice_test_`)
		require.NoError(t, op.Close())
	}
	// Through a job, the error names the operator too.
	job := dataflow.NewJob("missing")
	Sink(memory.FromSlice(job, "src", eventsOf(0, 1)), "pg", Config[event]{ConnString: dsn, Table: "nope"})
	err := job.Run(context.Background())
	require.ErrorIs(t, err, ErrTableNotFound)
	require.ErrorContains(t, err, `operator "pg"`)
}

func TestUnreachableDatabase(t *testing.T) {
	newOp, err := newOperator("pg", Config[event]{ConnString: "host=127.0.0.1 port=1 user=app dbname=shop connect_timeout=2", Table: "events",
		Retry: RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond}})
	require.NoError(t, err)
	op := newOp()
	err = op.Open(context.Background(), subtask(0, 1, nil))
	require.ErrorIs(t, err, ErrConnect)
	require.ErrorContains(t, err, `sink "pg": 127.0.0.1:1 database "shop" as user "app" after 2 attempt(s)`)
	require.NoError(t, op.Close())
}

func TestMissingDatabaseIsNotRetried(t *testing.T) {
	_, _ = testDB(t) // a server is needed
	cfg, err := pgx.ParseConfig(adminConnString())
	require.NoError(t, err)
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=no_such_db_here", cfg.Host, cfg.Port, cfg.User)
	newOp, err := newOperator("pg", Config[event]{ConnString: dsn, Table: "events"})
	require.NoError(t, err)
	op := newOp()
	start := time.Now()
	err = op.Open(context.Background(), subtask(0, 1, nil))
	require.ErrorIs(t, err, ErrConnect)
	require.ErrorContains(t, err, `database "no_such_db_here"`)
	require.ErrorContains(t, err, "after 1 attempt(s)")
	require.Less(t, time.Since(start), 5*time.Second)
	require.NoError(t, op.Close())
}

func TestBadValuesNameSinkTableAndColumn(t *testing.T) {
	dsn, conn := testDB(t)
	exec(t, conn, `CREATE TABLE items (
    id integer PRIMARY KEY,
    code varchar(5) NOT NULL,
    price numeric(5,2),
    note text,
    qty integer CHECK (qty >= 0) CONSTRAINT qty_small CHECK (qty < 1000)
)`)
	type item struct {
		ID    int64 `db:"id"`
		Code  string
		Price *float64
		Note  *string
		Qty   int
	}
	price := func(f float64) *float64 { return &f }
	ok := item{ID: 1, Code: "abc", Price: price(1.5), Qty: 1}
	cases := []struct {
		name    string
		v       item
		onWrite bool // found when the record arrives, else when the batch is written
		want    string
	}{
		{"int out of range", item{ID: 5_000_000_000, Code: "a"}, true, `postgres: value does not fit its column: sink "pg", table items, column id (integer), field ID: 5000000000 is out of range for integer`},
		{"string too long", item{ID: 2, Code: "abcdef"}, true, `column code (character varying(5)), field Code: "abcdef" is 6 characters, longer than 5`},
		{"invalid utf8", item{ID: 2, Code: "\xff"}, true, `column code (character varying(5)), field Code: "\xff" is not valid UTF-8`},
		{"numeric overflow", item{ID: 3, Code: "a", Price: price(12345.6)}, false, `sink "pg", table items, column price, row 2 of the batch: ERROR: numeric field overflow (SQLSTATE 22003)`},
		{"check constraint", item{ID: 4, Code: "a", Qty: 5000}, false, `sink "pg", table items, constraint qty_small, row 2 of the batch: ERROR: new row for relation "items" violates check constraint "qty_small" (SQLSTATE 23514)`},
		{"duplicate key", item{ID: 1, Code: "a"}, false, `sink "pg", table items, constraint items_pkey, row 2 of the batch: ERROR: duplicate key value violates unique constraint "items_pkey" (SQLSTATE 23505) (Key (id)=(1) already exists.)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			exec(t, conn, "TRUNCATE items")
			op := openOp(t, "pg", Config[item]{ConnString: dsn, Table: "items", BatchSize: 10}, subtask(0, 1, nil))
			require.NoError(t, op.Process(ok, dataflow.NoTimestamp))
			err := op.Process(tc.v, dataflow.NoTimestamp)
			if !tc.onWrite {
				require.NoError(t, err)
				err = op.Finish(context.Background())
			}
			require.ErrorIs(t, err, ErrInvalidValue)
			require.ErrorContains(t, err, tc.want)
			require.Zero(t, queryInt(t, conn, "SELECT count(*) FROM items"), "a failed batch writes nothing")
		})
	}

	t.Run("not null", func(t *testing.T) {
		type loose struct {
			ID   int64 `db:"id"`
			Code *string
		}
		op := openOp(t, "pg", Config[loose]{ConnString: dsn, Table: "items", Mode: Upsert, Key: []string{"id"}}, subtask(0, 1, nil))
		process(t, op, loose{ID: 9})
		err := op.Finish(context.Background())
		require.ErrorIs(t, err, ErrInvalidValue)
		require.ErrorContains(t, err, `sink "pg", table items, column code: ERROR: null value in column "code" of relation "items" violates not-null constraint (SQLSTATE 23502)`)
	})

	t.Run("exactly once commit", func(t *testing.T) {
		exec(t, conn, "TRUNCATE items")
		op := openOp(t, "pg", Config[item]{ConnString: dsn, Table: "items", Mode: ExactlyOnce}, subtask(0, 1, nil))
		process(t, op, ok, item{ID: 7, Code: "x", Price: price(1e6)})
		snapshot(t, op, 1)
		err := op.(dataflow.CheckpointListener).NotifyCheckpointComplete(context.Background(), 1)
		require.ErrorIs(t, err, ErrInvalidValue)
		require.ErrorContains(t, err, `commit 2 rows of checkpoint 1 (subtask 0): postgres: value does not fit its column: sink "pg", table items, column price, row 2 of the batch: ERROR: numeric field overflow`)
		require.Zero(t, queryInt(t, conn, "SELECT count(*) FROM items"))
		require.Zero(t, queryInt(t, conn, "SELECT count(*) FROM sluice_sink_commits"), "no marker for an epoch that failed")
	})
}

func TestFieldsThatDoNotMatchTheTable(t *testing.T) {
	dsn, conn := testDB(t)
	exec(t, conn, `CREATE TABLE t (id integer PRIMARY KEY, n integer, must text NOT NULL, opt text DEFAULT 'x')`)
	cases := []struct {
		name string
		open func() error
		want string
	}{
		{"string into integer", func() error {
			type r struct {
				ID   int
				N    string
				Must string
			}
			return openErr(dsn, Config[r]{ConnString: dsn, Table: "t"})
		}, `postgres: sink "pg": postgres: field does not match its column: table t, column n (integer), field N: cannot write Go type string to it`},
		{"no such column", func() error {
			type r struct {
				ID    int
				Must  string
				Extra bool
			}
			return openErr(dsn, Config[r]{ConnString: dsn, Table: "t"})
		}, `postgres: field does not match its column: sink "pg": table t has no column "extra" for field Extra (it has id, n, must, opt)`},
		{"not null column left out", func() error {
			type r struct{ ID int }
			return openErr(dsn, Config[r]{ConnString: dsn, Table: "t"})
		}, `table t column must is NOT NULL without a default, and no field of postgres.r maps to it`},
		{"upsert without unique index", func() error {
			type r struct {
				ID   int
				N    int `db:"n,key"`
				Must string
			}
			return openErr(dsn, Config[r]{ConnString: dsn, Table: "t", Mode: Upsert})
		}, `table t has no primary key or unique index on exactly the key columns (n), which upsert needs`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.open()
			require.Error(t, err)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func openErr[T any](_ string, cfg Config[T]) error {
	newOp, err := newOperator("pg", cfg)
	if err != nil {
		return err
	}
	op := newOp()
	err = op.Open(context.Background(), subtask(0, 1, nil))
	return errors.Join(err, op.Close())
}

func TestConfigErrors(t *testing.T) {
	type noFields struct{ x int }
	type dup struct {
		A int `db:"x"`
		B int `db:"x"`
	}
	type badOpt struct {
		A int `db:"a,primary"`
	}
	cases := []struct {
		err  error
		want string
	}{
		{Config[int]{Table: "t"}.Validate(), "record type int is not a struct"},
		{Config[event]{Table: ""}.Validate(), "table: no table name"},
		{Config[event]{Table: "a.b.c"}.Validate(), `"a.b.c" is not "name" or "schema.name"`},
		{Config[event]{Table: "t", Mode: Upsert}.Validate(), "upsert needs key columns"},
		{Config[event]{Table: "t", Key: []string{"nope"}}.Validate(), `key column "nope" is no field of postgres.event (columns: id, name, qty, at)`},
		{Config[event]{Table: "t", BatchSize: -1}.Validate(), "batch size -1 must be at least 1"},
		{Config[event]{Table: "t", Mode: 9}.Validate(), "unknown mode 9"},
		{Config[noFields]{Table: "t"}.Validate(), "has no exported fields"},
		{Config[dup]{Table: "t"}.Validate(), `fields A and B both map to column "x"`},
		{Config[badOpt]{Table: "t"}.Validate(), `unknown db tag option "primary"`},
	}
	for _, tc := range cases {
		require.ErrorIs(t, tc.err, ErrConfig)
		require.ErrorContains(t, tc.err, tc.want)
	}
	job := dataflow.NewJob("bad")
	Sink(memory.FromSlice(job, "src", []event{{}}), "pg", Config[event]{Table: "t", Mode: Upsert})
	err := job.Validate()
	require.ErrorIs(t, err, ErrConfig)
	require.ErrorContains(t, err, `dataflow: operator "pg": postgres: invalid sink configuration: table t: upsert needs key columns`)
}

func TestSnakeCase(t *testing.T) {
	for in, want := range map[string]string{"ID": "id", "UserID": "user_id", "HTTPServer": "http_server", "CreatedAt": "created_at", "A1B": "a1_b", "x": "x", "Qty2": "qty2"} {
		require.Equal(t, want, snakeCase(in), in)
	}
}

func TestUpsertWhenAConcurrentTransactionInsertsTheSameKey(t *testing.T) {
	dsn, conn := testDB(t)
	exec(t, conn, `CREATE TABLE totals (k text PRIMARY KEY, count bigint NOT NULL, sum double precision NOT NULL)`)
	op := openOp(t, "pg", Config[total]{ConnString: dsn, Table: "totals", Mode: Upsert}, subtask(0, 1, nil))
	other, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	defer other.Close(context.Background())
	tx, err := other.Begin(context.Background())
	require.NoError(t, err)
	_, err = tx.Exec(context.Background(), "INSERT INTO totals VALUES ('a', 1, 1)")
	require.NoError(t, err)

	process(t, op, total{"a", 2, 2}, total{"b", 2, 2})
	done := make(chan error, 1)
	go func() { done <- op.Finish(context.Background()) }()
	// The sink's MERGE waits for the other transaction's key, which then
	// commits: MERGE fails on the key and the batch is upserted with ON
	// CONFLICT instead.
	pid := sessionOf(op).conn.PgConn().PID()
	require.Eventually(t, func() bool {
		var waiting bool
		err := conn.QueryRow(context.Background(), "SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1", int32(pid)).Scan(&waiting)
		return err == nil && waiting
	}, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, tx.Commit(context.Background()))
	require.NoError(t, <-done)
	require.Equal(t, 1, sessionOf(op).fallbacks)
	rows, err := conn.Query(context.Background(), "SELECT k, count, sum FROM totals ORDER BY k")
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[total])
	require.NoError(t, err)
	require.Equal(t, []total{{"a", 2, 2}, {"b", 2, 2}}, got)
}

func TestExactlyOnceConnectionKilledDuringCopyIsRetried(t *testing.T) {
	dsn, conn := testDB(t)
	exec(t, conn, eventsTable)
	op := openOp(t, "pg", Config[event]{ConnString: dsn, Table: "events", Mode: ExactlyOnce, Retry: RetryPolicy{InitialBackoff: time.Millisecond}}, subtask(0, 1, nil))
	sess := sessionOf(op)
	pid := int32(sess.conn.PgConn().PID())
	killer, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	defer killer.Close(context.Background())

	const n = 200_000 // long enough a COPY to be caught streaming
	process(t, op, eventsOf(0, n)...)
	snapshot(t, op, 1)
	killed := make(chan error, 1)
	go func() {
		// Wait for the sink's backend to run its COPY, then terminate it.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			var copying bool
			err := killer.QueryRow(context.Background(), "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE 'COPY%'", pid).Scan(&copying)
			if err != nil {
				killed <- err
				return
			}
			if copying {
				_, err := killer.Exec(context.Background(), "SELECT pg_terminate_backend($1)", pid)
				killed <- err
				return
			}
		}
		killed <- errors.New("the sink's COPY never showed in pg_stat_activity")
	}()
	notify(t, op, 1)
	require.NoError(t, <-killed)
	require.GreaterOrEqual(t, sess.retries, 1)
	require.Equal(t, int64(n), queryInt(t, conn, "SELECT count(*) FROM events"))
	require.Equal(t, int64(n), queryInt(t, conn, "SELECT count(DISTINCT id) FROM events"))
}
