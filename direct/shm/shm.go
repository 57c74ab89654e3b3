//go:build linux

// Package shm is a direct.Conn between two processes on one node: two
// single-producer, single-consumer rings in one memfd that both map, one
// for calls (client to executor) and one for results (executor to client).
// A message costs two memory copies and, while the reader is polling, no
// system call at all.
//
// # Usage
//
//	f, err := shm.New(1 << 20)                // one side makes the rings,
//	c, err := shm.Open(f, shm.Executor, opts) // maps its end
//	err = fdpass.Send(sock, msg, f)           // and hands the file over;
//	err = direct.Serve(ctx, c, cfg, handler)
//
//	c, err := shm.Open(f, shm.Client, opts)   // the other side maps the other end
//	cl, err := direct.Handshake(c, token, executor)
//
// Either side may close its copy of f once it has opened it.
//
// # Layout
//
// The file is a 4 KiB header page, then ring 0's data (client to executor),
// then ring 1's data (executor to client), each Size bytes (a power of two).
// Integers in shared memory are in the machine's byte order (both ends are
// on the same machine); counters and words are accessed atomically. Header
// offsets:
//
//	0    [8]byte magic "HDIRRING"
//	8    u32 layout version (1)
//	12   u32 open sides: bit 0 client, bit 1 executor (set by Open)
//	16   u64 Size
//	64   u32 closed sides: bit 0 client, bit 1 executor (set by Close)
//	128  ring 0 control, 512 bytes
//	640  ring 1 control, 512 bytes
//
// A ring's control block keeps each field on its own 128-byte line (two
// cache lines, against adjacent-line prefetch), so the counters, which the
// two sides write at every message, never share a line:
//
//	+0    u64 tail: bytes ever written (producer)
//	+128  u64 head: bytes ever consumed (consumer)
//	+256  u32 data word: 1 while the consumer sleeps or is about to
//	+384  u32 space word: 1 while the producer sleeps or is about to
//
// A byte at stream offset n lives at data[n mod Size]. A message is an
// 8-byte record header (u32 length, u32 zero) and the message bytes,
// padded to a multiple of 8; records wrap around the end of the data area
// like any bytes. A message larger than the ring streams through it: the
// producer publishes as much as fits and waits for space, the consumer
// copies out what is published and frees it. Messages are limited only by
// Options.MaxMessage.
//
// # Waiting
//
// A side that waits for data (consumer) or space (producer) polls the
// counter, for Options.Hot in Auto mode, forever in Hot mode, not at all in
// Warm mode; then it sleeps on its word with FUTEX_WAIT (the shared kind:
// the word is in a mapping two processes share): it stores 1 in the word,
// checks the counter once more, and sleeps while the word is 1. The other
// side, after moving the counter, reads the word, and only if it is 1
// swaps it to 0 and issues FUTEX_WAKE. Store-then-load on both sides (all
// sequentially consistent) means one of them always sees the other: no
// lost wake-up, and no system call while the waiter polls.
//
// A sleeper wakes at least every AliveInterval to look at the closed word
// and ask Options.Alive whether the peer still lives, so a peer that dies
// without closing cannot hang it; a poller asks as often.
//
// # Trust
//
// The peer can write anything into the mapping. Counters that go backwards
// or past the ring, and record headers that are not zero-padded or exceed
// MaxMessage, break the connection with ErrCorrupt; Recv copies a message
// out of the ring before returning it, so the peer cannot change it under
// the reader; the file is sealed against shrinking, so the peer cannot make
// the mapping fault (SIGBUS).
package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/handoff-dev/handoff/direct"
	"github.com/handoff-dev/handoff/memfd"
	"golang.org/x/sys/unix"
)

// Sentinel errors, besides direct.ErrClosed (closed on this side),
// direct.ErrTooLarge and direct.ErrInterrupted.
var (
	// ErrPeerClosed means the peer closed its side; Send fails with it.
	// (Recv returns io.EOF once it has read everything the peer sent.)
	ErrPeerClosed = errors.New("shm: the peer closed the connection")

	// ErrPeerGone means Options.Alive reported the peer dead while this
	// side waited.
	ErrPeerGone = errors.New("shm: the peer is gone")

	// ErrCorrupt means the shared memory broke the ring's rules: the peer
	// is faulty or hostile. The connection is unusable.
	ErrCorrupt = errors.New("shm: ring corrupted by the peer")

	// ErrLayout means the file is not a ring made by New: wrong size,
	// magic or version, not sealed against shrinking, or this side is
	// already open.
	ErrLayout = errors.New("shm: not a ring file")
)

