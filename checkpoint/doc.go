// Package checkpoint will hold Sluice's fault tolerance: the checkpoint
// coordinator, aligned barriers, durable manifests written atomically with
// checksums, checkpoint storage behind an interface, restart strategies,
// savepoints, and the two-phase contract that makes sinks exactly-once.
//
// It is not written yet (see the checkpoint issue). The runtime already
// carries what it needs: barriers travel as control events in order with the
// records (internal/exchange), a gate can hold back one input channel for
// alignment, and package state snapshots and restores keyed state.
package checkpoint
