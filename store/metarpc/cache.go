package metarpc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/store/meta"
)

// Cache is a node agent's metadata client with a cache in front: buckets,
// objects (and their absence) and listings it was told about are served
// from memory, with no round trip to the service, while it holds a lease.
//
// Correctness across nodes rests on the watch stream: the service sends
// every change to every watching node and reports the change done only
// once each node has dropped the stale entries (acknowledged) or its
// lease has run out; a node serves its cache only within its lease,
// Lease after a ping the service answered. A lookup that races a change
// is not cached (an invalidation that arrives while it is under way
// spoils it). Objects with a time to live are served from the cache
// until they expire by this node's clock. Without a stream (the service
// is unreachable, or does not speak it), every call goes to the service.
//
// Changes made through the Cache go to the service as with a Client;
// uploads in progress and parts are never cached.
type Cache struct {
	c        *Client
	lease    time.Duration
	log      *slog.Logger
	max      int
	onChange func(bucket, key string)

	stop   chan struct{}
	done   chan struct{}
	closed sync.Once

	// mu guards all following fields.
	mu         sync.Mutex
	epoch      uint64    // bumped when a stream ends: fills under way are spoiled
	leaseUntil time.Time // serve from the cache only before it
	buckets    map[string]*bucketEntry
	all        *[]store.BucketInfo // ListBuckets, when cached
	fills      map[*fill]struct{}
	entries    int // weight of the objects and listings cached, for the bound
	hits, miss uint64
	leased     bool        // a lease was granted once
	lapse      *time.Timer // calls onChange when the lease runs out unrenewed
}

// bucketEntry is what the cache knows about one bucket.
type bucketEntry struct {
	info    store.BucketInfo
	err     error // store.ErrNoSuchBucket when known absent
	known   bool  // info or err is set
	objects map[string]objectEntry
	lists   map[store.ListOptions]listEntry
}

type objectEntry struct {
	obj meta.Object
	err error // store.ErrNoSuchKey or ErrNoSuchBucket when known absent
}

type listEntry struct {
	res   store.ListResult
	until time.Time // earliest expiry among the listed objects; zero: none
}

// fill is a lookup under way: an invalidation that touches it while it
// waits for its answer marks it spoiled, and the answer is then not
// cached.
type fill struct {
	bucket, key string
	what        byte // fillBucket, fillObject, fillList, fillBuckets
	epoch       uint64
	spoiled     bool
	// own marks a write's fill: the first invalidation of its key is the
	// write's own, which the service sends before it answers.
	own bool
}

const (
	fillBucket byte = iota
	fillObject
	fillList
	fillBuckets
)

// CacheOptions tune NewCache.
type CacheOptions struct {
	// Lease is how long the cache serves after a renewal (default
	// DefaultLease); it must not exceed the service's.
	Lease time.Duration
	// MaxEntries bounds the objects and listings kept (default 100000),
	// an object counting 1 plus a quarter of its blocks and a listing 1
	// plus its entries; past it the cache starts over.
	MaxEntries int
	Log        *slog.Logger
	// OnChange, when set, is called with every change the service tells
	// of (key "" for a whole bucket) once the cache has dropped it and
	// before it is acknowledged, and with ("", "") when the cache stops
	// serving (its stream ended or its lease ran out): a layer that keeps
	// copies of its own past the cache (a FUSE mount's kernel caches)
	// drops them then. It must not call the Cache.
	OnChange func(bucket, key string)
}

var _ local.Meta = (*Cache)(nil)

// pingEvery is how often the node renews its lease.
func (c *Cache) pingEvery() time.Duration { return c.lease / 8 }

// NewCache puts a cache in front of c and starts watching the service;
// Close stops it and closes c.
func NewCache(c *Client, opts CacheOptions) *Cache {
	if opts.Lease <= 0 {
		opts.Lease = DefaultLease
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 100000
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	mc := &Cache{
		c: c, lease: opts.Lease, log: opts.Log, max: opts.MaxEntries, onChange: opts.OnChange,
		stop: make(chan struct{}), done: make(chan struct{}),
		buckets: make(map[string]*bucketEntry), fills: make(map[*fill]struct{}),
	}
	go mc.watchLoop()
	return mc
}

// Stats returns how many lookups the cache answered and how many went to
// the service.
func (mc *Cache) Stats() (hits, misses uint64) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	return mc.hits, mc.miss
}

// Serving says whether the cache holds a lease now.
func (mc *Cache) Serving() bool {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	return time.Now().Before(mc.leaseUntil)
}

