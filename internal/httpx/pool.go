package httpx

import (
	"bufio"
	"context"
	"net"
	"sync"
)

// Conn is a pooled connection with its buffers.
type Conn struct {
	C net.Conn
	R *bufio.Reader
	W *bufio.Writer
}

// Pool keeps idle persistent connections per address, for protocols that
// carry one exchange at a time per connection (Fast, and the wire protocol).
type Pool struct {
	// Dial opens a new connection to addr, ready for its first exchange.
	Dial func(ctx context.Context, addr string) (*Conn, error)

	mu   sync.Mutex // guards idle
	idle map[string][]*Conn
}

// maxIdlePerHost bounds the idle connections kept per address.
const maxIdlePerHost = 256

// Get returns an idle connection to addr that is still open, or dials one.
func (p *Pool) Get(ctx context.Context, addr string) (*Conn, error) {
	for {
		p.mu.Lock()
		list := p.idle[addr]
		if len(list) == 0 {
			p.mu.Unlock()
			break
		}
		c := list[len(list)-1]
		p.idle[addr] = list[:len(list)-1]
		p.mu.Unlock()
		if Alive(c.C, c.R) {
			return c, nil
		}
		c.C.Close()
	}
	return p.Dial(ctx, addr)
}

// Put returns c to the pool after a complete exchange.
func (p *Pool) Put(addr string, c *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idle == nil {
		p.idle = make(map[string][]*Conn)
	}
	if len(p.idle[addr]) >= maxIdlePerHost {
		c.C.Close()
		return
	}
	p.idle[addr] = append(p.idle[addr], c)
}

// Drop closes and forgets the idle connections to addr (its server is gone
// for good; otherwise they would sit in the pool until the next Get).
func (p *Pool) Drop(addr string) {
	p.mu.Lock()
	list := p.idle[addr]
	delete(p.idle, addr)
	p.mu.Unlock()
	for _, c := range list {
		c.C.Close()
	}
}
