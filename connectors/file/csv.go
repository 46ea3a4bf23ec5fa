package file

import (
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// CSV rows of a struct are built without reflection per record: the fields
// are resolved once into offsets and kinds, each record is copied into a
// scratch value, and each field is read at its offset and appended to the
// row's bytes. Only fields of other types (MarshalText, pointers, slices,
// maps, nested structs) go through reflection.

type cellKind uint8

const (
	cellString cellKind = iota
	cellBool
	cellInt
	cellInt8
	cellInt16
	cellInt32
	cellInt64
	cellUint
	cellUint8
	cellUint16
	cellUint32
	cellUint64
	cellUintptr
	cellFloat32
	cellFloat64
	cellTime
	cellBytes
	cellOther // through reflection: MarshalText, pointers, JSON
)

type csvField struct {
	name string
	off  uintptr
	kind cellKind
	typ  reflect.Type
}

var (
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
	timeType          = reflect.TypeFor[time.Time]()
)

// csvFields resolves the columns of struct type t.
func csvFields(t reflect.Type) ([]csvField, error) {
	var fields []csvField
	var walk func(t reflect.Type, base uintptr, depth int)
	walk = func(t reflect.Type, base uintptr, depth int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("csv")
			name, _, _ := strings.Cut(tag, ",")
			if name == "-" {
				continue
			}
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct && depth < 16 && !implementsText(f.Type) {
				walk(f.Type, base+f.Offset, depth+1)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			fields = append(fields, csvField{name: name, off: base + f.Offset, kind: cellKindOf(f.Type), typ: f.Type})
		}
	}
	walk(t, 0, 0)
	if len(fields) == 0 {
		return nil, fmt.Errorf("CSV of %s: no exported fields", t)
	}
	return fields, nil
}

func implementsText(t reflect.Type) bool {
	return t.Implements(textMarshalerType) || reflect.PointerTo(t).Implements(textMarshalerType)
}

func cellKindOf(t reflect.Type) cellKind {
	if t == timeType {
		return cellTime
	}
	if implementsText(t) {
		return cellOther
	}
	switch t.Kind() {
	case reflect.String:
		return cellString
	case reflect.Bool:
		return cellBool
	case reflect.Int:
		return cellInt
	case reflect.Int8:
		return cellInt8
	case reflect.Int16:
		return cellInt16
	case reflect.Int32:
		return cellInt32
	case reflect.Int64:
		return cellInt64
	case reflect.Uint:
		return cellUint
	case reflect.Uint8:
		return cellUint8
	case reflect.Uint16:
		return cellUint16
	case reflect.Uint32:
		return cellUint32
	case reflect.Uint64:
		return cellUint64
	case reflect.Uintptr:
		return cellUintptr
	case reflect.Float32:
		return cellFloat32
	case reflect.Float64:
		return cellFloat64
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return cellBytes
		}
	}
	return cellOther
}

// csvEncoder writes CSV rows, a header line first in every part.
type csvEncoder[T any] struct {
	textOut
	header  []string
	fields  []csvField // struct mapping, or nil with row
	rowFn   func(row []string, v T) []string
	ptr     bool // T is a pointer to the struct
	scratch T
	cells   []string
	line    []byte
	tmp     []byte
}

func newCSVEncoder[T any](c Compression, cfg CSVConfig[T]) (recordEncoder[T], error) {
	e := &csvEncoder[T]{rowFn: cfg.Row, header: cfg.Header}
	if e.rowFn == nil {
		t := reflect.TypeFor[T]()
		if t != nil && t.Kind() == reflect.Pointer {
			t, e.ptr = t.Elem(), true
		}
		if t == nil || t.Kind() != reflect.Struct {
			return nil, fmt.Errorf("CSV of %s needs a struct type or CSVConfig.Row", typeName[T]())
		}
		fields, err := csvFields(t)
		if err != nil {
			return nil, err
		}
		e.fields = fields
		if e.header == nil {
			for _, f := range fields {
				e.header = append(e.header, f.name)
			}
		} else if len(e.header) != len(fields) {
			return nil, fmt.Errorf("CSV header has %d columns, %s has %d fields", len(e.header), typeName[T](), len(fields))
		}
	}
	if cfg.NoHeader {
		e.header = nil
	}
	out, err := newTextOut(c)
	if err != nil {
		return nil, err
	}
	e.textOut = out
	return e, nil
}

func (e *csvEncoder[T]) reset(cw *countingWriter) error {
	e.textOut.reset(cw)
	if e.header == nil {
		return nil
	}
	e.line = e.line[:0]
	for i, h := range e.header {
		e.line = appendCSVCell(e.line, h, i == 0)
	}
	e.line = append(e.line, '\n')
	_, err := e.bw.Write(e.line)
	return err
}

func (e *csvEncoder[T]) write(v T) (int64, error) {
	err := e.writeRow(v)
	return e.size(), err
}

