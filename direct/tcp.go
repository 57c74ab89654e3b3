package direct

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// TCPOptions tune a TCPConn.
type TCPOptions struct {
	// Batch makes Send only queue messages (up to 64 KiB) until Flush
	// or until Recv is about to wait for the peer: pipelined calls from
	// one goroutine then leave in one write. Without it every Send writes
	// at once, and only Sends that arrive while a write is under way
	// share the next one.
	Batch bool
	// MaxMessage bounds the messages Recv accepts; 0 means MaxFrame.
	MaxMessage int
	// Spin makes Recv busy-poll the socket for up to Spin (forever if
	// negative) before it blocks: the hot executor of rFaaS, over TCP.
	// A blocked read costs a wake-up of the sleeping thread when the
	// message arrives, which on a small VM is most of a round trip; a
	// spinning reader takes it at once, for a core kept busy. Only on
	// a connection with a descriptor (*net.TCPConn, *net.UnixConn).
	Spin time.Duration
}

const (
	tcpBuf      = 64 << 10 // read buffer kept between messages; batch size
	tcpMaxQueue = 4 << 20  // unsent bytes at which Send waits for the writer
)

// TCPConn carries messages over a byte stream (TCP, or any net.Conn), each
// as a u32 big-endian length and the message. It is a Conn, an Interrupter
// and a Flusher.
type TCPConn struct {
	c      net.Conn
	batch  bool
	maxMsg int

	wmu      sync.Mutex // guards the following write-side fields
	wcond    sync.Cond  // signalled when a write ends
	wbuf     []byte     // bytes queued for the next write
	spare    []byte     // the buffer being written, for reuse
	writing  bool       // a goroutine is writing; it writes wbuf too before it stops
	werr     error
	interrup atomic.Bool
	closed   atomic.Bool

	// Spinning (TCPOptions.Spin): sock, when the conn is TCP on Linux,
	// is its socket taken out of the netpoller, and c is closed; else raw
	// polls c's descriptor, and is nil when c has none.
	spin     time.Duration
	sock     *spinSock
	remote   net.Addr
	raw      syscall.RawConn
	polled   atomic.Int64 // ns spent spinning, spins that ended
	spinning atomic.Int64 // start of the spin under way, Unix ns; 0: none
	paused   atomic.Bool  // set by a Client with several calls in flight

	// Read side: one goroutine at a time.
	rbuf []byte
	r, w int // unread bytes are rbuf[r:w]
	last int // length of the message returned last, consumed at the next Recv
	rerr error
}

// NewTCPConn wraps c, which the TCPConn then owns. On a *net.TCPConn it
// turns Nagle's algorithm off.
func NewTCPConn(c net.Conn, opts TCPOptions) *TCPConn {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	t := &TCPConn{c: c, batch: opts.Batch, maxMsg: opts.MaxMessage, rbuf: make([]byte, tcpBuf), spin: opts.Spin}
	if t.maxMsg <= 0 {
		t.maxMsg = MaxFrame
	}
	t.remote = c.RemoteAddr()
	if t.spin != 0 {
		if s, err := detach(c); err == nil && s != nil {
			t.sock = s
		} else if sc, ok := c.(syscall.Conn); ok {
			t.raw, _ = sc.SyscallConn()
		}
	}
	t.wcond.L = &t.wmu
	return t
}

// Send queues msg and, unless in batch mode, writes it. If another
// goroutine is writing, msg goes out with that goroutine's next write.
func (t *TCPConn) Send(msg []byte) error {
	return t.send(msg, !t.batch)
}

// queue queues msg for the next write (batcher).
func (t *TCPConn) queue(msg []byte) error { return t.send(msg, false) }

// readAhead reports whether a whole message is buffered past the one
// Recv returned last (batcher).
func (t *TCPConn) readAhead() bool {
	r := t.r + t.last
	if t.w-r < 4 {
		return false
	}
	return t.w-r-4 >= int(binary.BigEndian.Uint32(t.rbuf[r:]))
}

