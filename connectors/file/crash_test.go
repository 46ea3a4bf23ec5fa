package file_test

import (
	"bufio"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/file"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/window"
)

// The process-level crash test. The parent test re-executes its own test
// binary (os.Args[0]) in child mode, selected by an environment variable; the
// child runs a real checkpointed job that writes part files. The parent kills
// the child with SIGKILL at random moments (a random delay after the child
// reported its start, or a random progress on its stdout), restarts it each
// time (it restores from its checkpoint storage), lets the last run finish,
// and compares the final part files, read back by readers independent of the
// sink, with a batch computation of the same input in plain Go.
//
// The job:
//
//	Generator (2 subtasks, rate-limited) --+--> raw file sink "raw" (every record, partitioned by hour)
//	                                       +--> KeyBy -> 1-minute tumbling window (count, sum of seq) -> Map -> file sink "counts"
//	                                       +--> progress sink (prints its progress and completed checkpoints)

const (
	envCrashChild  = "SLUICE_FILE_CRASH_CHILD" // the base directory of the child's job
	envCrashFormat = "SLUICE_FILE_CRASH_FORMAT"
	envCrashSeed   = "SLUICE_FILE_CRASH_SEED" // replays a failed run's kill moments

	crashRecords = 3000
	crashRate    = 1200 // records per second: a run without kills lasts 2.5 s
	crashKeys    = 7
	crashKills   = 5
	crashStep    = 2 * time.Second // event time between two sequence numbers
	crashWindow  = time.Minute
)

// crashBase is the event time of sequence number 0: 100 minutes of event
// time from it span the hours 12, 13 and 14, so the raw sink writes three
// partitions.
var crashBase = time.Date(2026, 11, 22, 12, 30, 0, 0, time.UTC)

// crashEvent is a generated record, written as is by the raw sink.
type crashEvent struct {
	Seq  int64  `json:"seq" csv:"seq" parquet:"seq"`
	Key  string `json:"key" csv:"key" parquet:"key"`
	AtMs int64  `json:"at_ms" csv:"at_ms" parquet:"at_ms"`
}

func genCrashEvent(seq int64) crashEvent {
	return crashEvent{
		Seq:  seq,
		Key:  "k" + strconv.FormatInt(seq%crashKeys, 10),
		AtMs: crashBase.Add(time.Duration(seq) * crashStep).UnixMilli(),
	}
}

// crashCount is the result of one window of one key, written by the counts
// sink. SeqSum catches a record lost and another duplicated in one window.
type crashCount struct {
	Key     string `json:"key" csv:"key" parquet:"key"`
	StartMs int64  `json:"start_ms" csv:"start_ms" parquet:"start_ms"`
	EndMs   int64  `json:"end_ms" csv:"end_ms" parquet:"end_ms"`
	Count   int64  `json:"count" csv:"count" parquet:"count"`
	SeqSum  int64  `json:"seq_sum" csv:"seq_sum" parquet:"seq_sum"`
}

// countSeqs counts a window's records and sums their sequence numbers.
type countSeqs struct{}

type countSeqsAcc struct {
	Count  int64
	SeqSum int64
}

func (countSeqs) CreateAccumulator() countSeqsAcc { return countSeqsAcc{} }
func (countSeqs) Add(a countSeqsAcc, e crashEvent) countSeqsAcc {
	return countSeqsAcc{Count: a.Count + 1, SeqSum: a.SeqSum + e.Seq}
}
func (countSeqs) Merge(a, b countSeqsAcc) countSeqsAcc {
	return countSeqsAcc{Count: a.Count + b.Count, SeqSum: a.SeqSum + b.SeqSum}
}
func (countSeqs) Result(a countSeqsAcc) countSeqsAcc { return a }

// crashFormat is one output format of the crash test: the sinks' settings
// and the extensions of their part files.
type crashFormat struct {
	name       string
	format     file.Format
	rawComp    file.Compression
	countsComp file.Compression
	rawExt     string
	countsExt  string
}

