package state

import (
	"fmt"
	"reflect"

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
// unsafe pointers and complex numbers, anywhere inside the type. Interfaces are
// accepted (their dynamic value is checked when encoded).
func checkEncodable(t reflect.Type) error {
	return walkType(t, map[reflect.Type]bool{})
}

func walkType(t reflect.Type, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
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
			if !f.IsExported() || f.Tag.Get("msgpack") == "-" {
				continue
			}
			if err := walkType(f.Type, seen); err != nil {
				return fmt.Errorf("field %s: %w", f.Name, err)
			}
		}
	}
	return nil
}

func typeOf[T any]() reflect.Type { return reflect.TypeOf((*T)(nil)).Elem() }
