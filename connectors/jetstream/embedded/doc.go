// Package embedded runs a nats-server with JetStream inside the process: for
// tests, and for `jobrunner run --demo`, which runs a real job on a fresh
// machine with no NATS installed.
//
// Start starts a server on a store directory and a given or random port
// (never 4222, the default port of an installed NATS), and returns when it
// accepts connections. Shutdown stops it and waits until the store is closed.
// Restart starts it again on the same directory and port: clients connected
// with reconnection enabled (the default of nats.go) reconnect by themselves,
// and the streams are found again. Tests use this to restart the server in
// the middle of a run.
//
// A server started with Config.User and Config.Password (or Config.Token)
// requires clients to authenticate; tests use it to check how wrong
// credentials are reported.
package embedded
