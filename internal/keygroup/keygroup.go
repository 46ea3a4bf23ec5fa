// Package keygroup maps keys to key groups and key groups to subtasks.
//
// A key group is the unit of keyed state: kg = hash(encode(key)) mod maxParallelism,
// and subtask = kg * parallelism / maxParallelism. The hash is FNV-1a 64 followed by
// the murmur3 fmix64 finalizer over the key's canonical encoding. Both are fixed
// forever: state written by one process must be found by the next, at any
// parallelism, so this function must never change (golden values in the tests pin it).
package keygroup

import (
	"fmt"
)

// DefaultMaxParallelism is the number of key groups used when a job does not set one.
const DefaultMaxParallelism = 128

// MaxMaxParallelism bounds the number of key groups (key groups are stored as uint16).
const MaxMaxParallelism = 1 << 15

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// Hash returns the stable 64-bit hash of an encoded key.
func Hash(b []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return fmix64(h)
}

// HashString is Hash for a string, without converting it to bytes.
func HashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return fmix64(h)
}

// HashUint64 is Hash of u's 8-byte big-endian encoding, computed without
// the bytes: the same FNV-1a steps, most significant byte first.
func HashUint64(u uint64) uint64 {
	h := uint64(fnvOffset)
	h = (h ^ u>>56) * fnvPrime
	h = (h ^ u>>48&0xff) * fnvPrime
	h = (h ^ u>>40&0xff) * fnvPrime
	h = (h ^ u>>32&0xff) * fnvPrime
	h = (h ^ u>>24&0xff) * fnvPrime
	h = (h ^ u>>16&0xff) * fnvPrime
	h = (h ^ u>>8&0xff) * fnvPrime
	h = (h ^ u&0xff) * fnvPrime
	return fmix64(h)
}

// Uint64Hasher is HashUint64 for keys that share their high bytes (ids,
// counters, small numbers): it keeps the FNV state after the high four
// bytes of the last key and starts from it when the next key has the same
// ones, saving half the steps. It is used by one goroutine.
type Uint64Hasher struct {
	hi, h uint64
	ok    bool
}

// Hash is HashUint64(u).
func (x *Uint64Hasher) Hash(u uint64) uint64 {
	if hi := u >> 32; !x.ok || hi != x.hi {
		h := uint64(fnvOffset)
		h = (h ^ hi>>24) * fnvPrime
		h = (h ^ hi>>16&0xff) * fnvPrime
		h = (h ^ hi>>8&0xff) * fnvPrime
		h = (h ^ hi&0xff) * fnvPrime
		x.hi, x.h, x.ok = hi, h, true
	}
	h := x.h
	h = (h ^ u>>24&0xff) * fnvPrime
	h = (h ^ u>>16&0xff) * fnvPrime
	h = (h ^ u>>8&0xff) * fnvPrime
	h = (h ^ u&0xff) * fnvPrime
	return fmix64(h)
}

func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// Of returns the key group of an encoded key.
func Of(encodedKey []byte, maxParallelism int) int {
	return int(Hash(encodedKey) % uint64(maxParallelism))
}

// OfString returns the key group of a key whose encoding is the string itself.
func OfString(encodedKey string, maxParallelism int) int {
	return int(HashString(encodedKey) % uint64(maxParallelism))
}

// Subtask returns the subtask, of parallelism subtasks, that owns key group kg.
func Subtask(kg, parallelism, maxParallelism int) int {
	return kg * parallelism / maxParallelism
}

// Range is a half-open range [Start, End) of key groups.
type Range struct {
	Start, End int
}

// Contains reports whether kg lies in r.
func (r Range) Contains(kg int) bool { return kg >= r.Start && kg < r.End }

// Len is the number of key groups in r.
func (r Range) Len() int { return r.End - r.Start }

func (r Range) String() string { return fmt.Sprintf("[%d,%d)", r.Start, r.End) }

// RangeFor returns the key groups owned by subtask of parallelism subtasks: exactly
// the kg for which Subtask(kg, parallelism, maxParallelism) == subtask.
func RangeFor(subtask, parallelism, maxParallelism int) Range {
	start := (subtask*maxParallelism + parallelism - 1) / parallelism
	end := ((subtask+1)*maxParallelism + parallelism - 1) / parallelism
	return Range{Start: start, End: end}
}

// Validate checks a (parallelism, maxParallelism) pair.
func Validate(parallelism, maxParallelism int) error {
	if maxParallelism <= 0 || maxParallelism > MaxMaxParallelism {
		return fmt.Errorf("max parallelism %d out of range (1..%d)", maxParallelism, MaxMaxParallelism)
	}
	if parallelism <= 0 {
		return fmt.Errorf("parallelism %d must be at least 1", parallelism)
	}
	if parallelism > maxParallelism {
		return fmt.Errorf("parallelism %d is above max parallelism %d", parallelism, maxParallelism)
	}
	return nil
}
