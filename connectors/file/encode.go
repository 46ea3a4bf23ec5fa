package file

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"reflect"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
)

// A part file is written through a chain made once per encoder and reused for
// every part (Reset, not reallocated):
//
//	JSON Lines, CSV: record -> bufio.Writer -> [gzip|zstd] -> countingWriter -> file
//	Parquet:         record -> row batch -> parquet.GenericWriter -> countingWriter -> file
//
// so a record costs its encoding and a copy into a buffer; the file sees
// large writes.

// countingWriter counts the bytes that reached the file and keeps the first
// write error, which tells a file's failure from an encoding failure (the
// encoders do not distinguish them).
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// recordEncoder writes records of one part file. The committer owns it and
// reuses it for the next part after finish (or an abort) with reset.
type recordEncoder[T any] interface {
	// reset starts a new part written to w.
	reset(w *countingWriter) error
	// write encodes v and returns the part's size so far in bytes, as far as
	// it is known. The error is the file's if the countingWriter has one, else
	// v could not be encoded (and nothing of it was written).
	write(v T) (int64, error)
	// finish writes what is buffered and the format's trailer to w.
	finish() error
}

// compressor is a gzip or zstd stream writer.
type compressor interface {
	io.Writer
	Reset(w io.Writer)
	Close() error
}

func newCompressor(c Compression) (compressor, error) {
	switch c {
	case Gzip:
		return gzip.NewWriter(io.Discard), nil
	case Zstd:
		// One goroutine: the sink's subtask is the unit of parallelism, and
		// an encoder without background goroutines needs no shutdown.
		return zstd.NewWriter(io.Discard, zstd.WithEncoderConcurrency(1))
	}
	return nil, nil
}

// textOut is the buffered, optionally compressed output of a text format.
type textOut struct {
	bw   *bufio.Writer
	comp compressor
	cw   *countingWriter
}

const textBufferSize = 64 << 10

func newTextOut(c Compression) (textOut, error) {
	comp, err := newCompressor(c)
	if err != nil {
		return textOut{}, err
	}
	return textOut{bw: bufio.NewWriterSize(io.Discard, textBufferSize), comp: comp}, nil
}

func (t *textOut) reset(cw *countingWriter) {
	t.cw = cw
	if t.comp != nil {
		t.comp.Reset(cw)
		t.bw.Reset(t.comp)
		return
	}
	t.bw.Reset(cw)
}

func (t *textOut) size() int64 {
	if t.comp != nil {
		return t.cw.n
	}
	return t.cw.n + int64(t.bw.Buffered())
}

func (t *textOut) finish() error {
	if err := t.bw.Flush(); err != nil {
		return err
	}
	if t.comp != nil {
		return t.comp.Close()
	}
	return nil
}

// jsonEncoder writes JSON Lines with encoding/json.
type jsonEncoder[T any] struct {
	textOut
	enc *json.Encoder
}

func newJSONEncoder[T any](c Compression) (recordEncoder[T], error) {
	out, err := newTextOut(c)
	if err != nil {
		return nil, err
	}
	e := &jsonEncoder[T]{textOut: out}
	e.enc = json.NewEncoder(e.bw) // bw is reset, never replaced
	return e, nil
}

func (e *jsonEncoder[T]) reset(cw *countingWriter) error { e.textOut.reset(cw); return nil }

func (e *jsonEncoder[T]) write(v T) (int64, error) {
	// Encode marshals the whole value before writing it, so a value that
	// fails leaves nothing behind.
	err := e.enc.Encode(v)
	return e.size(), err
}

// parquetEncoder batches records and writes them with parquet-go's generic
// writer, whose column buffers are compressed into pages as they fill.
type parquetEncoder[T any] struct {
	w     *parquet.GenericWriter[T]
	cw    *countingWriter
	rows  []T
	known int64 // the writer's size estimate at the last batch
}

const (
	parquetBatch = 256
	// parquetRowGroupBytes flushes a row group once its buffered data is about
	// this large, which bounds the memory of an open part.
	parquetRowGroupBytes = 64 << 20
)

func parquetCodec(c Compression) parquet.WriterOption {
	switch c {
	case Gzip:
		return parquet.Compression(&parquet.Gzip)
	case Zstd:
		return parquet.Compression(&parquet.Zstd)
	case Snappy:
		return parquet.Compression(&parquet.Snappy)
	}
	return parquet.Compression(&parquet.Uncompressed)
}

func newParquetEncoder[T any](c Compression, opts []parquet.WriterOption) (enc recordEncoder[T], err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("Parquet schema of %s: %v", typeName[T](), r)
		}
	}()
	all := append([]parquet.WriterOption{parquetCodec(c)}, opts...)
	w := parquet.NewGenericWriter[T](io.Discard, all...)
	return &parquetEncoder[T]{w: w, rows: make([]T, 0, parquetBatch)}, nil
}

func (e *parquetEncoder[T]) reset(cw *countingWriter) error {
	e.cw = cw
	e.w.Reset(cw)
	clear(e.rows)
	e.rows, e.known = e.rows[:0], 0
	return nil
}

func (e *parquetEncoder[T]) write(v T) (int64, error) {
	e.rows = append(e.rows, v)
	if len(e.rows) == cap(e.rows) {
		err := e.flushRows()
		return e.known, err
	}
	return e.known, nil
}

func (e *parquetEncoder[T]) flushRows() (err error) {
	if len(e.rows) == 0 {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parquet-go: %v", r)
		}
		clear(e.rows) // drop references for the GC
		e.rows = e.rows[:0]
	}()
	if _, err := e.w.Write(e.rows); err != nil {
		return err
	}
	e.known = e.w.Size()
	if e.known-e.cw.n > parquetRowGroupBytes {
		return e.w.Flush()
	}
	return nil
}

func (e *parquetEncoder[T]) finish() error {
	if err := e.flushRows(); err != nil {
		return err
	}
	return e.w.Close()
}

func typeName[T any]() string {
	t := reflect.TypeFor[T]()
	if t == nil {
		return "interface"
	}
	return t.String()
}