// Layout constants.
const (
	magic         = "HDIRRING"
	layoutVersion = 1
	headerSize    = 4096
	offVersion    = 8
	offSides      = 12
	offSize       = 16
	offClosed     = 64
	offRings      = 128
	ringCtl       = 512
	offTail       = 0
	offHead       = 128
	offDataWord   = 256
	offSpaceWord  = 384
	recordHeader  = 8

	// MinSize and MaxSize bound a ring's data area.
	MinSize = 4 << 10
	MaxSize = 1 << 30
)

// AliveInterval is how often a waiting side checks that its peer lives.
const AliveInterval = 100 * time.Millisecond

// DefaultHot is Auto mode's polling time when Options.Hot is zero.
const DefaultHot = 100 * time.Microsecond

// Side says which end of the rings a process is.
type Side uint8

// Sides.
const (
	Client   Side = 0 // writes ring 0 (calls), reads ring 1 (results)
	Executor Side = 1 // writes ring 1, reads ring 0
)

func (s Side) String() string {
	if s == Client {
		return "client"
	}
	return "executor"
}

// Mode says how a side waits.
type Mode int32

// Modes.
const (
	// Auto polls for Options.Hot at the start of each wait (a wait starts
	// when the last message was just handled), then sleeps.
	Auto Mode = iota
	// Hot polls and never sleeps: lowest latency, one core busy while
	// waiting.
	Hot
	// Warm sleeps at once: no polling, a futex wake-up per message.
	Warm
)

// Options configure a side.
type Options struct {
	Mode Mode
	// Hot is how long Auto polls before it sleeps; 0 means DefaultHot.
	Hot time.Duration
	// Alive, if set, reports whether the peer still lives (for example,
	// WatchProcess(pid).Alive). A side waits at most AliveInterval before
	// asking; false fails the wait with ErrPeerGone.
	Alive func() bool
	// LockThread wires the goroutine to its OS thread while it polls
	// (and then it does not yield). Measured on a 2-core VM it neither
	// helps nor hurts (BenchmarkCallShm/hot-locked); it may on machines
	// with cores set aside.
	LockThread bool
	// MaxMessage bounds the messages Recv accepts and Send sends; 0 means
	// direct.MaxFrame.
	MaxMessage int
}

// New creates a memfd holding two rings of size bytes each (rounded up to
// a power of two, at least MinSize) and their header, sealed against
// shrinking and growing. The caller opens its side with Open, hands the
// file to the peer (fdpass, or os/exec's ExtraFiles) and closes it.
func New(size int) (*os.File, error) {
	if size < MinSize {
		size = MinSize
	}
	if size > MaxSize {
		return nil, fmt.Errorf("shm: ring of %d bytes exceeds %d", size, MaxSize)
	}
	size = 1 << bits.Len(uint(size-1))
	f, err := memfd.Create("handoff-direct")
	if err != nil {
		return nil, err
	}
	total := int64(headerSize + 2*size)
	if err := f.Truncate(total); err != nil {
		f.Close()
		return nil, fmt.Errorf("shm: size the ring file: %w", err)
	}
	hdr, err := memfd.Map(f, headerSize, true)
	if err != nil {
		f.Close()
		return nil, err
	}
	copy(hdr, magic)
	binary.NativeEndian.PutUint32(hdr[offVersion:], layoutVersion)
	binary.NativeEndian.PutUint64(hdr[offSize:], uint64(size))
	memfd.Unmap(hdr)
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, fmt.Errorf("shm: seal the ring file: %w", err)
	}
	return f, nil
}

