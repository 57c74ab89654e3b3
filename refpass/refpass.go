// Package refpass is reference passing inside a node agent (XDT/Zipline,
// done better): it keeps payloads in the node's buffer store, signs
// references to them, serves pulls to the other members of the cluster, and
// pulls from them on behalf of the functions it hosts.
//
// A reference names its holder node. Opening it on the holder reads the
// buffer in place (a receiver on the same node can even map it); opening it
// anywhere else pulls it from the holder over a pooled, mutually
// authenticated TLS connection, streaming, with the checksum verified before
// the last bytes are handed over. The holder checks every pull: signature,
// expiry, that the pulling member speaks for an allowed reader, and the
// read count, which it keeps itself.
//
// A reference that allows several reads (broadcast) is pulled to each
// reading node once: the node keeps a copy and serves further reads from
// it, each after the holder accounted it (fetch.go).
//
// Every node of a cluster holds the same signing keys, so a receiving node
// refuses a forged or expired reference without asking the holder, and a
// peer that adopts a draining node's buffers can serve the references that
// node signed.
package refpass

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-dev/handoff/buffer"
	"github.com/handoff-dev/handoff/clock"
	"github.com/handoff-dev/handoff/internal/crc32c"
	"github.com/handoff-dev/handoff/peerlink"
	"github.com/handoff-dev/handoff/pki"
	"github.com/handoff-dev/handoff/ref"
)

// Headers of the API-preserving path and of the local reference API.
const (
	// HeaderRef carries a reference in place of a body: set by a sender's
	// node agent, consumed by the receiver's, never seen by a function.
	HeaderRef = "X-Handoff-Ref"
	// HeaderChecksum is the CRC-32C of a payload, as 8 hex digits.
	HeaderChecksum = "X-Handoff-Checksum"
)

// ErrChecksum means the bytes of a pulled payload do not match the checksum
// in its reference: they were damaged between the holder and here. The
// receiver gets an error instead of the last bytes, so a damaged payload is
// never taken as complete.
var ErrChecksum = errors.New("refpass: checksum mismatch")

// ErrUnreachable means the holder node is not known or did not answer.
var ErrUnreachable = errors.New("refpass: holder unreachable")

// Defaults for references whose creator did not say.
const (
	DefaultTTL   = 10 * time.Minute
	DefaultReads = 1
)

// Config configures a Service.
type Config struct {
	Node   string        // this node's id: the holder named in the references it signs
	Store  *buffer.Store // where payloads are kept
	Keys   *ref.Keyring  // the cluster's reference keys
	Member *pki.Member   // this node's TLS identity; nil disables pulls from other nodes
	// Clear lets payloads this node pulls or hands over travel in the
	// clear once TLS has authenticated both ends (see peerlink).
	Clear  bool
	TTL    time.Duration // expiry of references whose creator gave none (DefaultTTL)
	Clock  clock.Clock
	Logger *slog.Logger
}

// Options scope a reference.
type Options struct {
	Issuer  string        // the function creating it
	Readers []string      // functions allowed to read it; ref.AnyReader alone for any
	Reads   uint32        // allowed reads (DefaultReads when 0)
	TTL     time.Duration // time to live (Config.TTL when 0)
}

// Service is one node's side of reference passing. It is safe for
// concurrent use.
type Service struct {
	cfg   Config
	log   *slog.Logger
	stats Stats

	draining atomic.Bool // set by Handoff: pulls are refused from then on

	link *peerlink.Client // nil without a cluster identity

	mu       sync.Mutex            // guards all following fields
	peers    map[string]string     // holder → peer address (host:port)
	aliases  map[string]bool       // holders whose buffers this node adopted
	deferred map[buffer.ID]bool    // buffers whose checksum is computed on first need
	sums     map[buffer.ID]uint32  // those computed so far
	copies   map[string]*localCopy // holder/buffer → this node's copy (fetch.go)
	copyIDs  map[buffer.ID]bool    // the store's buffers that are such copies
}

