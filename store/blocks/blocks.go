package blocks

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/handoff-dev/handoff/internal/crc32c"
)

// DefaultSize is the block size the store's writers use unless told
// otherwise: 1 MiB, as Apache Crail.
const DefaultSize = 1 << 20

// Checksum returns the CRC-32C (Castagnoli) of b, as the store computes it.
func Checksum(b []byte) uint32 { return crc32c.Checksum(b) }

// spillExt ends the name of every spill file, so New can recognise its own
// leftovers.
const spillExt = ".blk"

// Config sets up a Store.
type Config struct {
	// Memory is the memory tier's budget in bytes. Required, > 0.
	Memory int64
	// SpillDir, if set, is the directory of the disk tier: a block that
	// finds the memory budget used up is written to a file there. The
	// store owns the block files in it (*.blk) and removes leftovers
	// from an earlier run in New. Empty: no disk tier; a full memory
	// budget refuses blocks with ErrFull.
	SpillDir string
	// Disk is the disk tier's budget in bytes; 0: no limit but the disk.
	Disk int64
	// MaxBlock is the largest block accepted; 0 means 16 MiB.
	MaxBlock int

	poolCap int // capacity of recycled buffers: min(MaxBlock, DefaultSize)
}

// Info describes a stored block.
type Info struct {
	Size     int
	Checksum uint32 // CRC-32C of the bytes
	Spilled  bool   // kept in a spill file rather than in memory
}

// Stats are the store's gauges and counters, for metrics.
type Stats struct {
	Blocks        int   // blocks held
	MemoryBlocks  int   // of which in memory
	MemoryBytes   int64 // bytes of blocks in memory
	MemoryBudget  int64 // Config.Memory
	SpilledBlocks int   // blocks in spill files
	SpilledBytes  int64 // bytes in spill files
	DiskBudget    int64 // Config.Disk (0: no limit)
	FreeBytes     int64 // deleted blocks' memory kept for Alloc

	Puts           uint64 // blocks put
	Spills         uint64 // of which went to disk
	Refusals       uint64 // puts refused with ErrFull
	ChecksumErrors uint64 // reads that failed their checksum
}

// Store is a node's block tier: blocks in memory under a byte budget,
// spilled to files when memory is full, each verified against its CRC-32C
// on every read. It is safe for concurrent use.
type Store struct {
	cfg Config // read-only after New

	// mu guards all following fields. It is never held while block bytes
	// are copied, hashed or written; a block's bytes are immutable once
	// put, so readers need no lock to use them.
	mu     sync.Mutex
	closed bool
	tiers  tiers
	index  map[ID]*entry
	stats  Stats    // counters only; gauges come from tiers and index
	free   [][]byte // recycled block memory, each of cap poolCap; see Alloc
}

// entry is one held block. mem is nil for a spilled block, whose bytes
// are in the file spillPath(id).
type entry struct {
	size int
	crc  uint32
	mem  []byte
	// views counts the readers using mem now (Read copying it, View's
	// callers); a deleted entry's mem is recycled only when it drops to
	// zero, so that no reader sees its bytes change.
	views   int
	deleted bool
}

// New makes a store, removing block files an earlier store left in
// cfg.SpillDir.
func New(cfg Config) (*Store, error) {
	if cfg.Memory <= 0 {
		return nil, fmt.Errorf("%w: Config.Memory is %d; set the memory budget for blocks in bytes", ErrInvalid, cfg.Memory)
	}
	if cfg.Disk < 0 {
		return nil, fmt.Errorf("%w: Config.Disk is %d; use 0 for no limit", ErrInvalid, cfg.Disk)
	}
	if cfg.MaxBlock <= 0 {
		cfg.MaxBlock = 16 << 20
	}
	cfg.poolCap = min(cfg.MaxBlock, DefaultSize)
	if cfg.SpillDir != "" {
		if err := cleanSpillDir(cfg.SpillDir); err != nil {
			return nil, err
		}
	}
	return &Store{
		cfg:   cfg,
		tiers: tiers{memLimit: cfg.Memory, spill: cfg.SpillDir != "", diskLimit: cfg.Disk},
		index: make(map[ID]*entry),
	}, nil
}

func cleanSpillDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("%w: spill directory: %v; create it or leave Config.SpillDir empty", ErrInvalid, err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), spillExt) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return nil
}

func (s *Store) spillPath(id ID) string {
	return filepath.Join(s.cfg.SpillDir, id.String()+spillExt)
}

