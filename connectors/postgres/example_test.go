package postgres_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/connectors/postgres"
	"github.com/sluicedata/sluice/dataflow"
)

// Order is written to a table "orders": fields map to snake_case columns,
// tags rename, skip and mark keys.
type Order struct {
	ID       int64     `db:"id,key"`
	Customer string    `db:"customer"`
	Amount   float64   // column "amount"
	PlacedAt time.Time // column "placed_at", timestamptz
	Notes    []string  // column "notes", jsonb
	Internal string    `db:"-"`
}

// A sink is configured with the table, the mode and the mapping; the database
// is only contacted when the job runs. CreateTableSQL shows the table
// CreateTable would make.
func ExampleCreateTableSQL() {
	sql, err := postgres.CreateTableSQL(postgres.Config[Order]{Table: "shop.orders"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sql)
	// Output:
	// CREATE TABLE IF NOT EXISTS "shop"."orders" (
	//     "id" bigint NOT NULL,
	//     "customer" text NOT NULL,
	//     "amount" double precision NOT NULL,
	//     "placed_at" timestamptz NOT NULL,
	//     "notes" jsonb,
	//     PRIMARY KEY ("id")
	// )
}

// An exactly-once sink: each checkpoint's orders are written in one
// transaction when the checkpoint completes; with the key column they are
// upserted. Validate checks the configuration without a database.
func ExampleSink() {
	job := dataflow.NewJob("orders")
	orders := memory.FromSlice(job, "orders", []Order{{ID: 1, Customer: "ada", Amount: 9.5}})
	postgres.Sink(orders, "orders-to-pg", postgres.Config[Order]{
		ConnString:  "postgres://app@db.internal:5432/shop",
		Table:       "shop.orders",
		Mode:        postgres.ExactlyOnce,
		CreateTable: true,
	}, dataflow.Parallelism(2))
	fmt.Println(job.Validate())

	// A mistake is reported on the job before anything runs.
	bad := dataflow.NewJob("bad")
	type Total struct{ Key, Count int64 }
	postgres.Sink(memory.FromSlice(bad, "totals", []Total{}), "totals-to-pg", postgres.Config[Total]{Table: "totals", Mode: postgres.Upsert})
	fmt.Println(bad.Validate())
	// Output:
	// <nil>
	// dataflow: operator "totals-to-pg": postgres: invalid sink configuration: table totals: upsert needs key columns (Config.Key or a `db:"name,key"` tag)
}

// Writing for real needs a server: here the connection comes from
// DATABASE_URL (or the PG* variables), and rows are appended with COPY in
// batches, and at every checkpoint barrier.
func ExampleSink_append() {
	job := dataflow.NewJob("events")
	type Event struct {
		ID   int64
		Kind string
		At   time.Time
	}
	events := memory.Generator(job, "events", memory.GeneratorConfig[Event]{
		Count:    1000,
		Generate: func(seq int64) Event { return Event{ID: seq, Kind: "click", At: time.Unix(seq, 0)} },
	})
	postgres.Sink(events, "events-to-pg", postgres.Config[Event]{Table: "events", CreateTable: true, BatchSize: 500})
	if err := job.Run(context.Background()); err != nil {
		log.Print(err)
	}
}