// Conn is one side of the rings: a direct.Conn, direct.Interrupter.
type Conn struct {
	mem    []byte
	side   Side
	size   uint64
	mask   uint64
	maxMsg uint64
	hot    time.Duration
	alive  func() bool
	lock   bool
	mode   atomic.Int32

	sides  *atomic.Uint32 // the header's open sides
	closed *atomic.Uint32 // the header's closed sides
	tx, rx ring

	refs    atomic.Int64 // 1 while open, plus one per Send or Recv running; unmapped at 0
	closing atomic.Bool
	intr    atomic.Bool
	polled  atomic.Int64 // nanoseconds spent in finished polls
	polling atomic.Int64 // start of the poll under way (Unix ns), or 0

	// Send side, one goroutine at a time.
	txTail uint64 // our tail; we alone write it
	txHead uint64 // the consumer's head, as last seen
	werr   error

	// Recv side, one goroutine at a time.
	rxHead uint64 // our head; we alone write it
	rxTail uint64 // the producer's tail, as last seen
	rbuf   []byte
	rerr   error
}

type ring struct {
	data       []byte
	tail, head *atomic.Uint64
	dataWord   *atomic.Uint32 // the consumer sleeps on it
	spaceWord  *atomic.Uint32 // the producer sleeps on it
}

// Open maps the rings in f (made by New, here or in the peer) as side.
// f may be closed afterwards. Each side may be opened once per file.
func Open(f *os.File, side Side, opts Options) (*Conn, error) {
	if side != Client && side != Executor {
		return nil, fmt.Errorf("shm: no side %d", side)
	}
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrLayout, f.Name(), err)
	}
	if seals&unix.F_SEAL_SHRINK == 0 {
		return nil, fmt.Errorf("%w: %s is not sealed against shrinking (the peer could make this process fault); make it with shm.New", ErrLayout, f.Name())
	}
	if seals&(unix.F_SEAL_WRITE|unix.F_SEAL_FUTURE_WRITE) != 0 {
		return nil, fmt.Errorf("%w: %s is sealed against writing; make it with shm.New", ErrLayout, f.Name())
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("shm: %w", err)
	}
	total := st.Size()
	if total < headerSize+2*MinSize || total > headerSize+2*MaxSize {
		return nil, fmt.Errorf("%w: %s has %d bytes", ErrLayout, f.Name(), total)
	}
	mem, err := memfd.Map(f, total, true)
	if err != nil {
		return nil, err
	}
	size := binary.NativeEndian.Uint64(mem[offSize:])
	switch {
	case string(mem[:len(magic)]) != magic:
		err = fmt.Errorf("%w: %s has no %q magic", ErrLayout, f.Name(), magic)
	case binary.NativeEndian.Uint32(mem[offVersion:]) != layoutVersion:
		err = fmt.Errorf("%w: %s has layout version %d, want %d", ErrLayout, f.Name(), binary.NativeEndian.Uint32(mem[offVersion:]), layoutVersion)
	case size < MinSize || size > MaxSize || size&(size-1) != 0 || int64(headerSize+2*size) != total:
		err = fmt.Errorf("%w: %s: ring size %d does not fit the file's %d bytes", ErrLayout, f.Name(), size, total)
	}
	if err != nil {
		memfd.Unmap(mem)
		return nil, err
	}
	c := &Conn{
		mem:    mem,
		side:   side,
		size:   size,
		mask:   size - 1,
		maxMsg: uint64(opts.MaxMessage),
		hot:    opts.Hot,
		alive:  opts.Alive,
		lock:   opts.LockThread,
		sides:  word(mem, offSides),
		closed: word(mem, offClosed),
	}
	if c.maxMsg == 0 {
		c.maxMsg = direct.MaxFrame
	}
	if c.hot <= 0 {
		c.hot = DefaultHot
	}
	c.mode.Store(int32(opts.Mode))
	rings := [2]ring{ringAt(mem, 0, size), ringAt(mem, 1, size)}
	c.tx, c.rx = rings[side], rings[1-side]
	for {
		s := c.sides.Load()
		if s&c.bit() != 0 {
			memfd.Unmap(mem)
			return nil, fmt.Errorf("%w: the %s side of %s is already open", ErrLayout, side, f.Name())
		}
		if c.sides.CompareAndSwap(s, s|c.bit()) {
			break
		}
	}
	// The peer may have written already: start from the counters as
	// they are.
	c.txTail, c.txHead = c.tx.tail.Load(), c.tx.head.Load()
	c.rxHead, c.rxTail = c.rx.head.Load(), c.rx.tail.Load()
	if c.txTail-c.txHead > size || c.rxTail-c.rxHead > size || c.txTail&7 != 0 || c.rxHead&7 != 0 {
		memfd.Unmap(mem)
		return nil, fmt.Errorf("%w: %s: ring counters out of order", ErrCorrupt, f.Name())
	}
	c.refs.Store(1)
	return c, nil
}

