package netexchange

import (
	"encoding/binary"
	"fmt"

	"github.com/sluicedata/sluice/internal/exchange"
)

// A data message is
//
//	type (1 byte) | sequence number (8 bytes, big endian) | body
//
// where the body of a batch is the codec's encoding and that of an event is
// its kind (1 byte) and value (8 bytes, big endian). A sync has no body and
// the sequence number of the last message sent before it, not a new one. A
// grant is
//
//	frameCredit | cumulative credit (8 bytes, big endian)
const (
	frameBatch  byte = 1
	frameEvent  byte = 2
	frameCredit byte = 3
	frameSync   byte = 4

	headerLen = 9
	eventLen  = headerLen + 9
	creditLen = 9
)

func appendHeader(dst []byte, typ byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, typ), seq)
}

func appendEvent(dst []byte, seq uint64, ev exchange.Event) []byte {
	dst = appendHeader(dst, frameEvent, seq)
	return binary.BigEndian.AppendUint64(append(dst, byte(ev.Kind)), uint64(ev.Value))
}

func appendCredit(dst []byte, total uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, frameCredit), total)
}

func parseCredit(data []byte) (uint64, error) {
	if len(data) != creditLen || data[0] != frameCredit {
		return 0, fmt.Errorf("%w: a grant of %d bytes (type %v)", ErrDecode, len(data), firstByte(data))
	}
	return binary.BigEndian.Uint64(data[1:]), nil
}

func parseEvent(data []byte) (exchange.Event, error) {
	if len(data) != eventLen {
		return exchange.Event{}, fmt.Errorf("%w: an event of %d bytes", ErrDecode, len(data))
	}
	ev := exchange.Event{Kind: exchange.EventKind(data[headerLen]), Value: int64(binary.BigEndian.Uint64(data[headerLen+1:]))}
	if ev.Kind == exchange.NoEvent || ev.Kind > exchange.Idle {
		return exchange.Event{}, fmt.Errorf("%w: unknown event kind %d", ErrDecode, ev.Kind)
	}
	return ev, nil
}

func firstByte(b []byte) any {
	if len(b) == 0 {
		return "none"
	}
	return b[0]
}
