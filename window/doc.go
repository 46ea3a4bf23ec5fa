// Package window will hold event-time windowing for keyed streams: assigners
// (tumbling, sliding, session, global, count), triggers (event time,
// processing time, count, early and continuous firing, purging, custom),
// allowed lateness with late side outputs, and incremental and full-window
// aggregation whose results carry the window's start and end.
//
// It is not written yet (see the event-time issue). The pieces it builds on
// exist: watermarks and MaxWatermark at end of input in package dataflow,
// operators.AggregateFunction for incremental aggregation, and keyed state in
// package state.
package window
