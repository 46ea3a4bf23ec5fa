package keygroup

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The hash is part of the on-disk contract: these values must never change.
func TestHashGolden(t *testing.T) {
	require.Equal(t, uint64(0xefd01f60ba992926), Hash(nil))
	require.Equal(t, Hash([]byte("video-42")), HashString("video-42"))
	require.Equal(t, 63, OfString("video-42", 128))
	require.Equal(t, 104, Of(EncoderFor[int]()(nil, 7), 128))
}

// The FNV-1a part must agree with the standard library's independent implementation.
func TestHashIsFNV1aThenFmix(t *testing.T) {
	for _, s := range []string{"", "a", "video-42", "ünïcode"} {
		h := fnv.New64a()
		h.Write([]byte(s))
		require.Equal(t, fmix64(h.Sum64()), HashString(s))
	}
}

func TestRangeForMatchesSubtask(t *testing.T) {
	for _, maxP := range []int{1, 7, 128, 1000} {
		for p := 1; p <= maxP && p <= 17; p++ {
			covered := 0
			for s := 0; s < p; s++ {
				r := RangeFor(s, p, maxP)
				for kg := 0; kg < maxP; kg++ {
					require.Equal(t, r.Contains(kg), Subtask(kg, p, maxP) == s, "maxP=%d p=%d s=%d kg=%d", maxP, p, s, kg)
				}
				covered += r.Len()
			}
			require.Equal(t, maxP, covered)
		}
	}
}

func TestEncoders(t *testing.T) {
	require.Equal(t, []byte("ab"), EncoderFor[string]()(nil, "ab"))
	type name string
	require.Equal(t, []byte("ab"), EncoderFor[name]()(nil, name("ab")))
	ei := EncoderFor[int64]()
	require.Less(t, string(ei(nil, -1)), string(ei(nil, 0)))
	require.Less(t, string(ei(nil, 0)), string(ei(nil, 5)))
	require.Equal(t, EncoderFor[float64]()(nil, 0), EncoderFor[float64]()(nil, -0.0*1))
	type pair struct {
		A string
		B int
	}
	ep := EncoderFor[pair]()
	require.Equal(t, ep(nil, pair{"x", 1}), ep(nil, pair{"x", 1}))
	require.NotEqual(t, ep(nil, pair{"x", 1}), ep(nil, pair{"x", 2}))
}

func TestValidate(t *testing.T) {
	require.NoError(t, Validate(4, 128))
	require.ErrorContains(t, Validate(0, 128), "parallelism 0")
	require.ErrorContains(t, Validate(200, 128), "above max parallelism")
	require.ErrorContains(t, Validate(1, 0), "max parallelism 0")
}

func TestHashFuncForAgreesWithEncoding(t *testing.T) {
	type name string
	require.Equal(t, HashString("k1"), HashFuncFor[name]()("k1"))
	require.Equal(t, Hash(EncoderFor[int]()(nil, 99)), HashFuncFor[int]()(99))
	type pair struct{ A, B int }
	require.Equal(t, Hash(EncoderFor[pair]()(nil, pair{1, 2})), HashFuncFor[pair]()(pair{1, 2}))
}

// The integer hashes that skip the encoding give what hashing the encoding
// gives, for every integer kind, across the sign and byte boundaries.
func TestIntegerHashesAgreeWithEncoding(t *testing.T) {
	vals := []int64{0, 1, -1, 255, 256, -256, 1 << 31, -(1 << 31), 1<<62 + 12345, -(1 << 63), 1<<63 - 1}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		vals = append(vals, int64(rng.Uint64()))
	}
	var x Uint64Hasher
	for _, v := range vals {
		checkHash(t, int64(v))
		checkHash(t, int(v))
		checkHash(t, int32(v))
		checkHash(t, uint64(v))
		checkHash(t, uint(v))
		checkHash(t, uint32(v))
		checkHash(t, int16(v))
		checkHash(t, uint8(v))
		require.Equal(t, Hash(binary.BigEndian.AppendUint64(nil, uint64(v))), HashUint64(uint64(v)))
		require.Equal(t, HashUint64(uint64(v)), x.Hash(uint64(v)))
		require.Equal(t, HashUint64(uint64(v)+1), x.Hash(uint64(v)+1), "the same high bytes")
	}
}

func checkHash[K any](t *testing.T, k K) {
	t.Helper()
	require.Equal(t, Hash(EncoderFor[K]()(nil, k)), HashFuncFor[K]()(k), "%T %v", k, k)
}

// FixedSize is the length of every encoding of the types it names.
func TestFixedSize(t *testing.T) {
	check := func(size int, encs ...[]byte) {
		t.Helper()
		for _, e := range encs {
			require.Len(t, e, size)
		}
	}
	check(FixedSize[int64](), EncoderFor[int64]()(nil, -1), EncoderFor[int64]()(nil, 1<<40))
	check(FixedSize[int](), EncoderFor[int]()(nil, 7))
	check(FixedSize[int8](), EncoderFor[int8]()(nil, -3))
	check(FixedSize[uint16](), EncoderFor[uint16]()(nil, 3))
	check(FixedSize[uint32](), EncoderFor[uint32]()(nil, 3))
	check(FixedSize[uint](), EncoderFor[uint]()(nil, 3))
	check(FixedSize[float32](), EncoderFor[float32]()(nil, 1.5))
	check(FixedSize[bool](), EncoderFor[bool]()(nil, true), EncoderFor[bool]()(nil, false))
	type id int64
	check(FixedSize[id](), EncoderFor[id]()(nil, 9))
	require.Zero(t, FixedSize[string]())
	require.Zero(t, FixedSize[struct{ A int }]())
	require.Zero(t, FixedSize[[8]byte]())
}

func checkDecoder[K comparable](t *testing.T, keys ...K) {
	t.Helper()
	enc, dec := EncoderFor[K](), DecoderFor[K]()
	require.NotNil(t, dec)
	for _, k := range keys {
		b := enc(nil, k)
		require.Len(t, b, 8)
		require.Equal(t, k, dec(binary.BigEndian.Uint64(b)), "%T %v", k, k)
	}
}

// DecoderFor inverts EncoderFor for every integer kind, at the ends of its
// range too, and there is none for other kinds.
func TestDecoderForInvertsEncoder(t *testing.T) {
	type id int64
	checkDecoder(t, 0, 1, -1, math.MaxInt, math.MinInt)
	checkDecoder(t, int64(0), 42, -42, math.MaxInt64, math.MinInt64)
	checkDecoder(t, int32(0), -7, math.MaxInt32, math.MinInt32)
	checkDecoder(t, int16(-3), math.MaxInt16, math.MinInt16)
	checkDecoder(t, int8(-3), math.MaxInt8, math.MinInt8)
	checkDecoder(t, uint(0), 7, math.MaxUint)
	checkDecoder(t, uint64(0), math.MaxUint64)
	checkDecoder(t, uint32(9), math.MaxUint32)
	checkDecoder(t, uint16(9), math.MaxUint16)
	checkDecoder(t, uint8(9), math.MaxUint8)
	checkDecoder(t, id(-5), id(1<<40))
	require.Nil(t, DecoderFor[float64]())
	require.Nil(t, DecoderFor[string]())
	require.Nil(t, DecoderFor[bool]())
	require.Nil(t, DecoderFor[[2]int64]())
}
