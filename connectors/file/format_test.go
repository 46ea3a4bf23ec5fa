package file_test

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/file"
	"github.com/sluicedata/sluice/dataflow"
)

// The readers here are independent of the sink's writers: the standard
// library's gzip and CSV readers, zstd's decoder, parquet-go's reader.

func decodeJSONL[T any](t *testing.T, b []byte) []T {
	t.Helper()
	var out []T
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		var v T
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out = append(out, v)
	}
}

func readGzipJSONL[T any](t *testing.T, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	b, err := io.ReadAll(zr)
	require.NoError(t, err, "%s is a complete gzip stream", path)
	return decodeJSONL[T](t, b)
}

func readZstd(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	require.NoError(t, err)
	defer zr.Close()
	b, err := io.ReadAll(zr)
	require.NoError(t, err, "%s is a complete zstd stream", path)
	return b
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	require.NoError(t, err)
	return rows
}

// writeOneCheckpoint writes vs through a fresh sink and commits checkpoint 1.
func writeOneCheckpoint[T any](t *testing.T, cfg file.Config[T], vs []T) {
	t.Helper()
	op := openOp(t, cfg, 0, 1, nil)
	process(t, op, vs)
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.NoError(t, op.Close())
	require.Empty(t, hiddenFiles(t, cfg.Dir))
}

func TestGzipJSONLines(t *testing.T) {
	dir := t.TempDir()
	writeOneCheckpoint(t, file.Config[event]{Dir: dir, Compression: file.Gzip}, events(0, 500))
	require.Equal(t, []string{"part-0-1-0.jsonl.gz"}, visibleFiles(t, dir))
	require.Equal(t, events(0, 500), readGzipJSONL[event](t, filepath.Join(dir, "part-0-1-0.jsonl.gz")))
}

func TestZstdJSONLines(t *testing.T) {
	dir := t.TempDir()
	writeOneCheckpoint(t, file.Config[event]{Dir: dir, Compression: file.Zstd}, events(0, 500))
	require.Equal(t, []string{"part-0-1-0.jsonl.zst"}, visibleFiles(t, dir))
	require.Equal(t, events(0, 500), decodeJSONL[event](t, readZstd(t, filepath.Join(dir, "part-0-1-0.jsonl.zst"))))
}

type celsius float64

func (c celsius) MarshalText() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(c), 'f', 1, 64) + "C"), nil
}

type Base struct {
	Region string `csv:"region"`
}

type reading struct {
	Base
	ID      int64     `csv:"id"`
	Note    string    `csv:"note"`
	OK      bool      `csv:"ok"`
	Ratio   float64   `csv:"ratio"`
	Small   float32   `csv:"small"`
	Count   uint16    `csv:"count"`
	At      time.Time `csv:"at"`
	Temp    celsius   `csv:"temp"`
	Ptr     *int      `csv:"ptr"`
	Tags    []string  `csv:"tags"`
	Raw     []byte    `csv:"raw"`
	Skipped string    `csv:"-"`
	Untaged int8
	private int
}

func TestCSVFromStructFields(t *testing.T) {
	dir := t.TempDir()
	seven := 7
	at := time.Date(2026, 11, 22, 13, 4, 5, 123456789, time.UTC)
	rs := []reading{
		{Base: Base{"eu"}, ID: 1, Note: "plain", OK: true, Ratio: 0.25, Small: 1.5, Count: 3, At: at, Temp: 21.5, Ptr: &seven, Tags: []string{"a", "b"}, Raw: []byte("raw"), Skipped: "x", Untaged: -3, private: 9},
		{Base: Base{" us"}, ID: 2, Note: "comma, \"quote\"\nnew line", Ratio: 1e21, Small: 1e-7, Temp: -2},
		{ID: 3, Note: `\.`},
	}
	writeOneCheckpoint(t, file.Config[reading]{Dir: dir, Format: file.CSV, Compression: file.Gzip}, rs)
	require.Equal(t, []string{"part-0-1-0.csv.gz"}, visibleFiles(t, dir))

	f, err := os.Open(filepath.Join(dir, "part-0-1-0.csv.gz"))
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	rows, err := csv.NewReader(zr).ReadAll()
	require.NoError(t, err)
	require.Equal(t, [][]string{
		{"region", "id", "note", "ok", "ratio", "small", "count", "at", "temp", "ptr", "tags", "raw", "Untaged"},
		{"eu", "1", "plain", "true", "0.25", "1.5", "3", "2026-11-22T13:04:05.123456789Z", "21.5C", "7", `["a","b"]`, "raw", "-3"},
		{" us", "2", "comma, \"quote\"\nnew line", "false", "1e+21", "1e-07", "0", "0001-01-01T00:00:00Z", "-2.0C", "", "null", "", "0"},
		{"", "3", `\.`, "false", "0", "0", "0", "0001-01-01T00:00:00Z", "0.0C", "", "null", "", "0"},
	}, rows)
}

