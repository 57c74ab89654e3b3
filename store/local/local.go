package local

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/clock"
	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/blocks"
	"github.com/handoff-dev/handoff/store/meta"
)

// Config sets up a Store.
type Config struct {
	// Dir holds the metadata database (store.db). Required unless Meta is
	// set; created if absent.
	Dir string
	// Meta, if set, is the metadata service to use instead of a database
	// in Dir: in a cluster, the control plane's (package store/metarpc).
	// The store closes it on Close. Objects whose blocks are gone are then
	// kept and read as store.ErrLost, as other node agents may hold them.
	Meta Meta
	// Blocks, if set, is the block tier to use instead of one made from
	// Memory, SpillDir and Disk: in a cluster, blocks spread over node
	// agents (package store/spread). The store closes it on Close.
	Blocks Blocks
	// Memory is the memory tier's budget in bytes. Required, > 0, unless
	// Blocks is set.
	Memory int64
	// SpillDir is the disk tier's directory; empty: no disk tier, and a
	// full memory tier refuses writes with store.ErrQuota.
	SpillDir string
	// Disk is the disk tier's budget in bytes; 0: no limit but the disk.
	Disk int64
	// BlockSize is the size objects are cut into; 0 means 1 MiB.
	BlockSize int
	// MaxPut is the largest body of one Put or UploadPart; larger ones
	// fail with store.ErrTooLarge. 0 means 5 GiB, as S3.
	MaxPut int64
	// MinPartSize is the smallest part but the last of a multipart
	// upload; 0 means 5 MiB, as S3.
	MinPartSize int64
	// SyncMeta fsyncs every metadata write. Off by default: the blocks
	// the metadata points at live in memory and do not survive the
	// machine either; see meta.Options.NoSync.
	SyncMeta bool
	// Clock stamps objects and runs out TTLs. Default clock.Real{}, with
	// which the store sweeps expired objects every second; with any other
	// clock only Sweep does (expired objects are invisible at once
	// either way).
	Clock clock.Clock
	// Logger reports what fails with nobody waiting for the answer;
	// default slog.Default().
	Logger *slog.Logger
}

// sweepEvery is how often the store frees expired objects with a real
// clock. They are unreadable from their expiry on; the sweep only gives
// their memory back.
const sweepEvery = time.Second

// Store is the store.Backend of a node agent: metadata in a Meta (a
// meta.DB of its own, or the control plane's), bytes in a Blocks tier
// (its own blocks.Store, or blocks spread over node agents). It is safe
// for concurrent use.
type Store struct {
	cfg    Config // defaults filled in; read-only after Open
	meta   Meta
	blocks Blocks
	stop   chan struct{}
	swept  sync.WaitGroup

	// mu guards the pins: blocks that open readers on this node use, and
	// blocks freed while pinned, which are dropped when their last reader
	// closes. Pins are per node: a delete made through another node agent
	// frees the blocks at once, and a reader here then fails with
	// store.ErrLost. mu is never held while calling meta or the block
	// tier, or copying bytes.
	mu     sync.Mutex
	pins   map[blocks.ID]int
	doomed map[blocks.ID]meta.Block

	// seen caches when a bucket was last found to exist, so that a Put
	// does not ask the metadata service twice (in a cluster each ask is a
	// round trip to the control plane). Only the early check uses it:
	// PutObject checks the bucket again where it records the object, so a
	// bucket deleted meanwhile still fails the Put, after its blocks.
	seenMu sync.Mutex
	seen   map[string]time.Time
}

// bucketFresh is how long a bucket found to exist is not asked about
// again before a Put.
const bucketFresh = 2 * time.Second

// checkBucket fails when the bucket does not exist, as far as a recent
// answer of the metadata service says.
func (s *Store) checkBucket(bucket string) error {
	now := s.cfg.Clock.Now()
	s.seenMu.Lock()
	at, ok := s.seen[bucket]
	s.seenMu.Unlock()
	if ok && now.Sub(at) < bucketFresh {
		return nil
	}
	if _, err := s.meta.Bucket(bucket); err != nil {
		return err
	}
	s.seenMu.Lock()
	if len(s.seen) > 10000 {
		clear(s.seen)
	}
	s.seen[bucket] = now
	s.seenMu.Unlock()
	return nil
}

