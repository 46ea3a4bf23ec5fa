package netexchange

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicedata/sluice/internal/exchange"
)

// Codec encodes a batch of records, with its key groups if it has any, into
// bytes and back. Both ends of a channel must use the same codec. A codec is
// used by every Sender and Receiver of an edge at once: its methods must be
// safe for concurrent use.
type Codec[E any] interface {
	// AppendBatch appends the encoding of records and keyGroups (nil for a
	// batch of an exchange that is not keyed, else parallel to records) to
	// dst and returns the extended slice. It must not retain records or
	// keyGroups.
	AppendBatch(dst []byte, records []E, keyGroups []uint16) ([]byte, error)
	// DecodeBatch decodes data, which AppendBatch produced, into b: an
	// empty batch (as exchange.Gate.NewBatch returns) whose spare capacity
	// holds zero values. It sets b.KeyGroups to nil for a batch that had
	// none. It must not retain data.
	DecodeBatch(data []byte, b *exchange.Batch[E]) error
}

// Msgpack returns the default codec: records in MessagePack
// (github.com/vmihailenco/msgpack/v5: structs as maps by field name,
// integers in their shortest form), key groups as raw little-endian uint16.
// Structs go as maps, not arrays, because msgpack v5 allocates an error per
// array-encoded struct it decodes; maps decode without allocating and let
// either end add a field.
// Its encoding is
//
//	uvarint k | (k-1) key groups, 2 bytes each | msgpack array of records
//
// where k = 0 means no key groups. Records whose pointer type implements
// msgpack.CustomEncoder (and msgpack.CustomDecoder) are encoded (and decoded)
// by those methods, called directly: that saves msgpack's look-up of an
// encoder per record and its reflection per field, which is most of the cost
// of a small record.
func Msgpack[E any]() Codec[E] {
	c := &msgpackCodec[E]{}
	var zero E
	_, c.customEnc = any(&zero).(msgpack.CustomEncoder)
	_, c.customDec = any(&zero).(msgpack.CustomDecoder)
	c.enc.New = func() any {
		s := &encState{}
		s.enc = msgpack.NewEncoder(&s.w)
		s.enc.UseCompactInts(true)
		return s
	}
	c.dec.New = func() any {
		s := &decState{}
		s.dec = msgpack.NewDecoder(&s.r)
		return s
	}
	return c
}

type msgpackCodec[E any] struct {
	enc, dec sync.Pool // *encState, *decState: one encoder or decoder per batch in flight
	// customEnc and customDec say that *E has its own msgpack methods.
	customEnc, customDec bool
}

type encState struct {
	enc *msgpack.Encoder
	w   appendWriter
}

type decState struct {
	dec *msgpack.Decoder
	r   bytes.Reader
}

// appendWriter appends to a slice; it has WriteByte so that msgpack writes
// to it directly, without a bufio.Writer of its own.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *appendWriter) WriteByte(c byte) error      { w.b = append(w.b, c); return nil }

func (c *msgpackCodec[E]) AppendBatch(dst []byte, records []E, keyGroups []uint16) ([]byte, error) {
	if keyGroups == nil {
		dst = append(dst, 0)
	} else {
		if len(keyGroups) != len(records) {
			return dst, fmt.Errorf("netexchange: %d key groups for %d records", len(keyGroups), len(records))
		}
		dst = binary.AppendUvarint(dst, uint64(len(keyGroups))+1)
		for _, kg := range keyGroups {
			dst = binary.LittleEndian.AppendUint16(dst, kg)
		}
	}
	s := c.enc.Get().(*encState)
	s.w.b = dst
	err := s.enc.EncodeArrayLen(len(records))
	if c.customEnc {
		for i := 0; i < len(records) && err == nil; i++ {
			err = any(&records[i]).(msgpack.CustomEncoder).EncodeMsgpack(s.enc)
		}
	} else {
		for i := 0; i < len(records) && err == nil; i++ {
			err = s.enc.EncodeValue(reflect.ValueOf(&records[i]).Elem())
		}
	}
	dst = s.w.b
	s.w.b = nil
	c.enc.Put(s)
	if err != nil {
		return dst, fmt.Errorf("netexchange: encode a batch of %d records: %w", len(records), err)
	}
	return dst, nil
}

func (c *msgpackCodec[E]) DecodeBatch(data []byte, b *exchange.Batch[E]) error {
	k, n := binary.Uvarint(data)
	if n <= 0 {
		return fmt.Errorf("netexchange: batch of %d bytes: bad key group count", len(data))
	}
	data = data[n:]
	if k == 0 {
		b.KeyGroups = nil
	} else {
		k--
		if k > uint64(len(data))/2 {
			return fmt.Errorf("netexchange: %d key groups in %d bytes", k, len(data))
		}
		b.KeyGroups = slices.Grow(b.KeyGroups[:0], int(k))
		for i := range int(k) {
			b.KeyGroups = append(b.KeyGroups, binary.LittleEndian.Uint16(data[2*i:]))
		}
		data = data[2*k:]
	}
	s := c.dec.Get().(*decState)
	defer c.dec.Put(s)
	s.r.Reset(data)
	s.dec.ResetReader(&s.r)
	defer s.r.Reset(nil) // do not pin data in the pool
	nrec, err := s.dec.DecodeArrayLen()
	if err != nil {
		return fmt.Errorf("netexchange: decode the record count: %w", err)
	}
	// Every record takes at least one byte: a corrupt count must not make
	// the decoder allocate more than the message could hold.
	if nrec < 0 || nrec > s.r.Len() {
		return fmt.Errorf("netexchange: %d records in %d bytes", nrec, s.r.Len())
	}
	if b.KeyGroups != nil && len(b.KeyGroups) != nrec {
		return fmt.Errorf("netexchange: %d key groups for %d records", len(b.KeyGroups), nrec)
	}
	b.Records = slices.Grow(b.Records[:0], nrec)[:nrec]
	for i := range b.Records {
		if c.customDec {
			err = any(&b.Records[i]).(msgpack.CustomDecoder).DecodeMsgpack(s.dec)
		} else {
			err = s.dec.DecodeValue(reflect.ValueOf(&b.Records[i]).Elem())
		}
		if err != nil {
			clear(b.Records)
			b.Records = b.Records[:0]
			return fmt.Errorf("netexchange: decode record %d of %d: %w", i, nrec, err)
		}
	}
	if s.r.Len() != 0 {
		return fmt.Errorf("netexchange: %d bytes after the last of %d records", s.r.Len(), nrec)
	}
	return nil
}
