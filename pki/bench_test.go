package pki

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
)

// BenchmarkTLSStream streams 256 MiB per op over loopback TCP, plain and
// through a mutual-TLS connection made by ServerConfig and ClientConfig,
// so the difference is what encrypting a pull costs on this machine. The
// handshake happens before the timer starts: pulls reuse connections.
func BenchmarkTLSStream(b *testing.B) {
	ca := newCA(b)
	srv, cli := newMember(b, ca, "n1"), newMember(b, ca, "n2")
	plain := func(c net.Conn) net.Conn { return c }
	b.Run("tcp", func(b *testing.B) { benchStream(b, plain, plain) })
	b.Run("mtls", func(b *testing.B) {
		benchStream(b,
			func(c net.Conn) net.Conn { return tls.Server(c, srv.ServerConfig()) },
			func(c net.Conn) net.Conn { return tls.Client(c, cli.ClientConfig("n1")) })
	})
}

func benchStream(b *testing.B, wrapServer, wrapClient func(net.Conn) net.Conn) {
	const size = 256 << 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()

	// The receiver reads size bytes per op and reports each op, so the
	// timed loop ends when the last byte arrived, not when it was sent.
	received := make(chan error)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- err
			return
		}
		conn := wrapServer(c)
		defer conn.Close()
		buf := make([]byte, 256<<10)
		for {
			var n int64
			for n < size {
				k, err := conn.Read(buf)
				n += int64(k)
				if errors.Is(err, io.EOF) && n == 0 {
					return // the sender is done
				}
				if err != nil {
					received <- err
					return
				}
			}
			received <- nil
		}
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	conn := wrapClient(c)
	defer conn.Close()
	if tc, ok := conn.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]byte, 256<<10)
	b.SetBytes(size)
	for b.Loop() {
		for sent := 0; sent < size; sent += len(buf) {
			if _, err := conn.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-received; err != nil {
			b.Fatal(err)
		}
	}
}