var _ store.Backend = (*Store)(nil)

// Open opens the node's store. Metadata persists in cfg.Dir; blocks do
// not survive a restart, so Open drops the objects and uploads whose
// blocks are gone (all of them, after a restart of the node agent) and
// keeps the buckets. With cfg.Meta set, Open uses that instead and drops
// nothing.
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" && cfg.Meta == nil {
		return nil, fmt.Errorf("%w: Config.Dir is empty; name a directory for the store's metadata", store.ErrInvalidArgument)
	}
	if cfg.BlockSize <= 0 {
		cfg.BlockSize = blocks.DefaultSize
	}
	if cfg.MaxPut <= 0 {
		cfg.MaxPut = 5 << 30
	}
	if cfg.MinPartSize <= 0 {
		cfg.MinPartSize = store.MinPartSize
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	bs := cfg.Blocks
	if bs == nil {
		b, err := blocks.New(blocks.Config{Memory: cfg.Memory, SpillDir: cfg.SpillDir, Disk: cfg.Disk, MaxBlock: cfg.BlockSize})
		if err != nil {
			return nil, fmt.Errorf("%w: %v", store.ErrInvalidArgument, err)
		}
		bs = NodeTier{b}
	}
	md := cfg.Meta
	var own *meta.DB
	if md == nil {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			bs.Close()
			return nil, fmt.Errorf("store: %w", err)
		}
		db, err := meta.Open(filepath.Join(cfg.Dir, "store.db"), meta.Options{Clock: cfg.Clock, NoSync: !cfg.SyncMeta})
		if err != nil {
			bs.Close()
			return nil, err
		}
		md, own = db, db
	}
	s := &Store{
		cfg: cfg, meta: md, blocks: bs, stop: make(chan struct{}),
		pins: make(map[blocks.ID]int), doomed: make(map[blocks.ID]meta.Block),
		seen: make(map[string]time.Time),
	}
	if own != nil {
		if err := s.dropLost(own); err != nil {
			s.Close()
			return nil, err
		}
	}
	if _, real := cfg.Clock.(clock.Real); real {
		s.swept.Add(1)
		go s.sweepLoop()
	}
	return s, nil
}