var crashFormats = map[string]crashFormat{
	"jsonl":   {name: "jsonl", format: file.JSONLines, countsComp: file.Gzip, rawExt: ".jsonl", countsExt: ".jsonl.gz"},
	"csv":     {name: "csv", format: file.CSV, countsComp: file.Zstd, rawExt: ".csv", countsExt: ".csv.zst"},
	"parquet": {name: "parquet", format: file.Parquet, rawComp: file.Snappy, countsComp: file.Zstd, rawExt: ".parquet", countsExt: ".parquet"},
}

// TestCrashHelperProcess is the child of the crash tests: it does nothing
// unless the parent set envCrashChild. It runs the job once, restored from
// its checkpoint storage if that holds a completed checkpoint, and exits: 0
// when the job finished, 1 with the error on stderr otherwise.
func TestCrashHelperProcess(t *testing.T) {
	base := os.Getenv(envCrashChild)
	if base == "" {
		return
	}
	f, ok := crashFormats[os.Getenv(envCrashFormat)]
	if !ok {
		fmt.Fprintf(os.Stderr, "crash child: unknown format %q\n", os.Getenv(envCrashFormat))
		os.Exit(2)
	}
	if err := runCrashChild(base, f); err != nil {
		fmt.Fprintf(os.Stderr, "crash child: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("done")
	os.Exit(0)
}

func runCrashChild(base string, f crashFormat) error {
	ctx := context.Background()
	storage, err := checkpoint.NewLocalStorage(filepath.Join(base, "checkpoints"))
	if err != nil {
		return err
	}
	cfg := dataflow.Config{
		Parallelism:       2,
		CheckpointStorage: storage,
		Checkpoint:        checkpoint.Config{Interval: 50 * time.Millisecond},
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	switch m, err := storage.Latest(ctx); {
	case err == nil:
		cfg.RestoreFrom = storage
		fmt.Printf("start restore=%d\n", m.ID)
	case errors.Is(err, checkpoint.ErrNoCheckpoint):
		fmt.Println("start restore=none")
	default:
		return err
	}

	job := dataflow.NewJob("file-crash", cfg)
	events := memory.Generator(job, "events", memory.GeneratorConfig[crashEvent]{
		Generate:   genCrashEvent,
		Count:      crashRecords,
		Rate:       crashRate,
		Watermarks: dataflow.Monotonic(func(e crashEvent) time.Time { return time.UnixMilli(e.AtMs) }),
	})
	dataflow.AddSink(events, "progress", func() dataflow.Operator[crashEvent] { return &progressSink{} })
	file.Sink(events, "raw", file.Config[crashEvent]{
		Dir:              filepath.Join(base, "raw"),
		Format:           f.format,
		Compression:      f.rawComp,
		PartitionPattern: "dt=2006-01-02/hour=15",
		MaxPartSize:      2 << 10, // parts also roll between checkpoints
	})
	windows := window.Aggregate(dataflow.KeyBy(events, func(e crashEvent) string { return e.Key }),
		"per-minute", window.Tumbling(crashWindow), countSeqs{})
	counts := operators.Map(windows, "to-row", func(r window.Result[string, countSeqsAcc]) crashCount {
		return crashCount{
			Key: r.Key, StartMs: time.Unix(0, int64(r.Window.Start)).UnixMilli(), EndMs: time.Unix(0, int64(r.Window.End)).UnixMilli(),
			Count: r.Value.Count, SeqSum: r.Value.SeqSum,
		}
	})
	file.Sink(counts, "counts", file.Config[crashCount]{
		Dir:         filepath.Join(base, "counts"),
		Format:      f.format,
		Compression: f.countsComp,
	})
	return job.Run(ctx)
}

// progressSink tells the parent how far the job is: subtask 0 prints "at
// <seq>" every crashProgressEvery sequence numbers it sees (it gets the even
// ones; the generator's subtasks go at the same rate), and "checkpoint <id>"
// when a checkpoint completed.
type progressSink struct {
	dataflow.OperatorBase
	subtask int
}

const crashProgressEvery = 20

func (p *progressSink) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	p.subtask = oc.Subtask
	return nil
}

func (p *progressSink) Process(e crashEvent, _ dataflow.Timestamp) error {
	if p.subtask == 0 && e.Seq%crashProgressEvery == 0 {
		fmt.Printf("at %d\n", e.Seq)
	}
	return nil
}

func (p *progressSink) NotifyCheckpointComplete(_ context.Context, id int64) error {
	if p.subtask == 0 {
		fmt.Printf("checkpoint %d\n", id)
	}
	return nil
}

// crashBatch computes in plain Go what the job computes: every record, and
// the count and sequence sum of each key's minute.
func crashBatch() ([]crashEvent, []crashCount) {
	raw := make([]crashEvent, 0, crashRecords)
	type kw struct {
		key   string
		start int64
	}
	acc := map[kw]*crashCount{}
	for seq := int64(0); seq < crashRecords; seq++ {
		e := genCrashEvent(seq)
		raw = append(raw, e)
		start := e.AtMs - e.AtMs%crashWindow.Milliseconds()
		c := acc[kw{e.Key, start}]
		if c == nil {
			c = &crashCount{Key: e.Key, StartMs: start, EndMs: start + crashWindow.Milliseconds()}
			acc[kw{e.Key, start}] = c
		}
		c.Count++
		c.SeqSum += seq
	}
	counts := make([]crashCount, 0, len(acc))
	for _, c := range acc {
		counts = append(counts, *c)
	}
	sortCrashCounts(counts)
	return raw, counts
}

func sortCrashCounts(cs []crashCount) {
	slices.SortFunc(cs, func(a, b crashCount) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		if c := cmp.Compare(a.StartMs, b.StartMs); c != 0 {
			return c
		}
		return cmp.Compare(a.Count, b.Count) // equal rows stay adjacent: duplicates show
	})
}

// crashRun is what the parent saw of one run of the child.
type crashRun struct {
	restore     string        // "none" or the checkpoint id restored from
	progress    int64         // the last sequence number it reported
	checkpoints int           // completed checkpoints it reported
	done        bool          // it reported that the job finished
	killed      bool          // the parent sent SIGKILL
	startup     time.Duration // from starting the process to its start line
	took        time.Duration // from starting the process to its exit
	state       *os.ProcessState
	stderr      string
}

// syncBuffer collects the child's stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runCrashChildProcess starts the child and, if killAt >= 0, sends it
// SIGKILL delay after it reported progress to sequence number killAt (0:
// after it reported its start). It returns when the child has exited.
func runCrashChildProcess(t *testing.T, ctx context.Context, base string, f crashFormat, killAt int64, delay time.Duration) crashRun {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashHelperProcess$")
	cmd.Env = append(os.Environ(), envCrashChild+"="+base, envCrashFormat+"="+f.name)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	begin := time.Now()
	require.NoError(t, cmd.Start())

	out := make(chan string)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out <- sc.Text()
		}
	}()
	lines := out // nil once closed

	// If the test fails half-way, kill the child and drain its output, so
	// that neither outlives the test.
	exited := false
	defer func() {
		if !exited {
			_ = cmd.Process.Kill()
			for range out {
			}
			_ = cmd.Wait()
		}
	}()

	run := crashRun{progress: -1}
	var timer <-chan time.Time
	armed := false
	for lines != nil || timer != nil {
		select {
		case line, ok := <-lines:
			if !ok {
				lines, timer = nil, nil // exited: nothing left to kill
				continue
			}
			switch {
			case strings.HasPrefix(line, "start restore="):
				run.restore = strings.TrimPrefix(line, "start restore=")
				run.startup = time.Since(begin)
			case strings.HasPrefix(line, "at "):
				run.progress, err = strconv.ParseInt(strings.TrimPrefix(line, "at "), 10, 64)
				require.NoError(t, err, line)
			case strings.HasPrefix(line, "checkpoint "):
				run.checkpoints++
			case line == "done":
				run.done = true
			}
			if killAt >= 0 && !armed && (killAt == 0 && run.restore != "" || killAt > 0 && run.progress >= killAt) {
				armed, timer = true, time.After(delay)
			}
		case <-timer:
			timer = nil
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			run.killed = true
		}
	}
	exited = true
	_ = cmd.Wait() // the exit status is checked by the caller
	run.state, run.stderr, run.took = cmd.ProcessState, stderr.String(), time.Since(begin)
	return run
}

