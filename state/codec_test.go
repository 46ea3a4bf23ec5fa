package state

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// The fast codecs must read what msgpack writes and write what msgpack reads.
func checkFast[T comparable](t *testing.T, vals ...T) {
	t.Helper()
	c := Msgpack[T]()
	for _, v := range vals {
		b, err := c.Append(nil, v)
		require.NoError(t, err)
		var got T
		require.NoError(t, msgpack.Unmarshal(b, &got))
		require.Equal(t, v, got)
		std, err := msgpack.Marshal(v)
		require.NoError(t, err)
		got, err = c.Decode(std)
		require.NoError(t, err)
		require.Equal(t, v, got)
		got, err = c.Decode(b)
		require.NoError(t, err)
		require.Equal(t, v, got)
	}
}

func TestFastCodecs(t *testing.T) {
	ints := []int64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
		-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64}
	checkFast(t, ints...)
	var is []int
	var i32 []int32
	for _, v := range ints {
		is = append(is, int(v))
		if v >= math.MinInt32 && v <= math.MaxInt32 {
			i32 = append(i32, int32(v))
		}
	}
	checkFast(t, is...)
	checkFast(t, i32...)
	checkFast[uint64](t, 0, 1, 200, 70000, math.MaxUint64)
	checkFast(t, 0.0, -1.5, math.Inf(1), math.MaxFloat64)
	checkFast(t, "", "a", string(make([]byte, 31)), string(make([]byte, 32)), string(make([]byte, 300)), string(make([]byte, 70000)))
	_, err := Msgpack[int64]().Decode([]byte{0xa1, 'x'})
	require.Error(t, err)
}
