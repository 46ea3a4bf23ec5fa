package postgres

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// Rows are encoded as they arrive in the binary COPY format (a field count,
// then each field as a length and its binary value), so a batch or an epoch is
// one byte slice: it costs about the size of the values in memory, goes into a
// checkpoint as one msgpack blob and is streamed to COPY as it is.

// columnInfo is what the catalog says about a table column.
type columnInfo struct {
	name       string
	oid        uint32 // the type, or a domain's base type
	typmod     int32
	typName    string // format_type, e.g. "character varying(5)"
	notNull    bool
	hasDefault bool // a default, an identity or a generated column
}

// Well-known type OIDs with a fast path.
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidFloat4      = 700
	oidFloat8      = 701
	oidVarchar     = 1043
	oidTimestamptz = 1184
	oidJSONB       = 3802
)

// fieldEncoder appends field v (its length, then its binary value, or length
// -1 for NULL) to buf. An error describes the value only; the caller names
// the column.
type fieldEncoder func(buf []byte, v reflect.Value) ([]byte, error)

// rowEncoder encodes records of one struct type for one table.
type rowEncoder struct {
	m    *tableMapping
	info []columnInfo // per m.cols
	encs []fieldEncoder
	// keyBuf collects the encoded key fields of the last row, for upsert
	// deduplication.
	keyBuf []byte
}

func newRowEncoder(tm *pgtype.Map, m *tableMapping, info []columnInfo) (*rowEncoder, error) {
	e := &rowEncoder{m: m, info: info, encs: make([]fieldEncoder, len(m.cols))}
	for i, c := range m.cols {
		enc, err := newFieldEncoder(tm, c.typ, info[i])
		if err != nil {
			return nil, fmt.Errorf("%w: table %s, column %s (%s), field %s: %v", ErrColumn, m.table.raw, c.name, info[i].typName, c.field, err)
		}
		e.encs[i] = enc
	}
	return e, nil
}

// encode appends one tuple for record v. On error buf is returned unchanged
// with the index of the failing column.
func (e *rowEncoder) encode(buf []byte, v reflect.Value, withKey bool) ([]byte, int, error) {
	start := len(buf)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(e.encs)))
	if withKey {
		e.keyBuf = e.keyBuf[:0]
	}
	var err error
	for i, enc := range e.encs {
		c := &e.m.cols[i]
		var fv reflect.Value
		if len(c.index) == 1 {
			fv = v.Field(c.index[0])
		} else {
			fv = v.FieldByIndex(c.index)
		}
		fstart := len(buf)
		buf, err = enc(buf, fv)
		if err != nil {
			return buf[:start], i, err
		}
		if withKey && c.key {
			e.keyBuf = append(e.keyBuf, buf[fstart:]...)
		}
	}
	return buf, -1, nil
}

// newFieldEncoder picks how to encode Go type t into column col: a fast path
// for common pairs, else a pgx encode plan.
func newFieldEncoder(tm *pgtype.Map, t reflect.Type, col columnInfo) (fieldEncoder, error) {
	if t.Kind() == reflect.Pointer {
		if elem := fastEncoder(t.Elem(), col); elem != nil {
			return func(buf []byte, v reflect.Value) ([]byte, error) {
				if v.IsNil() {
					return appendNull(buf), nil
				}
				return elem(buf, v.Elem())
			}, nil
		}
	} else if enc := fastEncoder(t, col); enc != nil {
		return enc, nil
	}
	if t.Kind() == reflect.Interface {
		// The dynamic type decides; pgx memoizes plans per type.
		return func(buf []byte, v reflect.Value) ([]byte, error) {
			val := v.Interface()
			if val == nil {
				return appendNull(buf), nil
			}
			plan := tm.PlanEncode(col.oid, pgtype.BinaryFormatCode, val)
			if plan == nil {
				return buf, fmt.Errorf("cannot encode a %T", val)
			}
			return encodeWith(plan, buf, val)
		}, nil
	}
	plan := tm.PlanEncode(col.oid, pgtype.BinaryFormatCode, reflect.Zero(t).Interface())
	if plan == nil {
		return nil, fmt.Errorf("cannot write Go type %s to it", t)
	}
	return func(buf []byte, v reflect.Value) ([]byte, error) {
		return encodeWith(plan, buf, v.Interface())
	}, nil
}

