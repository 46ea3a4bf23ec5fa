package state

// CheckEncodable reports, with an error wrapping ErrUnsupportedType, a type
// the default codec (Msgpack) cannot round-trip: the check that NewValue and
// the other declarations make when no codec is given. A codec built on
// Msgpack for part of a value (say, a list of windows each with an
// accumulator) calls it for that part, so a bad type fails as early as with
// the default codec.
func CheckEncodable[T any]() error { return checkEncodable(typeOf[T]()) }
