package httpx

import (
	"bufio"
	"context"
	"net"
	"testing"
)

func TestPoolDropClosesIdleConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	dials := 0
	p := &Pool{Dial: func(ctx context.Context, addr string) (*Conn, error) {
		dials++
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		return &Conn{C: c, R: bufio.NewReader(c), W: bufio.NewWriter(c)}, nil
	}}
	addr := ln.Addr().String()
	c, err := p.Get(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	p.Put(addr, c)
	p.Drop(addr)
	if _, err := c.C.Write([]byte("x")); err == nil {
		t.Error("a dropped connection is still open")
	}
	if _, err := p.Get(context.Background(), addr); err != nil || dials != 2 {
		t.Errorf("after Drop: %v, %d dials; want a new connection", err, dials)
	}
}
