package state

// HoldsReferences reports whether values of T hold references through which
// a value could be changed in place, or shared between two values: pointers,
// slices, maps, interfaces, channels or functions, also inside arrays and
// structs (strings, which cannot be changed, and time.Time do not count).
// The backends copy such values where a snapshot may still read them;
// operators use it to know when an accumulator may be handed to two
// owners.
func HoldsReferences[T any]() bool { return deepType[T]() }
