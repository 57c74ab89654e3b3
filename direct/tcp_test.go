package direct_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/direct"
)

// tcpPair is a loopback TCP connection: the far end raw, the near end a
// TCPConn with opts.
func tcpPair(t *testing.T, opts direct.TCPOptions) (*direct.TCPConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	near, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	far, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := direct.NewTCPConn(near, opts)
	t.Cleanup(func() { c.Close(); far.Close() })
	return c, far
}

// send writes one framed message on a raw connection.
func send(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	b := append([]byte{0, 0, 0, byte(len(msg))}, msg...)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// recvAsync runs Recv on another goroutine.
func recvAsync(c *direct.TCPConn) <-chan error {
	done := make(chan error, 1)
	go func() {
		m, err := c.Recv()
		if err == nil && string(m) != "hello" {
			err = errors.New("got " + string(m))
		}
		done <- err
	}()
	return done
}

// TestSpinThenBlock: a Recv that spins for a bounded time and then
// sleeps still gets a message that comes later, and counts the spin.
func TestSpinThenBlock(t *testing.T) {
	c, far := tcpPair(t, direct.TCPOptions{Spin: 20 * time.Millisecond})
	done := recvAsync(c)
	time.Sleep(300 * time.Millisecond) // well past the spin: Recv sleeps
	send(t, far, "hello")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	spun := c.PollTime()
	if spun < 20*time.Millisecond {
		t.Errorf("PollTime %v after an idle wait, want at least the 20ms spin", spun)
	}
	if spun > 250*time.Millisecond { // room for a loaded machine's preemptions
		t.Errorf("PollTime %v: the spin went on past its 20ms while the message took 300ms", spun)
	}
	time.Sleep(10 * time.Millisecond)
	if again := c.PollTime(); again != spun {
		t.Errorf("PollTime grew from %v to %v with no Recv waiting", spun, again)
	}
}

// TestSpinForeverEnds: a Recv spinning without limit ends on a message,
// on an Interrupt, on Close and when the peer goes away.
func TestSpinForeverEnds(t *testing.T) {
	c, far := tcpPair(t, direct.TCPOptions{Spin: -1})

	done := recvAsync(c)
	time.Sleep(5 * time.Millisecond)
	send(t, far, "hello")
	if err := waitErr(t, done); err != nil {
		t.Fatalf("message: %v", err)
	}
	if c.PollTime() <= 0 {
		t.Error("no poll time counted while spinning")
	}

	done = recvAsync(c)
	time.Sleep(5 * time.Millisecond)
	c.Interrupt()
	if err := waitErr(t, done); !errors.Is(err, direct.ErrInterrupted) {
		t.Fatalf("interrupt: got %v, want ErrInterrupted", err)
	}

	done = recvAsync(c)
	time.Sleep(5 * time.Millisecond)
	far.Close()
	if err := waitErr(t, done); err == nil {
		t.Fatal("peer gone: Recv returned no error")
	}

	c2, _ := tcpPair(t, direct.TCPOptions{Spin: -1})
	done = recvAsync(c2)
	time.Sleep(5 * time.Millisecond)
	c2.Close()
	if err := waitErr(t, done); err == nil {
		t.Fatal("closed: Recv returned no error")
	}
}

func waitErr(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Recv still spinning after 5s")
		return nil
	}
}

// TestSpinningSendWaitsForRoomAndEndsOnClose: a spinning conn (its socket
// out of the netpoller on Linux) whose peer reads nothing waits for room
// once the socket is full, delivers everything once the peer reads, and
// a Send stuck on a full socket ends when the conn closes.
func TestSpinningSendWaitsForRoomAndEndsOnClose(t *testing.T) {
	c, far := tcpPair(t, direct.TCPOptions{Spin: -1})
	msg := make([]byte, 1<<20)
	const n = 16 // far more than loopback's socket buffers hold
	sent := make(chan error, 1)
	go func() {
		for range n {
			if err := c.Send(msg); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-sent:
		t.Fatalf("%d MiB sent to a peer that reads nothing (err %v)", n, err)
	default:
	}
	// Read it all: the sender must finish.
	go func() {
		buf := make([]byte, 64<<10)
		for total := 0; total < n*(4+len(msg)); {
			k, err := far.Read(buf)
			if err != nil {
				return
			}
			total += k
		}
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("send: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sender did not finish once the peer read")
	}

	c2, _ := tcpPair(t, direct.TCPOptions{Spin: -1})
	stuck := make(chan error, 1)
	go func() {
		for {
			if err := c2.Send(msg); err != nil {
				stuck <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	c2.Close()
	select {
	case err := <-stuck:
		if err == nil {
			t.Fatal("Send on a closed conn returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a Send waiting for room did not end on Close")
	}
}

// TestSpinThenSleepInterrupted: a Recv that spun its time and sleeps
// ends on an Interrupt, and the conn still reads the next message.
func TestSpinThenSleepInterrupted(t *testing.T) {
	c, far := tcpPair(t, direct.TCPOptions{Spin: time.Millisecond})
	done := recvAsync(c)
	time.Sleep(50 * time.Millisecond) // past the spin: asleep
	c.Interrupt()
	if err := waitErr(t, done); !errors.Is(err, direct.ErrInterrupted) {
		t.Fatalf("interrupt: got %v, want ErrInterrupted", err)
	}
	done = recvAsync(c)
	send(t, far, "hello")
	if err := waitErr(t, done); err != nil {
		t.Fatalf("after the interrupt: %v", err)
	}
}
