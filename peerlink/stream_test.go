package peerlink

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// streamSink takes streams for channel "c1" with secret "s" and keeps
// their bytes.
type streamSink struct {
	mu   sync.Mutex
	got  []byte
	done chan struct{}
}

var errNoChannel = errors.New("no such channel")

func (s *streamSink) Accept(ctx context.Context, req Request) (func(net.Conn) error, error) {
	if req.Channel != "c1" || req.Secret != "s" {
		return nil, errNoChannel
	}
	return func(c net.Conn) error {
		defer close(s.done)
		b, err := io.ReadAll(c)
		s.mu.Lock()
		s.got = b
		s.mu.Unlock()
		return err
	}, nil
}

func TestStream(t *testing.T) {
	ms := members(t, "n1", "n2")
	for _, clear := range []bool{true, false} {
		sink := &streamSink{done: make(chan struct{})}
		addr, srv := serve(t, ms[0], &fileHandler{t: t}, true)
		srv.Streams = sink
		c := &Client{TLS: ms[1].ClientConfig(""), Clear: clear}
		if _, err := c.Stream(context.Background(), addr, Request{Channel: "c1", Secret: "wrong"}); err == nil {
			t.Fatal("stream with a wrong secret accepted")
		}
		sc, err := c.Stream(context.Background(), addr, Request{Channel: "c1", Secret: "s"})
		if err != nil {
			t.Fatal(err)
		}
		payload := random(t, 5<<20+3)
		if _, err := sc.Write(payload); err != nil {
			t.Fatal(err)
		}
		if err := sc.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		<-sink.done
		sc.Close()
		if !bytes.Equal(sink.got, payload) {
			t.Fatalf("clear=%v: sink got %d bytes, want %d", clear, len(sink.got), len(payload))
		}
	}
}