// Put stores data as block id. The block goes to memory when the memory
// budget has room and to a spill file otherwise. When the returned Info
// says it is in memory, the store keeps data itself: the caller must not
// change it afterwards. When it is spilled, data was copied to the file
// and the caller may reuse it. Errors wrap ErrFull, ErrExists, ErrInvalid
// or ErrClosed, or are the spill file's I/O error; nothing is kept then.
func (s *Store) Put(id ID, data []byte) (Info, error) {
	if len(data) > s.cfg.MaxBlock {
		return Info{}, fmt.Errorf("%w: block of %d bytes is over the limit of %d", ErrInvalid, len(data), s.cfg.MaxBlock)
	}
	return s.PutSum(id, data, Checksum(data))
}

// PutSum is Put of a block whose CRC-32C the caller has just computed
// (Checksum(data)), so that it is not computed twice: the spread tier and
// the peer link compute it before the block reaches this store.
func (s *Store) PutSum(id ID, data []byte, crc uint32) (Info, error) {
	if len(data) > s.cfg.MaxBlock {
		return Info{}, fmt.Errorf("%w: block of %d bytes is over the limit of %d", ErrInvalid, len(data), s.cfg.MaxBlock)
	}
	info := Info{Size: len(data), Checksum: crc}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Info{}, ErrClosed
	}
	if _, ok := s.index[id]; ok {
		s.mu.Unlock()
		return Info{}, fmt.Errorf("%w: %s", ErrExists, id)
	}
	where := s.tiers.place(int64(len(data)))
	if where == 0 {
		s.stats.Refusals++
		s.mu.Unlock()
		return Info{}, fmt.Errorf("%w: no room for a %d-byte block", ErrFull, len(data))
	}
	e := &entry{size: len(data), crc: info.Checksum}
	if where == inMemory {
		e.mem = data
		s.index[id] = e
		s.stats.Puts++
		s.mu.Unlock()
		return info, nil
	}
	// Hold the id while the file is written, so that a concurrent Put of
	// it fails; a Read meanwhile finds a short file and reports it.
	s.index[id] = e
	s.mu.Unlock()

	info.Spilled = true
	err := writeFile(s.spillPath(id), data)

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || s.closed {
		delete(s.index, id)
		s.tiers.free(onDisk, int64(len(data)))
		os.Remove(s.spillPath(id))
		if err == nil {
			err = ErrClosed
		}
		return Info{}, fmt.Errorf("blocks: spill %s: %w", id, err)
	}
	s.stats.Puts++
	s.stats.Spills++
	return info, nil
}

func writeFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Read appends block id's bytes to dst and returns the result with the
// block's Info, after checking them against the block's CRC-32C. A
// mismatch fails with ErrChecksum and returns no bytes. Errors wrap
// ErrNotFound, ErrChecksum or ErrClosed, or are a spill file's I/O error.
func (s *Store) Read(id ID, dst []byte) ([]byte, Info, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return dst, Info{}, ErrClosed
	}
	e, ok := s.index[id]
	if ok && e.mem != nil {
		e.views++
	}
	s.mu.Unlock()
	if !ok {
		return dst, Info{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	info := Info{Size: e.size, Checksum: e.crc, Spilled: e.mem == nil}
	start := len(dst)
	if e.mem != nil {
		dst = append(dst, e.mem...)
		s.unview(e)
	} else {
		var err error
		dst, err = readFile(s.spillPath(id), dst, e.size)
		if errors.Is(err, os.ErrNotExist) {
			// Deleted since the lookup; ids are never reused.
			return dst[:start], Info{}, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if err != nil {
			return dst[:start], Info{}, fmt.Errorf("blocks: read spilled %s: %w", id, err)
		}
	}
	if got := Checksum(dst[start:]); got != e.crc {
		s.mu.Lock()
		s.stats.ChecksumErrors++
		s.mu.Unlock()
		where := "memory"
		if e.mem == nil {
			where = "spill file " + s.spillPath(id)
		}
		return dst[:start], Info{}, fmt.Errorf("%w: block %s in %s has CRC-32C %08x, stored as %08x", ErrChecksum, id, where, got, e.crc)
	}
	return dst, info, nil
}

// readFile appends the file's bytes to dst, reading at most one byte more
// than size so that a grown file shows as a checksum mismatch rather than
// a long read.
func readFile(path string, dst []byte, size int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return dst, err
	}
	defer f.Close()
	start := len(dst)
	dst = append(dst, make([]byte, size+1)...)
	n, err := io.ReadFull(f, dst[start:])
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	return dst[:start+n], err
}

// Has reports whether the store holds block id.
func (s *Store) Has(id ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.index[id]
	return ok
}

// Delete drops block id and gives its bytes back to its tier. Deleting a
// block the store does not hold fails with ErrNotFound.
func (s *Store) Delete(id ID) error { return s.delete(id, true) }

// Unput drops block id, which its caller has just put and no one else
// knows of, and gives its memory back to that caller instead of
// recycling it: a Put undone because the block's other copies failed.
func (s *Store) Unput(id ID) error { return s.delete(id, false) }

func (s *Store) delete(id ID, recycle bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	e, ok := s.index[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	delete(s.index, id)
	if e.mem != nil {
		s.tiers.free(inMemory, int64(e.size))
		e.deleted = recycle
		if recycle && e.views == 0 {
			s.recycle(e.mem)
		}
		s.mu.Unlock()
		return nil
	}
	s.tiers.free(onDisk, int64(e.size))
	s.mu.Unlock()
	if err := os.Remove(s.spillPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("blocks: remove spilled %s: %w", id, err)
	}
	return nil
}

// Stats returns the store's gauges and counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Blocks = len(s.index)
	for _, e := range s.index {
		if e.mem != nil {
			st.MemoryBlocks++
		} else {
			st.SpilledBlocks++
		}
	}
	st.MemoryBytes = s.tiers.memUsed
	st.SpilledBytes = s.tiers.diskUsed
	st.MemoryBudget = s.cfg.Memory
	st.DiskBudget = s.cfg.Disk
	st.FreeBytes = int64(len(s.free)) * int64(s.cfg.poolCap)
	return st
}

// Close drops every block and removes the spill files. Calls after the
// first return ErrClosed; so do Put, Read and Delete.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.free = nil
	var spilled []ID
	for id, e := range s.index {
		if e.mem == nil {
			spilled = append(spilled, id)
		}
	}
	s.index = nil
	s.mu.Unlock()
	for _, id := range spilled {
		os.Remove(s.spillPath(id))
	}
	return nil
}

