package cluster

import (
	"context"
	"errors"
	"net"
	"sync"
)

// partition carries one node's raft and API traffic (both ways) and can cut
// it, as a network partition would: Cut closes every connection it carries
// and refuses new ones until Heal.
type partition struct {
	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

func newPartition() *partition { return &partition{conns: map[net.Conn]struct{}{}} }

var errCut = errors.New("partition: cut off")

// Cut closes the connections and refuses new ones.
func (p *partition) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// Heal lets connections through again.
func (p *partition) Heal() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// track adds c, or closes it if p is cut.
func (p *partition) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *partition) listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return p.wrap(ln), nil
}

func (p *partition) wrap(ln net.Listener) net.Listener { return &cutListener{Listener: ln, p: p} }

func (p *partition) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if !p.track(c) {
		return nil, errCut
	}
	return c, nil
}

// cutListener accepts only while its partition is not cut.
type cutListener struct {
	net.Listener
	p *partition
}

func (l *cutListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.p.track(c) {
			return c, nil
		}
	}
}