func TestCSVOfPointersAndWithRowFunction(t *testing.T) {
	dir := t.TempDir()
	writeOneCheckpoint(t, file.Config[*event]{Dir: dir, Format: file.CSV, CSV: file.CSVConfig[*event]{Header: []string{"ID", "NAME"}}},
		[]*event{{ID: 1, Name: "one"}, {ID: 2, Name: "two"}})
	require.Equal(t, [][]string{{"ID", "NAME"}, {"1", "one"}, {"2", "two"}}, readCSV(t, filepath.Join(dir, "part-0-1-0.csv")))

	dir = t.TempDir()
	row := func(row []string, v int) []string {
		return append(row, strconv.Itoa(v), strings.Repeat("x", v))
	}
	writeOneCheckpoint(t, file.Config[int]{Dir: dir, Format: file.CSV, Compression: file.Zstd, CSV: file.CSVConfig[int]{Row: row, Header: []string{"n", "xs"}}},
		[]int{1, 3})
	rows, err := csv.NewReader(bytes.NewReader(readZstd(t, filepath.Join(dir, "part-0-1-0.csv.zst")))).ReadAll()
	require.NoError(t, err)
	require.Equal(t, [][]string{{"n", "xs"}, {"1", "x"}, {"3", "xxx"}}, rows)

	dir = t.TempDir()
	writeOneCheckpoint(t, file.Config[event]{Dir: dir, Format: file.CSV, CSV: file.CSVConfig[event]{NoHeader: true}}, events(0, 2))
	require.Equal(t, [][]string{{"0", "event a"}, {"1", "event b"}}, readCSV(t, filepath.Join(dir, "part-0-1-0.csv")))
}

type failingText struct{}

func (failingText) MarshalText() ([]byte, error) { return nil, errors.New("cannot say") }

func TestCSVUnencodableField(t *testing.T) {
	type bad struct {
		ID int
		F  failingText
	}
	dir := t.TempDir()
	op := openOp(t, file.Config[bad]{Dir: dir, Format: file.CSV}, 0, 1, nil)
	err := op.Process(bad{ID: 1}, dataflow.NoTimestamp)
	require.ErrorIs(t, err, file.ErrEncode)
	require.ErrorContains(t, err, `sink "files": record of type file_test.bad as CSV: field F: cannot say`)
	require.NoError(t, op.Close())
}

// metric has parquet tags, with a timestamp and an optional column.
type metric struct {
	Name  string    `parquet:"name,dict"`
	At    time.Time `parquet:"at,timestamp(microsecond)"`
	Value float64   `parquet:"value"`
	Tag   *string   `parquet:"tag,optional"`
}

func metrics(n int) []metric {
	base := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	tag := "t"
	ms := make([]metric, n)
	for i := range ms {
		ms[i] = metric{Name: "m" + strconv.Itoa(i%7), At: base.Add(time.Duration(i) * time.Second), Value: float64(i) / 4}
		if i%3 == 0 {
			ms[i].Tag = &tag
		}
	}
	return ms
}

