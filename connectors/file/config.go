package file

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
)

// Errors returned by the sink, wrapped with the sink's name and the path or
// record type they concern. Test with errors.Is.
var (
	// ErrConfig reports an invalid Config, or a record type the chosen format
	// cannot map (CSV without a struct or a Row function, Parquet without a
	// struct schema).
	ErrConfig = errors.New("file: invalid sink configuration")
	// ErrEncode reports a record that could not be encoded (a NaN in JSON, a
	// value Parquet cannot represent, a failing MarshalText).
	ErrEncode = errors.New("file: cannot encode record")
	// ErrPartition reports a partition directory that is not a plain relative
	// path, or that readers would skip (a segment starting with "." or "_").
	ErrPartition = errors.New("file: invalid partition directory")
	// ErrFileExists reports a final file name that is already taken, by the
	// output of an earlier run that started afresh (checkpoint ids start
	// again) or by a restore from an older savepoint. The sink never replaces
	// a final file: give each fresh start its own Dir.
	ErrFileExists = errors.New("file: final file already exists")
	// ErrLostFile reports a commit that found neither the pending file nor its
	// final file: data a completed checkpoint recorded is gone.
	ErrLostFile = errors.New("file: committed file lost")
)

// Format is the encoding of part files.
type Format uint8

const (
	// JSONLines writes one JSON object per line (encoding/json), extension ".jsonl".
	JSONLines Format = iota
	// CSV writes RFC 4180 records (comma, "\n" line ends) with a header line
	// in every part file, extension ".csv". See CSVConfig.
	CSV
	// Parquet writes a Parquet file per part with the schema of T (struct
	// fields and `parquet` tags, see github.com/parquet-go/parquet-go),
	// extension ".parquet". Compression applies to its pages.
	Parquet
)

