package state

import (
	"encoding/binary"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// Fast paths of the msgpack codec for the commonest value types: the same wire
// format, written and read without reflection or allocation (strings aside).
// Anything unusual on decode falls back to msgpack itself.

func fastMsgpack[T any]() (Codec[T], bool) {
	var c any
	switch any(*new(T)).(type) {
	case int64:
		c = intCodec[int64]{}
	case int:
		c = intCodec[int]{}
	case int32:
		c = intCodec[int32]{}
	case uint64:
		c = intCodec[uint64]{}
	case float64:
		c = float64Codec{}
	case string:
		c = stringCodec{}
	default:
		return nil, false
	}
	return c.(Codec[T]), true
}

type integer interface {
	~int | ~int32 | ~int64 | ~uint64
}

type intCodec[I integer] struct{}

func (intCodec[I]) Append(dst []byte, v I) ([]byte, error) {
	if v < 0 {
		n := int64(v)
		switch {
		case n >= -32:
			return append(dst, byte(n)), nil
		case n >= math.MinInt8:
			return append(dst, 0xd0, byte(n)), nil
		case n >= math.MinInt16:
			return binary.BigEndian.AppendUint16(append(dst, 0xd1), uint16(n)), nil
		case n >= math.MinInt32:
			return binary.BigEndian.AppendUint32(append(dst, 0xd2), uint32(n)), nil
		}
		return binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(n)), nil
	}
	u := uint64(v)
	switch {
	case u <= 127:
		return append(dst, byte(u)), nil
	case u <= math.MaxUint8:
		return append(dst, 0xcc, byte(u)), nil
	case u <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xcd), uint16(u)), nil
	case u <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, 0xce), uint32(u)), nil
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xcf), u), nil
}

func (intCodec[I]) Decode(b []byte) (I, error) {
	if len(b) > 0 {
		c := b[0]
		switch {
		case c <= 0x7f:
			if len(b) == 1 {
				return I(c), nil
			}
		case c >= 0xe0:
			if len(b) == 1 {
				return I(int8(c)), nil
			}
		case c == 0xcc && len(b) == 2:
			return I(b[1]), nil
		case c == 0xcd && len(b) == 3:
			return I(binary.BigEndian.Uint16(b[1:])), nil
		case c == 0xce && len(b) == 5:
			return I(binary.BigEndian.Uint32(b[1:])), nil
		case c == 0xcf && len(b) == 9:
			return I(binary.BigEndian.Uint64(b[1:])), nil
		case c == 0xd0 && len(b) == 2:
			return I(int8(b[1])), nil
		case c == 0xd1 && len(b) == 3:
			return I(int16(binary.BigEndian.Uint16(b[1:]))), nil
		case c == 0xd2 && len(b) == 5:
			return I(int32(binary.BigEndian.Uint32(b[1:]))), nil
		case c == 0xd3 && len(b) == 9:
			return I(int64(binary.BigEndian.Uint64(b[1:]))), nil
		}
	}
	var v I
	err := msgpack.Unmarshal(b, &v)
	return v, err
}

type float64Codec struct{}

func (float64Codec) Append(dst []byte, v float64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(append(dst, 0xcb), math.Float64bits(v)), nil
}

func (float64Codec) Decode(b []byte) (float64, error) {
	if len(b) == 9 && b[0] == 0xcb {
		return math.Float64frombits(binary.BigEndian.Uint64(b[1:])), nil
	}
	var v float64
	err := msgpack.Unmarshal(b, &v)
	return v, err
}

type stringCodec struct{}

func (stringCodec) Append(dst []byte, v string) ([]byte, error) {
	n := len(v)
	switch {
	case n <= 31:
		dst = append(dst, 0xa0|byte(n))
	case n <= math.MaxUint8:
		dst = append(dst, 0xd9, byte(n))
	case n <= math.MaxUint16:
		dst = binary.BigEndian.AppendUint16(append(dst, 0xda), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint32(append(dst, 0xdb), uint32(n))
	}
	return append(dst, v...), nil
}

func (stringCodec) Decode(b []byte) (string, error) {
	if len(b) > 0 && b[0]&0xe0 == 0xa0 && len(b) == 1+int(b[0]&0x1f) {
		return string(b[1:]), nil
	}
	var v string
	err := msgpack.Unmarshal(b, &v)
	return v, err
}