func killedBySIGKILL(st *os.ProcessState) bool {
	ws, ok := st.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

func crashSeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv(envCrashSeed); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, envCrashSeed)
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// TestCrashKillRestart runs the crash test for every format, in parallel
// (the children mostly wait for their generator's rate):
//   - jsonl: JSON Lines (the counts gzipped), read back with encoding/json
//     and compress/gzip;
//   - csv: CSV (the counts zstd-compressed), read back with encoding/csv;
//   - parquet: Parquet (snappy and zstd pages), read back with parquet-go's
//     generic reader.
func TestCrashKillRestart(t *testing.T) {
	for _, name := range []string{"jsonl", "csv", "parquet"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testCrashKillRestart(t, crashFormats[name])
		})
	}
}

func testCrashKillRestart(t *testing.T, f crashFormat) {
	seed := crashSeed(t)
	t.Logf("seed %d (set %s=%d to replay the kill moments)", seed, envCrashSeed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	base := t.TempDir()
	wantRaw, wantCounts := crashBatch()
	begin := time.Now()
	kills, earlyKills, restores := 0, 0, 0
	for i := 0; ; i++ {
		require.Less(t, i, 2*crashKills+2, "the job never finished")
		killAt, delay := int64(-1), time.Duration(0)
		switch {
		case earlyKills < crashKills/2 && rng.IntN(3) == 0:
			// Right after the start, before or while the sinks commit what
			// the restored checkpoint recorded and delete the hidden files
			// of earlier runs.
			killAt = 0
			delay = time.Duration(rng.Int64N(int64(40 * time.Millisecond)))
		case kills-earlyKills < crashKills:
			// Kill k comes at a random point of the k-th of crashKills
			// slices of the first 70% of the input, plus up to 25 ms. The
			// slices put every kill before the end whatever the machine's
			// speed, and a run restored from a checkpoint older than its
			// slice makes progress first. Kills land while barriers are
			// in flight, between a manifest and the commit of the files,
			// in the middle of a commit, ...
			slice := int64(crashRecords * 7 / 10 / crashKills)
			killAt = int64(kills-earlyKills)*slice + rng.Int64N(slice)
			delay = time.Duration(rng.Int64N(int64(25 * time.Millisecond)))
		}
		run := runCrashChildProcess(t, ctx, base, f, killAt, delay)
		require.NotEmpty(t, run.restore, "run %d did not start; stderr:\n%s", i, run.stderr)
		if run.restore != "none" {
			restores++
		}
		if killAt < 0 {
			require.True(t, run.state.Success(), "the last run failed (%v); stderr:\n%s", run.state, run.stderr)
			require.True(t, run.done)
			t.Logf("run %d: restored from checkpoint %s, %d checkpoints, finished; started in %v, ran %v",
				i, run.restore, run.checkpoints, run.startup.Round(time.Millisecond), run.took.Round(time.Millisecond))
			break
		}
		// The kill happened mid-run: the job had not finished and the
		// child died of the signal.
		require.True(t, run.killed, "run %d exited before the kill (%v, at %d); stderr:\n%s", i, run.state, run.progress, run.stderr)
		require.False(t, run.done, "run %d finished the job before the kill at %d + %v", i, killAt, delay)
		require.True(t, killedBySIGKILL(run.state), "run %d: %v; stderr:\n%s", i, run.state, run.stderr)
		kills++
		if killAt == 0 {
			earlyKills++
		}
		raw, counts := readCrashOutput(t, base, f)
		checkCrashPartial(t, raw, counts, wantRaw, wantCounts)
		t.Logf("run %d: restored from checkpoint %s, killed at record %d + %v (at %d, after %d checkpoints; started in %v, ran %v); visible: %d records, %d window counts",
			i, run.restore, killAt, delay.Round(time.Millisecond), run.progress, run.checkpoints,
			run.startup.Round(time.Millisecond), run.took.Round(time.Millisecond), len(raw), len(counts))
	}
	elapsed := time.Since(begin)
	require.GreaterOrEqual(t, kills, crashKills)
	require.GreaterOrEqual(t, restores, 1, "no run restored from a checkpoint")

	raw, counts := readCrashOutput(t, base, f)
	slices.SortFunc(raw, func(a, b crashEvent) int { return cmp.Compare(a.Seq, b.Seq) })
	require.Equal(t, wantRaw, raw, "every record exactly once")
	sortCrashCounts(counts)
	require.Equal(t, wantCounts, counts, "the window counts of a batch computation")
	for _, dir := range []string{"raw", "counts"} {
		require.Empty(t, hiddenFiles(t, filepath.Join(base, dir)), "the last run committed everything")
	}
	t.Logf("%s: %d kills (SIGKILL, %d right after the start), %d restores, %d records, %d window counts, %v in all",
		f.name, kills, earlyKills, restores, len(raw), len(counts), elapsed.Round(time.Millisecond))
}

// checkCrashPartial checks what readers see while the job is down: complete
// files (the readers parse every visible file strictly), no record twice, and
// only final results.
func checkCrashPartial(t *testing.T, raw []crashEvent, counts []crashCount, wantRaw []crashEvent, wantCounts []crashCount) {
	t.Helper()
	seen := map[int64]bool{}
	for _, e := range raw {
		require.False(t, seen[e.Seq], "record %d visible twice", e.Seq)
		seen[e.Seq] = true
		require.Equal(t, wantRaw[e.Seq], e)
	}
	require.Less(t, len(raw), len(wantRaw), "the kill came before the end")
	seenCounts := map[crashCount]bool{}
	for _, c := range counts {
		require.False(t, seenCounts[c], "window count %+v visible twice", c)
		seenCounts[c] = true
		require.Contains(t, wantCounts, c, "a visible window count is final")
	}
}

var crashFinalName = regexp.MustCompile(`^part-[01]-\d+-\d+\.`)

// readCrashOutput reads every visible part file of both sinks. Hidden files
// (in progress, pending) are never read: readers skip them.
func readCrashOutput(t *testing.T, base string, f crashFormat) ([]crashEvent, []crashCount) {
	t.Helper()
	var raw []crashEvent
	for _, rel := range visibleCrashFiles(t, filepath.Join(base, "raw")) {
		dir, name := filepath.Split(rel)
		require.Regexp(t, crashFinalName, name)
		require.True(t, strings.HasSuffix(name, f.rawExt), rel)
		es := readCrashFile[crashEvent](t, filepath.Join(base, "raw", rel))
		require.NotEmpty(t, es, "%s holds records", rel)
		for _, e := range es {
			require.Equal(t, time.UnixMilli(e.AtMs).UTC().Format("dt=2006-01-02/hour=15/"), dir, "record %d in its event time's partition", e.Seq)
		}
		raw = append(raw, es...)
	}
	var counts []crashCount
	for _, rel := range visibleCrashFiles(t, filepath.Join(base, "counts")) {
		require.Regexp(t, crashFinalName, rel)
		require.True(t, strings.HasSuffix(rel, f.countsExt), rel)
		counts = append(counts, readCrashFile[crashCount](t, filepath.Join(base, "counts", rel))...)
	}
	return raw, counts
}

// visibleCrashFiles lists the visible files under dir, which is missing if
// the child was killed before its sink created it.
func visibleCrashFiles(t *testing.T, dir string) []string {
	t.Helper()
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return visibleFiles(t, dir)
}

// readCrashFile reads one part file with a reader independent of the sink
// (see decodeCrashFile).
func readCrashFile[T any](t *testing.T, path string) []T {
	t.Helper()
	vs, err := decodeCrashFile[T](path)
	require.NoError(t, err)
	return vs
}

// readEventsFile reads a part file of crashEvents.
func readEventsFile(path string) ([]crashEvent, error) { return decodeCrashFile[crashEvent](path) }

// decodeCrashFile reads one part file, its format and compression told by
// its extension, strictly: parquet-go's generic reader for Parquet (which
// needs the footer); compress/gzip or zstd for compressed text (which fail on
// a truncated stream); then encoding/json line by line, the file ending with
// a newline, or encoding/csv, a header first.
func decodeCrashFile[T any](path string) ([]T, error) {
	if strings.HasSuffix(path, ".parquet") {
		return parquet.ReadFile[T](path)
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var r io.Reader = fh
	name := path
	switch {
	case strings.HasSuffix(name, ".gz"):
		zr, err := gzip.NewReader(fh)
		if err != nil {
			return nil, err
		}
		r, name = zr, strings.TrimSuffix(name, ".gz")
	case strings.HasSuffix(name, ".zst"):
		zr, err := zstd.NewReader(fh)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r, name = zr, strings.TrimSuffix(name, ".zst")
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasSuffix(name, ".jsonl"):
		if len(b) == 0 || b[len(b)-1] != '\n' {
			return nil, errors.New("JSON Lines file does not end with a whole line")
		}
		var out []T
		for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			var v T
			dec := json.NewDecoder(strings.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&v); err != nil {
				return nil, fmt.Errorf("line %d %q: %w", i+1, line, err)
			}
			out = append(out, v)
		}
		return out, nil
	case strings.HasSuffix(name, ".csv"):
		if len(b) == 0 || b[len(b)-1] != '\n' {
			return nil, errors.New("CSV file does not end with a whole line")
		}
		rows, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
		if err != nil {
			return nil, err
		}
		return csvRows[T](rows)
	}
	return nil, fmt.Errorf("unknown extension")
}

// csvRows maps CSV rows (a header first) to crashEvent or crashCount.
func csvRows[T any](rows [][]string) ([]T, error) {
	var errs []error
	num := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			errs = append(errs, err)
		}
		return n
	}
	var out []T
	header := []string{"seq", "key", "at_ms"}
	if _, ok := any(out).([]crashCount); ok {
		header = []string{"key", "start_ms", "end_ms", "count", "seq_sum"}
	}
	// The reader checks that every row has as many fields as the header.
	if len(rows) == 0 || !slices.Equal(rows[0], header) {
		return nil, fmt.Errorf("CSV header is not %q", header)
	}
	switch outp := any(&out).(type) {
	case *[]crashEvent:
		for _, r := range rows[1:] {
			*outp = append(*outp, crashEvent{Seq: num(r[0]), Key: r[1], AtMs: num(r[2])})
		}
	case *[]crashCount:
		for _, r := range rows[1:] {
			*outp = append(*outp, crashCount{Key: r[0], StartMs: num(r[1]), EndMs: num(r[2]), Count: num(r[3]), SeqSum: num(r[4])})
		}
	default:
		return nil, fmt.Errorf("no CSV mapping for %T", out)
	}
	return out, errors.Join(errs...)
}
