package postgres

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
)

type Meta struct {
	Source string   `json:"source"`
	Tags   []string `json:"tags"`
}

type audit struct {
	Region string `db:"region,key"`
}

type everything struct {
	ID        int64 `db:"id,key"`
	audit           // embedded: its fields are promoted
	I8        int8
	I16       int16
	I32       int32
	I         int
	U8        uint8
	U16       uint16
	U32       uint32
	U64       uint64
	F32       float32
	F64       float64
	Name      string
	OK        bool
	At        time.Time
	Blob      []byte
	Raw       json.RawMessage
	Meta      Meta
	Labels    map[string]int
	MaybeInt  *int32
	MaybeText *string
	MaybeAt   *time.Time
	Skipped   string `db:"-"`
	Renamed   string `db:"other_name"`
	hidden    int
}

func TestCreateTableSQL(t *testing.T) {
	sql, err := CreateTableSQL(Config[everything]{Table: "app.everything"})
	require.NoError(t, err)
	require.Equal(t, `CREATE TABLE IF NOT EXISTS "app"."everything" (
    "id" bigint NOT NULL,
    "region" text NOT NULL,
    "i8" smallint NOT NULL,
    "i16" smallint NOT NULL,
    "i32" integer NOT NULL,
    "i" bigint NOT NULL,
    "u8" smallint NOT NULL,
    "u16" integer NOT NULL,
    "u32" bigint NOT NULL,
    "u64" numeric(20) NOT NULL,
    "f32" real NOT NULL,
    "f64" double precision NOT NULL,
    "name" text NOT NULL,
    "ok" boolean NOT NULL,
    "at" timestamptz NOT NULL,
    "blob" bytea,
    "raw" jsonb,
    "meta" jsonb,
    "labels" jsonb,
    "maybe_int" integer,
    "maybe_text" text,
    "maybe_at" timestamptz,
    "other_name" text NOT NULL,
    PRIMARY KEY ("id", "region")
)`, sql)
}

func TestCreateTableRoundTripsEveryType(t *testing.T) {
	dsn, conn := testDB(t)
	exec(t, conn, "CREATE SCHEMA app")
	seven := int32(7)
	text := "hi"
	at := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	in := []everything{
		{ID: 1, audit: audit{"eu"}, I8: -8, I16: -16, I32: -32, I: -1 << 40, U8: 255, U16: 65535, U32: 1<<32 - 1, U64: 1<<64 - 1,
			F32: 1.5, F64: 2.25, Name: "ünï", OK: true, At: at, Blob: []byte{0, 1, 2}, Raw: json.RawMessage(`{"a": [1, 2]}`),
			Meta: Meta{Source: "s", Tags: []string{"x"}}, Labels: map[string]int{"a": 1}, MaybeInt: &seven, MaybeText: &text, MaybeAt: &at,
			Skipped: "not written", Renamed: "r", hidden: 3},
		{ID: 1, audit: audit{"us"}, At: at},
	}
	for _, mode := range []Mode{Append, Upsert, ExactlyOnce} {
		exec(t, conn, "DROP TABLE IF EXISTS app.everything")
		op := openOp(t, "pg", Config[everything]{ConnString: dsn, Table: "app.everything", Mode: mode, CreateTable: true}, subtask(0, 1, nil))
		process(t, op, in...)
		if mode == ExactlyOnce {
			snapshot(t, op, 1)
			notify(t, op, 1)
		} else {
			require.NoError(t, op.Finish(context.Background()))
		}
		var got []everything
		rows, err := conn.Query(context.Background(), `SELECT id, region, i8, i16, i32, i, u8, u16, u32, u64, f32, f64, name, ok, at, blob, raw, meta, labels,
       maybe_int, maybe_text, maybe_at, other_name FROM app.everything ORDER BY region`)
		require.NoError(t, err)
		for rows.Next() {
			var e everything
			var u64 string
			require.NoError(t, rows.Scan(&e.ID, &e.Region, &e.I8, &e.I16, &e.I32, &e.I, &e.U8, &e.U16, &e.U32, &u64, &e.F32, &e.F64, &e.Name, &e.OK, &e.At,
				&e.Blob, &e.Raw, &e.Meta, &e.Labels, &e.MaybeInt, &e.MaybeText, &e.MaybeAt, &e.Renamed))
			if e.Region == "eu" {
				require.Equal(t, "18446744073709551615", u64)
			}
			e.U64 = in[0].U64
			if e.Region == "us" {
				e.U64 = 0
			}
			e.At = e.At.UTC()
			if e.MaybeAt != nil {
				*e.MaybeAt = e.MaybeAt.UTC()
			}
			got = append(got, e)
		}
		require.NoError(t, rows.Err())
		want := []everything{in[0], in[1]}
		want[0].Skipped, want[0].hidden = "", 0
		want[0].Raw = json.RawMessage(`{"a": [1, 2]}`)
		require.Len(t, got, 2, mode)
		require.JSONEq(t, string(want[0].Raw), string(got[0].Raw))
		got[0].Raw = want[0].Raw
		require.Equal(t, want, got, mode)
	}
}

var _ = dataflow.NoTimestamp
