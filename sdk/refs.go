package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/fdpass"
	"github.com/handoff-dev/handoff/memfd"
)

// RefOptions scope a reference: who may read it, how often, how long.
type RefOptions struct {
	// Readers are the names of the functions allowed to read the
	// reference; required. AnyReader alone lets any function read it.
	Readers []string
	// Reads is how many reads the node agent allows; 0 means 1.
	Reads uint32
	// TTL is how long the payload is kept; 0 means the node's default (10
	// minutes). A payload that is neither read nor expired is kept that
	// long whether its sender still runs or not.
	TTL time.Duration
}

// AnyReader in RefOptions.Readers lets any function read a reference.
const AnyReader = "*"

// ErrNoFD means that the node agent's descriptor socket ($HANDOFF_FD) is
// not set or cannot be used. Put, Get and Buffer.Share then go through the
// local API over HTTP instead; Map, which needs a descriptor, fails with an
// error wrapping ErrNoFD.
var ErrNoFD = errors.New("sdk: HANDOFF_FD is not a usable descriptor socket")

// RefError is a reference operation the node agent refused or could not
// carry out. Code is stable and machine-readable; the node agent's Message
// says what went wrong and what to do. The codes are:
//
//	ref_invalid        the options are not valid (Readers, Reads, TTL)
//	ref_malformed      the token is not a reference: pass it as Put returned it
//	ref_forged         the signature does not match: forged, altered or from another cluster
//	ref_wrong_reader   this function is not among the reference's readers
//	ref_expired        the TTL has passed
//	ref_exhausted      every allowed read was taken
//	ref_gone           the holder no longer has the payload
//	buffers_full       the node has no room for the payload now: retry later
//	payload_size       the payload exceeds the node's size limit
//	holder_unreachable the node holding the payload did not answer
//	holder_draining    the holder is shutting down and no longer serves reads
//	checksum_mismatch  the payload was damaged on its way between nodes
//
// Match a code with errors.As:
//
//	var re *sdk.RefError
//	if errors.As(err, &re) && re.Code == "ref_expired" { ... }
type RefError struct {
	// Op is what was attempted: "put", "get", "open", "map" or "share".
	Op string
	// Status is the HTTP status of the answer, or 0 when the answer came
	// over the descriptor socket ($HANDOFF_FD), which has none.
	Status int
	// Code is the stable code (see above), or "" when the answer was not
	// the platform's JSON error (an agent without the reference API).
	Code string
	// Message says what went wrong and, from the node agent, what to do.
	Message string
}

func (e *RefError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sdk: reference %s failed", e.Op)
	writeFailure(&b, e.Status, e.Code, e.Message)
	return b.String()
}

// readChunk is how much Get reads with one pread(2): large enough that the
// system calls cost nothing next to the copy, small enough to notice a
// canceled context within milliseconds.
const readChunk = 16 << 20

// Put keeps data in the node agent's buffers and returns a reference to
// it, scoped by o, that another function can read with Get, Open or Map.
// The payload belongs to the node agent from then on: it outlives this
// instance until it is read o.Reads times or its TTL passes.
//
// Put copies data once, into a shared-memory file whose descriptor it
// hands to the node agent over $HANDOFF_FD; without that socket it sends
// the bytes over the local API instead. A Buffer saves even that copy.
// An answer other than success is a *RefError.
func Put(ctx context.Context, data []byte, o RefOptions) (string, error) {
	if err := o.check(); err != nil {
		return "", err
	}
	if fdUsable() {
		tok, err := putMemfd(ctx, "put", data, o)
		if !errors.Is(err, ErrNoFD) {
			return tok, err
		}
	}
	return putHTTP(ctx, bytes.NewReader(data), int64(len(data)), o)
}