func (e *csvEncoder[T]) writeRow(v T) (err error) {
	line := e.line[:0]
	if e.rowFn != nil {
		e.cells = e.rowFn(e.cells[:0], v)
		for i, c := range e.cells {
			line = appendCSVCell(line, c, i == 0)
		}
		clear(e.cells)
	} else {
		var p unsafe.Pointer
		if e.ptr {
			// T is *S: the pointer's target holds the fields.
			p = *(*unsafe.Pointer)(unsafe.Pointer(&v))
			if p == nil {
				return fmt.Errorf("nil %s", typeName[T]())
			}
		} else {
			e.scratch = v
			p = unsafe.Pointer(&e.scratch)
		}
		for i := range e.fields {
			if line, err = e.appendField(line, &e.fields[i], p, i == 0); err != nil {
				return err
			}
		}
		if !e.ptr {
			var zero T
			e.scratch = zero // keep no references for the GC
		}
	}
	line = append(line, '\n')
	e.line = line
	_, err = e.bw.Write(line)
	return err
}

func (e *csvEncoder[T]) appendField(line []byte, f *csvField, base unsafe.Pointer, first bool) ([]byte, error) {
	if !first {
		line = append(line, ',')
	}
	p := unsafe.Add(base, f.off)
	switch f.kind {
	case cellString:
		return appendCSVCell(line, *(*string)(p), true), nil
	case cellBytes:
		return appendCSVCell(line, string(*(*[]byte)(p)), true), nil
	case cellBool:
		return strconv.AppendBool(line, *(*bool)(p)), nil
	case cellInt:
		return strconv.AppendInt(line, int64(*(*int)(p)), 10), nil
	case cellInt8:
		return strconv.AppendInt(line, int64(*(*int8)(p)), 10), nil
	case cellInt16:
		return strconv.AppendInt(line, int64(*(*int16)(p)), 10), nil
	case cellInt32:
		return strconv.AppendInt(line, int64(*(*int32)(p)), 10), nil
	case cellInt64:
		return strconv.AppendInt(line, *(*int64)(p), 10), nil
	case cellUint:
		return strconv.AppendUint(line, uint64(*(*uint)(p)), 10), nil
	case cellUint8:
		return strconv.AppendUint(line, uint64(*(*uint8)(p)), 10), nil
	case cellUint16:
		return strconv.AppendUint(line, uint64(*(*uint16)(p)), 10), nil
	case cellUint32:
		return strconv.AppendUint(line, uint64(*(*uint32)(p)), 10), nil
	case cellUint64:
		return strconv.AppendUint(line, *(*uint64)(p), 10), nil
	case cellUintptr:
		return strconv.AppendUint(line, uint64(*(*uintptr)(p)), 10), nil
	case cellFloat32:
		return appendFloat(line, float64(*(*float32)(p)), 32), nil
	case cellFloat64:
		return appendFloat(line, *(*float64)(p), 64), nil
	case cellTime:
		return (*(*time.Time)(p)).AppendFormat(line, time.RFC3339Nano), nil
	}
	v := reflect.NewAt(f.typ, p).Elem()
	var err error
	e.tmp, err = appendValue(e.tmp[:0], v)
	if err != nil {
		return line, fmt.Errorf("field %s: %w", f.name, err)
	}
	return appendCSVCell(line, string(e.tmp), true), nil
}

// appendValue formats a field of a type without a fast path.
func appendValue(dst []byte, v reflect.Value) ([]byte, error) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return dst, nil
		}
		if m, ok := v.Interface().(encoding.TextMarshaler); ok {
			b, err := m.MarshalText()
			return append(dst, b...), err
		}
		v = v.Elem()
	}
	if v.CanInterface() {
		if m, ok := v.Interface().(encoding.TextMarshaler); ok {
			b, err := m.MarshalText()
			return append(dst, b...), err
		}
	}
	if v.CanAddr() {
		if m, ok := v.Addr().Interface().(encoding.TextMarshaler); ok {
			b, err := m.MarshalText()
			return append(dst, b...), err
		}
	}
	switch v.Kind() {
	case reflect.String:
		return append(dst, v.String()...), nil
	case reflect.Bool:
		return strconv.AppendBool(dst, v.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.AppendInt(dst, v.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.AppendUint(dst, v.Uint(), 10), nil
	case reflect.Float32:
		return appendFloat(dst, v.Float(), 32), nil
	case reflect.Float64:
		return appendFloat(dst, v.Float(), 64), nil
	}
	b, err := json.Marshal(v.Interface())
	return append(dst, b...), err
}

// appendFloat formats like encoding/json: plain notation for moderate
// magnitudes, exponent notation for very small or large ones; NaN and
// infinities as NaN, +Inf, -Inf.
func appendFloat(dst []byte, f float64, bits int) []byte {
	fmtc := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		fmtc = 'e'
	}
	return strconv.AppendFloat(dst, f, fmtc, -1, bits)
}

// appendCSVCell appends s as one CSV field, quoted as encoding/csv would
// quote it. first says there is no comma to write before it; callers that
// wrote the comma themselves pass true.
func appendCSVCell(dst []byte, s string, first bool) []byte {
	if !first {
		dst = append(dst, ',')
	}
	if !cellNeedsQuotes(s) {
		return append(dst, s...)
	}
	dst = append(dst, '"')
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			break
		}
		dst = append(dst, s[:i+1]...)
		dst = append(dst, '"')
		s = s[i+1:]
	}
	dst = append(dst, s...)
	return append(dst, '"')
}

// cellNeedsQuotes follows encoding/csv's fieldNeedsQuotes for a comma.
func cellNeedsQuotes(s string) bool {
	if s == "" {
		return false
	}
	if s == `\.` {
		return true
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',', '"', '\r', '\n':
			return true
		}
	}
	r, _ := utf8.DecodeRuneInString(s)
	return unicode.IsSpace(r)
}
