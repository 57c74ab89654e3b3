package buffer

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/clock"
)

// Config sets up a Store.
type Config struct {
	// Memory is the budget for in-memory (memfd) buffers in bytes,
	// counting buffers held, buffers out of the index but still being
	// read, and Puts in progress. Required, > 0.
	Memory int64

	// SpillDir, if set, is a directory where a Put that finds no memory
	// within Wait writes its payload instead, to an unlinked file
	// (O_TMPFILE, or create and unlink where the file system lacks it), so
	// a crash leaves nothing behind. It should be on a local disk; spill
	// files do not count against Memory. Empty: never spill, fail with
	// ErrFull.
	SpillDir string

	// Wait is how long a Put (or Adopt) waits, in total, for room in the
	// memory budget before spilling or failing. 0 means 2s; negative
	// means do not wait at all.
	Wait time.Duration

	// MaxSize is the largest payload accepted, in bytes; larger ones fail
	// with ErrSize. 0: no limit beyond the budget and the disk.
	MaxSize int64

	// Clock reads the time for expiry and measures Wait. Default
	// clock.Real{}. With clock.Real the store sweeps expired buffers every
	// second on its own; with any other clock (clock.Fake in tests) it
	// does not, and expiry is reclaimed only by Sweep (or lazily, by an
	// Open, Stat or List that meets an expired buffer), so tests decide
	// exactly when it happens.
	Clock clock.Clock
}

// defaultWait is Config.Wait when left 0.
const defaultWait = 2 * time.Second

// sweepEvery is how often the store sweeps on its own with a real clock.
// Expired buffers are unreachable at once (Open checks the expiry); the
// sweep only gives their memory back, so a second is soon enough.
const sweepEvery = time.Second

// Meta is what the store keeps about a buffer besides its bytes, set at
// Put or Adopt.
type Meta struct {
	// ID names the buffer. Zero: the store picks a random one. Non-zero:
	// used as is, so a peer adopting a draining node's buffer keeps its
	// id (and the references to it stay valid); ErrExists if held.
	ID ID
	// Reads is how many Opens the buffer allows, >= 1.
	Reads uint32
	// Expires is when the buffer is freed; required and in the future. A
	// Reader opened before keeps working until it is closed.
	Expires time.Time
	// Issuer is the function that created the payload, for logs.
	Issuer string
}

// Info describes a held buffer.
type Info struct {
	Meta
	Size int64
	// Checksum is the CRC-32C (Castagnoli) of the payload. The store
	// computes it for Put and trusts the caller's for Adopt.
	Checksum uint32
	// Spilled is true when the payload lives in a file in
	// Config.SpillDir rather than in a memfd.
	Spilled bool
	// ReadsLeft is how many more Opens the buffer allows. In a Reader's
	// Info it is the count after that Reader's own read was taken.
	ReadsLeft uint32
}

// Stats are the store's gauges and counters, for metrics.
type Stats struct {
	Buffers      int   // buffers held (in the index)
	MemoryBytes  int64 // reserved in the memory budget (see Config.Memory)
	SpilledBytes int64 // in spill files still open, held or being read
	BudgetBytes  int64 // Config.Memory
	Waiting      int   // Puts and Adopts waiting for memory

	Puts      uint64 // successful Puts
	Adopts    uint64 // successful Adopts
	Spills    uint64 // Puts that ended in a spill file
	Frees     uint64 // buffers dropped by Free
	Exhausted uint64 // buffers dropped when their last read was taken
	Expired   uint64 // buffers dropped because their expiry passed
	Refusals  uint64 // Puts and Adopts that failed with ErrFull
}