func ringAt(mem []byte, i int, size uint64) ring {
	ctl := offRings + i*ringCtl
	data := headerSize + uint64(i)*size
	return ring{
		data:      mem[data : data+size : data+size],
		tail:      (*atomic.Uint64)(unsafe.Pointer(&mem[ctl+offTail])),
		head:      (*atomic.Uint64)(unsafe.Pointer(&mem[ctl+offHead])),
		dataWord:  word(mem, ctl+offDataWord),
		spaceWord: word(mem, ctl+offSpaceWord),
	}
}

func word(mem []byte, off int) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&mem[off]))
}

func (c *Conn) bit() uint32     { return 1 << c.side }
func (c *Conn) peerBit() uint32 { return 1 << (1 - c.side) }

// SetMode changes how this side waits, from its next wait on: a lease
// manager turns an executor warm when its lease ends.
func (c *Conn) SetMode(m Mode) { c.mode.Store(int32(m)) }

// PollTime is the time this side has spent polling: CPU time it burnt
// waiting, for accounting. It counts a poll under way too, so an idle hot
// side shows its cost while it burns it. Sampled while a poll ends it may
// run a moment ahead of a later sample; callers summing deltas skip a
// negative one.
func (c *Conn) PollTime() time.Duration {
	d := c.polled.Load()
	if since := c.polling.Load(); since != 0 {
		d += time.Now().UnixNano() - since
	}
	return time.Duration(d)
}

// Size is the size of each ring's data area.
func (c *Conn) Size() int { return int(c.size) }

// enter takes a reference on the mapping for a Send or Recv; false means
// the side is closed.
func (c *Conn) enter() bool {
	for {
		r := c.refs.Load()
		if r <= 0 {
			return false
		}
		if c.refs.CompareAndSwap(r, r+1) {
			break
		}
	}
	if c.closing.Load() {
		c.leave()
		return false
	}
	return true
}

// leave drops a reference; the last one unmaps.
func (c *Conn) leave() {
	if c.refs.Add(-1) == 0 {
		memfd.Unmap(c.mem)
	}
}

// Close marks this side closed in the header, wakes every sleeper (the
// peer's and this side's own) and unmaps once no Send or Recv is running.
func (c *Conn) Close() error {
	if c.closing.Swap(true) {
		return nil
	}
	c.closed.Or(c.bit())
	for _, w := range []*atomic.Uint32{c.rx.dataWord, c.rx.spaceWord, c.tx.dataWord, c.tx.spaceWord} {
		w.Store(0)
		futexWake(w)
	}
	c.leave()
	return nil
}

// Interrupt makes a Recv that waits for a message, or the next one, return
// direct.ErrInterrupted. A message being read is read to its end.
func (c *Conn) Interrupt() {
	c.intr.Store(true)
	wake(c.rx.dataWord)
}

// Send copies msg into the ring, waiting for space as the mode says.
func (c *Conn) Send(msg []byte) error {
	if !c.enter() {
		return direct.ErrClosed
	}
	defer c.leave()
	if c.werr != nil {
		return c.werr
	}
	n := uint64(len(msg))
	if n > c.maxMsg {
		return fmt.Errorf("%w: message of %d bytes exceeds %d", direct.ErrTooLarge, n, c.maxMsg)
	}
	record := recordHeader + align8(n)
	need := uint64(recordHeader)
	if record <= c.size {
		need = record // the usual case: wait for the whole record, publish once
	}
	if err := c.awaitSpace(need); err != nil {
		return c.sendFailed(err)
	}
	start := c.txTail
	var hdr [recordHeader]byte
	binary.NativeEndian.PutUint32(hdr[:], uint32(n))
	pos := c.copyIn(start, hdr[:])
	for {
		k := min(c.size-(pos-c.txHead), uint64(len(msg)))
		pos = c.copyIn(pos, msg[:k])
		msg = msg[k:]
		if len(msg) == 0 {
			break
		}
		// Larger than the free space: publish what is there, wait for more.
		c.publish(pos)
		if err := c.awaitSpace(1); err != nil {
			return c.sendFailed(err)
		}
	}
	end := start + record
	if end-c.txHead > c.size {
		// Only the padding is missing; it needs room all the same.
		c.publish(pos)
		if err := c.awaitSpace(end - pos); err != nil {
			return c.sendFailed(err)
		}
	}
	c.publish(end)
	return nil
}