// watchLoop keeps a watch stream open, reconnecting with backoff.
func (mc *Cache) watchLoop() {
	defer close(mc.done)
	backoff := 50 * time.Millisecond
	for {
		start := time.Now()
		err := mc.watch()
		mc.reset()
		select {
		case <-mc.stop:
			return
		default:
		}
		if time.Since(start) > 10*time.Second {
			backoff = 50 * time.Millisecond
		}
		mc.log.Debug("store: metadata watch ended; serving without a cache until it is back", "err", err)
		select {
		case <-mc.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// reset empties the cache and spoils every fill under way: the stream
// that kept it correct ended.
func (mc *Cache) reset() {
	mc.mu.Lock()
	mc.epoch++
	mc.leaseUntil = time.Time{}
	mc.dropAll()
	mc.mu.Unlock()
	if mc.onChange != nil {
		mc.onChange("", "")
	}
}

// lapsed tells onChange that the lease ran out without a renewal.
func (mc *Cache) lapsed() {
	if !mc.Serving() {
		mc.onChange("", "")
	}
}

func (mc *Cache) dropAll() {
	clear(mc.buckets)
	mc.all = nil
	mc.entries = 0
	for f := range mc.fills {
		f.spoiled = true
	}
}

// watch runs one watch stream until it breaks or the cache closes.
func (mc *Cache) watch() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // Close must not wait for a dial to a service that is gone
		select {
		case <-mc.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, mc.c.BaseURL+"/watch", nil)
	if err != nil {
		return err
	}
	for k, vs := range mc.c.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", WatchProtocol)
	resp, err := watchHTTP.Do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
		return fmt.Errorf("metadata service at %s does not serve watch streams: %s", mc.c.BaseURL, resp.Status)
	}
	conn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return errors.New("metarpc: upgraded watch stream is not writable")
	}
	defer conn.Close()
	go func() {
		<-ctx.Done()
		conn.Close()
	}()

	var wmu sync.Mutex
	bw := bufio.NewWriter(conn)
	send := func(f frame) error {
		wmu.Lock()
		defer wmu.Unlock()
		bw.Write(appendFrame(nil, f))
		return bw.Flush()
	}
	// Pings: each remembers when it left; its pong extends the lease
	// from then.
	var pmu sync.Mutex
	sent := map[uint64]time.Time{}
	go func() {
		t := time.NewTicker(mc.pingEvery())
		defer t.Stop()
		for seq := uint64(1); ; seq++ {
			pmu.Lock()
			sent[seq] = time.Now()
			if len(sent) > 64 { // unanswered: the stream is stuck; the lease runs out
				for s := range sent {
					if s+64 < seq {
						delete(sent, s)
					}
				}
			}
			pmu.Unlock()
			if send(frame{typ: framePing, n: seq}) != nil {
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	br := bufio.NewReader(conn)
	for {
		f, err := readFrame(br)
		if err != nil {
			return err
		}
		switch f.typ {
		case framePong:
			pmu.Lock()
			at, ok := sent[f.n]
			delete(sent, f.n)
			pmu.Unlock()
			if ok && mc.renew(at.Add(mc.lease)) {
				mc.log.Info("store: metadata cache on: the control plane tells this node of every change", "lease", mc.lease)
			}
		case frameInval:
			mc.invalidate(f.kind, f.bucket, f.key)
			if mc.onChange != nil {
				key := f.key
				if f.kind == InvalBucket {
					key = ""
				}
				mc.onChange(f.bucket, key)
			}
			if err := send(frame{typ: frameAck, n: f.n}); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: type %d from the service", ErrBadFrame, f.typ)
		}
	}
}

// watchHTTP makes the upgrade requests: a connection of their own each,
// never pooled.
var watchHTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// renew extends the lease to until, and says whether it is the first
// lease since the cache started.
func (mc *Cache) renew(until time.Time) (first bool) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if until.After(mc.leaseUntil) {
		mc.leaseUntil = until
		if mc.onChange != nil {
			if mc.lapse == nil {
				mc.lapse = time.AfterFunc(time.Until(until), mc.lapsed)
			} else {
				mc.lapse.Reset(time.Until(until))
			}
		}
	}
	first = !mc.leased
	mc.leased = true
	return first
}

// invalidate drops what a change names and spoils the fills it touches.
func (mc *Cache) invalidate(kind byte, bucket, key string) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	for f := range mc.fills {
		if f.what == fillBuckets {
			f.spoiled = f.spoiled || kind == InvalBucket
			continue
		}
		if f.bucket != bucket {
			continue
		}
		if f.own && kind == InvalKey && f.what == fillObject && f.key == key {
			f.own = false
			continue
		}
		if kind == InvalBucket || f.what == fillList || (f.what == fillObject && f.key == key) {
			f.spoiled = true
		}
	}
	be := mc.buckets[bucket]
	if kind == InvalBucket {
		mc.all = nil
		if be != nil {
			for _, e := range be.objects {
				mc.entries -= e.weight()
			}
			for _, e := range be.lists {
				mc.entries -= e.weight()
			}
			delete(mc.buckets, bucket)
		}
		return
	}
	if be == nil {
		return
	}
	if e, ok := be.objects[key]; ok {
		delete(be.objects, key)
		mc.entries -= e.weight()
	}
	for _, e := range be.lists {
		mc.entries -= e.weight()
	}
	clear(be.lists)
}

func (e objectEntry) weight() int { return 1 + len(e.obj.Blocks)/4 }
func (e listEntry) weight() int   { return 1 + len(e.res.Objects) + len(e.res.CommonPrefixes) }

// begin starts a fill, or returns nil when the cache does not serve.
func (mc *Cache) begin(what byte, bucket, key string) *fill {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	mc.miss++
	if !time.Now().Before(mc.leaseUntil) {
		return nil
	}
	f := &fill{what: what, bucket: bucket, key: key, epoch: mc.epoch}
	mc.fills[f] = struct{}{}
	return f
}

// end ends a fill and calls keep, under the cache's lock, when its answer
// may be cached.
func (mc *Cache) end(f *fill, keep func()) {
	if f == nil {
		return
	}
	mc.mu.Lock()
	defer mc.mu.Unlock()
	delete(mc.fills, f)
	if f.spoiled || f.epoch != mc.epoch || !time.Now().Before(mc.leaseUntil) {
		return
	}
	if mc.entries >= mc.max {
		mc.dropAll()
	}
	keep()
}

// entry returns the bucket's entry, made if absent; mu held.
func (mc *Cache) entry(bucket string) *bucketEntry {
	be := mc.buckets[bucket]
	if be == nil {
		be = &bucketEntry{objects: make(map[string]objectEntry), lists: make(map[store.ListOptions]listEntry)}
		mc.buckets[bucket] = be
	}
	return be
}

// serving reports whether the lease runs; mu held.
func (mc *Cache) serving(now time.Time) bool { return now.Before(mc.leaseUntil) }

// absent reports whether err says a bucket or key does not exist: an
// answer worth caching.
func absent(err error) bool {
	return errors.Is(err, store.ErrNoSuchKey) || errors.Is(err, store.ErrNoSuchBucket)
}

func (mc *Cache) Bucket(name string) (store.BucketInfo, error) {
	mc.mu.Lock()
	if be := mc.buckets[name]; be != nil && be.known && mc.serving(time.Now()) {
		mc.hits++
		info, err := be.info, be.err
		mc.mu.Unlock()
		return info, err
	}
	mc.mu.Unlock()
	f := mc.begin(fillBucket, name, "")
	info, err := mc.c.Bucket(name)
	if err == nil || errors.Is(err, store.ErrNoSuchBucket) {
		mc.end(f, func() {
			be := mc.entry(name)
			be.info, be.err, be.known = info, err, true
		})
	} else {
		mc.end(f, nil2)
	}
	return info, err
}

func nil2() {}

func (mc *Cache) Buckets() ([]store.BucketInfo, error) {
	mc.mu.Lock()
	if mc.all != nil && mc.serving(time.Now()) {
		mc.hits++
		all := append([]store.BucketInfo(nil), (*mc.all)...)
		mc.mu.Unlock()
		return all, nil
	}
	mc.mu.Unlock()
	f := mc.begin(fillBuckets, "", "")
	all, err := mc.c.Buckets()
	keep := nil2
	if err == nil {
		kept := append([]store.BucketInfo(nil), all...)
		keep = func() { mc.all = &kept }
	}
	mc.end(f, keep)
	return all, err
}

func (mc *Cache) Object(bucket, key string) (meta.Object, error) {
	now := time.Now()
	mc.mu.Lock()
	if be := mc.buckets[bucket]; be != nil && mc.serving(now) {
		if e, ok := be.objects[key]; ok && (e.obj.Expires.IsZero() || now.Before(e.obj.Expires)) {
			mc.hits++
			mc.mu.Unlock()
			return e.obj, e.err
		}
	}
	mc.mu.Unlock()
	f := mc.begin(fillObject, bucket, key)
	o, err := mc.c.Object(bucket, key)
	keep := nil2
	if err == nil || absent(err) {
		keep = func() { mc.keepObject(bucket, key, objectEntry{obj: o, err: err}) }
	}
	mc.end(f, keep)
	return o, err
}

// keepObject caches e as what the cache knows of bucket/key; mu held.
func (mc *Cache) keepObject(bucket, key string, e objectEntry) {
	be := mc.entry(bucket)
	if old, ok := be.objects[key]; ok {
		mc.entries -= old.weight()
	}
	be.objects[key] = e
	mc.entries += e.weight()
}

// wrote caches o, which a write through this cache has just recorded,
// if no other change of its key reached the cache since f began: a GET
// on the node that PUT an object then costs no round trip. Objects whose
// reads the service counts are left to it.
func (mc *Cache) wrote(f *fill, o meta.Object, err error) {
	keep := nil2
	if err == nil && o.Reads == 0 {
		keep = func() { mc.keepObject(o.Bucket, o.Key, objectEntry{obj: o}) }
	}
	mc.end(f, keep)
}

// beginWrite starts the fill of a write of bucket/key (see fill.own), or
// returns nil when the cache does not serve.
func (mc *Cache) beginWrite(bucket, key string) *fill {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if !mc.serving(time.Now()) {
		return nil
	}
	f := &fill{what: fillObject, bucket: bucket, key: key, epoch: mc.epoch, own: true}
	mc.fills[f] = struct{}{}
	return f
}

// ReadObject answers from the cache for objects without a read limit;
// a read-limited object's read is taken by the metadata service.
func (mc *Cache) ReadObject(bucket, key string) (meta.Object, error) {
	o, err := mc.Object(bucket, key)
	if err != nil || o.Reads == 0 {
		return o, err
	}
	return mc.c.ReadObject(bucket, key)
}

func (mc *Cache) ReadDone(o meta.Object) ([]meta.Block, error) { return mc.c.ReadDone(o) }

func (mc *Cache) List(bucket string, opts store.ListOptions) (store.ListResult, error) {
	now := time.Now()
	mc.mu.Lock()
	if be := mc.buckets[bucket]; be != nil && mc.serving(now) {
		if e, ok := be.lists[opts]; ok && (e.until.IsZero() || now.Before(e.until)) {
			mc.hits++
			mc.mu.Unlock()
			return e.res, nil
		}
	}
	mc.mu.Unlock()
	f := mc.begin(fillList, bucket, "")
	res, err := mc.c.List(bucket, opts)
	keep := nil2
	if err == nil {
		e := listEntry{res: res}
		for _, o := range res.Objects {
			if !o.Expires.IsZero() && (e.until.IsZero() || o.Expires.Before(e.until)) {
				e.until = o.Expires
			}
		}
		keep = func() {
			be := mc.entry(bucket)
			if old, ok := be.lists[opts]; ok {
				mc.entries -= old.weight()
			}
			be.lists[opts] = e
			mc.entries += e.weight()
		}
	}
	mc.end(f, keep)
	return res, err
}

// Changes go to the service, which tells every cache (this one too)
// before it answers.

func (mc *Cache) CreateBucket(name string) error { return mc.c.CreateBucket(name) }
func (mc *Cache) DeleteBucket(name string) error { return mc.c.DeleteBucket(name) }
func (mc *Cache) PutObject(obj meta.Object) (meta.Object, []meta.Block, error) {
	f := mc.beginWrite(obj.Bucket, obj.Key)
	o, freed, err := mc.c.PutObject(obj)
	mc.wrote(f, o, err)
	return o, freed, err
}
func (mc *Cache) DeleteObject(bucket, key string) ([]meta.Block, error) {
	return mc.c.DeleteObject(bucket, key)
}
func (mc *Cache) DeleteExpired(max int) ([]meta.Block, int, error) { return mc.c.DeleteExpired(max) }
func (mc *Cache) CreateUpload(bucket, key string, opts store.PutOptions) (meta.Upload, error) {
	return mc.c.CreateUpload(bucket, key, opts)
}
func (mc *Cache) Upload(bucket, key, id string) (meta.Upload, error) {
	return mc.c.Upload(bucket, key, id)
}
func (mc *Cache) PutPart(bucket, key, id string, p meta.Part) ([]meta.Block, error) {
	return mc.c.PutPart(bucket, key, id, p)
}
func (mc *Cache) Parts(bucket, key, id string, opts store.ListPartsOptions) (store.ListPartsResult, error) {
	return mc.c.Parts(bucket, key, id, opts)
}
func (mc *Cache) CompleteUpload(bucket, key, id string, list []store.CompletePart, minPart int64) (meta.Object, []meta.Block, error) {
	f := mc.beginWrite(bucket, key)
	o, freed, err := mc.c.CompleteUpload(bucket, key, id, list, minPart)
	mc.wrote(f, o, err)
	return o, freed, err
}
func (mc *Cache) AbortUpload(bucket, key, id string) ([]meta.Block, error) {
	return mc.c.AbortUpload(bucket, key, id)
}

// Members asks the service, as Client.Members.
func (mc *Cache) Members(ctx context.Context) (map[string]string, error) {
	return mc.c.Members(ctx)
}

// Close stops watching and closes the client.
func (mc *Cache) Close() error {
	mc.closed.Do(func() { close(mc.stop) })
	<-mc.done
	return mc.c.Close()
}
