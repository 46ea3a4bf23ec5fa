package jetstream

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"
)

// Msg describes the JetStream message a record is decoded from.
//
// The source reuses one Msg for every record: a Decoder must not keep the
// pointer, but may keep Header and the strings.
type Msg struct {
	// Stream is the stream's name, Subject the message's subject.
	Stream, Subject string
	// Partition is the subject filter of the partition the message was read
	// from (">" for a source without partitions).
	Partition string
	// Sequence is the message's stream sequence.
	Sequence uint64
	// Time is when the stream stored the message.
	Time time.Time
	// Header holds the message's headers, nil if it has none.
	Header nats.Header
}

// Decoder turns a message's payload into a record. The payload is the
// message's own buffer: a decoder may keep it (a []byte record does).
type Decoder[T any] func(data []byte, m *Msg) (T, error)

// Encoder turns a record into a message payload.
type Encoder[T any] func(v T) ([]byte, error)

// JSON decodes payloads with encoding/json.
func JSON[T any]() Decoder[T] {
	return func(data []byte, _ *Msg) (T, error) {
		var v T
		err := json.Unmarshal(data, &v)
		return v, err
	}
}

// Msgpack decodes payloads with msgpack.
func Msgpack[T any]() Decoder[T] {
	return func(data []byte, _ *Msg) (T, error) {
		var v T
		err := msgpack.Unmarshal(data, &v)
		return v, err
	}
}

// Bytes passes payloads through as they are, without copying.
func Bytes() Decoder[[]byte] {
	return func(data []byte, _ *Msg) ([]byte, error) { return data, nil }
}

// String passes payloads through as strings.
func String() Decoder[string] {
	return func(data []byte, _ *Msg) (string, error) { return string(data), nil }
}

// defaultDecoder is Bytes for []byte, String for string, else JSON.
func defaultDecoder[T any]() Decoder[T] {
	var zero T
	switch any(zero).(type) {
	case []byte:
		d := Bytes()
		return any(d).(Decoder[T])
	case string:
		d := String()
		return any(d).(Decoder[T])
	}
	return JSON[T]()
}

// EncodeJSON encodes records with encoding/json.
func EncodeJSON[T any]() Encoder[T] {
	return func(v T) ([]byte, error) { return json.Marshal(v) }
}

// EncodeMsgpack encodes records with msgpack.
func EncodeMsgpack[T any]() Encoder[T] {
	return func(v T) ([]byte, error) { return msgpack.Marshal(v) }
}

// EncodeBytes publishes []byte records as they are.
func EncodeBytes() Encoder[[]byte] {
	return func(v []byte) ([]byte, error) { return v, nil }
}

// EncodeString publishes string records as their bytes.
func EncodeString() Encoder[string] {
	return func(v string) ([]byte, error) { return []byte(v), nil }
}

// defaultEncoder is EncodeBytes for []byte, EncodeString for string, else
// EncodeJSON.
func defaultEncoder[T any]() Encoder[T] {
	var zero T
	switch any(zero).(type) {
	case []byte:
		e := EncodeBytes()
		return any(e).(Encoder[T])
	case string:
		e := EncodeString()
		return any(e).(Encoder[T])
	}
	return EncodeJSON[T]()
}

// headerTime parses an event-time header: RFC 3339 (with or without
// fractional seconds) or an integer of Unix milliseconds.
func headerTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, fmt.Errorf("missing")
	}
	if c := v[0]; c >= '0' && c <= '9' || c == '-' {
		if ms, ok := parseInt(v); ok {
			return time.UnixMilli(ms).UTC(), nil
		}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor Unix milliseconds", v)
	}
	return t, nil
}

func parseInt(s string) (int64, bool) {
	neg := false
	if s != "" && s[0] == '-' {
		neg, s = true, s[1:]
	}
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}
