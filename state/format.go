package state

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Snapshot file format, version 1. All integers big-endian.
//
//	header: magic "SLUICEST" | version u16 | flags u8 (bit 0: full) | 0 u8 |
//	        checkpoint id i64 | parent id i64 (previous snapshot of a delta's chain, 0 for a base) |
//	        lineage u64 (random per base, repeated by its deltas) |
//	        max parallelism u32 | key groups start u32 | end u32 | uid length u32 | uid |
//	        CRC32C of the header
//	blocks: length u32 | type u8 | payload | CRC32C of type and payload
//	        type 1: states (count uvarint, then name (uvarint length, bytes) and kind u8 each)
//	        type 2: rows, each: op u8 | state index uvarint | key group u16 | key (uvarint length, bytes) |
//	                opMapPut: map key (uvarint length, bytes) | opPut, opMapPut: ts varint | payload (uvarint length, bytes)
//	        type 3: end (row count u64), the last block
//	trailer: CRC32C of every byte before it
//
// A delta holds, for each key changed since its parent, an opDel (the key's
// old value or map is gone) followed by its current rows, if any.
const (
	magic         = "SLUICEST"
	formatVersion = 1

	blockStates = 1
	blockRows   = 2
	blockEnd    = 3

	opPut    = 1
	opMapPut = 2
	opDel    = 3

	blockTarget  = 64 << 10
	maxBlockSize = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type header struct {
	full       bool
	id, parent int64
	lineage    uint64
	maxPar     int
	start, end int
	uid        string
}

type stateDesc struct {
	name string
	kind kind
}

func (h *header) encode() []byte {
	b := make([]byte, 0, 64+len(h.uid))
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint16(b, formatVersion)
	var flags byte
	if h.full {
		flags = 1
	}
	b = append(b, flags, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(h.id))
	b = binary.BigEndian.AppendUint64(b, uint64(h.parent))
	b = binary.BigEndian.AppendUint64(b, h.lineage)
	b = binary.BigEndian.AppendUint32(b, uint32(h.maxPar))
	b = binary.BigEndian.AppendUint32(b, uint32(h.start))
	b = binary.BigEndian.AppendUint32(b, uint32(h.end))
	b = binary.BigEndian.AppendUint32(b, uint32(len(h.uid)))
	b = append(b, h.uid...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// rowWriter writes blocks of rows to w, keeping the file checksum.
type rowWriter struct {
	ctx  context.Context
	w    io.Writer
	crc  uint32
	n    int64
	buf  []byte
	rows uint64
	tmp  []byte
}

func (rw *rowWriter) raw(b []byte) error {
	rw.crc = crc32.Update(rw.crc, castagnoli, b)
	n, err := rw.w.Write(b)
	rw.n += int64(n)
	return err
}

func (rw *rowWriter) block(typ byte, payload []byte) error {
	if err := rw.ctx.Err(); err != nil {
		return err
	}
	var h [5]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(payload)))
	h[4] = typ
	sum := crc32.Update(crc32.Checksum(h[4:], castagnoli), castagnoli, payload)
	if err := rw.raw(h[:]); err != nil {
		return err
	}
	if err := rw.raw(payload); err != nil {
		return err
	}
	return rw.raw(binary.BigEndian.AppendUint32(rw.tmp[:0], sum))
}

func (rw *rowWriter) row(op byte, idx int, kg uint16, key string, mapKey []byte, ts int64, payload []byte) error {
	b := append(rw.buf, op)
	b = binary.AppendUvarint(b, uint64(idx))
	b = binary.BigEndian.AppendUint16(b, kg)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	if op == opMapPut {
		b = appendLenPrefixed(b, mapKey)
	}
	if op != opDel {
		b = binary.AppendVarint(b, ts)
		b = appendLenPrefixed(b, payload)
	}
	rw.buf = b
	rw.rows++
	if len(b) >= blockTarget {
		return rw.flush()
	}
	return nil
}

func (rw *rowWriter) flush() error {
	if len(rw.buf) == 0 {
		return nil
	}
	err := rw.block(blockRows, rw.buf)
	rw.buf = rw.buf[:0]
	return err
}

func (rw *rowWriter) finish() error {
	if err := rw.flush(); err != nil {
		return err
	}
	if err := rw.block(blockEnd, binary.BigEndian.AppendUint64(nil, rw.rows)); err != nil {
		return err
	}
	sum := binary.BigEndian.AppendUint32(nil, rw.crc)
	n, err := rw.w.Write(sum)
	rw.n += int64(n)
	return err
}

// fileReader reads and verifies one snapshot file.
type fileReader struct {
	r      *bufio.Reader
	crc    uint32
	hdr    header
	states []stateDesc
	rows   uint64
	buf    []byte
	name   string // for errors
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

func (fr *fileReader) read(b []byte) error {
	if _, err := io.ReadFull(fr.r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return corrupt("truncated")
		}
		return err
	}
	fr.crc = crc32.Update(fr.crc, castagnoli, b)
	return nil
}

func openFile(r io.Reader) (*fileReader, error) {
	fr := &fileReader{r: bufio.NewReaderSize(r, 256<<10)}
	fixed := make([]byte, 8+2+2+8+8+8+4+4+4+4)
	if err := fr.read(fixed); err != nil {
		return nil, err
	}
	if string(fixed[:8]) != magic {
		return nil, corrupt("bad magic %q", fixed[:8])
	}
	if v := binary.BigEndian.Uint16(fixed[8:]); v != formatVersion {
		return nil, fmt.Errorf("%w: %d (this build reads %d)", ErrUnknownVersion, v, formatVersion)
	}
	h := &fr.hdr
	h.full = fixed[10]&1 != 0
	h.id = int64(binary.BigEndian.Uint64(fixed[12:]))
	h.parent = int64(binary.BigEndian.Uint64(fixed[20:]))
	h.lineage = binary.BigEndian.Uint64(fixed[28:])
	h.maxPar = int(binary.BigEndian.Uint32(fixed[36:]))
	h.start = int(binary.BigEndian.Uint32(fixed[40:]))
	h.end = int(binary.BigEndian.Uint32(fixed[44:]))
	ulen := binary.BigEndian.Uint32(fixed[48:])
	if ulen > 1<<15 {
		return nil, corrupt("uid length %d", ulen)
	}
	uid := make([]byte, ulen)
	if err := fr.read(uid); err != nil {
		return nil, err
	}
	h.uid = string(uid)
	want := fr.crc
	var sum [4]byte
	if err := fr.read(sum[:]); err != nil {
		return nil, err
	}
	if binary.BigEndian.Uint32(sum[:]) != want {
		return nil, corrupt("header checksum mismatch")
	}
	typ, payload, err := fr.block()
	if err != nil {
		return nil, err
	}
	if typ != blockStates {
		return nil, corrupt("first block has type %d, want states", typ)
	}
	n, k := binary.Uvarint(payload)
	if k <= 0 || n > uint64(len(payload)) {
		return nil, corrupt("bad states block")
	}
	payload = payload[k:]
	for range n {
		name, rest, ok := readLenPrefixed(payload)
		if !ok || len(rest) < 1 {
			return nil, corrupt("bad states block")
		}
		fr.states = append(fr.states, stateDesc{name: string(name), kind: kind(rest[0])})
		payload = rest[1:]
	}
	return fr, nil
}

// block reads one block and checks its checksum; the payload is valid until the next call.
func (fr *fileReader) block() (byte, []byte, error) {
	var h [5]byte
	if err := fr.read(h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n > maxBlockSize {
		return 0, nil, corrupt("block of %d bytes", n)
	}
	if cap(fr.buf) < int(n)+4 {
		fr.buf = make([]byte, n+4)
	}
	b := fr.buf[:n+4]
	if err := fr.read(b); err != nil {
		return 0, nil, err
	}
	sum := crc32.Update(crc32.Checksum(h[4:], castagnoli), castagnoli, b[:n])
	if sum != binary.BigEndian.Uint32(b[n:]) {
		return 0, nil, corrupt("block checksum mismatch")
	}
	return h[4], b[:n], nil
}

// rowFn receives one row; key and payload are only valid during the call.
type rowFn func(op byte, st stateDesc, kg uint16, key, mapKey []byte, ts int64, payload []byte) error

// rowsTo reads every remaining block, calling fn per row, and verifies the end
// block and the file checksum.
func (fr *fileReader) rowsTo(ctx context.Context, fn rowFn) error {
	var count uint64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		typ, b, err := fr.block()
		if err != nil {
			return err
		}
		switch typ {
		case blockRows:
		case blockEnd:
			if len(b) != 8 || binary.BigEndian.Uint64(b) != count {
				return corrupt("row count mismatch")
			}
			want := fr.crc
			var sum [4]byte
			if _, err := io.ReadFull(fr.r, sum[:]); err != nil {
				return corrupt("truncated trailer")
			}
			if binary.BigEndian.Uint32(sum[:]) != want {
				return corrupt("file checksum mismatch")
			}
			if _, err := fr.r.ReadByte(); err != io.EOF {
				return corrupt("data after the trailer")
			}
			return nil
		default:
			return corrupt("unknown block type %d", typ)
		}
		for len(b) > 0 {
			op := b[0]
			idx, k := binary.Uvarint(b[1:])
			if k <= 0 || idx >= uint64(len(fr.states)) || len(b) < 1+k+2 {
				return corrupt("bad row")
			}
			b = b[1+k:]
			kg := binary.BigEndian.Uint16(b)
			key, rest, ok := readLenPrefixed(b[2:])
			if !ok {
				return corrupt("bad row key")
			}
			b = rest
			var mapKey, payload []byte
			var ts int64
			switch op {
			case opDel:
			case opPut, opMapPut:
				if op == opMapPut {
					if mapKey, b, ok = readLenPrefixed(b); !ok {
						return corrupt("bad map key")
					}
				}
				var n int
				if ts, n = binary.Varint(b); n <= 0 {
					return corrupt("bad row timestamp")
				}
				if payload, b, ok = readLenPrefixed(b[n:]); !ok {
					return corrupt("bad row payload")
				}
			default:
				return corrupt("unknown row op %d", op)
			}
			if int(kg) >= fr.hdr.maxPar {
				return corrupt("key group %d out of range", kg)
			}
			count++
			if err := fn(op, fr.states[idx], kg, key, mapKey, ts, payload); err != nil {
				return err
			}
		}
	}
}
