package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestPipeCapacity(t *testing.T) {
	limit := pipeMaxSize()
	for _, size := range []int{0, 100 << 10, 1 << 20, 8 << 20} {
		r, w, capacity, err := Pipe(size)
		if err != nil {
			t.Fatal(err)
		}
		want := size
		if !sysResource() {
			want = min(size, limit)
		}
		if capacity < want {
			t.Errorf("Pipe(%d) capacity %d, want at least %d", size, capacity, want)
		}
		// capacity bytes fit without a reader.
		w.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if n, err := w.Write(make([]byte, capacity)); n != capacity || err != nil {
			t.Errorf("Pipe(%d): writing its capacity %d: %d, %v", size, capacity, n, err)
		}
		r.Close()
		w.Close()
	}
}

// sysResource says whether this process may exceed pipe-max-size
// (CAP_SYS_RESOURCE; root in a container often lacks it).
func sysResource() bool {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			return err == nil && caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	return false
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func pipe(t testing.TB, size int) (r, w *os.File) {
	t.Helper()
	r, w, _, err := Pipe(size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// edge wires producer pipe → Relay → TCP → Relay → consumer pipe, as two
// node agents do, and returns the producer's and consumer's ends.
func edge(t testing.TB) (prod, cons *os.File, relayed <-chan error) {
	return edgeWith(t, Relay)
}

func edgeWith(t testing.TB, relay func(io.Writer, io.Reader) (int64, error)) (prod, cons *os.File, relayed <-chan error) {
	p1r, p1w := pipe(t, 1<<20)
	p2r, p2w := pipe(t, 1<<20)
	a, b := tcpPair(t)
	done := make(chan error, 2)
	go func() {
		_, err := relay(a, p1r)
		a.CloseWrite()
		done <- err
	}()
	go func() {
		_, err := relay(p2w, b)
		p2w.Close()
		done <- err
	}()
	return p1w, p2r, done
}

func TestRelayEdge(t *testing.T) {
	total := 256 << 20
	if testing.Short() {
		total = 16 << 20
	}
	const block = 1 << 20
	prod, cons, relayed := edge(t)
	base := payload(block, 7)

	go func() {
		w := NewWriter(prod)
		buf := bytes.Clone(base)
		for i := 0; i < total/block; i++ {
			binary.BigEndian.PutUint64(buf, uint64(i)) // catches reordering
			if _, err := w.Write(buf); err != nil {
				t.Error(err)
				return
			}
		}
		w.Close()
		prod.Close()
	}()

	r := NewReader(cons)
	buf := make([]byte, block)
	for i := 0; ; i++ {
		n, err := io.ReadFull(r, buf)
		if err == io.EOF {
			if i != total/block {
				t.Fatalf("stream ended after %d blocks", i)
			}
			break
		}
		if err != nil {
			t.Fatalf("block %d: %d bytes, %v", i, n, err)
		}
		if binary.BigEndian.Uint64(buf) != uint64(i) || !bytes.Equal(buf[8:], base[8:]) {
			t.Fatalf("block %d arrived wrong", i)
		}
	}
	for range 2 {
		if err := <-relayed; err != nil {
			t.Fatal(err)
		}
	}
}

func TestRelaySplices(t *testing.T) {
	pr, pw := pipe(t, 1<<16)
	a, b := tcpPair(t)
	for _, x := range []any{pr, pw, a, b} {
		if _, ok := probe(x); !ok {
			t.Fatalf("%T cannot be spliced", x)
		}
	}
	d, _ := probe(a)
	s, _ := probe(pr)
	go func() {
		pw.Write([]byte("spliced"))
		pw.Close()
	}()
	n, ok, err := spliceAll(d.rc, s.rc)
	a.CloseWrite()
	got, _ := io.ReadAll(b)
	if !ok || err != nil || n != 7 || string(got) != "spliced" {
		t.Fatalf("spliceAll = %d, %v, %v; peer got %q", n, ok, err, got)
	}
}

func TestRelayFallsBack(t *testing.T) {
	var out bytes.Buffer
	n, err := Relay(&out, strings.NewReader("plain"))
	if n != 5 || err != nil || out.String() != "plain" {
		t.Fatalf("Relay = %d, %v, %q", n, err, out.String())
	}
}

// stops runs Relay(dst, src) and expects it to return an error within a few
// seconds of stop.
func stops(t *testing.T, dst io.Writer, src io.Reader, stop func()) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := Relay(dst, src)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it block; the test holds either way
	stop()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Relay returned no error")
		}
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Relay did not stop")
	}
	return nil
}

// feed writes to w until it fails.
func feed(w io.Writer) {
	buf := make([]byte, 64<<10)
	for {
		if _, err := w.Write(buf); err != nil {
			return
		}
	}
}

func TestRelayStops(t *testing.T) {
	t.Run("tcp peer closes", func(t *testing.T) {
		pr, pw := pipe(t, 1<<16)
		a, b := tcpPair(t)
		go feed(pw)
		err := stops(t, a, pr, func() { b.SetLinger(0); b.Close() })
		if !errors.Is(err, unix.EPIPE) && !errors.Is(err, unix.ECONNRESET) {
			t.Errorf("error %v, want EPIPE or ECONNRESET", err)
		}
	})
	t.Run("consumer closes its pipe", func(t *testing.T) {
		pr, pw := pipe(t, 1<<16)
		a, b := tcpPair(t)
		go feed(a)
		err := stops(t, pw, b, func() { pr.Close() })
		if !errors.Is(err, unix.EPIPE) {
			t.Errorf("error %v, want EPIPE", err)
		}
	})
	t.Run("idle source closed", func(t *testing.T) {
		_, pw := pipe(t, 1<<16)
		_, b := tcpPair(t)
		err := stops(t, pw, b, func() { b.Close() })
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("error %v, want net.ErrClosed", err)
		}
	})
	t.Run("idle source deadline", func(t *testing.T) {
		_, pw := pipe(t, 1<<16)
		_, b := tcpPair(t)
		err := stops(t, pw, b, func() { b.SetReadDeadline(time.Now()) })
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("error %v, want os.ErrDeadlineExceeded", err)
		}
	})
	t.Run("blocked destination closed", func(t *testing.T) {
		pr, pw := pipe(t, 1<<16)
		a, b := tcpPair(t)
		go feed(pw)
		err := stops(t, a, pr, func() { a.Close() })
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("error %v, want net.ErrClosed", err)
		}
		_ = b
	})
	t.Run("blocked destination deadline", func(t *testing.T) {
		_, pw := pipe(t, 1<<16)
		a, b := tcpPair(t)
		go feed(a)
		err := stops(t, pw, b, func() { pw.SetWriteDeadline(time.Now()) })
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("error %v, want os.ErrDeadlineExceeded", err)
		}
	})
}