// putMemfd is Put over the descriptor socket.
func putMemfd(ctx context.Context, op string, data []byte, o RefOptions) (string, error) {
	f, err := memfd.Create("handoff-put")
	if err != nil {
		return "", fmt.Errorf("sdk: put: %w", err)
	}
	defer f.Close()
	// One write(2) is one copy into the file; no mapping to unmap after.
	if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("sdk: put: filling the shared-memory file: %w", err)
	}
	resp, _, err := exchange(ctx, op, o.request(int64(len(data))), f)
	if err != nil {
		return "", err
	}
	return resp.Ref, nil
}

// PutReader is Put for a payload read from r: it streams r to the node
// agent's local API until EOF. size is its exact length, or -1 when unknown.
func PutReader(ctx context.Context, r io.Reader, size int64, o RefOptions) (string, error) {
	if err := o.check(); err != nil {
		return "", err
	}
	if size < -1 {
		return "", fmt.Errorf("sdk: PutReader: size %d; give the payload's length, or -1 if unknown", size)
	}
	return putHTTP(ctx, r, size, o)
}

// putHTTP sends POST /v1/refs.
func putHTTP(ctx context.Context, r io.Reader, size int64, o RefOptions) (string, error) {
	c, err := apiClient()
	if err != nil {
		return "", err
	}
	q := url.Values{"readers": {strings.Join(o.Readers, ",")}}
	if o.Reads > 0 {
		q.Set("reads", strconv.FormatUint(uint64(o.Reads), 10))
	}
	if o.TTL > 0 {
		q.Set("ttl", o.TTL.String())
	}
	if size == 0 || r == nil {
		r = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://handoff/v1/refs?"+q.Encode(), r)
	if err != nil {
		return "", fmt.Errorf("sdk: put: %w", err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("sdk: put: sending the payload to the node agent at %s: %w", os.Getenv("HANDOFF_API"), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return "", refErrorFromResponse("put", resp)
	}
	var pr struct {
		Ref string `json:"ref"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxErrorBody)).Decode(&pr); err != nil || pr.Ref == "" {
		return "", fmt.Errorf("sdk: put: the node agent answered %s without a reference (%v); is it older than the reference API?", resp.Status, err)
	}
	return pr.Ref, nil
}

// Get reads the payload of ref into a new slice: one read of the reference.
// Over $HANDOFF_FD the node agent hands over a descriptor of the payload
// (the sender's own pages when it is on this node) and Get copies from it;
// without that socket it streams the payload over the local API. An answer
// other than success is a *RefError.
func Get(ctx context.Context, ref string) ([]byte, error) {
	if ref == "" {
		return nil, errors.New("sdk: Get needs a reference")
	}
	if fdUsable() {
		resp, f, err := exchange(ctx, "get", fdpass.Request{Ref: ref}, nil)
		switch {
		case err == nil:
			defer f.Close()
			return readAll(ctx, f, resp.Size)
		case !errors.Is(err, ErrNoFD):
			return nil, err
		}
	}
	rc, size, err := openHTTP(ctx, "get", ref)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := readBody(rc, size)
	if err != nil {
		return nil, fmt.Errorf("sdk: get: reading the payload: %w", err)
	}
	return b, nil
}

// readAll copies size bytes of f into a new slice with large preads.
func readAll(ctx context.Context, f *os.File, size int64) ([]byte, error) {
	if err := checkSize(f, size); err != nil {
		return nil, err
	}
	b := make([]byte, size)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("sdk: get: %w after %d of %d bytes", err, off, size)
		}
		n, err := f.ReadAt(b[off:min(off+readChunk, size)], off)
		off += int64(n)
		if err != nil && off < size {
			return nil, fmt.Errorf("sdk: get: reading the payload's descriptor: %w after %d of %d bytes", err, off, size)
		}
	}
	return b, nil
}

// Open streams the payload of ref from the node agent's local API: one
// read of the reference. The caller reads it to EOF and closes it; the
// stream fails rather than ends early if the payload cannot be delivered
// whole. An answer other than success is a *RefError.
func Open(ctx context.Context, ref string) (io.ReadCloser, error) {
	if ref == "" {
		return nil, errors.New("sdk: Open needs a reference")
	}
	rc, _, err := openHTTP(ctx, "open", ref)
	return rc, err
}

// openHTTP sends GET /v1/refs/{ref} and returns the body and its length.
func openHTTP(ctx context.Context, op, ref string) (io.ReadCloser, int64, error) {
	c, err := apiClient()
	if err != nil {
		return nil, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://handoff/v1/refs/"+url.PathEscape(ref), nil)
	if err != nil {
		return nil, 0, fmt.Errorf("sdk: %s: %w", op, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("sdk: %s: asking the node agent at %s: %w", op, os.Getenv("HANDOFF_API"), err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, 0, refErrorFromResponse(op, resp)
	}
	return resp.Body, resp.ContentLength, nil
}

// refErrorFromResponse builds the *RefError of a failed answer.
func refErrorFromResponse(op string, resp *http.Response) error {
	var e *Error
	if !errors.As(errorFromResponse("", resp), &e) {
		return fmt.Errorf("sdk: reference %s failed with status %d", op, resp.StatusCode)
	}
	msg := e.Message
	if e.Code == "" && resp.StatusCode == http.StatusNotFound {
		msg += " (the node agent does not know the reference API: upgrade it)"
	}
	return &RefError{Op: op, Status: e.Status, Code: e.Code, Message: msg}
}

// Buffer is a writable shared-memory buffer of a fixed size, for a payload
// that changes hands without a copy on one node: fill Bytes, then Share
// hands the very pages to the node agent, and a receiver on the same node
// that Maps the reference reads those pages.
//
// Its pages, like the copy Put makes, are charged to the memory limit of
// the instance that writes them, and stay charged until the node agent
// frees the payload (read or expired), even after Share: the kernel
// charges shared memory to whoever touched it first.
//
// A buffer of at most 1 MiB is ordinary memory, kept from one small Buffer
// to the next, that Share copies into a shared-memory file with one
// write(2): on a VM that copy (about 0.3 ms per MiB) costs far less than
// filling fresh shared pages (a page fault per 4 KiB, 10 ms per MiB here)
// and unmapping them after, and the file is sealed before the reference
// exists, so a pull to another node never waits for an unmap.
//
// A Buffer is not safe for concurrent use. Close it if it is never shared.
type Buffer struct {
	f    *os.File // the memfd, nil for a small buffer; nil once shared or closed
	b    []byte   // its writable mapping, or a small buffer's memory; nil from the first Share on
	size int64
	done bool // shared or closed
}

// smallBuffer is the largest Buffer kept in ordinary memory (see Buffer).
const smallBuffer = 1 << 20

// smallMap is the largest payload Map copies rather than maps: above it
// the mapping (no copy; its pages already exist) costs less than the
// copy, even with the unmap at Close.
const smallMap = 64 << 10

// smallBufs keeps the memory of small Buffers for the next ones, by size
// class (a power of two from 4 KiB to smallBuffer): memory this process
// touched before, where fresh memory on a VM costs a page fault per 4 KiB
// (50-160 µs each here) as it is first written.
var smallBufs [smallClasses]sync.Pool

const (
	minClass     = 12 // 4 KiB: smaller buffers are plain allocations
	smallClasses = 20 - minClass + 1
)

// smallClass is the size class of a small buffer of size bytes, or -1 for
// one too small to keep.
func smallClass(size int) int {
	if size <= 1<<minClass {
		return -1
	}
	return bits.Len(uint(size-1)) - minClass
}

// smallAlloc returns size zero bytes, from a kept small buffer when there
// is one.
func smallAlloc(size int) []byte {
	c := smallClass(size)
	if c < 0 {
		return make([]byte, size)
	}
	if bp, ok := smallBufs[c].Get().(*[]byte); ok {
		b := (*bp)[:size]
		clear(b)
		return b
	}
	return make([]byte, size, 1<<(c+minClass))
}

// smallFree keeps b, from smallAlloc, for a later smallAlloc. Nothing may
// use b afterwards.
func smallFree(b []byte) {
	if c := smallClass(cap(b)); c >= 0 && cap(b) == 1<<(c+minClass) {
		smallBufs[c].Put(&b)
	}
}

// NewBuffer makes a shared-memory buffer of size bytes, all zero. Its pages
// take memory as they are first written.
func NewBuffer(size int64) (*Buffer, error) {
	if size < 0 || size > math.MaxInt {
		return nil, fmt.Errorf("sdk: NewBuffer: size %d; give a length of 0 or more bytes", size)
	}
	if size <= smallBuffer {
		return &Buffer{b: smallAlloc(int(size)), size: size}, nil
	}
	f, err := memfd.Create("handoff-buffer")
	if err != nil {
		return nil, fmt.Errorf("sdk: NewBuffer: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("sdk: NewBuffer: sizing the shared-memory file to %d bytes: %w", size, err)
	}
	b, err := memfd.Map(f, size, true)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sdk: NewBuffer: %w", err)
	}
	return &Buffer{f: f, b: b, size: size}, nil
}

// Bytes is the buffer's writable memory: fill it before Share. It is nil
// once Share was called or the Buffer closed; a slice of it kept from
// before must not be used then (touching it crashes the program).
func (b *Buffer) Bytes() []byte { return b.b }

// Share hands the buffer to the node agent and returns a reference to it,
// scoped by o. It passes the memfd's descriptor over $HANDOFF_FD, then
// unmaps the buffer in the background, on a thread at the lowest CPU
// priority (so that the unmap of a large buffer takes idle time, not the
// time of the invocation and the Map that follow on a small machine; a
// Map in this process gives it the normal priority back, since it waits
// for it): the node agent fixes the size at
// once and adds the write seal as soon as the mapping is gone, so the
// content is fixed from then on, and a pull to another node waits for it.
// Neither the unmap nor the seal (about 100 ms per GiB together on a VM,
// one page-table entry at a time) delays the hand-over, and nothing reads
// the bytes: the node agent computes their checksum only if the payload
// ever leaves this node. A hand-over on one node takes microseconds
// whatever the size. Without that socket the content is sent over the
// local API instead (a copy). A small Buffer (at most 1 MiB) is copied
// into a new shared-memory file instead, sealed at once: nothing of it
// stays writable, and its memory goes to the next small Buffer.
//
// From a successful Share on, Bytes is nil and a slice of it kept from
// before must not be touched: writes would reach receivers until the
// unmap, and crash the program after it. If Share fails (a *RefError such
// as buffers_full, or a broken connection) the buffer is untouched and
// Share may be called again, or Close releases it.
func (b *Buffer) Share(ctx context.Context, o RefOptions) (string, error) {
	if b.done {
		return "", errors.New("sdk: Share: the buffer was already shared or closed; make a new one with NewBuffer")
	}
	if err := o.check(); err != nil {
		return "", err
	}
	if b.f == nil { // small: copied into a file that nobody maps writable
		tok, err := "", ErrNoFD
		if fdUsable() {
			tok, err = putMemfd(ctx, "share", b.b, o)
		}
		if errors.Is(err, ErrNoFD) {
			tok, err = putHTTP(ctx, bytes.NewReader(b.b), b.size, o)
		}
		if err != nil {
			return "", err
		}
		smallFree(b.b) // the file holds a copy
		b.b, b.done = nil, true
		return tok, nil
	}
	tok, err := "", ErrNoFD
	if fdUsable() {
		var resp fdpass.Response
		resp, _, err = exchange(ctx, "share", o.request(b.size), b.f)
		tok = resp.Ref
	}
	if errors.Is(err, ErrNoFD) {
		tok, err = putHTTP(ctx, io.NewSectionReader(b.f, 0, b.size), b.size, o)
	}
	if err != nil {
		return "", err
	}
	if m := b.b; m != nil {
		b.b = nil
		memfd.UnmapLater(m, nil) // the node agent seals once this is done
	}
	b.f.Close()
	b.f, b.done = nil, true
	return tok, nil
}

// Close releases a buffer that was not shared. It is a no-op after a
// successful Share and when called twice.
func (b *Buffer) Close() error {
	b.done = true
	var err error
	if b.b != nil && b.f == nil { // small: ordinary memory
		smallFree(b.b)
		b.b = nil
		return nil
	}
	if b.b != nil {
		err = memfd.Unmap(b.b)
		b.b = nil
	}
	if b.f != nil {
		if cerr := b.f.Close(); err == nil {
			err = cerr
		}
		b.f = nil
	}
	return err
}

// Mapping is a read-only view of a referenced payload, mapped into this
// process: on the node that holds the payload, the very pages its sender
// wrote. Writing to Bytes crashes the program. A payload of at most 64 KiB
// is copied instead (see Map); do not write to it either.
type Mapping struct {
	f *os.File // the payload's descriptor; nil once closed, or for a copy
	b []byte   // the read-only mapping, or the copy; nil once closed
}

// Map takes one read of ref as a read-only mapping, through $HANDOFF_FD.
// When the payload is on this node nothing is copied, whatever its size;
// else the node agent pulls it into a local buffer first. A payload of at
// most 64 KiB is read into ordinary memory instead of mapped: the copy
// costs less than unmapping it at Close, which on a VM interrupts every
// CPU the process runs on. Without the
// descriptor socket Map fails with an error wrapping ErrNoFD: use Get or
// Open there. An answer other than success is a *RefError.
//
// The payload is sealed: nobody, its sender included, can change it while
// it is mapped. Close the Mapping when done.
func Map(ctx context.Context, ref string) (*Mapping, error) {
	if ref == "" {
		return nil, errors.New("sdk: Map needs a reference")
	}
	if !fdUsable() {
		return nil, fmt.Errorf("%w: Map needs the node agent's descriptor socket; use Get or Open instead", ErrNoFD)
	}
	resp, f, err := exchange(ctx, "map", fdpass.Request{Ref: ref}, nil)
	if err != nil {
		return nil, err
	}
	if resp.Size <= smallMap {
		defer f.Close()
		b, err := readAll(ctx, f, resp.Size)
		if err != nil {
			return nil, err
		}
		return &Mapping{b: b}, nil
	}
	if err := checkSize(f, resp.Size); err != nil {
		f.Close()
		return nil, err
	}
	// A Buffer this process shared may still be unmapping at the lowest
	// priority, and mmap waits for it: let it finish at full speed.
	memfd.Hurry()
	b, err := memfd.Map(f, resp.Size, false)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sdk: map: %w", err)
	}
	return &Mapping{f: f, b: b}, nil
}

// Bytes is the payload, read-only. It is nil after Close, and a slice of
// it kept from before must not be used then.
func (m *Mapping) Bytes() []byte { return m.b }

// Close unmaps the payload and closes its descriptor. Closing twice is a
// no-op.
func (m *Mapping) Close() error {
	var err error
	if m.b != nil && m.f == nil { // a copy
		m.b = nil
		return nil
	}
	if m.b != nil {
		err = memfd.Unmap(m.b)
		m.b = nil
	}
	if m.f != nil {
		if cerr := m.f.Close(); err == nil {
			err = cerr
		}
		m.f = nil
	}
	return err
}

// checkSize makes sure the descriptor holds the size bytes announced, so a
// mapping or a read never reaches past its end (which would be SIGBUS).
func checkSize(f *os.File, size int64) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("sdk: the payload's descriptor: %w", err)
	}
	if size < 0 || size > math.MaxInt || fi.Size() < size {
		return fmt.Errorf("sdk: the node agent announced %d bytes but passed a descriptor of %d; report this as a node agent bug", size, fi.Size())
	}
	return nil
}

// check refuses options the node agent would refuse, before any work.
func (o RefOptions) check() error {
	if len(o.Readers) == 0 {
		return errors.New("sdk: RefOptions.Readers is empty: name the functions that may read the reference, or use sdk.AnyReader")
	}
	for i, r := range o.Readers {
		if r == "" || strings.Contains(r, ",") {
			return fmt.Errorf("sdk: RefOptions.Readers[%d] = %q is not a function name", i, r)
		}
	}
	if o.TTL < 0 {
		return fmt.Errorf("sdk: RefOptions.TTL %v is negative; give 0 for the node's default or a positive duration", o.TTL)
	}
	return nil
}

// request is the put request of a payload of size bytes scoped by o. The
// checksum is deferred to the node agent, which computes it from the
// sealed bytes if and when the payload leaves the node: a hand-over on one
// node never reads them, and the checksum is of what was sealed.
func (o RefOptions) request(size int64) fdpass.Request {
	// Round up: a TTL under a millisecond must not become "the default".
	ms := (o.TTL + time.Millisecond - 1) / time.Millisecond
	return fdpass.Request{Size: size, Deferred: true, Readers: o.Readers, Reads: o.Reads, TTLMillis: int64(ms)}
}

// fd is this process's pool of connections to the node agent's descriptor
// socket: a request and its response are one exchange, which owns a
// connection throughout; up to maxFDConns exchanges run at once (a gather
// maps several payloads in parallel, each a pull on the node agent's side),
// and idle connections are kept for the next ones. A connection is dropped
// after any error and the next exchange dials a new one.
var fd struct {
	// sem bounds the exchanges at once: a channel, so that waiting
	// honours a context.
	sem chan struct{}

	mu   sync.Mutex // guards idle and bad
	idle []*fdConn  // connections free for the next exchange
	bad  string     // a $HANDOFF_FD that could not be dialed
}

// fdConn is one connection to a descriptor socket. It is an fdpass.Conn,
// driven with blocking system calls: the thread waiting for the node
// agent's answer is woken by the kernel directly, which on a busy machine
// saves most of an exchange's time over the runtime's poller (fdpass's
// BenchmarkRoundTrip). An exchange in progress holds its thread.
type fdConn struct {
	c    *fdpass.Conn
	path string // the $HANDOFF_FD it was dialed to
}

// maxFDConns is how many descriptor exchanges one process runs at once.
const maxFDConns = 8

func init() { fd.sem = make(chan struct{}, maxFDConns) }

// fdUsable reports whether $HANDOFF_FD is set and not known to be unusable.
func fdUsable() bool {
	p := os.Getenv("HANDOFF_FD")
	if p == "" {
		return false
	}
	fd.mu.Lock()
	defer fd.mu.Unlock()
	return p != fd.bad
}

// exchange sends req (Op set from op) with file attached, when not nil,
// and returns the node agent's answer and the descriptor that came with
// it. An answer with an error is a *RefError; a socket that cannot be
// dialed is an error wrapping ErrNoFD. op names the operation in errors:
// "put", "share", "get" or "map".
func exchange(ctx context.Context, op string, req fdpass.Request, file *os.File) (fdpass.Response, *os.File, error) {
	req.Op = "get"
	if op == "put" || op == "share" {
		req.Op = "put"
	}
	path := os.Getenv("HANDOFF_FD")
	if path == "" {
		return fdpass.Response{}, nil, ErrNoFD
	}
	select {
	case fd.sem <- struct{}{}:
	case <-ctx.Done():
		return fdpass.Response{}, nil, fmt.Errorf("sdk: %s: waiting for the descriptor socket: %w", op, ctx.Err())
	}
	defer func() { <-fd.sem }()
	if err := ctx.Err(); err != nil {
		return fdpass.Response{}, nil, fmt.Errorf("sdk: %s: %w", op, err)
	}

	resp, f, err := exchangeLocked(ctx, op, path, req, file)
	if err != nil {
		return fdpass.Response{}, nil, err
	}
	if resp.Error != "" || resp.Code != "" {
		if f != nil {
			f.Close()
		}
		return fdpass.Response{}, nil, &RefError{Op: op, Code: resp.Code, Message: resp.Error}
	}
	if req.Op == "get" && f == nil {
		return fdpass.Response{}, nil, fmt.Errorf("sdk: %s: the node agent answered without a descriptor; report this as a node agent bug", op)
	}
	if req.Op == "put" && resp.Ref == "" {
		if f != nil {
			f.Close()
		}
		return fdpass.Response{}, nil, fmt.Errorf("sdk: %s: the node agent answered without a reference; report this as a node agent bug", op)
	}
	return resp, f, nil
}

// exchangeLocked does one exchange; the caller holds a slot of fd.sem.
func exchangeLocked(ctx context.Context, op, path string, req fdpass.Request, file *os.File) (fdpass.Response, *os.File, error) {
	for attempt := 0; ; attempt++ {
		fc, reused, err := takeFD(ctx, path)
		if err != nil {
			return fdpass.Response{}, nil, err
		}
		c := fc.c
		// Unblock the exchange when ctx ends (deadline included); the
		// connection is then out of step with the node agent and is dropped.
		stop := context.AfterFunc(ctx, func() { c.Shutdown() })
		err = c.Send(req, file)
		if err != nil {
			stop()
			c.Close()
			// A message that was not sent reached no one: sending it again
			// on a fresh connection is safe (the node agent may have
			// closed an idle one).
			if attempt == 0 && reused && ctx.Err() == nil {
				continue
			}
			return fdpass.Response{}, nil, fmt.Errorf("sdk: %s: sending to the node agent's descriptor socket %s: %w", op, path, ctxErr(ctx, err))
		}
		var resp fdpass.Response
		f, err := c.Recv(&resp)
		if !stop() || err != nil {
			c.Close()
		} else {
			putFD(fc)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the node agent closed the connection without answering")
			}
			return fdpass.Response{}, nil, fmt.Errorf("sdk: %s: waiting for the node agent's answer on %s: %w", op, path, ctxErr(ctx, err))
		}
		return resp, f, nil
	}
}

// takeFD gives an exchange an idle connection to path, or dials one.
// Idle connections to another path (a changed $HANDOFF_FD) are closed.
// A socket that cannot be dialed is remembered as unusable, so later calls
// go to the local API at once.
func takeFD(ctx context.Context, path string) (fc *fdConn, reused bool, err error) {
	fd.mu.Lock()
	for len(fd.idle) > 0 {
		fc = fd.idle[len(fd.idle)-1]
		fd.idle = fd.idle[:len(fd.idle)-1]
		if fc.path == path {
			fd.mu.Unlock()
			return fc, true, nil
		}
		fc.c.Close()
	}
	fd.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("sdk: dialing the descriptor socket %s: %w", path, err)
	}
	// Connecting to a Unix socket does not wait for the peer to accept
	// (unless its backlog is full), so ctx need not bound it.
	c, err := fdpass.Dial(path)
	if err != nil {
		fd.mu.Lock()
		fd.bad = path
		fd.mu.Unlock()
		return nil, false, fmt.Errorf("%w: dialing %s: %v", ErrNoFD, path, err)
	}
	return &fdConn{c: c, path: path}, false, nil
}

// putFD keeps a connection for the next exchange.
func putFD(fc *fdConn) {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	fd.idle = append(fd.idle, fc)
}

// ctxErr prefers the context's error to the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}
