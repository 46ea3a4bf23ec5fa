package jetstream_test

import "github.com/vmihailenco/msgpack/v5"

// msgpackState encodes a source snapshot as the source does: it is the
// checkpoint format, which must stay readable.
func msgpackState(stream string, offsets map[string]uint64) ([]byte, error) {
	return msgpack.Marshal(map[string]any{"stream": stream, "offsets": offsets})
}