func TestParquet(t *testing.T) {
	for _, c := range []file.Compression{file.Uncompressed, file.Snappy, file.Gzip, file.Zstd} {
		t.Run(c.String(), func(t *testing.T) {
			dir := t.TempDir()
			want := metrics(1000)
			writeOneCheckpoint(t, file.Config[metric]{Dir: dir, Format: file.Parquet, Compression: c}, want)
			require.Equal(t, []string{"part-0-1-0.parquet"}, visibleFiles(t, dir))
			got, err := parquet.ReadFile[metric](filepath.Join(dir, "part-0-1-0.parquet"))
			require.NoError(t, err)
			require.Equal(t, len(want), len(got))
			for i := range want {
				require.Equal(t, want[i].Name, got[i].Name)
				require.True(t, want[i].At.Equal(got[i].At), "row %d: %v != %v", i, want[i].At, got[i].At)
				require.Equal(t, want[i].Value, got[i].Value)
				require.Equal(t, want[i].Tag, got[i].Tag)
			}
		})
	}
}

func TestParquetRollsBySize(t *testing.T) {
	dir := t.TempDir()
	op := openOp(t, file.Config[metric]{Dir: dir, Format: file.Parquet, MaxPartSize: 4 << 10}, 0, 1, nil)
	want := metrics(5000)
	process(t, op, want)
	require.Empty(t, visibleFiles(t, dir))
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.NoError(t, op.Close())
	files := visibleFiles(t, dir)
	require.Greater(t, len(files), 2)
	var got []metric
	for i := range files {
		rows, err := parquet.ReadFile[metric](filepath.Join(dir, "part-0-1-"+strconv.Itoa(i)+".parquet"))
		require.NoError(t, err)
		got = append(got, rows...)
	}
	require.Len(t, got, len(want))
	for i := range want {
		require.Equal(t, want[i].Value, got[i].Value, "row %d in order", i)
	}
}

func TestRollsBySizeBetweenCheckpoints(t *testing.T) {
	dir := t.TempDir()
	op := openOp(t, file.Config[event]{Dir: dir, MaxPartSize: 100}, 0, 1, nil)
	process(t, op, events(0, 10)) // about 30 bytes a line: a part every 4 records
	v, h := listFiles(t, dir)
	require.Empty(t, v)
	require.Len(t, h, 3, "two rolled parts are pending, one is in progress")
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.Equal(t, []string{"part-0-1-0.jsonl", "part-0-1-1.jsonl", "part-0-1-2.jsonl"}, visibleFiles(t, dir))
	require.Equal(t, events(0, 4), readJSONL[event](t, filepath.Join(dir, "part-0-1-0.jsonl")))
	require.Equal(t, events(4, 8), readJSONL[event](t, filepath.Join(dir, "part-0-1-1.jsonl")))
	require.Equal(t, events(8, 10), readJSONL[event](t, filepath.Join(dir, "part-0-1-2.jsonl")))
	for _, f := range visibleFiles(t, dir) {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		require.LessOrEqual(t, st.Size(), int64(100+40), "a part exceeds the limit by one record at most")
	}
	require.NoError(t, op.Close())
}

func TestRollsByAge(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	op := openOp(t, file.Config[event]{Dir: dir, MaxPartAge: time.Minute, Clock: clock}, 0, 1, nil)
	process(t, op, events(0, 2))
	now = now.Add(59 * time.Second)
	process(t, op, events(2, 3))
	require.Len(t, hiddenFiles(t, dir), 1)
	now = now.Add(time.Second)
	process(t, op, events(3, 5)) // the part is a minute old: a new one begins
	require.Len(t, hiddenFiles(t, dir), 2)
	now = now.Add(time.Hour)
	process(t, op, events(5, 6))
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.Equal(t, []string{"part-0-1-0.jsonl", "part-0-1-1.jsonl", "part-0-1-2.jsonl"}, visibleFiles(t, dir))
	require.Equal(t, events(0, 3), readJSONL[event](t, filepath.Join(dir, "part-0-1-0.jsonl")))
	require.Equal(t, events(3, 5), readJSONL[event](t, filepath.Join(dir, "part-0-1-1.jsonl")))
	require.Equal(t, events(5, 6), readJSONL[event](t, filepath.Join(dir, "part-0-1-2.jsonl")))
	require.NoError(t, op.Close())
}