func (c *Conn) sendFailed(err error) error {
	if !errors.Is(err, direct.ErrClosed) {
		c.werr = err
	}
	return err
}

// copyIn writes b at stream offset pos of the tx ring and returns the
// offset after it.
func (c *Conn) copyIn(pos uint64, b []byte) uint64 {
	off := pos & c.mask
	k := copy(c.tx.data[off:], b)
	copy(c.tx.data, b[k:])
	return pos + uint64(len(b))
}

// publish moves the tail to pos and wakes the consumer if it sleeps.
func (c *Conn) publish(pos uint64) {
	c.tx.tail.Store(pos)
	c.txTail = pos
	wake(c.tx.dataWord)
}

// Recv copies the next message out of the ring, waiting for it as the mode
// says. The message is valid until the next Recv.
func (c *Conn) Recv() ([]byte, error) {
	if !c.enter() {
		return nil, direct.ErrClosed
	}
	defer c.leave()
	if c.rerr != nil {
		return nil, c.rerr
	}
	if cap(c.rbuf) > 1<<20 {
		c.rbuf = nil
	}
	if err := c.awaitData(recordHeader, true); err != nil {
		return nil, c.recvFailed(err)
	}
	var hdr [recordHeader]byte
	c.copyOut(c.rxHead, hdr[:])
	n := uint64(binary.NativeEndian.Uint32(hdr[:]))
	if binary.NativeEndian.Uint32(hdr[4:]) != 0 {
		return nil, c.recvFailed(fmt.Errorf("%w: record header %x", ErrCorrupt, hdr))
	}
	if n > c.maxMsg {
		return nil, c.recvFailed(fmt.Errorf("%w: peer sent a message of %d bytes, over %d", direct.ErrTooLarge, n, c.maxMsg))
	}
	if uint64(cap(c.rbuf)) < n {
		c.rbuf = make([]byte, max(n, 512))
	}
	msg := c.rbuf[:n]
	end := c.rxHead + recordHeader + align8(n)
	pos := c.rxHead + recordHeader
	for got := uint64(0); got < n; {
		if c.rxTail == pos {
			// Streaming a message larger than what is published: free
			// what was copied, wait for more.
			c.consume(pos)
			if err := c.awaitData(1, false); err != nil {
				return nil, c.recvFailed(err)
			}
		}
		k := min(c.rxTail-pos, n-got)
		c.copyOut(pos, msg[got:got+k])
		got += k
		pos += k
	}
	if c.rxTail < end {
		c.consume(pos)
		if err := c.awaitData(end-pos, false); err != nil {
			return nil, c.recvFailed(err)
		}
	}
	c.consume(end)
	return msg, nil
}

func (c *Conn) recvFailed(err error) error {
	if !errors.Is(err, direct.ErrClosed) && !errors.Is(err, direct.ErrInterrupted) {
		c.rerr = err
	}
	return err
}

// copyOut reads len(b) bytes at stream offset pos of the rx ring.
func (c *Conn) copyOut(pos uint64, b []byte) {
	off := pos & c.mask
	k := copy(b, c.rx.data[off:])
	copy(b[k:], c.rx.data)
}

// consume moves the head to pos and wakes the producer if it sleeps.
func (c *Conn) consume(pos uint64) {
	if pos == c.rxHead {
		return
	}
	c.rx.head.Store(pos)
	c.rxHead = pos
	wake(c.rx.spaceWord)
}

func align8(n uint64) uint64 { return (n + 7) &^ 7 }

// wake wakes the sleeper on w, if there is one.
func wake(w *atomic.Uint32) {
	if w.Load() == 1 && w.CompareAndSwap(1, 0) {
		futexWake(w)
	}
}

// errNotYet is check's answer while the wait goes on.
var errNotYet = errors.New("not yet")