// Alloc returns a buffer of n bytes to fill and Put as a block: memory
// of a deleted block when there is some (it is already faulted in, where
// fresh memory costs a page fault per 4 KiB, ~19 µs each on the
// development VM), else new memory. Its contents are undefined. Give it
// back with Release if it is not kept by Put.
func (s *Store) Alloc(n int) []byte {
	if n > s.cfg.poolCap {
		return make([]byte, n)
	}
	s.mu.Lock()
	if k := len(s.free); k > 0 {
		b := s.free[k-1]
		s.free[k-1] = nil
		s.free = s.free[:k-1]
		s.mu.Unlock()
		return b[:n]
	}
	s.mu.Unlock()
	return make([]byte, n, s.cfg.poolCap)
}

// Release gives back a buffer from Alloc that no block holds (one Put
// did not keep, or refused). The caller must not use it afterwards.
func (s *Store) Release(b []byte) {
	s.mu.Lock()
	s.recycle(b)
	s.mu.Unlock()
}

// recycle keeps b for Alloc if it has the pool's capacity and the blocks
// in memory plus the free buffers stay within the memory budget: the free
// list never holds memory the budget would not let blocks hold. Called
// under mu.
func (s *Store) recycle(b []byte) {
	c := int64(s.cfg.poolCap)
	if s.closed || cap(b) != s.cfg.poolCap || s.tiers.memUsed+c*int64(len(s.free)+1) > s.tiers.memLimit {
		return
	}
	s.free = append(s.free, b[:0])
}

// unview ends a reader's use of e.mem, recycling it if e was deleted
// meanwhile and this was its last reader.
func (s *Store) unview(e *entry) {
	s.mu.Lock()
	e.views--
	if e.views == 0 && e.deleted {
		s.recycle(e.mem)
	}
	s.mu.Unlock()
}

// View returns block id's bytes, checked against its CRC-32C, without
// copying a block held in memory, and a release the caller must call once
// done with them: until then the memory is not reused, even if the block
// is deleted. A spilled block is read into a buffer from Alloc, which
// release gives back. Errors are those of Read; release is then nil.
func (s *Store) View(id ID) (data []byte, info Info, release func(), err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, Info{}, nil, ErrClosed
	}
	e, ok := s.index[id]
	if ok && e.mem != nil {
		e.views++
	}
	s.mu.Unlock()
	if !ok {
		return nil, Info{}, nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if e.mem == nil {
		var buf []byte
		if e.size < s.cfg.poolCap {
			buf = s.Alloc(0)
		}
		data, info, err := s.Read(id, buf)
		if err != nil {
			s.Release(data)
			return nil, Info{}, nil, err
		}
		return data, info, Once(func() { s.Release(data) }), nil
	}
	if got := Checksum(e.mem); got != e.crc {
		s.unview(e)
		s.mu.Lock()
		s.stats.ChecksumErrors++
		s.mu.Unlock()
		return nil, Info{}, nil, fmt.Errorf("%w: block %s in memory has CRC-32C %08x, stored as %08x", ErrChecksum, id, got, e.crc)
	}
	return e.mem, Info{Size: e.size, Checksum: e.crc}, Once(func() { s.unview(e) }), nil
}

// Once wraps a release so that calls after the first do nothing: a
// buffer given back twice would be handed out twice.
func Once(release func()) func() {
	var once sync.Once
	return func() { once.Do(release) }
}
