package state

import (
	"encoding"
	"fmt"
	"reflect"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Codec encodes and decodes the values of one state. Implementations must be
// safe for concurrent use: a snapshot encodes values on the goroutine that
// writes it while the operator keeps using the codec.
type Codec[T any] interface {
	// Append appends the encoding of v to dst.
	Append(dst []byte, v T) ([]byte, error)
	// Decode decodes b. The result must not alias b.
	Decode(b []byte) (T, error)
}

// Msgpack returns the default codec, msgpack via github.com/vmihailenco/msgpack/v5.
// Exported struct fields are encoded by name, so fields can be added and
// removed between versions of a job.
func Msgpack[T any]() Codec[T] {
	if c, ok := fastMsgpack[T](); ok {
		return c
	}
	return msgpackCodec[T]{}
}

type msgpackCodec[T any] struct{}

func (msgpackCodec[T]) Append(dst []byte, v T) ([]byte, error) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

func (msgpackCodec[T]) Decode(b []byte) (T, error) {
	var v T
	err := msgpack.Unmarshal(b, &v)
	return v, err
}

// checkEncodable rejects types msgpack cannot round-trip: channels, functions,
// unsafe pointers and complex numbers, anywhere inside the type, and structs
// with unexported fields, which msgpack would silently drop: such state would
// come back from a snapshot as zero values. Interfaces are accepted (their
// dynamic value is checked when encoded), and so are types that encode
// themselves (msgpack.CustomEncoder, msgpack.Marshaler,
// encoding.BinaryMarshaler, time.Time).
func checkEncodable(t reflect.Type) error {
	return walkType(t, map[reflect.Type]bool{})
}

var selfEncoding = []reflect.Type{
	reflect.TypeFor[msgpack.CustomEncoder](),
	reflect.TypeFor[msgpack.Marshaler](),
	reflect.TypeFor[encoding.BinaryMarshaler](),
}

func encodesItself(t reflect.Type) bool {
	if t == reflect.TypeFor[time.Time]() {
		return true
	}
	for _, i := range selfEncoding {
		if t.Implements(i) || reflect.PointerTo(t).Implements(i) {
			return true
		}
	}
	return false
}

func walkType(t reflect.Type, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	if t.Kind() != reflect.Interface && encodesItself(t) {
		return nil
	}
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return fmt.Errorf("%w: %s (kind %s)", ErrUnsupportedType, t, t.Kind())
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return walkType(t.Elem(), seen)
	case reflect.Map:
		if err := walkType(t.Key(), seen); err != nil {
			return err
		}
		return walkType(t.Elem(), seen)
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Tag.Get("msgpack") == "-" {
				continue // deliberately not saved
			}
			if !f.IsExported() && !(f.Anonymous && f.Type.Kind() == reflect.Struct) {
				// An embedded unexported struct is inlined by msgpack: walk it.
				return fmt.Errorf("%w: field %s of %s is unexported, so the default codec would not save it; export it, tag it `msgpack:\"-\"`, or supply a codec with WithCodec", ErrUnsupportedType, f.Name, t)
			}
			if err := walkType(f.Type, seen); err != nil {
				return fmt.Errorf("field %s: %w", f.Name, err)
			}
		}
	}
	return nil
}

func typeOf[T any]() reflect.Type { return reflect.TypeOf((*T)(nil)).Elem() }