// Store holds payload buffers for a node agent. It is safe for concurrent
// use. Make one with New and Close it when done.
type Store struct {
	cfg   Config        // defaults filled in; read-only after New
	stop  chan struct{} // closed by Close: wakes waiting Puts, stops the sweeper
	swept sync.WaitGroup

	// mu guards all following fields, and the refs, gone and
	// info.ReadsLeft fields of every entry. It is never held during I/O
	// that depends on payload size or on a caller's reader: copying,
	// closing a memfd (which frees its pages) and waiting all happen
	// outside it. It is the only lock in the package.
	mu      sync.Mutex
	closed  bool
	budget  *budget
	index   map[ID]*entry
	spilled int64 // bytes of spill files whose entries are alive
	stats   Stats // counters only; gauges are computed by Stats
}

// entry is one stored payload. A buffer's bytes are given back exactly
// once, when refs reaches 0: the index holds one reference while the
// buffer is held, and every open Reader holds one.
type entry struct {
	info Info     // fixed at Put, except ReadsLeft
	f    *os.File // sealed memfd or spill file; closed when refs reaches 0
	refs int
	gone error // why the entry left the index (ErrNotFound or ErrExhausted); nil while held

	// sealed is closed once an AdoptLive memfd carries its write seal
	// (sealErr says if that failed); nil for every other buffer, whose
	// content is fixed from the start.
	sealed  chan struct{}
	sealErr error
}

// New makes a store. It fails with ErrInvalid when cfg breaks a rule.
func New(cfg Config) (*Store, error) {
	if cfg.Memory <= 0 {
		return nil, fmt.Errorf("%w: Config.Memory is %d; set the memory budget for payload buffers in bytes", ErrInvalid, cfg.Memory)
	}
	if cfg.MaxSize < 0 {
		return nil, fmt.Errorf("%w: Config.MaxSize is %d; use 0 for no limit", ErrInvalid, cfg.MaxSize)
	}
	if cfg.SpillDir != "" {
		fi, err := os.Stat(cfg.SpillDir)
		if err != nil {
			return nil, fmt.Errorf("%w: spill directory: %v; create it or leave Config.SpillDir empty", ErrInvalid, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("%w: spill directory %s is not a directory", ErrInvalid, cfg.SpillDir)
		}
	}
	if cfg.Wait == 0 {
		cfg.Wait = defaultWait
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	s := &Store{
		cfg:    cfg,
		stop:   make(chan struct{}),
		budget: newBudget(cfg.Memory),
		index:  make(map[ID]*entry),
	}
	if _, isReal := cfg.Clock.(clock.Real); isReal {
		s.swept.Add(1)
		go s.sweepLoop()
	}
	return s, nil
}

func (s *Store) sweepLoop() {
	defer s.swept.Done()
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.Sweep()
		case <-s.stop:
			return
		}
	}
}

// Open takes one read of the buffer id and returns a Reader for it, which
// the caller must Close. Taking the read is atomic: of many concurrent
// Opens of a buffer with n reads left, exactly n succeed.
//
// When the last read is taken the buffer leaves the store at once: later
// Opens fail with ErrNotFound (ErrExhausted only reaches an Open that
// raced the last one), and its memory is given back when the last
// Reader closes. Errors wrap ErrNotFound (absent or expired),
// ErrExhausted or ErrClosed.
func (s *Store) Open(id ID) (*Reader, error) {
	s.mu.Lock()
	e, toClose, err := s.lookupLocked(id)
	if err != nil {
		s.mu.Unlock()
		closeFiles(toClose)
		return nil, err
	}
	// Pin e so its file stays open while it is reopened outside mu (an
	// open(2) per reader would serialise every Open otherwise); the read
	// itself is taken only once the Reader is ready, so a failed reopen
	// costs the buffer nothing.
	e.refs++
	s.mu.Unlock()

	ro, rerr := reopen(e.f)

	s.mu.Lock()
	switch {
	case rerr != nil:
		err = rerr
	case s.closed:
		err = fmt.Errorf("%w: buffer %s cannot be reached", ErrClosed, id)
	case e.gone != nil:
		err = goneError(e)
	case s.expiredLocked(e):
		toClose = s.removeLocked(e, ErrNotFound)
		s.stats.Expired++
		err = goneError(e)
	default:
		e.info.ReadsLeft--
		info := e.info
		if e.info.ReadsLeft == 0 {
			toClose = s.removeLocked(e, ErrExhausted) // cannot close: this Reader holds a ref
			s.stats.Exhausted++
		}
		s.mu.Unlock()
		closeFiles(toClose)
		return &Reader{s: s, e: e, info: info, f: ro}, nil
	}
	toClose = append(toClose, s.unrefLocked(e)...)
	s.mu.Unlock()
	if ro != nil {
		ro.Close()
	}
	closeFiles(toClose)
	return nil, err
}