func (f Format) String() string {
	switch f {
	case JSONLines:
		return "JSON Lines"
	case CSV:
		return "CSV"
	case Parquet:
		return "Parquet"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

func (f Format) ext() string {
	switch f {
	case CSV:
		return ".csv"
	case Parquet:
		return ".parquet"
	}
	return ".jsonl"
}

// Compression is how part files are compressed.
type Compression uint8

const (
	// Uncompressed writes plain files (and uncompressed Parquet pages).
	Uncompressed Compression = iota
	// Gzip compresses JSON Lines and CSV files as a whole (extension ".gz"),
	// and Parquet pages with GZIP.
	Gzip
	// Zstd compresses JSON Lines and CSV files as a whole (extension ".zst"),
	// and Parquet pages with ZSTD.
	Zstd
	// Snappy compresses Parquet pages with SNAPPY, the usual Parquet default.
	// It is valid for Parquet only.
	Snappy
)

func (c Compression) String() string {
	switch c {
	case Uncompressed:
		return "uncompressed"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	case Snappy:
		return "snappy"
	}
	return fmt.Sprintf("Compression(%d)", uint8(c))
}

func (c Compression) ext() string {
	switch c {
	case Gzip:
		return ".gz"
	case Zstd:
		return ".zst"
	}
	return ""
}

// DefaultMaxPartSize is the MaxPartSize of a zero Config: 128 MiB.
const DefaultMaxPartSize = 128 << 20

// HiveDefaultPartition is the partition value Hive, Spark, Athena and DuckDB
// use for NULL. With a Hive-style PartitionPattern (every segment key=layout)
// records without an event time go to key=HiveDefaultPartition in every
// segment, e.g. dt=__HIVE_DEFAULT_PARTITION__/hour=__HIVE_DEFAULT_PARTITION__.
const HiveDefaultPartition = "__HIVE_DEFAULT_PARTITION__"

// NoTimestampPartition is the directory of records without an event time
// when partitioning is not Hive style (or by a Partition function) and
// DefaultPartition is empty.
const NoTimestampPartition = "no_timestamp"

// Config configures a file sink writing records of type T under Dir. Zero
// fields take defaults: JSON Lines, uncompressed, parts of at most
// DefaultMaxPartSize, no age limit, no partitioning, time.Now as the clock.
type Config[T any] struct {
	// Dir is the output directory, created if missing. It belongs to this sink
	// alone: on start the sink deletes the hidden in-progress and pending part
	// files it finds there (see the package documentation).
	Dir string
	// Format is JSONLines (default), CSV or Parquet.
	Format Format
	// Compression is Uncompressed (default), Gzip or Zstd; Snappy for Parquet.
	Compression Compression
	// CSV configures the CSV format.
	CSV CSVConfig[T]
	// ParquetOptions are extra Parquet writer options (row group size, page
	// size, sorting metadata), applied after the compression codec.
	ParquetOptions []parquet.WriterOption

	// MaxPartSize closes a part file once it has grown past this many bytes
	// (checked after each record; for gzip and zstd it counts the compressed
	// bytes the compressor has emitted, so a part can exceed it by the
	// compressor's buffer; for Parquet it is the writer's estimate). Default
	// DefaultMaxPartSize; negative means no limit. A part file is closed at
	// every checkpoint in any case.
	MaxPartSize int64
	// MaxPartAge closes a part file once it has been open this long: a record
	// for a part file that old goes into a new one. Zero means no limit.
	MaxPartAge time.Duration

	// PartitionPattern, a time layout (time.Format) evaluated on a record's
	// event time in UTC, names the directory under Dir a record goes to, for
	// example "dt=2006-01-02/hour=15" (Hive style, readable by DuckDB with
	// hive_partitioning, Athena, Spark). Use "/" between directories.
	PartitionPattern string
	// Partition, instead of PartitionPattern, returns the directory (relative,
	// "/"-separated) of a record from its event time in UTC. It is called for
	// every record with an event time, so it should be cheap.
	Partition func(t time.Time) string
	// DefaultPartition is the directory of records without an event time
	// (dataflow.NoTimestamp) when partitioning. Default: with a Hive-style
	// pattern, every segment's key with HiveDefaultPartition; otherwise
	// NoTimestampPartition.
	DefaultPartition string

	// Clock gives the time that MaxPartAge is measured with; nil means time.Now.
	Clock func() time.Time
}

// CSVConfig says how records become CSV rows.
//
// Without Row, T must be a struct (or a pointer to one): every exported field
// is a column, in declaration order, named by its `csv:"name"` tag or else by
// the field name; `csv:"-"` skips a field, and the fields of embedded structs
// are promoted. Strings, booleans, integers and floats are written as is,
// time.Time as RFC 3339 with nanoseconds, []byte as text, types with a
// MarshalText method by it, nil pointers as empty cells, and anything else
// (slices, maps, nested structs) as JSON.
type CSVConfig[T any] struct {
	// Row, if set, makes the cells of a record: it appends them to row (an
	// empty slice with room, reused between records) and returns it.
	Row func(row []string, v T) []string
	// Header names the columns. Default: the field names for structs; with Row
	// and no Header there is no header line.
	Header []string
	// NoHeader leaves out the header line.
	NoHeader bool
}

// withDefaults returns cfg with zero fields set to their defaults.
func (cfg Config[T]) withDefaults() Config[T] {
	if cfg.MaxPartSize == 0 {
		cfg.MaxPartSize = DefaultMaxPartSize
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return cfg
}

// Validate checks the settings. Whether T suits the format (CSV, Parquet) is
// checked by NewSink and Sink.
func (cfg Config[T]) Validate() error {
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

func (cfg Config[T]) validate() error {
	if cfg.Dir == "" {
		return errors.New("Dir is empty")
	}
	if cfg.Format > Parquet {
		return fmt.Errorf("unknown format %v", cfg.Format)
	}
	if cfg.Compression > Snappy {
		return fmt.Errorf("unknown compression %v", cfg.Compression)
	}
	if cfg.Compression == Snappy && cfg.Format != Parquet {
		return fmt.Errorf("snappy compression is for Parquet only, not %v", cfg.Format)
	}
	if cfg.MaxPartAge < 0 {
		return fmt.Errorf("MaxPartAge %v is negative", cfg.MaxPartAge)
	}
	if cfg.PartitionPattern != "" && cfg.Partition != nil {
		return errors.New("set PartitionPattern or Partition, not both")
	}
	if cfg.DefaultPartition != "" && cfg.PartitionPattern == "" && cfg.Partition == nil {
		return fmt.Errorf("DefaultPartition %q without PartitionPattern or Partition", cfg.DefaultPartition)
	}
	if cfg.Format != CSV && (cfg.CSV.Row != nil || cfg.CSV.Header != nil || cfg.CSV.NoHeader) {
		return fmt.Errorf("CSV options set for format %v", cfg.Format)
	}
	if cfg.Format != Parquet && cfg.ParquetOptions != nil {
		return fmt.Errorf("Parquet options set for format %v", cfg.Format)
	}
	if strings.Contains(cfg.PartitionPattern, `\`) {
		return fmt.Errorf("PartitionPattern %q: use / between directories", cfg.PartitionPattern)
	}
	return nil
}