// Stats are counters for metrics; read them with Snapshot.
type Stats struct {
	Puts, PutBytes      atomic.Int64
	Served, ServedBytes atomic.Int64 // pulls this node answered
	Pulls, PullBytes    atomic.Int64 // pulls this node made
	Local               atomic.Int64 // opens answered from this node's own store
	Taken               atomic.Int64 // reads this node accounted without sending bytes (take)
	Copied              atomic.Int64 // reads served from this node's copy of a payload held elsewhere
	Refused             atomic.Int64 // opens or pulls refused (bad, expired, wrong reader, exhausted)
	Adopted             atomic.Int64 // buffers taken over from a draining peer
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Node == "" || cfg.Store == nil || cfg.Keys == nil {
		return nil, errors.New("refpass: Node, Store and Keys are required")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{
		cfg:      cfg,
		log:      cfg.Logger,
		peers:    map[string]string{},
		aliases:  map[string]bool{},
		deferred: map[buffer.ID]bool{},
		sums:     map[buffer.ID]uint32{},
		copies:   map[string]*localCopy{},
		copyIDs:  map[buffer.ID]bool{},
	}
	if cfg.Member != nil {
		s.link = &peerlink.Client{TLS: cfg.Member.ClientConfig(""), Clear: cfg.Clear}
	}
	return s, nil
}

// Stats returns the live counters.
func (s *Service) Stats() *Stats { return &s.stats }

// Store returns the buffer store.
func (s *Service) Store() *buffer.Store { return s.cfg.Store }

// SetPeers replaces the directory of cluster members: node id → the address
// of its peer (pull) listener. A holder that left the cluster may map to
// the address of the peer that adopted its buffers.
func (s *Service) SetPeers(peers map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.link != nil {
		for id, addr := range s.peers {
			if peers[id] != addr {
				s.link.CloseIdle(addr)
			}
		}
	}
	s.peers = make(map[string]string, len(peers))
	for id, addr := range peers {
		s.peers[id] = addr
	}
}

// Put reads r to EOF into a new buffer (size is its exact length, or -1 when
// unknown) and returns a reference to it.
func (s *Service) Put(ctx context.Context, r io.Reader, size int64, o Options) (string, buffer.Info, error) {
	o = s.defaults(o)
	expires := s.cfg.Clock.Now().Add(o.TTL)
	if err := s.checkScope(o, expires); err != nil {
		return "", buffer.Info{}, err
	}
	info, err := s.cfg.Store.Put(ctx, r, size, buffer.Meta{Reads: o.Reads, Expires: expires, Issuer: o.Issuer})
	if err != nil {
		return "", buffer.Info{}, err
	}
	tok, err := s.sign(info, o, false)
	if err != nil {
		_ = s.cfg.Store.Free(info.ID)
		return "", buffer.Info{}, err
	}
	s.stats.Puts.Add(1)
	s.stats.PutBytes.Add(info.Size)
	return tok, info, nil
}

// Adopt takes over a memfd an instance filled (size bytes), seals it and
// returns a reference to it: a hand-over without a copy. checksum is the
// CRC-32C of the bytes when the instance computed it; nil defers it to the
// first time the payload leaves this node (ref.Ref.Deferred), so that a
// hand-over on one node never passes over the bytes. f is the store's from
// then on, even on error.
func (s *Service) Adopt(f *os.File, size int64, checksum *uint32, o Options) (string, buffer.Info, error) {
	o = s.defaults(o)
	expires := s.cfg.Clock.Now().Add(o.TTL)
	if err := s.checkScope(o, expires); err != nil {
		f.Close()
		return "", buffer.Info{}, err
	}
	var sum uint32
	if checksum != nil {
		sum = *checksum
	}
	adopt := s.cfg.Store.Adopt
	if checksum == nil {
		// Deferred: the writer may still be unmapping; the write seal
		// follows, and whatever needs fixed content waits for it.
		adopt = s.cfg.Store.AdoptLive
	}
	info, err := adopt(f, size, sum, buffer.Meta{Reads: o.Reads, Expires: expires, Issuer: o.Issuer})
	if err != nil {
		return "", buffer.Info{}, err
	}
	if checksum == nil {
		s.mu.Lock()
		s.deferred[info.ID] = true
		s.mu.Unlock()
	}
	tok, err := s.sign(info, o, checksum == nil)
	if err != nil {
		_ = s.cfg.Store.Free(info.ID)
		return "", buffer.Info{}, err
	}
	s.stats.Puts.Add(1)
	s.stats.PutBytes.Add(info.Size)
	return tok, info, nil
}

func (s *Service) defaults(o Options) Options {
	if o.Reads == 0 {
		o.Reads = DefaultReads
	}
	if o.TTL <= 0 {
		o.TTL = s.cfg.TTL
	}
	return o
}

// checkScope refuses a reference that could not be signed before any byte
// is stored: it signs a dry run with the real scope (an HMAC, about a
// microsecond) and lets ref's rules speak.
func (s *Service) checkScope(o Options, expires time.Time) error {
	_, err := s.cfg.Keys.Sign(ref.Ref{Holder: s.cfg.Node, Expires: expires, Readers: o.Readers, Reads: o.Reads, Issuer: o.Issuer})
	return err
}

func (s *Service) sign(info buffer.Info, o Options, deferred bool) (string, error) {
	r := ref.Ref{
		Holder:   s.cfg.Node,
		Buffer:   info.ID,
		Size:     info.Size,
		Checksum: info.Checksum,
		Deferred: deferred,
		Expires:  info.Expires,
		Readers:  o.Readers,
		Reads:    info.Reads,
		Issuer:   o.Issuer,
	}
	if deferred {
		r.Checksum = 0
	}
	return s.cfg.Keys.Sign(r)
}

// sealWait bounds how long a pull waits for a live-adopted buffer's writer
// to unmap it.
const sealWait = 10 * time.Second

// fixed waits until a held buffer's content can no longer change: at once,
// except for a memfd an instance handed over (Adopt without a checksum)
// whose writer has not yet unmapped it. No byte of it leaves this node
// before then, so a puller never gets bytes the sender can still change.
func (s *Service) fixed(ctx context.Context, rd *buffer.Reader) error {
	ctx, cancel := context.WithTimeout(ctx, sealWait)
	defer cancel()
	return rd.WaitSealed(ctx)
}

// knownSum returns a held buffer's CRC-32C when it is known: the store's
// when the bytes arrived through it, else (a deferred checksum) once a
// pull or checksum computed it.
func (s *Service) knownSum(rd *buffer.Reader) (uint32, bool) {
	id := rd.Info().ID
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.deferred[id] {
		return rd.Info().Checksum, true
	}
	sum, ok := s.sums[id]
	return sum, ok
}

// rememberSum keeps a deferred checksum once computed, until the buffer
// goes (Sweep).
func (s *Service) rememberSum(id buffer.ID, sum uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deferred[id] {
		s.sums[id] = sum
	}
}

// checksum returns the CRC-32C of a held buffer whose content is fixed,
// computing a deferred one in a pass over the bytes if no pull did yet.
func (s *Service) checksum(ctx context.Context, rd *buffer.Reader) (uint32, error) {
	if err := s.fixed(ctx, rd); err != nil {
		return 0, err
	}
	if sum, ok := s.knownSum(rd); ok {
		return sum, nil
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	h := crc32c.New()
	if _, err := io.CopyBuffer(h, io.NewSectionReader(rd, 0, rd.Info().Size), *bp); err != nil {
		return 0, err
	}
	s.rememberSum(rd.Info().ID, h.Sum32())
	return h.Sum32(), nil
}

// Sweep frees expired buffers and forgets what this service kept about
// buffers that are gone. The node agent calls it every second.
func (s *Service) Sweep() {
	s.cfg.Store.Sweep()
	s.mu.Lock()
	ids := make([]buffer.ID, 0, len(s.deferred))
	for id := range s.deferred {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		if _, err := s.cfg.Store.Stat(id); errors.Is(err, buffer.ErrNotFound) {
			s.mu.Lock()
			delete(s.deferred, id)
			delete(s.sums, id)
			s.mu.Unlock()
		}
	}
	// Copies the store freed (last read, expiry) leave the directory.
	s.mu.Lock()
	copies := make(map[string]*localCopy, len(s.copies))
	for key, c := range s.copies {
		copies[key] = c
	}
	s.mu.Unlock()
	for key, c := range copies {
		select {
		case <-c.ready:
		default:
			continue // still pulling
		}
		if _, err := s.cfg.Store.Stat(c.id); errors.Is(err, buffer.ErrNotFound) {
			s.forget(key, c)
		}
	}
}

// Payload is one read of a referenced payload. Read it to EOF, then Close.
type Payload struct {
	Ref ref.Ref
	r   io.Reader
	c   io.Closer
	f   *os.File       // the local buffer's own descriptor, or nil for a pull
	rd  *buffer.Reader // the local buffer's read, or nil for a pull
}

// Read reads the payload.
func (p *Payload) Read(b []byte) (int, error) { return p.r.Read(b) }

// WriteTo lets a local payload reach a socket with sendfile, and copies a
// pulled one in large steps.
func (p *Payload) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := p.r.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	// Hide w's ReadFrom too: it would read in small steps (io.Discard's
	// and net/http's 8-32 KiB) instead of this buffer's 1 MiB.
	return io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{p.r}, *bp)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// File is the local buffer's read-only descriptor (to pass to a receiver on
// this node), or nil when the payload is being pulled from another node.
func (p *Payload) File() *os.File { return p.f }

// Close releases the read.
func (p *Payload) Close() error { return p.c.Close() }

// Open gives reader (a function name) one read of the payload behind token:
// from this node's store when it holds it, else pulled from the holder.
func (s *Service) Open(ctx context.Context, token, reader string) (*Payload, error) {
	r, err := s.verify(token, reader)
	if err != nil {
		s.stats.Refused.Add(1)
		return nil, err
	}
	if s.holds(r.Holder) {
		return s.openLocal(r)
	}
	if r.Reads > 1 {
		return s.openShared(ctx, r, token, reader) // broadcast: see fetch.go
	}
	return s.pull(ctx, r, token, reader)
}

// verify checks signature, expiry and reader, everywhere a reference is
// opened: the holder and the receiving node check alike.
func (s *Service) verify(token, reader string) (ref.Ref, error) {
	r, err := s.cfg.Keys.Verify(token, s.cfg.Clock.Now())
	if err != nil {
		return ref.Ref{}, err
	}
	if err := r.AllowedFor(reader); err != nil {
		return ref.Ref{}, err
	}
	return r, nil
}

func (s *Service) holds(holder string) bool {
	if holder == s.cfg.Node {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aliases[holder]
}

func (s *Service) openLocal(r ref.Ref) (*Payload, error) {
	rd, err := s.cfg.Store.Open(buffer.ID(r.Buffer))
	if err != nil {
		s.stats.Refused.Add(1)
		return nil, describe(err, r)
	}
	s.stats.Local.Add(1)
	// The buffer is sealed: its bytes are the ones the store checksummed,
	// so a local read needs no second pass over them.
	return &Payload{Ref: r, r: rd, c: rd, f: rd.File(), rd: rd}, nil
}

// describe turns a store error into one that says what the reader can do.
func describe(err error, r ref.Ref) error {
	switch {
	case errors.Is(err, buffer.ErrNotFound):
		return fmt.Errorf("%w: node %s no longer holds the payload of %s (already read %d time(s), expired, or freed); ask %s to send it again",
			buffer.ErrNotFound, r.Holder, r.Issuer, r.Reads, r.Issuer)
	case errors.Is(err, buffer.ErrExhausted):
		return fmt.Errorf("%w: %s allowed %d read(s) and all were taken; ask it for a reference with more reads",
			ref.ErrExhausted, r.Issuer, r.Reads)
	}
	return err
}

// verifying passes a pulled payload through and withholds its last bytes
// when the checksum does not match, so that a damaged payload never reaches
// a receiver as complete.
type verifying struct {
	r       io.Reader
	want    uint32
	trailer *peerlink.Body // when not nil, want is its Checksum at the end
	left    int64
	crc     uint32
}

func (v *verifying) Read(p []byte) (int, error) {
	if v.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > v.left {
		p = p[:v.left]
	}
	n, err := v.r.Read(p)
	v.crc = crc32c.Update(v.crc, p[:n])
	v.left -= int64(n)
	if v.left == 0 {
		if err != nil && err != io.EOF {
			return 0, err // the trailer did not come: withhold the end
		}
		want := v.want
		if v.trailer != nil {
			want = v.trailer.Checksum()
		}
		if v.crc != want {
			return 0, fmt.Errorf("%w: got crc32c %08x, the holder says %08x; the payload was damaged in transit and was not delivered", ErrChecksum, v.crc, want)
		}
		return n, nil
	}
	if err == io.EOF {
		return n, fmt.Errorf("%w: the holder's answer ended %d bytes early", io.ErrUnexpectedEOF, v.left)
	}
	return n, err
}