// Stat describes the buffer id without taking a read. Errors wrap
// ErrNotFound or ErrClosed.
func (s *Store) Stat(id ID) (Info, error) {
	s.mu.Lock()
	e, toClose, err := s.lookupLocked(id)
	var info Info
	if err == nil {
		info = e.info
	}
	s.mu.Unlock()
	closeFiles(toClose)
	return info, err
}

// Free drops the buffer id now. Readers already open keep working; its
// memory is given back when the last of them closes. Errors wrap
// ErrNotFound or ErrClosed.
func (s *Store) Free(id ID) error {
	s.mu.Lock()
	e, toClose, err := s.lookupLocked(id)
	if err == nil {
		toClose = s.removeLocked(e, ErrNotFound)
		s.stats.Frees++
	}
	s.mu.Unlock()
	closeFiles(toClose)
	return err
}

// List describes every buffer held and not expired, ordered by id. A
// draining node hands each to a peer (Open, then the peer Puts it with
// the same Meta.ID).
func (s *Store) List() []Info {
	s.Sweep()
	s.mu.Lock()
	infos := make([]Info, 0, len(s.index))
	for _, e := range s.index {
		infos = append(infos, e.info)
	}
	s.mu.Unlock()
	slices.SortFunc(infos, func(a, b Info) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return infos
}

// Sweep frees every buffer whose expiry has passed and returns how many
// it freed. See Config.Clock for when the store calls it itself.
func (s *Store) Sweep() int {
	s.mu.Lock()
	var toClose []*os.File
	n := 0
	for _, e := range s.index {
		if s.expiredLocked(e) {
			toClose = append(toClose, s.removeLocked(e, ErrNotFound)...)
			n++
		}
	}
	s.stats.Expired += uint64(n)
	s.mu.Unlock()
	closeFiles(toClose)
	return n
}

// Stats returns the current gauges and counters. It works after Close.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Buffers = len(s.index)
	st.MemoryBytes = s.budget.used
	st.SpilledBytes = s.spilled
	st.BudgetBytes = s.budget.limit
	st.Waiting = len(s.budget.queue)
	return st
}

// Close frees every buffer and stops the store: Puts waiting for memory
// fail, and later calls fail with ErrClosed. Readers already open keep
// working until they are closed. A second Close returns ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("%w: Close called twice", ErrClosed)
	}
	s.closed = true
	close(s.stop)
	var toClose []*os.File
	for _, e := range s.index {
		toClose = append(toClose, s.removeLocked(e, ErrNotFound)...)
	}
	s.mu.Unlock()
	closeFiles(toClose)
	s.swept.Wait()
	return nil
}

// lookupLocked finds the held buffer id. An expired one is removed on the
// way (its file, if now unreferenced, is returned for closing) and
// reported as not found.
func (s *Store) lookupLocked(id ID) (*entry, []*os.File, error) {
	if s.closed {
		return nil, nil, fmt.Errorf("%w: buffer %s cannot be reached", ErrClosed, id)
	}
	e := s.index[id]
	if e == nil {
		return nil, nil, fmt.Errorf("%w: buffer %s is not held here: never stored, freed after its last read, or expired; ask the sender to send the payload again", ErrNotFound, id)
	}
	if s.expiredLocked(e) {
		toClose := s.removeLocked(e, ErrNotFound)
		s.stats.Expired++
		return nil, toClose, goneError(e)
	}
	return e, nil, nil
}