func (t *TCPConn) send(msg []byte, write bool) error {
	if len(msg) > t.maxMsg {
		return fmt.Errorf("%w: message of %d bytes exceeds %d", ErrTooLarge, len(msg), t.maxMsg)
	}
	t.wmu.Lock()
	for t.writing && len(t.wbuf) >= tcpMaxQueue && t.werr == nil {
		t.wcond.Wait()
	}
	if t.werr != nil {
		err := t.werr
		t.wmu.Unlock()
		return err
	}
	t.wbuf = binary.BigEndian.AppendUint32(t.wbuf, uint32(len(msg)))
	t.wbuf = append(t.wbuf, msg...)
	if t.writing || (!write && len(t.wbuf) < tcpBuf) {
		t.wmu.Unlock()
		return nil
	}
	return t.writeLocked()
}

// Flush writes what Send queued.
func (t *TCPConn) Flush() error {
	t.wmu.Lock()
	if t.writing || len(t.wbuf) == 0 {
		err := t.werr
		t.wmu.Unlock()
		return err
	}
	return t.writeLocked()
}

// writeLocked writes wbuf until it stays empty. Called with wmu held, it
// returns with wmu released.
func (t *TCPConn) writeLocked() error {
	t.writing = true
	for len(t.wbuf) > 0 && t.werr == nil {
		buf := t.wbuf
		t.wbuf = t.spare[:0]
		t.wmu.Unlock()
		var err error
		if t.sock != nil {
			_, err = t.sock.write(buf)
		} else {
			_, err = t.c.Write(buf)
		}
		t.wmu.Lock()
		if cap(buf) <= 4*tcpBuf {
			t.spare = buf[:0]
		} else {
			t.spare = nil
		}
		if err != nil {
			t.werr = err
		}
		t.wcond.Broadcast()
	}
	t.writing = false
	err := t.werr
	t.wmu.Unlock()
	return err
}

// Recv returns the next message, valid until the next Recv.
func (t *TCPConn) Recv() ([]byte, error) {
	if t.rerr != nil {
		return nil, t.rerr
	}
	t.r += t.last
	t.last = 0
	if t.r == t.w {
		t.r, t.w = 0, 0
		if cap(t.rbuf) > 4*tcpBuf {
			t.rbuf = make([]byte, tcpBuf)
		}
	}
	if t.interrup.Swap(false) {
		if t.sock == nil {
			t.c.SetReadDeadline(time.Time{})
		}
		return nil, ErrInterrupted
	}
	for {
		need := 4
		if t.w-t.r >= 4 {
			n := binary.BigEndian.Uint32(t.rbuf[t.r:])
			if n > uint32(t.maxMsg) {
				t.rerr = fmt.Errorf("%w: peer sent a message of %d bytes, over %d", ErrTooLarge, n, t.maxMsg)
				return nil, t.rerr
			}
			need = 4 + int(n)
			if t.w-t.r >= need {
				t.last = need
				return t.rbuf[t.r+4 : t.r+need : t.r+need], nil
			}
		}
		if len(t.rbuf)-t.r < need {
			// Make room: move the partial message down, or grow.
			buf := t.rbuf
			if need > len(buf) {
				buf = make([]byte, need)
			}
			t.w = copy(buf, t.rbuf[t.r:t.w])
			t.r = 0
			t.rbuf = buf
		}
		// About to wait for the peer: what is queued goes out first,
		// or the peer might wait for it (a write error shows at the
		// next Send).
		t.Flush()
		n, err := t.read(t.rbuf[t.w:])
		t.w += n
		if err == nil {
			continue
		}
		if err == errWoken {
			// Interrupt or Close woke a detached socket's wait.
			if t.interrup.Swap(false) {
				return nil, ErrInterrupted
			}
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Interrupt set the deadline; a stale one (the flag was
			// already taken) is cleared and the read resumed.
			t.c.SetReadDeadline(time.Time{})
			if t.interrup.Swap(false) {
				return nil, ErrInterrupted
			}
			continue
		}
		if err == io.EOF && t.w > t.r {
			err = fmt.Errorf("%w: connection closed inside a message", io.ErrUnexpectedEOF)
		}
		t.rerr = err
		return nil, err
	}
}

// read reads what is there, spinning first when the conn is set to.
func (t *TCPConn) read(p []byte) (int, error) {
	if t.sock != nil {
		return t.readSock(p)
	}
	if t.raw == nil || t.paused.Load() {
		return t.c.Read(p)
	}
	var until int64 // Unix ns; 0: forever
	start := time.Now().UnixNano()
	if t.spin > 0 {
		until = start + int64(t.spin)
	}
	t.spinning.Store(start)
	n, errno, eof := 0, syscall.Errno(0), false
	spun := false // the spin is over: the next call reads once
	err := t.raw.Read(func(fd uintptr) bool {
		for {
			// A non-blocking read: RawSyscall keeps the scheduler out
			// of every turn of the loop.
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch {
			case e == 0 && r == 0:
				eof = true
				return true
			case e == 0:
				n = int(r)
				return true
			case e == syscall.EINTR:
				continue
			case e != syscall.EAGAIN:
				errno = e
				return true
			}
			if spun || t.interrup.Load() || t.closed.Load() {
				break
			}
			if until != 0 && time.Now().UnixNano() >= until {
				break
			}
		}
		if !spun {
			spun = true
			t.endSpin(start)
		}
		return false // wait for the socket, then one more read
	})
	if !spun {
		t.endSpin(start)
	}
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Addr: t.remote, Err: os.NewSyscallError("read", errno)}
	case eof:
		return 0, io.EOF
	}
	return n, nil
}

