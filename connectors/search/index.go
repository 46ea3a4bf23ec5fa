package search

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/mapping"
	"github.com/blevesearch/bleve/v2/search/query"
	bolterrors "go.etcd.io/bbolt/errors"
)

// DefaultLockTimeout is how long opening a Bleve index waits for another
// process to release it when BleveConfig.LockTimeout is zero.
const DefaultLockTimeout = 10 * time.Second

// sharedIndex is a Bleve index opened once per process and shared by every
// sink subtask and reader of this process that names its directory: Bleve
// allows one process per index directory, and within the process one
// bleve.Index serves concurrent batches and searches.
type sharedIndex struct {
	path string // absolute
	idx  bleve.Index
	refs int // under registry.mu
}

var registry = struct {
	mu sync.Mutex
	m  map[string]*sharedIndex
}{m: map[string]*sharedIndex{}}

// acquire opens the index at path, or shares the handle this process has
// open. With create, a missing index is created with m (nil: Bleve's
// default mapping); without, a missing index is ErrIndexNotFound.
func acquire(path string, create bool, m mapping.IndexMapping, lockTimeout time.Duration) (*sharedIndex, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: index %s: %w", ErrIndex, path, err)
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if s := registry.m[abs]; s != nil {
		s.refs++
		return s, nil
	}
	idx, err := openOrCreate(abs, create, m, lockTimeout)
	if err != nil {
		return nil, err
	}
	s := &sharedIndex{path: abs, idx: idx, refs: 1}
	registry.m[abs] = s
	return s, nil
}

func openOrCreate(path string, create bool, m mapping.IndexMapping, lockTimeout time.Duration) (bleve.Index, error) {
	_, err := os.Stat(filepath.Join(path, "index_meta.json"))
	switch {
	case err == nil:
		idx, err := bleve.OpenUsing(path, map[string]any{"bolt_timeout": lockTimeout.String()})
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: index %s: still locked after %v (one process at a time may open a Bleve index)", ErrIndexLocked, path, lockTimeout)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: open index %s: %w", ErrIndex, path, err)
		}
		return idx, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: index %s: %w", ErrIndex, path, err)
	case !create:
		return nil, fmt.Errorf("%w: %s has no Bleve index", ErrIndexNotFound, path)
	}
	// A missing directory, or an empty one (a fresh temporary directory), is
	// where a new index goes; anything else is not ours to write into.
	if entries, err := os.ReadDir(path); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%w: %s is not empty and holds no Bleve index (no index_meta.json)", ErrIndex, path)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: index %s: %w", ErrIndex, path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("%w: create index %s: %w", ErrIndex, path, err)
	}
	if m == nil {
		m = bleve.NewIndexMapping()
	}
	idx, err := bleve.New(path, m)
	if err != nil {
		return nil, fmt.Errorf("%w: create index %s: %w", ErrIndex, path, err)
	}
	return idx, nil
}

// release drops one reference, closing the index with the last.
func (s *sharedIndex) release() error {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	s.refs--
	if s.refs > 0 {
		return nil
	}
	delete(registry.m, s.path)
	if err := s.idx.Close(); err != nil {
		return fmt.Errorf("%w: close index %s: %w", ErrIndex, s.path, err)
	}
	return nil
}

// markerKey is the internal key that records the last checkpoint whose epoch
// subtask of sink in job committed to the index.
func markerKey(job, sink string, subtask int) []byte {
	return []byte("sluice\x00commit\x00" + job + "\x00" + sink + "\x00" + strconv.Itoa(subtask))
}

// marker reads a marker: the checkpoint id, and whether there is one.
func (s *sharedIndex) marker(key []byte) (int64, bool, error) {
	b, err := s.idx.GetInternal(key)
	if err != nil {
		return 0, false, fmt.Errorf("%w: index %s: read commit marker: %w", ErrIndex, s.path, err)
	}
	if len(b) != 8 {
		return 0, false, nil
	}
	return int64(binary.BigEndian.Uint64(b)), true, nil
}