func encodeWith(plan pgtype.EncodePlan, buf []byte, val any) ([]byte, error) {
	pos := len(buf)
	out, err := plan.Encode(val, append(buf, 0, 0, 0, 0))
	if err != nil {
		return buf[:pos], err
	}
	if out == nil {
		return appendNull(buf[:pos]), nil
	}
	binary.BigEndian.PutUint32(out[pos:], uint32(len(out)-pos-4))
	return out, nil
}

func appendNull(buf []byte) []byte { return append(buf, 0xff, 0xff, 0xff, 0xff) }

func appendLen(buf []byte, n int) []byte { return binary.BigEndian.AppendUint32(buf, uint32(n)) }

// microsecondsFromUnixToY2K is where Postgres timestamps start counting.
const microsecondsFromUnixToY2K = 946684800 * 1000000

// fastEncoder returns an encoder for the common pairs of a Go kind and a
// column type, nil for others.
func fastEncoder(t reflect.Type, col columnInfo) fieldEncoder {
	switch {
	case t == timeType:
		if col.oid != oidTimestamptz {
			return nil
		}
		return func(buf []byte, v reflect.Value) ([]byte, error) {
			tm, _ := reflect.TypeAssert[time.Time](v)
			us := tm.Unix()*1000000 + int64(tm.Nanosecond())/1000 - microsecondsFromUnixToY2K
			return binary.BigEndian.AppendUint64(appendLen(buf, 8), uint64(us)), nil
		}
	case t == rawJSONType:
		if col.oid != oidJSONB {
			return nil
		}
		return func(buf []byte, v reflect.Value) ([]byte, error) {
			if v.IsNil() {
				return appendNull(buf), nil
			}
			b := v.Bytes()
			if !json.Valid(b) {
				return buf, fmt.Errorf("invalid JSON %.40q", b)
			}
			buf = appendLen(buf, len(b)+1)
			return append(append(buf, 1), b...), nil
		}
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return intEncoder(col, func(v reflect.Value) (int64, bool) { return v.Int(), true })
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return intEncoder(col, func(v reflect.Value) (int64, bool) {
			u := v.Uint()
			return int64(u), u <= math.MaxInt64
		})
	case reflect.Float32, reflect.Float64:
		switch col.oid {
		case oidFloat8:
			return func(buf []byte, v reflect.Value) ([]byte, error) {
				return binary.BigEndian.AppendUint64(appendLen(buf, 8), math.Float64bits(v.Float())), nil
			}
		case oidFloat4:
			return func(buf []byte, v reflect.Value) ([]byte, error) {
				f := v.Float()
				if !math.IsInf(f, 0) && !math.IsNaN(f) && math.Abs(f) > math.MaxFloat32 {
					return buf, fmt.Errorf("%v is out of range for real", f)
				}
				return binary.BigEndian.AppendUint32(appendLen(buf, 4), math.Float32bits(float32(f))), nil
			}
		}
	case reflect.Bool:
		if col.oid == oidBool {
			return func(buf []byte, v reflect.Value) ([]byte, error) {
				b := byte(0)
				if v.Bool() {
					b = 1
				}
				return append(appendLen(buf, 1), b), nil
			}
		}
	case reflect.String:
		maxChars := -1
		switch col.oid {
		case oidText:
		case oidVarchar:
			if col.typmod >= 4 {
				maxChars = int(col.typmod - 4)
			}
		default:
			return nil
		}
		return func(buf []byte, v reflect.Value) ([]byte, error) {
			s := v.String()
			if !utf8.ValidString(s) {
				return buf, fmt.Errorf("%.40q is not valid UTF-8", s)
			}
			if strings.IndexByte(s, 0) >= 0 {
				return buf, fmt.Errorf("%.40q contains a NUL byte, which Postgres text cannot hold", s)
			}
			if maxChars >= 0 && len(s) > maxChars && utf8.RuneCountInString(s) > maxChars {
				return buf, fmt.Errorf("%.40q is %d characters, longer than %d", s, utf8.RuneCountInString(s), maxChars)
			}
			return append(appendLen(buf, len(s)), s...), nil
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && col.oid == oidBytea {
			return func(buf []byte, v reflect.Value) ([]byte, error) {
				if v.IsNil() {
					return appendNull(buf), nil
				}
				b := v.Bytes()
				return append(appendLen(buf, len(b)), b...), nil
			}
		}
	}
	return nil
}

func intEncoder(col columnInfo, get func(reflect.Value) (int64, bool)) fieldEncoder {
	var lo, hi int64
	var size int
	switch col.oid {
	case oidInt2:
		lo, hi, size = math.MinInt16, math.MaxInt16, 2
	case oidInt4:
		lo, hi, size = math.MinInt32, math.MaxInt32, 4
	case oidInt8:
		lo, hi, size = math.MinInt64, math.MaxInt64, 8
	default:
		return nil
	}
	return func(buf []byte, v reflect.Value) ([]byte, error) {
		n, ok := get(v)
		if !ok || n < lo || n > hi {
			if !ok {
				return buf, fmt.Errorf("%d is out of range for %s", v.Uint(), col.typName)
			}
			return buf, fmt.Errorf("%d is out of range for %s", n, col.typName)
		}
		buf = appendLen(buf, size)
		switch size {
		case 2:
			return binary.BigEndian.AppendUint16(buf, uint16(n)), nil
		case 4:
			return binary.BigEndian.AppendUint32(buf, uint32(n)), nil
		}
		return binary.BigEndian.AppendUint64(buf, uint64(n)), nil
	}
}

// rowBuffer holds encoded rows. With dedup (upsert) a row replaces an earlier
// one with the same key, as a later upsert would, so that one statement never
// touches a row twice (which ON CONFLICT DO UPDATE refuses).
type rowBuffer struct {
	data  []byte
	rows  int
	dedup bool
	// With dedup: where each row starts, which rows were replaced, and the
	// row of each key.
	starts []int
	dead   []bool
	ndead  int
	keys   map[string]int
}

func newRowBuffer(dedup bool) *rowBuffer {
	b := &rowBuffer{dedup: dedup}
	if dedup {
		b.keys = map[string]int{}
	}
	return b
}

// add encodes v; on error it returns the index of the failing column and the
// buffer is unchanged.
func (b *rowBuffer) add(enc *rowEncoder, v reflect.Value) (int, error) {
	start := len(b.data)
	data, col, err := enc.encode(b.data, v, b.dedup)
	b.data = data
	if err != nil {
		return col, err
	}
	if b.dedup {
		if j, ok := b.keys[string(enc.keyBuf)]; ok {
			b.dead[j] = true
			b.ndead++
		}
		b.keys[string(enc.keyBuf)] = b.rows
		b.starts = append(b.starts, start)
		b.dead = append(b.dead, false)
	}
	b.rows++
	return -1, nil
}

// live is the number of rows to write.
func (b *rowBuffer) live() int { return b.rows - b.ndead }

// compact drops replaced rows and returns the tuples to write and their
// number. The buffer must be reset before it is added to again.
func (b *rowBuffer) compact() ([]byte, int) {
	if b.ndead == 0 {
		return b.data, b.rows
	}
	w := 0
	for i := range b.rows {
		if b.dead[i] {
			continue
		}
		end := len(b.data)
		if i+1 < b.rows {
			end = b.starts[i+1]
		}
		w += copy(b.data[w:], b.data[b.starts[i]:end])
	}
	return b.data[:w], b.rows - b.ndead
}

func (b *rowBuffer) reset() {
	b.data, b.rows = b.data[:0], 0
	if b.dedup {
		b.starts, b.dead, b.ndead = b.starts[:0], b.dead[:0], 0
		clear(b.keys)
	}
}
