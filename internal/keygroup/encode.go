package keygroup

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// Encoder appends the canonical encoding of a key to dst. The encoding is what the
// key group hash and the state backends see; it is stable across processes.
type Encoder[K any] func(dst []byte, k K) []byte

// EncoderFor returns the canonical encoder for key type K:
//   - string and []byte-like named string types: the bytes themselves;
//   - signed integers: 8 bytes big-endian with the sign bit flipped (so byte order is numeric order);
//   - unsigned integers: 8 bytes big-endian;
//   - bool: one byte; floats: 8 bytes IEEE-754 big-endian (-0 normalised to 0);
//   - anything else (structs, arrays): msgpack, which is deterministic for comparable types.
//
// The choice is made once per key type, so encoding a key costs no reflection.
func EncoderFor[K any]() Encoder[K] {
	var zero K
	switch reflect.TypeOf(&zero).Elem().Kind() {
	case reflect.String:
		return func(dst []byte, k K) []byte { return append(dst, *(*string)(unsafe.Pointer(&k))...) }
	case reflect.Int:
		return func(dst []byte, k K) []byte { return appendInt(dst, int64(*(*int)(unsafe.Pointer(&k)))) }
	case reflect.Int64:
		return func(dst []byte, k K) []byte { return appendInt(dst, *(*int64)(unsafe.Pointer(&k))) }
	case reflect.Int32:
		return func(dst []byte, k K) []byte { return appendInt(dst, int64(*(*int32)(unsafe.Pointer(&k)))) }
	case reflect.Int16:
		return func(dst []byte, k K) []byte { return appendInt(dst, int64(*(*int16)(unsafe.Pointer(&k)))) }
	case reflect.Int8:
		return func(dst []byte, k K) []byte { return appendInt(dst, int64(*(*int8)(unsafe.Pointer(&k)))) }
	case reflect.Uint:
		return func(dst []byte, k K) []byte {
			return binary.BigEndian.AppendUint64(dst, uint64(*(*uint)(unsafe.Pointer(&k))))
		}
	case reflect.Uint64:
		return func(dst []byte, k K) []byte {
			return binary.BigEndian.AppendUint64(dst, *(*uint64)(unsafe.Pointer(&k)))
		}
	case reflect.Uint32:
		return func(dst []byte, k K) []byte {
			return binary.BigEndian.AppendUint64(dst, uint64(*(*uint32)(unsafe.Pointer(&k))))
		}
	case reflect.Uint16:
		return func(dst []byte, k K) []byte {
			return binary.BigEndian.AppendUint64(dst, uint64(*(*uint16)(unsafe.Pointer(&k))))
		}
	case reflect.Uint8:
		return func(dst []byte, k K) []byte {
			return binary.BigEndian.AppendUint64(dst, uint64(*(*uint8)(unsafe.Pointer(&k))))
		}
	case reflect.Bool:
		return func(dst []byte, k K) []byte {
			if *(*bool)(unsafe.Pointer(&k)) {
				return append(dst, 1)
			}
			return append(dst, 0)
		}
	case reflect.Float64:
		return func(dst []byte, k K) []byte { return appendFloat(dst, *(*float64)(unsafe.Pointer(&k))) }
	case reflect.Float32:
		return func(dst []byte, k K) []byte { return appendFloat(dst, float64(*(*float32)(unsafe.Pointer(&k)))) }
	default:
		return func(dst []byte, k K) []byte {
			b, err := msgpack.Marshal(k)
			if err != nil {
				// Comparable Go values always encode; reaching here is a programming error.
				panic(fmt.Sprintf("keygroup: cannot encode key of type %T: %v", k, err))
			}
			return append(dst, b...)
		}
	}
}

// FixedSize returns the length of the encoding of every K key when it is
// fixed: 8 for integers and floats, 1 for bools; 0 for keys whose encodings
// vary in length.
func FixedSize[K any]() int {
	switch reflect.TypeFor[K]().Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Int16, reflect.Int8,
		reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Uint16, reflect.Uint8,
		reflect.Float64, reflect.Float32:
		return 8
	case reflect.Bool:
		return 1
	}
	return 0
}