// dataCheck reports whether need bytes past rxHead are published (nil),
// or why they never will be.
func (c *Conn) dataCheck(need uint64, interruptible bool) error {
	t := c.rx.tail.Load()
	if t < c.rxTail || t-c.rxHead > c.size {
		return fmt.Errorf("%w: tail moved from %d to %d (head %d, size %d)", ErrCorrupt, c.rxTail, t, c.rxHead, c.size)
	}
	c.rxTail = t
	if t-c.rxHead >= need {
		return nil
	}
	if c.closing.Load() {
		return direct.ErrClosed
	}
	if interruptible && c.intr.Swap(false) {
		return direct.ErrInterrupted
	}
	if c.closed.Load()&c.peerBit() != 0 {
		// The peer published everything before it closed: look again.
		if t2 := c.rx.tail.Load(); t2 != t {
			return c.dataCheck(need, interruptible)
		}
		if interruptible && t == c.rxHead {
			return io.EOF
		}
		return fmt.Errorf("%w: the peer closed inside a message", io.ErrUnexpectedEOF)
	}
	return errNotYet
}

// spaceCheck reports whether need bytes past txTail are free.
func (c *Conn) spaceCheck(need uint64) error {
	h := c.tx.head.Load()
	if h < c.txHead || h > c.txTail {
		return fmt.Errorf("%w: head moved from %d to %d (tail %d)", ErrCorrupt, c.txHead, h, c.txTail)
	}
	c.txHead = h
	if c.size-(c.txTail-h) >= need {
		return nil
	}
	if c.closing.Load() {
		return direct.ErrClosed
	}
	if c.closed.Load()&c.peerBit() != 0 {
		return ErrPeerClosed
	}
	return errNotYet
}

func (c *Conn) awaitData(need uint64, interruptible bool) error {
	if c.rxTail-c.rxHead >= need {
		return nil
	}
	return c.await(c.rx.dataWord, func() error { return c.dataCheck(need, interruptible) }, func() bool {
		return c.rx.tail.Load()-c.rxHead >= need
	})
}

func (c *Conn) awaitSpace(need uint64) error {
	if c.size-(c.txTail-c.txHead) >= need {
		return nil
	}
	return c.await(c.tx.spaceWord, func() error { return c.spaceCheck(need) }, func() bool {
		return c.size-(c.txTail-c.tx.head.Load()) >= need
	})
}

// await waits until check stops answering errNotYet: it polls (using the
// cheaper ready as a hint) as the mode says, then sleeps on w.
func (c *Conn) await(w *atomic.Uint32, check func() error, ready func() bool) error {
	if err := check(); err != errNotYet {
		return err
	}
	start := time.Now()
	nextAlive := start.Add(AliveInterval)
	mode := Mode(c.mode.Load())
	if mode != Warm {
		if c.lock {
			runtime.LockOSThread()
		}
		err := c.poll(mode, start, &nextAlive, check, ready)
		if c.lock {
			runtime.UnlockOSThread()
		}
		if err != errNotYet {
			return err
		}
	}
	for {
		w.Store(1)
		if err := check(); err != errNotYet {
			w.Store(0)
			return err
		}
		futexWait(w, 1, AliveInterval)
		w.Store(0)
		if err := check(); err != errNotYet {
			return err
		}
		if now := time.Now(); !now.Before(nextAlive) {
			nextAlive = now.Add(AliveInterval)
			if c.alive != nil && !c.alive() {
				return ErrPeerGone
			}
		}
	}
}

// pollSpins is how many times poll looks at the counter between the
// slower checks, the clock and a yield: about 2 µs. 16, 64 and 1024 measured
// alike (p50 within 0.1 µs).
const pollSpins = 1024

// poll spins until check answers, Auto's time is up (errNotYet) or the
// peer is found dead.
func (c *Conn) poll(mode Mode, start time.Time, nextAlive *time.Time, check func() error, ready func() bool) error {
	until := start.Add(c.hot)
	c.polling.Store(start.UnixNano())
	defer func() {
		c.polled.Add(int64(time.Since(start)))
		c.polling.Store(0)
	}()
	for {
		for range pollSpins {
			if ready() {
				break
			}
		}
		if err := check(); err != errNotYet {
			return err
		}
		now := time.Now()
		if mode == Auto && now.After(until) {
			return errNotYet
		}
		if !now.Before(*nextAlive) {
			*nextAlive = now.Add(AliveInterval)
			if c.alive != nil && !c.alive() {
				return ErrPeerGone
			}
		}
		if !c.lock {
			// Let the other goroutines of this P run (a yield on a
			// locked thread would hand the P to another thread).
			runtime.Gosched()
		}
	}
}
