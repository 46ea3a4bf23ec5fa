package search

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"unicode/utf8"

	"github.com/sluicedata/sluice/connectors/retry"
)

// DefaultMaxEpochBytes bounds the encoded documents of one checkpoint epoch
// of one subtask when MaxEpochBytes is zero: 256 MiB.
const DefaultMaxEpochBytes = 256 << 20

// RetryPolicy retries an operation after a transient failure with
// exponential backoff. Zero fields take the values of DefaultRetryPolicy.
type RetryPolicy = retry.Policy

// DefaultRetryPolicy returns retry.Default: 10 attempts with backoff from
// 100ms doubling up to 5s, long enough for a node restart.
func DefaultRetryPolicy() RetryPolicy { return retry.Default() }

// Doc is one document of an epoch, as checkpoints record it: the record
// encoded as a JSON object, with its id and, for the bulk sink, its index
// and record version.
type Doc struct {
	Index   string `msgpack:"x,omitempty"`
	ID      string `msgpack:"i"`
	Version int64  `msgpack:"v,omitempty"`
	Source  []byte `msgpack:"s"`
}

// docOverhead approximates what a document costs beyond its strings and
// source, in memory and in the checkpoint.
const docOverhead = 64

func (d *Doc) size() int { return len(d.Index) + len(d.ID) + len(d.Source) + docOverhead }

// docKey identifies a document in its index.
type docKey struct{ index, id string }

// epochDocs collects the documents of one epoch. A document id seen again
// replaces the earlier document (or, with record versions, the one with the
// lower version), so that an epoch holds each id once: what the index would
// keep anyway, in less memory.
type epochDocs struct {
	docs  []Doc
	pos   map[docKey]int
	bytes int
}

// newEpochDocs makes room for hint documents (the previous epoch's count),
// so that a steady stream does not grow the map and slice step by step.
func newEpochDocs(hint int) *epochDocs {
	return &epochDocs{docs: make([]Doc, 0, hint), pos: make(map[docKey]int, hint)}
}

// add adds d; byVersion keeps the higher record version on a repeated id.
func (e *epochDocs) add(d Doc, byVersion bool) {
	k := docKey{d.Index, d.ID}
	if i, ok := e.pos[k]; ok {
		old := &e.docs[i]
		if byVersion && old.Version > d.Version {
			return
		}
		e.bytes += d.size() - old.size()
		*old = d
		return
	}
	e.pos[k] = len(e.docs)
	e.docs = append(e.docs, d)
	e.bytes += d.size()
}

// encoder turns records into documents: their JSON source and their id.
type encoder[T any] struct {
	encode func(T) ([]byte, error) // nil: encoding/json
	id     func(T) string          // nil: a hash of the source
	tname  string
}

func newEncoder[T any](encode func(T) ([]byte, error), id func(T) string) encoder[T] {
	return encoder[T]{encode: encode, id: id, tname: typeName[T]()}
}

// doc encodes v. The error says what is wrong, without naming the sink.
func (e *encoder[T]) doc(v T) (id string, src []byte, err error) {
	if e.encode == nil {
		src, err = json.Marshal(v)
		if err != nil {
			return "", nil, fmt.Errorf("encode record of type %s as JSON: %w", e.tname, err)
		}
	} else {
		src, err = e.encode(v)
		if err != nil {
			return "", nil, fmt.Errorf("encode record of type %s: %w", e.tname, err)
		}
		if !json.Valid(src) {
			return "", nil, fmt.Errorf("Encode returned invalid JSON for a record of type %s: %.80q", e.tname, src)
		}
		if bytes.ContainsAny(src, "\r\n") {
			// One line per document: the bulk format is line-delimited.
			var buf bytes.Buffer
			if err := json.Compact(&buf, src); err != nil {
				return "", nil, fmt.Errorf("compact the JSON of a record of type %s: %w", e.tname, err)
			}
			src = buf.Bytes()
		}
	}
	if t := bytes.TrimLeft(src, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return "", nil, fmt.Errorf("a record of type %s encodes to %.40s, not a JSON object: a document needs fields", e.tname, src)
	}
	if e.id == nil {
		sum := sha256.Sum256(src)
		return hex.EncodeToString(sum[:16]), src, nil
	}
	id = e.id(v)
	if err := checkID(id); err != nil {
		return "", nil, err
	}
	return id, src, nil
}

// maxIDBytes is OpenSearch's limit on a document id (since 2.9), applied to
// both sinks so that a job can move between them.
const maxIDBytes = 512

func checkID(id string) error {
	switch {
	case id == "":
		return errors.New("the ID function returned an empty id")
	case len(id) > maxIDBytes:
		return fmt.Errorf("id %.40q... is %d bytes, more than %d", id, len(id), maxIDBytes)
	case !utf8.ValidString(id):
		return fmt.Errorf("id %q is not valid UTF-8", id)
	}
	return nil
}

func typeName[T any]() string {
	return reflect.TypeFor[T]().String()
}

// appendJSONString appends s as a JSON string. s is valid UTF-8 (ids and
// index names are checked).
func appendJSONString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
