package fdpass

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// pair returns the two ends of a real seqpacket connection.
func pair(t *testing.T) (client, server *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fd.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan *net.UnixConn, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			t.Error(err)
		}
		done <- c
	}()
	client, err = net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	server = <-done
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestSendRecvWithDescriptor(t *testing.T) {
	client, server := pair(t)
	f, err := os.CreateTemp(t.TempDir(), "payload")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("hello through a descriptor"); err != nil {
		t.Fatal(err)
	}
	req := Request{Op: "put", Size: 26, Checksum: 7, Readers: []string{"count"}, Reads: 2, TTLMillis: 1000}
	if err := Send(client, req, f); err != nil {
		t.Fatal(err)
	}
	var got Request
	g, err := Recv(server, &got)
	if err != nil {
		t.Fatal(err)
	}
	if g == nil {
		t.Fatal("no descriptor arrived")
	}
	defer g.Close()
	if got.Op != "put" || got.Size != 26 || got.Readers[0] != "count" || got.Reads != 2 {
		t.Fatalf("request = %+v", got)
	}
	b := make([]byte, 26)
	if _, err := g.ReadAt(b, 0); err != nil || string(b) != "hello through a descriptor" {
		t.Fatalf("read through the passed descriptor: %q, %v", b, err)
	}
}

func TestRecvWithoutDescriptor(t *testing.T) {
	client, server := pair(t)
	if err := Send(client, Response{Ref: "hr1.x", Size: 3}, nil); err != nil {
		t.Fatal(err)
	}
	var got Response
	f, err := Recv(server, &got)
	if err != nil || f != nil || got.Ref != "hr1.x" {
		t.Fatalf("Recv = %v, %v, %+v", f, err, got)
	}
}

func TestRecvAfterClose(t *testing.T) {
	client, server := pair(t)
	client.Close()
	var got Response
	if _, err := Recv(server, &got); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after the peer closed = %v; want io.EOF", err)
	}
}

func TestTwoDescriptorsRefused(t *testing.T) {
	client, server := pair(t)
	a, _ := os.Open(os.DevNull)
	b, _ := os.Open(os.DevNull)
	defer a.Close()
	defer b.Close()
	oob := syscall.UnixRights(int(a.Fd()), int(b.Fd()))
	if _, _, err := client.WriteMsgUnix([]byte(`{"op":"put"}`), oob, nil); err != nil {
		t.Fatal(err)
	}
	var got Request
	if _, err := Recv(server, &got); !errors.Is(err, ErrMalformed) {
		t.Fatalf("two descriptors: err = %v; want ErrMalformed", err)
	}
}

func TestNotJSONRefusedAndDescriptorClosed(t *testing.T) {
	client, server := pair(t)
	a, _ := os.Open(os.DevNull)
	defer a.Close()
	if _, _, err := client.WriteMsgUnix([]byte("not json"), syscall.UnixRights(int(a.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	var got Request
	if _, err := Recv(server, &got); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v; want ErrMalformed", err)
	}
	if after := openFDs(t); after > before {
		t.Fatalf("a refused message leaked its descriptor: %d open before, %d after", before, after)
	}
}

func TestTooLongRefused(t *testing.T) {
	client, server := pair(t)
	if err := Send(client, Request{Ref: string(make([]byte, MaxMessage))}, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Send of an oversized message: %v; want ErrMalformed", err)
	}
	if _, _, err := client.WriteMsgUnix(make([]byte, MaxMessage+100), nil, nil); err != nil {
		t.Fatal(err)
	}
	var got Request
	if _, err := Recv(server, &got); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversized message: err = %v; want ErrMalformed", err)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"op":"put","size":3,"checksum":1,"readers":["a"],"reads":1,"ttlMs":5}`))
	f.Add([]byte(`{"op":"get","ref":"hr1.abc"}`))
	f.Add([]byte(`{`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req Request
		fd, err := Decode(b, nil, 0, &req)
		if fd != nil {
			t.Fatal("a descriptor appeared from no control data")
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
	})
}

// connPair dials a real listening socket with Dial and wraps the accepted
// end in a Conn too.
func connPair(t *testing.T) (client, server *Conn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fd.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	f, err := uc.File()
	uc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if server, err = NewConn(f); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestConnExchange(t *testing.T) {
	client, server := connPair(t)
	f, err := os.CreateTemp(t.TempDir(), "payload")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("through a Conn"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // buffers are reused across messages
		if err := client.Send(Request{Op: "put", Size: int64(i), Readers: []string{"r"}}, f); err != nil {
			t.Fatal(err)
		}
		var req Request
		g, err := server.Recv(&req)
		if err != nil || g == nil || req.Size != int64(i) || req.Readers[0] != "r" {
			t.Fatalf("round %d: Recv = %v, %v, %+v", i, g, err, req)
		}
		b := make([]byte, 14)
		if _, err := g.ReadAt(b, 0); err != nil || string(b) != "through a Conn" {
			t.Fatalf("read through the passed descriptor: %q, %v", b, err)
		}
		g.Close()
		if err := server.Send(Response{Ref: "hr1.x"}, nil); err != nil {
			t.Fatal(err)
		}
		var resp Response
		if g, err := client.Recv(&resp); err != nil || g != nil || resp.Ref != "hr1.x" {
			t.Fatalf("round %d: answer %v, %v, %+v", i, g, err, resp)
		}
	}
}

func TestConnTooLongRefused(t *testing.T) {
	client, server := connPair(t)
	long := Request{Op: "get", Ref: strings.Repeat("x", MaxMessage)}
	if err := client.Send(long, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Send of a message over MaxMessage: %v; want ErrMalformed", err)
	}
	// A peer that sends one anyway is refused on the other side.
	b, _ := json.Marshal(long)
	if err := syscall.Sendmsg(int(client.File().Fd()), b, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	var req Request
	if _, err := server.Recv(&req); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Recv of a message over MaxMessage: %v; want ErrMalformed", err)
	}
}

func TestConnShutdownUnblocksRecv(t *testing.T) {
	client, _ := connPair(t)
	done := make(chan error, 1)
	go func() {
		var resp Response
		_, err := client.Recv(&resp)
		done <- err
	}()
	if err := client.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after Shutdown: %v; want io.EOF", err)
	}
	if err := client.Send(Request{Op: "get"}, nil); err == nil {
		t.Fatal("Send after Shutdown succeeded")
	}
}

func TestConnPeerClosed(t *testing.T) {
	client, server := connPair(t)
	client.Shutdown()
	var req Request
	if _, err := server.Recv(&req); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after the peer hung up: %v; want io.EOF", err)
	}
}

func TestNewConnRefusesAStream(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[1])
	if _, err := NewConn(os.NewFile(uintptr(fds[0]), "stream")); err == nil {
		t.Fatal("NewConn took a stream socket")
	}
}