func TestPartitionsByEventTime(t *testing.T) {
	dir := t.TempDir()
	op := openOp(t, file.Config[event]{Dir: dir, PartitionPattern: "dt=2006-01-02/hour=15"}, 0, 1, nil)
	at := func(s string) dataflow.Timestamp {
		tm, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return dataflow.TimestampOf(tm)
	}
	in := []struct {
		id int64
		ts dataflow.Timestamp
	}{
		{1, at("2026-11-22T13:00:00Z")},
		{2, at("2026-11-22T13:59:59Z")},
		{3, at("2026-11-22T14:00:00Z")},
		{4, at("2026-11-22T15:30:00+02:00")}, // 13:30 UTC
		{5, dataflow.NoTimestamp},
		{6, at("1969-12-31T23:59:59Z")},
		{7, at("2026-11-23T00:00:00Z")},
		{8, at("2026-11-22T13:10:00Z")},
	}
	for _, r := range in {
		require.NoError(t, op.Process(event{ID: r.id}, r.ts))
	}
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.NoError(t, op.Close())
	byFile := map[string][]int64{}
	for _, f := range visibleFiles(t, dir) {
		byFile[f] = sortedIDs(readJSONL[event](t, filepath.Join(dir, f)))
	}
	require.Equal(t, map[string][]int64{
		"dt=2026-11-22/hour=13/part-0-1-0.jsonl":                                         {1, 2, 4, 8},
		"dt=2026-11-22/hour=14/part-0-1-1.jsonl":                                         {3},
		"dt=__HIVE_DEFAULT_PARTITION__/hour=__HIVE_DEFAULT_PARTITION__/part-0-1-2.jsonl": {5},
		"dt=1969-12-31/hour=23/part-0-1-3.jsonl":                                         {6},
		"dt=2026-11-23/hour=00/part-0-1-4.jsonl":                                         {7},
	}, byFile)
}

func TestPartitionFunctionAndDefault(t *testing.T) {
	dir := t.TempDir()
	byMonth := func(t time.Time) string { return t.Format("2006/01") }
	op := openOp(t, file.Config[event]{Dir: dir, Partition: byMonth, DefaultPartition: "undated"}, 0, 1, nil)
	require.NoError(t, op.Process(event{ID: 1}, dataflow.TimestampOf(time.Date(2026, 2, 3, 0, 0, 0, 0, time.UTC))))
	require.NoError(t, op.Process(event{ID: 2}, dataflow.NoTimestamp))
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.Equal(t, []string{"2026/02/part-0-1-0.jsonl", "undated/part-0-1-1.jsonl"}, visibleFiles(t, dir))
	require.NoError(t, op.Close())

	// Without a DefaultPartition, and a pattern that is not Hive style.
	dir = t.TempDir()
	op = openOp(t, file.Config[event]{Dir: dir, PartitionPattern: "2006-01-02"}, 0, 1, nil)
	require.NoError(t, op.Process(event{ID: 2}, dataflow.NoTimestamp))
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.Equal(t, []string{file.NoTimestampPartition + "/part-0-1-0.jsonl"}, visibleFiles(t, dir))
	require.NoError(t, op.Close())
}

func TestPartitionFunctionMustStayInsideDir(t *testing.T) {
	for _, bad := range []string{"../escape", "/abs", "a/.hidden", "_temporary", "a//b", ""} {
		dir := t.TempDir()
		op := openOp(t, file.Config[event]{Dir: dir, Partition: func(time.Time) string { return bad }}, 0, 1, nil)
		err := op.Process(event{ID: 1}, dataflow.TimestampOf(time.Unix(0, 0)))
		require.ErrorIs(t, err, file.ErrPartition, "%q", bad)
		require.ErrorContains(t, err, `sink "files"`)
		require.NoError(t, op.Close())
		require.Empty(t, visibleFiles(t, dir))
	}
}
