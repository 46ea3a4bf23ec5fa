package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// benchRow is a small record: five columns, about 50 bytes.
type benchRow struct {
	ID    int64
	Name  string
	Qty   int32
	Price float64
	At    time.Time
}

const benchRows = 200_000

func benchData(gen int) []benchRow {
	rows := make([]benchRow, benchRows)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range rows {
		rows[i] = benchRow{ID: int64(i), Name: fmt.Sprintf("item-%d-%d", i, gen), Qty: int32(i % 1000), Price: float64(i) / 100, At: base.Add(time.Duration(i) * time.Second)}
	}
	return rows
}

// rawCopy is the hand-written baseline: pgx CopyFrom of the same structs.
func rawCopy(b *testing.B, conn *pgx.Conn, rows []benchRow) time.Duration {
	b.Helper()
	start := time.Now()
	n, err := conn.CopyFrom(context.Background(), pgx.Identifier{"bench"}, []string{"id", "name", "qty", "price", "at"},
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := &rows[i]
			return []any{r.ID, r.Name, r.Qty, r.Price, r.At}, nil
		}))
	require.NoError(b, err)
	require.Equal(b, int64(len(rows)), n)
	return time.Since(start)
}

// BenchmarkSink writes 200k rows per iteration with each mode and, in the same
// iteration, with a raw pgx CopyFrom into the same (truncated) table. It
// reports both rates and their ratio (x-raw: 1 is as fast as raw COPY).
func BenchmarkSink(b *testing.B) {
	dsn, conn := testDB(b)
	exec(b, conn, `CREATE TABLE bench (id bigint PRIMARY KEY, name text NOT NULL, qty integer NOT NULL, price double precision NOT NULL, at timestamptz NOT NULL)`)
	rows := benchData(0)
	updates := benchData(1)
	ctx := context.Background()

	b.Run("raw-copy", func(b *testing.B) {
		var total time.Duration
		for b.Loop() {
			exec(b, conn, "TRUNCATE bench")
			total += rawCopy(b, conn, rows)
		}
		b.ReportMetric(float64(b.N*benchRows)/total.Seconds(), "events/s")
	})

	for _, tc := range []struct {
		name   string
		mode   Mode
		key    bool
		update bool // upsert over existing rows instead of into an empty table
	}{
		{"append", Append, false, false},
		{"upsert-insert", Upsert, true, false},
		{"upsert-update", Upsert, true, true},
		{"exactly-once", ExactlyOnce, false, false},
		{"exactly-once-upsert", ExactlyOnce, true, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := Config[benchRow]{ConnString: dsn, Table: "bench", Mode: tc.mode}
			if tc.key {
				cfg.Key = []string{"id"}
			}
			newOp, err := newOperator("bench", cfg)
			require.NoError(b, err)
			op := newOp()
			require.NoError(b, op.Open(ctx, subtask(0, 1, nil)))
			defer op.Close()
			var raw, sluice time.Duration
			id := int64(0)
			for b.Loop() {
				exec(b, conn, "TRUNCATE bench")
				raw += rawCopy(b, conn, rows)
				in := rows
				if !tc.update {
					exec(b, conn, "TRUNCATE bench")
				} else {
					in = updates
				}
				start := time.Now()
				for _, r := range in {
					if err := op.Process(r, 0); err != nil {
						b.Fatal(err)
					}
				}
				if tc.mode == ExactlyOnce {
					id++
					snapshot(b, op, id)
					notify(b, op, id)
				} else {
					require.NoError(b, op.Finish(ctx))
				}
				sluice += time.Since(start)
				require.Equal(b, int64(benchRows), queryInt(b, conn, "SELECT count(*) FROM bench"))
			}
			rawRate := float64(b.N*benchRows) / raw.Seconds()
			rate := float64(b.N*benchRows) / sluice.Seconds()
			b.ReportMetric(rate, "events/s")
			b.ReportMetric(rawRate, "raw-events/s")
			b.ReportMetric(rate/rawRate, "x-raw")
		})
	}
}
