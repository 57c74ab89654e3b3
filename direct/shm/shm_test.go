package shm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/direct"
	"github.com/handoff-dev/handoff/fdpass"
	"github.com/handoff-dev/handoff/memfd"
)

var _ direct.Conn = (*Conn)(nil)
var _ direct.Interrupter = (*Conn)(nil)

// TestMain runs helperMain instead of the tests when SHM_HELPER names a
// mode: the test binary re-executed as the peer process.
func TestMain(m *testing.M) {
	if mode := os.Getenv("SHM_HELPER"); mode != "" {
		if err := helperMain(mode); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperMain is the executor process. The ring file comes as fd 3
// ("echo", "hang": maps it and never reads) or over the seqpacket socket
// at fd 3 ("fdpass-echo"). Echo sends every message back until EOF.
func helperMain(mode string) error {
	opts := Options{Mode: Mode(envInt("SHM_MODE", int(Auto)))}
	var f *os.File
	switch mode {
	case "echo", "hang":
		f = os.NewFile(3, "ring")
	case "fdpass-echo":
		fc, err := net.FileConn(os.NewFile(3, "sock"))
		if err != nil {
			return err
		}
		sock := fc.(*net.UnixConn)
		var msg map[string]string
		if f, err = fdpass.Recv(sock, &msg); err != nil {
			return err
		}
		if f == nil || msg["op"] != "ring" {
			return fmt.Errorf("got %v without a ring", msg)
		}
		// The socket closes when the client dies: that is the liveness check.
		opts.Alive = socketAlive(sock)
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	c, err := Open(f, Executor, opts)
	if err != nil {
		return err
	}
	f.Close()
	if mode == "hang" {
		os.Stdout.WriteString("ready\n")
		time.Sleep(time.Hour)
	}
	for {
		msg, err := c.Recv()
		if err == io.EOF {
			return c.Close()
		}
		if err != nil {
			return err
		}
		if err := c.Send(msg); err != nil {
			return err
		}
	}
}

// socketAlive reports false once the peer end of sock is closed.
func socketAlive(sock *net.UnixConn) func() bool {
	raw, _ := sock.SyscallConn()
	return func() bool {
		alive := true
		raw.Control(func(fd uintptr) {
			var b [1]byte
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			alive = n > 0 || err == syscall.EAGAIN
		})
		return alive
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// startPeer runs the helper in mode with f as fd 3 and returns it; the
// test kills it at the end if it is still running.
func startPeer(t testing.TB, mode string, m Mode, f *os.File) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SHM_HELPER="+mode, "SHM_MODE="+strconv.Itoa(int(m)))
	cmd.ExtraFiles = []*os.File{f}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// pair opens both sides in this process.
func pair(t testing.TB, size int, client, executor Options) (*Conn, *Conn) {
	t.Helper()
	f, err := New(size)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := Open(f, Client, client)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(f, Executor, executor)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); e.Close() })
	return c, e
}

// messages returns n messages of random sizes up to maxSize, each filled
// with a pattern that names it.
func messages(n, maxSize int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([][]byte, n)
	for i := range out {
		size := r.IntN(maxSize + 1)
		if i%7 == 0 {
			size = r.IntN(64)
		}
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(i*31 + j)
		}
		out[i] = b
	}
	return out
}

// echoAll sends msgs through c (whose peer echoes) from one goroutine and
// checks what comes back, in order, from another.
func echoAll(t *testing.T, c *Conn, msgs [][]byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			if err := c.Send(m); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i, want := range msgs {
		got, err := c.Recv()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("message %d: got %d bytes, want %d (or different content)", i, len(got), len(want))
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestWrapAroundInProcess(t *testing.T) {
	for _, m := range []Mode{Auto, Warm, Hot} {
		t.Run(fmt.Sprint(m), func(t *testing.T) {
			c, e := pair(t, MinSize, Options{Mode: m}, Options{Mode: m})
			go func() {
				for {
					msg, err := e.Recv()
					if err != nil {
						return
					}
					if e.Send(msg) != nil {
						return
					}
				}
			}()
			// Sizes up to 3x the ring: small ones wrap around the end,
			// large ones stream through.
			echoAll(t, c, messages(400, 3*MinSize))
		})
	}
}

func TestTwoProcesses(t *testing.T) {
	for _, m := range []Mode{Auto, Warm} {
		t.Run(fmt.Sprint(m), func(t *testing.T) {
			f, err := New(64 << 10)
			if err != nil {
				t.Fatal(err)
			}
			cmd := startPeer(t, "echo", m, f)
			c, err := Open(f, Client, Options{Mode: m})
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			echoAll(t, c, messages(300, 200<<10))
			if m == Warm && c.PollTime() != 0 {
				t.Errorf("warm side polled for %v", c.PollTime())
			}
			c.Close()
			if err := cmd.Wait(); err != nil {
				t.Fatalf("executor: %v", err)
			}
		})
	}
}

func TestFdpassAndSocketLiveness(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "sock"), os.NewFile(uintptr(fds[1]), "sock")
	startPeer(t, "fdpass-echo", Warm, theirs)
	theirs.Close()
	fc, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		t.Fatal(err)
	}
	sock := fc.(*net.UnixConn)
	defer sock.Close()

	f, err := New(MinSize)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(f, Client, Options{Mode: Warm, Alive: socketAlive(sock)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := fdpass.Send(sock, map[string]string{"op": "ring"}, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	echoAll(t, c, messages(50, 3*MinSize))
}

func TestWarmWakeUp(t *testing.T) {
	c, e := pair(t, MinSize, Options{Mode: Warm}, Options{Mode: Warm})
	got := make(chan []byte)
	go func() {
		msg, err := e.Recv()
		if err != nil {
			t.Error(err)
		}
		got <- bytes.Clone(msg)
	}()
	// Let the receiver fall asleep on the futex, then wake it.
	waitFor(t, func() bool { return e.rx.dataWord.Load() == 1 })
	if err := c.Send([]byte("wake up")); err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-got:
		if string(msg) != "wake up" {
			t.Fatalf("got %q", msg)
		}
	case <-time.After(AliveInterval / 2):
		t.Fatal("the sleeping receiver was not woken (it would only notice at its timeout)")
	}
	if e.PollTime() != 0 {
		t.Errorf("warm receiver polled for %v", e.PollTime())
	}
}

func TestAutoPollsThenSleeps(t *testing.T) {
	_, e := pair(t, MinSize, Options{}, Options{Mode: Auto, Hot: 2 * time.Millisecond})
	done := make(chan error)
	go func() { _, err := e.Recv(); done <- err }()
	waitFor(t, func() bool { return e.rx.dataWord.Load() == 1 })
	e.Interrupt()
	if err := <-done; !errors.Is(err, direct.ErrInterrupted) {
		t.Fatalf("got %v, want ErrInterrupted", err)
	}
	if p := e.PollTime(); p < 2*time.Millisecond || p > time.Second {
		t.Errorf("polled for %v, want about 2ms", p)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
	}
}

func TestCloseUnblocksPeer(t *testing.T) {
	for _, m := range []Mode{Warm, Hot} {
		t.Run(fmt.Sprint(m), func(t *testing.T) {
			c, e := pair(t, MinSize, Options{Mode: m}, Options{Mode: m})
			// A message sent before closing is still delivered.
			c.Send([]byte("last"))
			recvd := make(chan error, 2)
			go func() {
				msg, err := e.Recv()
				if err != nil || string(msg) != "last" {
					recvd <- fmt.Errorf("first Recv: %q, %v", msg, err)
					return
				}
				_, err = e.Recv()
				recvd <- err
			}()
			// The executor's Send blocks on a full ring that nobody reads.
			sent := make(chan error, 1)
			go func() {
				for {
					if err := e.Send(make([]byte, 1000)); err != nil {
						sent <- err
						return
					}
				}
			}()
			time.Sleep(20 * time.Millisecond)
			start := time.Now()
			c.Close()
			if err := <-recvd; err != io.EOF {
				t.Fatalf("Recv after the peer closed: %v, want io.EOF", err)
			}
			if err := <-sent; !errors.Is(err, ErrPeerClosed) {
				t.Fatalf("Send after the peer closed: %v, want ErrPeerClosed", err)
			}
			if d := time.Since(start); d > AliveInterval/2 {
				t.Errorf("took %v to notice the close", d)
			}
			if _, err := c.Recv(); !errors.Is(err, direct.ErrClosed) {
				t.Errorf("Recv on the closed side: %v, want ErrClosed", err)
			}
		})
	}
}

func TestLocalCloseUnblocksOwnRecv(t *testing.T) {
	_, e := pair(t, MinSize, Options{}, Options{Mode: Warm})
	done := make(chan error)
	go func() { _, err := e.Recv(); done <- err }()
	waitFor(t, func() bool { return e.rx.dataWord.Load() == 1 })
	e.Close()
	if err := <-done; !errors.Is(err, direct.ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
}

func TestPeerDiesWhileWaiting(t *testing.T) {
	for _, m := range []Mode{Warm, Hot} {
		t.Run(fmt.Sprint(m), func(t *testing.T) {
			f, err := New(MinSize)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "SHM_HELPER=hang")
			cmd.ExtraFiles = []*os.File{f}
			r, w, _ := os.Pipe()
			cmd.Stdout = w
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			w.Close()
			defer cmd.Wait()
			buf := make([]byte, 6)
			io.ReadFull(r, buf)

			p, err := WatchProcess(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			c, err := Open(f, Client, Options{Mode: m, Alive: p.Alive})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			done := make(chan error)
			go func() { _, err := c.Recv(); done <- err }()
			time.Sleep(50 * time.Millisecond)
			start := time.Now()
			cmd.Process.Kill()
			select {
			case err := <-done:
				if !errors.Is(err, ErrPeerGone) {
					t.Fatalf("got %v, want ErrPeerGone", err)
				}
				t.Logf("noticed in %v", time.Since(start))
			case <-time.After(time.Second):
				t.Fatal("Recv still blocked 1s after the peer died")
			}
		})
	}
}

func TestInterruptKeepsMessages(t *testing.T) {
	c, e := pair(t, MinSize, Options{}, Options{Mode: Warm})
	e.Interrupt()
	if _, err := e.Recv(); !errors.Is(err, direct.ErrInterrupted) {
		t.Fatalf("got %v, want ErrInterrupted", err)
	}
	c.Send([]byte("x"))
	if msg, err := e.Recv(); err != nil || string(msg) != "x" {
		t.Fatalf("after an interrupt: %q, %v", msg, err)
	}
}

func TestTooLarge(t *testing.T) {
	c, e := pair(t, MinSize, Options{MaxMessage: 100}, Options{MaxMessage: 10})
	if err := c.Send(make([]byte, 101)); !errors.Is(err, direct.ErrTooLarge) {
		t.Fatalf("Send over the limit: %v", err)
	}
	c.Send(make([]byte, 50))
	if _, err := e.Recv(); !errors.Is(err, direct.ErrTooLarge) {
		t.Fatalf("Recv over the limit: %v", err)
	}
}

func TestCorruptRing(t *testing.T) {
	scribble := func(t *testing.T, f *os.File, fn func(mem []byte)) {
		mem, err := memfd.Map(f, headerSize+2*MinSize, true)
		if err != nil {
			t.Fatal(err)
		}
		fn(mem)
		memfd.Unmap(mem)
	}
	cases := map[string]func(mem []byte){
		"tail past the ring": func(mem []byte) {
			binary.NativeEndian.PutUint64(mem[offRings+offTail:], 2*MinSize)
		},
		"header padding": func(mem []byte) {
			binary.NativeEndian.PutUint32(mem[headerSize:], 4)
			binary.NativeEndian.PutUint32(mem[headerSize+4:], 0xdead)
			binary.NativeEndian.PutUint64(mem[offRings+offTail:], 16)
		},
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			f, err := New(MinSize)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			e, err := Open(f, Executor, Options{Mode: Warm})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			scribble(t, f, fn)
			if _, err := e.Recv(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			if _, err := e.Recv(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("second Recv: got %v, want ErrCorrupt again", err)
			}
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	plain, err := memfd.Create("plain")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.Truncate(headerSize + 2*MinSize)
	if _, err := Open(plain, Client, Options{}); !errors.Is(err, ErrLayout) {
		t.Errorf("unsealed file: %v", err)
	}
	memfd.Seal(plain)
	if _, err := Open(plain, Client, Options{}); !errors.Is(err, ErrLayout) {
		t.Errorf("file without a ring: %v", err)
	}

	f, err := New(MinSize)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := Open(f, Client, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := Open(f, Client, Options{}); !errors.Is(err, ErrLayout) {
		t.Errorf("second client: %v", err)
	}
	if err := f.Truncate(100); err == nil {
		t.Error("the ring file could be shrunk")
	}
}

func TestNewRoundsSize(t *testing.T) {
	f, err := New(5000)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := Open(f, Client, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Size() != 8192 {
		t.Fatalf("size %d, want 8192", c.Size())
	}
}

// FuzzRecv fills the executor's incoming ring with what a hostile client
// could write (data and tail counter; the client then closes) and checks
// that Recv never panics, never returns more than MaxMessage bytes, and
// fails only with the errors it documents.
func FuzzRecv(f *testing.F) {
	rec := func(msg string) []byte {
		b := binary.NativeEndian.AppendUint32(nil, uint32(len(msg)))
		b = append(b, 0, 0, 0, 0)
		b = append(b, msg...)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		return b
	}
	f.Add(uint64(16), rec("abcd"))
	f.Add(uint64(24), append(rec("abcd"), rec("")...))
	f.Add(uint64(12), rec("abcd"))                    // cut inside a message
	f.Add(uint64(32), rec(string(make([]byte, 200)))) // over MaxMessage
	f.Add(uint64(1<<40), rec("x"))                    // tail past the ring
	f.Fuzz(func(t *testing.T, tail uint64, data []byte) {
		file, err := New(MinSize)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		e, err := Open(file, Executor, Options{Mode: Warm, MaxMessage: 100})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		mem, err := memfd.Map(file, headerSize+2*MinSize, true)
		if err != nil {
			t.Fatal(err)
		}
		copy(mem[headerSize:headerSize+MinSize], data)
		binary.NativeEndian.PutUint64(mem[offRings+offTail:], tail)
		binary.NativeEndian.PutUint32(mem[offClosed:], 1<<Client)
		memfd.Unmap(mem)
		for range 20 {
			msg, err := e.Recv()
			if err != nil {
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, direct.ErrTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(msg) > 100 {
				t.Fatalf("message of %d bytes, over MaxMessage", len(msg))
			}
		}
	})
}