// goneError explains why e, which left the index, cannot be opened.
func goneError(e *entry) error {
	if e.gone == ErrExhausted {
		return fmt.Errorf("%w: buffer %s allowed %d reads and all were taken; ask the sender for a reference with more reads", ErrExhausted, e.info.ID, e.info.Reads)
	}
	return fmt.Errorf("%w: buffer %s was freed or expired at %s; ask the sender to send the payload again", ErrNotFound, e.info.ID, e.info.Expires.UTC().Format(time.RFC3339))
}

func (s *Store) expiredLocked(e *entry) bool {
	return !s.cfg.Clock.Now().Before(e.info.Expires)
}

// insertLocked adds a finished buffer to the index with its one reference.
func (s *Store) insertLocked(e *entry) error {
	if s.closed {
		return fmt.Errorf("%w: buffer %s was not kept", ErrClosed, e.info.ID)
	}
	if s.index[e.info.ID] != nil {
		return fmt.Errorf("%w: buffer %s is already held here; a buffer id is used once", ErrExists, e.info.ID)
	}
	e.refs = 1
	s.index[e.info.ID] = e
	if e.info.Spilled {
		s.spilled += e.info.Size
	}
	return nil
}

// removeLocked takes e out of the index and drops the index's reference.
func (s *Store) removeLocked(e *entry, why error) []*os.File {
	delete(s.index, e.info.ID)
	e.gone = why
	return s.unrefLocked(e)
}

// unrefLocked drops one reference to e. At the last it gives e's bytes
// back to the budget (waking the Puts that now fit) and returns e's file
// for the caller to close after unlocking mu: closing a large memfd frees
// its pages, which is too slow to do under the lock.
func (s *Store) unrefLocked(e *entry) []*os.File {
	e.refs--
	switch {
	case e.refs > 0:
		return nil
	case e.refs < 0:
		panic("buffer: entry released twice")
	}
	if e.info.Spilled {
		s.spilled -= e.info.Size
	} else {
		wake(s.budget.release(e.info.Size))
	}
	return []*os.File{e.f}
}

// wake tells granted waiters that their bytes are reserved. It is called
// under mu, which makes granted and the closing of ready one step.
func wake(ws []*waiter) {
	for _, w := range ws {
		close(w.ready)
	}
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// reserve reserves n bytes of the memory budget for a Put or Adopt,
// waiting until deadline at most. It fails with errNoRoom when the time
// ran out or n exceeds the whole budget, with ctx's error, or with
// ErrClosed.
func (s *Store) reserve(ctx context.Context, n int64, deadline time.Time) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("%w: payload not kept", ErrClosed)
	}
	res, w := s.budget.reserve(n)
	var timeout <-chan time.Time
	if res == queued {
		// Start the timer before anyone can see the waiter (Stats.Waiting),
		// so a test that advances a fake clock once it sees the waiter
		// cannot advance it too early.
		timeout = s.cfg.Clock.After(deadline.Sub(s.cfg.Clock.Now()))
	}
	s.mu.Unlock()
	switch res {
	case granted:
		return nil
	case tooBig:
		return errNoRoom
	}

	var err error
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timeout:
		err = errNoRoom
	case <-s.stop:
		err = fmt.Errorf("%w: payload not kept", ErrClosed)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if !w.granted {
		wake(s.budget.cancel(w))
		return err
	}
	// Granted while we stopped waiting.
	if err == errNoRoom {
		return nil // just in time: take it
	}
	wake(s.budget.release(w.n))
	return err
}

// tryReserve reserves n bytes only if that is possible without waiting.
func (s *Store) tryReserve(n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && s.budget.tryReserve(n)
}

// release gives back n reserved bytes that hold no buffer (a failed or
// shrunk Put).
func (s *Store) release(n int64) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	wake(s.budget.release(n))
	s.mu.Unlock()
}