// commitEpoch indexes docs and sets the marker to checkpoint in one Bleve
// batch, which readers see whole or not at all, unless the marker shows that
// this checkpoint's epoch, or a later one, was committed before. It reports
// whether it wrote anything.
func (s *sharedIndex) commitEpoch(marker []byte, checkpoint int64, docs []Doc) (bool, error) {
	last, ok, err := s.marker(marker)
	if err != nil {
		return false, err
	}
	if ok && last >= checkpoint {
		return false, nil
	}
	b := s.idx.NewBatch()
	for i := range docs {
		d := &docs[i]
		var fields map[string]any
		if err := json.Unmarshal(d.Source, &fields); err != nil {
			return false, fmt.Errorf("%w: index %s: document %q: %w", ErrDocument, s.path, d.ID, err)
		}
		if err := b.Index(d.ID, fields); err != nil {
			return false, fmt.Errorf("%w: index %s: document %q: %w", ErrDocument, s.path, d.ID, err)
		}
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(checkpoint))
	b.SetInternal(marker, v[:])
	if err := s.idx.Batch(b); err != nil {
		return false, fmt.Errorf("%w: index %s: write %d documents: %w", ErrIndex, s.path, len(docs), err)
	}
	return true, nil
}

// Index is a Bleve index opened for reading with OpenIndex. In a process
// that runs a Bleve sink on the same directory it shares the sink's handle,
// so it sees every epoch as soon as it is committed, and never part of one.
//
// An Index is safe for concurrent use.
type Index struct {
	s      *sharedIndex
	closed atomic.Bool
}

// OpenIndex opens the Bleve index in directory path for reading. It fails
// with ErrIndexNotFound if there is none, and with ErrIndexLocked if another
// process holds it (after DefaultLockTimeout). Close it when done.
func OpenIndex(path string) (*Index, error) {
	s, err := acquire(path, false, nil, DefaultLockTimeout)
	if err != nil {
		return nil, err
	}
	return &Index{s: s}, nil
}

// Hit is one document found by a search.
type Hit struct {
	// ID is the document id.
	ID string
	// Score is the relevance of the document to the query.
	Score float64
	// Fields are the document's stored fields: strings, float64 numbers,
	// booleans and date-times as RFC 3339 strings, by field path ("a.b"); a
	// field with several values holds a []any.
	Fields map[string]any
}

// Result is the answer of a search.
type Result struct {
	// Total is the number of documents that match, also those beyond the
	// hits returned.
	Total uint64
	// Hits are the best matching documents, by score and then by id.
	Hits []Hit
}

// Search runs a query in Bleve's query string syntax ("+kind:view
// score:>10", see https://blevesearch.com/docs/Query-String-Query/) and
// returns up to size hits with their stored fields. An empty query, or "*",
// matches every document.
func (ix *Index) Search(ctx context.Context, q string, size int) (*Result, error) {
	if ix.closed.Load() {
		return nil, fmt.Errorf("%w: index %s: search after Close", ErrIndex, ix.s.path)
	}
	var bq query.Query
	if q == "" || q == "*" {
		bq = bleve.NewMatchAllQuery()
	} else {
		bq = bleve.NewQueryStringQuery(q)
	}
	req := bleve.NewSearchRequestOptions(bq, size, 0, false)
	req.Fields = []string{"*"}
	req.SortBy([]string{"-_score", "_id"})
	res, err := ix.s.idx.SearchInContext(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%w: index %s: query %q: %w", ErrIndex, ix.s.path, q, err)
	}
	out := &Result{Total: res.Total, Hits: make([]Hit, len(res.Hits))}
	for i, h := range res.Hits {
		out.Hits[i] = Hit{ID: h.ID, Score: h.Score, Fields: h.Fields}
	}
	return out, nil
}

// Bleve returns the underlying bleve.Index for queries that Search does not
// express (facets, sorting, highlighting, bleve.SearchRequest). Use it for
// reading: documents written around the sink escape its exactly-once
// guarantee. It stays valid until Close.
func (ix *Index) Bleve() bleve.Index { return ix.s.idx }

// Path is the absolute directory of the index.
func (ix *Index) Path() string { return ix.s.path }

// Close releases the index; the last user in the process closes it.
func (ix *Index) Close() error {
	if !ix.closed.CompareAndSwap(false, true) {
		return nil
	}
	return ix.s.release()
}

// Search opens the Bleve index in directory path, runs q on it (see
// Index.Search) and closes it again: a convenience for one query. Use
// OpenIndex for many.
func Search(ctx context.Context, path, q string, size int) (*Result, error) {
	ix, err := OpenIndex(path)
	if err != nil {
		return nil, err
	}
	res, err := ix.Search(ctx, q, size)
	if cerr := ix.Close(); err == nil && cerr != nil {
		return nil, cerr
	}
	return res, err
}