// readSock is read on a detached socket: the same spin, then a sleep
// that Interrupt and Close can end (errWoken).
func (t *TCPConn) readSock(p []byte) (int, error) {
	if t.paused.Load() || t.interrup.Load() {
		return t.sock.read(p, func() bool { return false })
	}
	start := time.Now().UnixNano()
	var until int64 // Unix ns; 0: forever
	if t.spin > 0 {
		until = start + int64(t.spin)
	}
	t.spinning.Store(start)
	spinning := true
	n, err := t.sock.read(p, func() bool {
		if spinning && !t.interrup.Load() && !t.closed.Load() && (until == 0 || time.Now().UnixNano() < until) {
			return true
		}
		if spinning {
			spinning = false
			t.endSpin(start)
		}
		return false
	})
	if spinning {
		t.endSpin(start)
	}
	if err != nil && err != errWoken && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		err = &net.OpError{Op: "read", Net: "tcp", Addr: t.remote, Err: err}
	}
	return n, err
}

// pauseSpin turns spinning off while paused (a Client's batched reads).
func (t *TCPConn) pauseSpin(paused bool) {
	if t.paused.Load() != paused {
		t.paused.Store(paused)
	}
}

func (t *TCPConn) endSpin(start int64) {
	t.polled.Add(time.Now().UnixNano() - start)
	t.spinning.Store(0)
}

// PollTime is the time Recv has spent spinning (TCPOptions.Spin): CPU
// time burnt waiting, for a lease's accounting. It counts a spin under
// way too, so an idle hot executor shows its cost while it burns it.
func (t *TCPConn) PollTime() time.Duration {
	d := t.polled.Load()
	if since := t.spinning.Load(); since != 0 {
		d += time.Now().UnixNano() - since
	}
	return time.Duration(d)
}

// Interrupt makes a blocked Recv, or the next one, return ErrInterrupted.
// A message being read stays in the buffer for the next Recv.
func (t *TCPConn) Interrupt() {
	t.interrup.Store(true)
	if t.sock != nil {
		t.sock.wake()
		return
	}
	t.c.SetReadDeadline(time.Unix(1, 0))
}

// Close closes the connection, unblocking Send and Recv.
func (t *TCPConn) Close() error {
	t.closed.Store(true) // ends a spin; the close wakes a blocked read
	t.wmu.Lock()
	if t.werr == nil {
		t.werr = ErrClosed
	}
	t.wcond.Broadcast()
	t.wmu.Unlock()
	if t.sock != nil {
		return t.sock.close()
	}
	return t.c.Close()
}
