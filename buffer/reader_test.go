package buffer

import (
	"bytes"
	"io"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/memfd"
)

// TestWriteTo sends a buffer through each WriteTo path: a real TCP
// connection (sendfile), a bytes.Buffer (another io.ReaderFrom) and a
// plain io.Writer, starting where a partial Read left off.
func TestWriteTo(t *testing.T) {
	for _, spill := range []bool{false, true} {
		cfg := Config{Memory: 16 * MiB}
		if spill {
			cfg = Config{Memory: MiB, SpillDir: t.TempDir(), Wait: -1}
		}
		s, _ := newStore(t, cfg)
		data := payload(5*MiB + 11)
		m := meta(s)
		m.Reads = 3
		info := mustPut(t, s, data, m)
		if info.Spilled != spill {
			t.Fatalf("Spilled = %v; want %v", info.Spilled, spill)
		}

		rd, err := s.Open(info.ID)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 777)
		if _, err := io.ReadFull(rd, head); err != nil {
			t.Fatal(err)
		}
		if got := sendTCP(t, rd); !bytes.Equal(got, data[777:]) {
			t.Fatalf("spilled %v: TCP peer got %d bytes; want the last %d", spill, len(got), len(data)-777)
		}
		if n, err := rd.WriteTo(io.Discard); n != 0 || err != nil {
			t.Fatalf("WriteTo at the end = %d, %v; want 0, nil", n, err)
		}
		rd.Close()

		for name, w := range map[string]interface {
			io.Writer
			Bytes() []byte
		}{"ReaderFrom": new(bytes.Buffer), "plain writer": &plainWriter{}} {
			rd, err := s.Open(info.ID)
			if err != nil {
				t.Fatal(err)
			}
			head := make([]byte, 1000)
			if _, err := io.ReadFull(rd, head); err != nil {
				t.Fatal(err)
			}
			n, err := rd.WriteTo(w)
			rd.Close()
			if err != nil || n != int64(len(data)-1000) || !bytes.Equal(w.Bytes(), data[1000:]) {
				t.Fatalf("spilled %v, %s: WriteTo after 1000 bytes read = %d, %v; want the other %d", spill, name, n, err, len(data)-1000)
			}
		}
	}
}

type plainWriter struct{ b []byte }

func (w *plainWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *plainWriter) Bytes() []byte               { return w.b }

// sendTCP writes rd to a loopback TCP connection with io.Copy, as the
// holder serves a pull, and returns what the peer received.
func sendTCP(t *testing.T, rd *Reader) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(c, rd)
	c.Close()
	if err != nil {
		t.Fatalf("io.Copy to TCP = %d, %v", n, err)
	}
	return <-got
}

// TestPassFile hands a reader's file to another "process" over a unix
// socket (SCM_RIGHTS), as the node agent does for a receiver on the same
// node: the receiver gets the sealed pages themselves, read-only.
func TestPassFile(t *testing.T) {
	s, _ := newStore(t, Config{Memory: MiB})
	data := payload(300 * KiB)
	info := mustPut(t, s, data, meta(s))
	rd, err := s.Open(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if err := unix.Sendmsg(fds[0], []byte{0}, unix.UnixRights(int(rd.File().Fd())), nil, 0); err != nil {
		t.Fatal(err)
	}
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(fds[1], make([]byte, 1), oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatal(err)
	}
	got, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(got[0]), "received")
	defer f.Close()

	if sealed, err := memfd.Sealed(f); err != nil || !sealed {
		t.Fatalf("received file sealed = %v, %v; want true", sealed, err)
	}
	m, err := memfd.Map(f, info.Size, false)
	if err != nil {
		t.Fatal(err)
	}
	defer memfd.Unmap(m)
	if !bytes.Equal(m, data) {
		t.Fatal("the receiver's mapping differs from the payload")
	}
	if _, err := memfd.Map(f, info.Size, true); err == nil {
		t.Fatal("the receiver could map the buffer writable")
	}
}