// dropLost deletes the objects with a block the block tier does not
// hold, and aborts every upload (a fresh block tier holds no parts). Only
// a store with its own metadata does this: it is then the only holder.
func (s *Store) dropLost(db *meta.DB) error {
	type ref struct{ bucket, key string }
	var lost []ref
	err := db.ForEachObject(func(o meta.Object) error {
		for _, b := range o.Blocks {
			if s.blocks.Check(b) != nil {
				lost = append(lost, ref{o.Bucket, o.Key})
				break
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range lost {
		if _, err := s.meta.DeleteObject(r.bucket, r.key); err != nil {
			return err
		}
	}
	ups, err := db.Uploads()
	if err != nil {
		return err
	}
	for _, u := range ups {
		freed, err := s.meta.AbortUpload(u.Bucket, u.Key, u.ID)
		if err != nil {
			return err
		}
		s.free(freed)
	}
	return nil
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

// Sweep deletes the objects whose TTL has run out and frees their blocks.
// It returns how many objects it deleted.
func (s *Store) Sweep() (int, error) {
	total := 0
	for {
		freed, n, err := s.meta.DeleteExpired(1000)
		s.free(freed)
		total += n
		if err != nil || n < 1000 {
			return total, err
		}
	}
}

// Stats returns the gauges and counters of this node's block tier.
func (s *Store) Stats() blocks.Stats { return s.blocks.Stats() }

// Close stops the sweeper and closes the metadata and the block tier,
// dropping every block.
func (s *Store) Close() error {
	select {
	case <-s.stop:
		return store.ErrClosed
	default:
	}
	close(s.stop)
	s.swept.Wait()
	err := s.meta.Close()
	s.blocks.Close()
	return err
}

func (s *Store) CreateBucket(ctx context.Context, name string) error {
	return s.meta.CreateBucket(name)
}

func (s *Store) DeleteBucket(ctx context.Context, name string) error {
	// Expired objects not yet swept would keep the bucket "not empty".
	if _, err := s.Sweep(); err != nil {
		return err
	}
	s.seenMu.Lock()
	delete(s.seen, name)
	s.seenMu.Unlock()
	return s.meta.DeleteBucket(name)
}

func (s *Store) HeadBucket(ctx context.Context, name string) (store.BucketInfo, error) {
	return s.meta.Bucket(name)
}

func (s *Store) ListBuckets(ctx context.Context) ([]store.BucketInfo, error) {
	return s.meta.Buckets()
}

// written is the result of writing a body into blocks.
type written struct {
	blocks []meta.Block
	size   int64
	md5    []byte
	tagged bool // md5 is blockDigest, not the body's MD5
}

// writeBlocks cuts r into blocks and puts them in the block tier. On any
// failure it frees what it put and returns the error; nothing is kept.
//
// The digest returned is the body's MD5, or with blockTag (and no
// wantMD5) the MD5 of the blocks' sizes and CRC-32Cs, which the block
// tier computes anyway. The body's MD5 is computed by a goroutine fed the
// same blocks, while the next block is read: at ~1.5 ms per MiB it was
// 40% of a PUT's CPU when computed in line. Blocks the tier kept are
// immutable, so the hasher reads them without a copy; a buffer the tier
// did not keep is reused only after the hasher is done with it.
func (s *Store) writeBlocks(ctx context.Context, r io.Reader, size int64, wantMD5 []byte, replicas int, blockTag bool) (w written, err error) {
	if size > s.cfg.MaxPut {
		return w, fmt.Errorf("%w: %d bytes, over the limit of %d", store.ErrTooLarge, size, s.cfg.MaxPut)
	}
	if size < -1 {
		return w, fmt.Errorf("%w: size %d; use -1 for unknown", store.ErrInvalidArgument, size)
	}
	// A small body is hashed in line, into a buffer of its own size: a
	// goroutine and a pooled 1 MiB buffer cost more than they save there.
	small := size >= 0 && size < int64(s.cfg.BlockSize)/16
	blockTag = blockTag && wantMD5 == nil
	h := newHasher(!small && !blockTag)
	h.skip = blockTag
	defer func() {
		sum := h.finish() // the hasher must be done with the blocks before they are freed
		if err != nil {
			s.free(w.blocks)
			w = written{}
		} else if blockTag {
			w.md5, w.tagged = blockDigest(w.blocks), true
		} else {
			w.md5 = sum
		}
	}()
	limit := s.cfg.MaxPut + 1
	if size >= 0 {
		limit = size + 1
	}
	r = io.LimitReader(r, limit)
	bufSize := s.cfg.BlockSize
	if size >= 0 && size < int64(bufSize) {
		bufSize = int(size) + 1 // room to see a body longer than declared
	}
	var buf []byte
	if small {
		buf = make([]byte, bufSize)
	} else {
		buf = s.blocks.Alloc(bufSize)
	}
	defer func() {
		h.wait() // it may still be hashing the last block read into buf
		s.blocks.Release(buf)
	}()
	for {
		if err := ctx.Err(); err != nil {
			return w, err
		}
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			kept, err := s.putBlock(ctx, &w, h, buf[:n], replicas)
			if err != nil {
				return w, err
			}
			if kept && small {
				buf = make([]byte, len(buf)) // to see a body longer than declared
			} else if kept {
				buf = s.blocks.Alloc(len(buf))
			} else {
				h.wait()
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return w, rerr
		}
	}
	switch {
	case size >= 0 && w.size != size:
		return w, fmt.Errorf("%w: got %d bytes or more, declared %d", store.ErrIncompleteBody, w.size, size)
	case w.size > s.cfg.MaxPut:
		return w, fmt.Errorf("%w: over the limit of %d bytes", store.ErrTooLarge, s.cfg.MaxPut)
	}
	if sum := h.finish(); wantMD5 != nil && !bytes.Equal(sum, wantMD5) {
		return w, fmt.Errorf("%w: body MD5 %x, declared %x", store.ErrBadDigest, sum, wantMD5)
	}
	return w, nil
}

// putBlock hands data to the hasher and puts it in the block tier as a
// new block, and says whether the tier kept data itself (then the caller
// needs a new buffer). A short block that would pin a much larger buffer
// is copied first, so the memory tier holds what it accounts for.
func (s *Store) putBlock(ctx context.Context, w *written, h *hasher, data []byte, replicas int) (kept bool, err error) {
	h.add(data)
	if slack := cap(data) - len(data); slack > len(data)/8+64 {
		data = bytes.Clone(data)
		kept = false
	} else {
		data = data[:len(data):len(data)]
		kept = true
	}
	b, held, err := s.blocks.Put(ctx, blocks.NewID(), data, replicas)
	if err != nil {
		return false, err
	}
	w.blocks = append(w.blocks, b)
	w.size += b.Size
	return kept && held, nil
}

// blockDigest is the MD5 of the blocks' sizes and CRC-32Cs, in order.
func blockDigest(bl []meta.Block) []byte {
	h := md5.New()
	var b [12]byte
	for _, x := range bl {
		binary.BigEndian.PutUint64(b[:8], uint64(x.Size))
		binary.BigEndian.PutUint32(b[8:], x.CRC)
		h.Write(b[:])
	}
	return h.Sum(nil)
}

// hasher computes the MD5 of a body's blocks, in order, on a goroutine of
// its own, or in line when made with async false.
type hasher struct {
	skip    bool // hash nothing: the caller wants no MD5
	in      chan []byte
	pending sync.WaitGroup // blocks added and not yet hashed
	done    chan struct{}  // closed when the goroutine has exited
	h       hash.Hash
	sum     []byte
}

func newHasher(async bool) *hasher {
	h := &hasher{h: md5.New()}
	if !async {
		return h
	}
	h.in, h.done = make(chan []byte, 64), make(chan struct{})
	go func() {
		defer close(h.done)
		for b := range h.in {
			h.h.Write(b)
			h.pending.Done()
		}
	}()
	return h
}

// add queues b; the caller keeps it unchanged until wait or finish.
func (h *hasher) add(b []byte) {
	if h.skip {
		return
	}
	if h.in == nil {
		h.h.Write(b)
		return
	}
	h.pending.Add(1)
	h.in <- b
}

// wait returns once every block added is hashed.
func (h *hasher) wait() { h.pending.Wait() }

// finish ends the hasher and returns the MD5; later calls return it again.
func (h *hasher) finish() []byte {
	if h.sum == nil {
		if h.in != nil {
			close(h.in)
			<-h.done
		}
		h.sum = h.h.Sum(nil)
	}
	return h.sum
}

// free deletes blocks no object refers to any more; those an open reader
// here uses go when it closes.
func (s *Store) free(bl []meta.Block) {
	if len(bl) == 0 {
		return
	}
	now := make([]meta.Block, 0, len(bl))
	s.mu.Lock()
	for _, b := range bl {
		if s.pins[b.ID] > 0 {
			s.doomed[b.ID] = b
			continue
		}
		now = append(now, b)
	}
	s.mu.Unlock()
	s.blocks.Delete(now)
}

// pin marks blocks in use by a reader and checks that the block tier can
// still read them all; when not, it unpins them again and says why.
func (s *Store) pin(bl []meta.Block) error {
	s.mu.Lock()
	for _, b := range bl {
		s.pins[b.ID]++
	}
	s.mu.Unlock()
	for _, b := range bl {
		if err := s.blocks.Check(b); err != nil {
			s.unpin(bl)
			return err
		}
	}
	return nil
}

func (s *Store) unpin(bl []meta.Block) {
	var drop []meta.Block
	s.mu.Lock()
	for _, b := range bl {
		s.pins[b.ID]--
		if s.pins[b.ID] > 0 {
			continue
		}
		delete(s.pins, b.ID)
		if d, ok := s.doomed[b.ID]; ok {
			delete(s.doomed, b.ID)
			drop = append(drop, d)
		}
	}
	s.mu.Unlock()
	s.blocks.Delete(drop)
}

// checkReads checks PutOptions.Reads.
func checkReads(n int) error {
	if n < 0 || n > store.MaxReads {
		return fmt.Errorf("%w: %d reads; allow 1 to %d, or 0 for no limit", store.ErrInvalidArgument, n, store.MaxReads)
	}
	return nil
}

// readDone ends a read of o that the metadata counted; the last read of a
// read-limited object frees its blocks (those still pinned here when the
// last pin goes).
func (s *Store) readDone(o meta.Object) {
	if !o.Counted {
		return
	}
	freed, err := s.meta.ReadDone(o)
	if err != nil {
		// The object stays until its TTL, or a delete: say so, as
		// nobody waits for the answer.
		s.cfg.Logger.Warn("could not end a read of a read-limited object; it stays until its TTL or a delete", "bucket", o.Bucket, "key", o.Key, "err", err)
		return
	}
	s.free(freed)
}

// checkReplicas checks PutOptions.Replicas and returns how many copies
// to make.
func checkReplicas(n int) (int, error) {
	if n < 0 || n > store.MaxReplicas {
		return 0, fmt.Errorf("%w: %d replicas; ask for 1 to %d", store.ErrInvalidArgument, n, store.MaxReplicas)
	}
	return max(n, 1), nil
}

func (s *Store) Put(ctx context.Context, bucket, key string, r io.Reader, size int64, opts store.PutOptions) (store.ObjectInfo, error) {
	if err := store.CheckKey(key); err != nil {
		return store.ObjectInfo{}, err
	}
	if err := s.checkBucket(bucket); err != nil {
		return store.ObjectInfo{}, err
	}
	if opts.TTL < 0 {
		return store.ObjectInfo{}, fmt.Errorf("%w: TTL %v; use 0 for none", store.ErrInvalidArgument, opts.TTL)
	}
	if err := checkReads(opts.Reads); err != nil {
		return store.ObjectInfo{}, err
	}
	replicas, err := checkReplicas(opts.Replicas)
	if err != nil {
		return store.ObjectInfo{}, err
	}
	w, err := s.writeBlocks(ctx, r, size, opts.MD5, replicas, opts.BlockTag)
	if err != nil {
		return store.ObjectInfo{}, err
	}
	etag := hex.EncodeToString(w.md5)
	if w.tagged {
		etag += "-1" // not the body's MD5; see PutOptions.BlockTag
	}
	now := s.cfg.Clock.Now()
	o := meta.Object{
		ObjectInfo: store.ObjectInfo{
			Bucket: bucket, Key: key, Size: w.size, ETag: etag, Modified: now,
			ContentType: opts.ContentType, Meta: opts.Meta, Reads: opts.Reads,
		},
		Blocks: w.blocks,
	}
	if opts.TTL > 0 {
		o.Expires = now.Add(opts.TTL)
	}
	o, old, err := s.meta.PutObject(o)
	if err != nil {
		s.free(w.blocks)
		return store.ObjectInfo{}, err
	}
	s.free(old)
	return o.ObjectInfo, nil
}

func (s *Store) Head(ctx context.Context, bucket, key string) (store.ObjectInfo, error) {
	o, err := s.meta.Object(bucket, key)
	return o.ObjectInfo, err
}

func (s *Store) Get(ctx context.Context, bucket, key string, rng *store.Range) (*store.Object, error) {
	var lost error
	for range 3 {
		o, err := s.meta.ReadObject(bucket, key)
		if err != nil {
			return nil, err
		}
		off, n := int64(0), o.Size
		if rng != nil {
			if off, n, err = rng.Resolve(o.Size); err != nil {
				s.readDone(o)
				return nil, err
			}
		}
		if lost = s.pin(o.Blocks); lost != nil {
			// Replaced or deleted since the lookup, or lost: look again
			// (a read-limited object's read is spent all the same).
			s.readDone(o)
			continue
		}
		// The body outlives the call (a mount reads it later), so its remote
		// block reads keep ctx's values but not its cancellation; the
		// block tier bounds each read itself.
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		rd := &reader{s: s, ctx: rctx, cancel: cancel, bucket: bucket, key: key, obj: o, blocks: o.Blocks, pinned: o.Blocks, off: off, left: n}
		// Load the first block now, so that a lost or corrupt one fails
		// the Get itself, before a front end has sent a status.
		if n > 0 {
			if err := rd.load(); err != nil {
				rd.Close()
				return nil, err
			}
		}
		return &store.Object{Info: o.ObjectInfo, Offset: off, Length: n, Body: rd}, nil
	}
	return nil, fmt.Errorf("%w (object %s/%s)", lost, bucket, key)
}

func (s *Store) Delete(ctx context.Context, bucket, key string) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	old, err := s.meta.DeleteObject(bucket, key)
	s.free(old)
	return err
}

func (s *Store) List(ctx context.Context, bucket string, opts store.ListOptions) (store.ListResult, error) {
	return s.meta.List(bucket, opts)
}

func (s *Store) CreateUpload(ctx context.Context, bucket, key string, opts store.PutOptions) (string, error) {
	if opts.TTL < 0 {
		return "", fmt.Errorf("%w: TTL %v; use 0 for none", store.ErrInvalidArgument, opts.TTL)
	}
	if err := checkReads(opts.Reads); err != nil {
		return "", err
	}
	if _, err := checkReplicas(opts.Replicas); err != nil {
		return "", err
	}
	u, err := s.meta.CreateUpload(bucket, key, opts)
	return u.ID, err
}

func (s *Store) UploadPart(ctx context.Context, bucket, key, uploadID string, part int, r io.Reader, size int64, opts store.PartOptions) (store.PartInfo, error) {
	if part < 1 || part > store.MaxParts {
		return store.PartInfo{}, fmt.Errorf("%w: part number %d is outside 1 to %d", store.ErrInvalidPart, part, store.MaxParts)
	}
	u, err := s.meta.Upload(bucket, key, uploadID)
	if err != nil {
		return store.PartInfo{}, err
	}
	w, err := s.writeBlocks(ctx, r, size, opts.MD5, max(u.Opts.Replicas, 1), opts.BlockTag)
	if err != nil {
		return store.PartInfo{}, err
	}
	p := meta.Part{
		PartInfo: store.PartInfo{Number: part, Size: w.size, ETag: hex.EncodeToString(w.md5), Modified: s.cfg.Clock.Now().UTC().Round(0)},
		Blocks:   w.blocks,
	}
	old, err := s.meta.PutPart(bucket, key, uploadID, p)
	if err != nil {
		s.free(w.blocks)
		return store.PartInfo{}, err
	}
	s.free(old)
	return p.PartInfo, nil
}

func (s *Store) CompleteUpload(ctx context.Context, bucket, key, uploadID string, parts []store.CompletePart) (store.ObjectInfo, error) {
	o, freed, err := s.meta.CompleteUpload(bucket, key, uploadID, parts, s.cfg.MinPartSize)
	if err != nil {
		return store.ObjectInfo{}, err
	}
	s.free(freed)
	return o.ObjectInfo, nil
}

func (s *Store) AbortUpload(ctx context.Context, bucket, key, uploadID string) error {
	freed, err := s.meta.AbortUpload(bucket, key, uploadID)
	s.free(freed)
	return err
}

func (s *Store) ListParts(ctx context.Context, bucket, key, uploadID string, opts store.ListPartsOptions) (store.ListPartsResult, error) {
	return s.meta.Parts(bucket, key, uploadID, opts)
}