func appendInt(dst []byte, v int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(v)^(1<<63))
}

func appendFloat(dst []byte, f float64) []byte {
	if f == 0 {
		f = 0 // normalise -0
	}
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(f))
}

// HashFuncFor returns a function computing Hash(encode(k)) for key type K. Strings
// are hashed in place; other kinds are encoded into a buffer owned by the returned
// function, so each goroutine must call HashFuncFor for its own copy.
func HashFuncFor[K any]() func(k K) uint64 {
	var zero K
	if reflect.TypeOf(&zero).Elem().Kind() == reflect.String {
		return func(k K) uint64 { return HashString(*(*string)(unsafe.Pointer(&k))) }
	}
	switch reflect.TypeOf(&zero).Elem().Kind() {
	// Integers hash their 8-byte encoding without writing it anywhere.
	case reflect.Int:
		return func(k K) uint64 { return HashUint64(uint64(*(*int)(unsafe.Pointer(&k))) ^ 1<<63) }
	case reflect.Int64:
		return func(k K) uint64 { return HashUint64(uint64(*(*int64)(unsafe.Pointer(&k))) ^ 1<<63) }
	case reflect.Int32:
		return func(k K) uint64 { return HashUint64(uint64(int64(*(*int32)(unsafe.Pointer(&k)))) ^ 1<<63) }
	case reflect.Uint:
		return func(k K) uint64 { return HashUint64(uint64(*(*uint)(unsafe.Pointer(&k)))) }
	case reflect.Uint64:
		return func(k K) uint64 { return HashUint64(*(*uint64)(unsafe.Pointer(&k))) }
	case reflect.Uint32:
		return func(k K) uint64 { return HashUint64(uint64(*(*uint32)(unsafe.Pointer(&k)))) }
	}
	enc := EncoderFor[K]()
	var buf []byte
	return func(k K) uint64 {
		buf = enc(buf[:0], k)
		return Hash(buf)
	}
}

// DecoderFor returns the inverse of EncoderFor for integer key types, whose
// encodings are 8 bytes: it takes the encoding as a big-endian uint64 and
// returns the key. It returns nil for other types (floats too: 0.0 and -0.0
// encode alike, so their encoding is not the key).
func DecoderFor[K any]() func(enc uint64) K {
	switch reflect.TypeFor[K]().Kind() {
	case reflect.Int:
		return func(enc uint64) (k K) { *(*int)(unsafe.Pointer(&k)) = int(int64(enc ^ 1<<63)); return }
	case reflect.Int64:
		return func(enc uint64) (k K) { *(*int64)(unsafe.Pointer(&k)) = int64(enc ^ 1<<63); return }
	case reflect.Int32:
		return func(enc uint64) (k K) { *(*int32)(unsafe.Pointer(&k)) = int32(int64(enc ^ 1<<63)); return }
	case reflect.Int16:
		return func(enc uint64) (k K) { *(*int16)(unsafe.Pointer(&k)) = int16(int64(enc ^ 1<<63)); return }
	case reflect.Int8:
		return func(enc uint64) (k K) { *(*int8)(unsafe.Pointer(&k)) = int8(int64(enc ^ 1<<63)); return }
	case reflect.Uint:
		return func(enc uint64) (k K) { *(*uint)(unsafe.Pointer(&k)) = uint(enc); return }
	case reflect.Uint64:
		return func(enc uint64) (k K) { *(*uint64)(unsafe.Pointer(&k)) = enc; return }
	case reflect.Uint32:
		return func(enc uint64) (k K) { *(*uint32)(unsafe.Pointer(&k)) = uint32(enc); return }
	case reflect.Uint16:
		return func(enc uint64) (k K) { *(*uint16)(unsafe.Pointer(&k)) = uint16(enc); return }
	case reflect.Uint8:
		return func(enc uint64) (k K) { *(*uint8)(unsafe.Pointer(&k)) = uint8(enc); return }
	}
	return nil
}
