package meta

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/handoff-dev/handoff/clock"
	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/blocks"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrInUse is matched (errors.Is) by the error Open returns when another
// process holds the database file.
var ErrInUse = errors.New("meta: database is in use by another process; stop it or use another directory")

var (
	bucketBuckets = []byte("buckets") // name → bucketRecord
	bucketObjects = []byte("objects") // name → nested: key → objectRecord
	bucketUploads = []byte("uploads") // name → nested: upload id → uploadRecord
	bucketParts   = []byte("parts")   // upload id → nested: number (4 bytes) → partRecord
	bucketExpiry  = []byte("expiry")  // expiry (8 bytes) | bucket | 0 | key → ""
)

// Options tune Open.
type Options struct {
	// Clock tells which objects have expired. Default clock.Real{}.
	Clock clock.Clock
	// NoSync skips the fsync after each write transaction. A process
	// crash loses nothing; a machine crash may lose the latest writes or
	// the file. Right for metadata whose blocks live in memory and die
	// with the machine anyway; wrong for a control plane's copy.
	NoSync bool
}

// Block is where one block of an object lives and what it must hash to.
type Block struct {
	ID   blocks.ID `json:"id"`
	Size int64     `json:"n"`
	CRC  uint32    `json:"crc"`
	// Holders names the node agent incarnations that hold a copy (their
	// holder names, "n1-<boot>"), first the one that wrote it. Empty in
	// the records of a single node's store (and in records written before
	// the store spread over nodes): the block is the node's own.
	Holders []string `json:"h,omitempty"`
}

// Object is an object's description and block list.
type Object struct {
	store.ObjectInfo
	Blocks []Block
	// Counted says that the ReadObject that returned this took one of
	// the object's limited reads: end it with ReadDone.
	Counted bool
}

// Part is one uploaded part of a multipart upload. Its ETag is the hex
// MD5 of its bytes, from which the object's ETag is computed.
type Part struct {
	store.PartInfo
	Blocks []Block
}

// Upload describes a multipart upload in progress.
type Upload struct {
	ID          string
	Bucket, Key string
	Initiated   time.Time
	Opts        store.PutOptions // MD5 unused
}

// DB is the store's metadata database. Its methods are safe for
// concurrent use; bbolt runs one write transaction at a time, so each
// method is atomic with respect to the others.
type DB struct {
	bolt   *bolt.DB
	clock  clock.Clock
	closed atomic.Bool
}

// Open opens the database at path, creating it when absent, and holds an
// exclusive lock on it until Close.
func Open(path string, opts Options) (*DB, error) {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: opts.NoSync})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrInUse, path)
	}
	if err != nil {
		return nil, fmt.Errorf("meta: open %s: %w", path, err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketBuckets, bucketObjects, bucketUploads, bucketParts, bucketExpiry} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("meta: open %s: %w", path, err)
	}
	return &DB{bolt: b, clock: opts.Clock}, nil
}

// Close releases the file. Calls after the first, and every other method
// after it, return store.ErrClosed.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return store.ErrClosed
	}
	return db.bolt.Close()
}

// Closed reports whether Close was called.
func (db *DB) Closed() bool { return db.closed.Load() }

func (db *DB) update(fn func(*bolt.Tx) error) error { return closedErr(db.bolt.Update(fn)) }
func (db *DB) view(fn func(*bolt.Tx) error) error   { return closedErr(db.bolt.View(fn)) }

func closedErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}

// now reads the clock in UTC without a monotonic reading, so times
// returned at once compare equal to the same times read back.
func (db *DB) now() time.Time { return db.clock.Now().UTC().Round(0) }

type bucketRecord struct {
	Created time.Time `json:"created"`
}

// CreateBucket makes an empty bucket.
func (db *DB) CreateBucket(name string) error {
	if err := store.CheckBucketName(name); err != nil {
		return err
	}
	return db.update(func(tx *bolt.Tx) error {
		bs := tx.Bucket(bucketBuckets)
		if bs.Get([]byte(name)) != nil {
			return fmt.Errorf("%w: %s", store.ErrBucketExists, name)
		}
		if err := put(bs, []byte(name), bucketRecord{Created: db.now()}); err != nil {
			return err
		}
		if _, err := tx.Bucket(bucketObjects).CreateBucket([]byte(name)); err != nil {
			return err
		}
		_, err := tx.Bucket(bucketUploads).CreateBucket([]byte(name))
		return err
	})
}

// DeleteBucket removes an empty bucket: no objects (expired ones that
// were not yet swept count as present) and no uploads in progress.
func (db *DB) DeleteBucket(name string) error {
	return db.update(func(tx *bolt.Tx) error {
		objs, ups, err := bucketsOf(tx, name)
		if err != nil {
			return err
		}
		if k, _ := objs.Cursor().First(); k != nil {
			return fmt.Errorf("%w: %s holds objects", store.ErrBucketNotEmpty, name)
		}
		if k, _ := ups.Cursor().First(); k != nil {
			return fmt.Errorf("%w: %s has multipart uploads in progress", store.ErrBucketNotEmpty, name)
		}
		if err := tx.Bucket(bucketObjects).DeleteBucket([]byte(name)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUploads).DeleteBucket([]byte(name)); err != nil {
			return err
		}
		return tx.Bucket(bucketBuckets).Delete([]byte(name))
	})
}

// Bucket describes a bucket.
func (db *DB) Bucket(name string) (store.BucketInfo, error) {
	var info store.BucketInfo
	err := db.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBuckets).Get([]byte(name))
		if v == nil {
			return fmt.Errorf("%w: %s", store.ErrNoSuchBucket, name)
		}
		var r bucketRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("meta: bucket %s: %w", name, err)
		}
		info = store.BucketInfo{Name: name, Created: r.Created}
		return nil
	})
	return info, err
}

// Buckets lists every bucket in name order.
func (db *DB) Buckets() ([]store.BucketInfo, error) {
	var out []store.BucketInfo
	err := db.view(func(tx *bolt.Tx) error {
		out = nil
		return tx.Bucket(bucketBuckets).ForEach(func(k, v []byte) error {
			var r bucketRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("meta: bucket %s: %w", k, err)
			}
			out = append(out, store.BucketInfo{Name: string(k), Created: r.Created})
			return nil
		})
	})
	return out, err
}

// bucketsOf returns the nested object and upload buckets of an S3 bucket.
func bucketsOf(tx *bolt.Tx, name string) (objs, ups *bolt.Bucket, err error) {
	objs = tx.Bucket(bucketObjects).Bucket([]byte(name))
	ups = tx.Bucket(bucketUploads).Bucket([]byte(name))
	if objs == nil || ups == nil {
		return nil, nil, fmt.Errorf("%w: %s", store.ErrNoSuchBucket, name)
	}
	return objs, ups, nil
}

type objectRecord struct {
	Size        int64             `json:"size"`
	ETag        string            `json:"etag"`
	Modified    time.Time         `json:"mod"`
	ContentType string            `json:"ct,omitempty"`
	Meta        map[string]string `json:"meta,omitempty"`
	Expires     time.Time         `json:"exp,omitzero"`
	Reads       int               `json:"reads,omitempty"`   // left to take; 0: no limit, or Spent
	Reading     int               `json:"reading,omitempty"` // taken, not done
	Spent       bool              `json:"spent,omitempty"`   // every read taken
	Blocks      []Block           `json:"blocks"`
}

func (r *objectRecord) object(bucket, key string) Object {
	return Object{
		ObjectInfo: store.ObjectInfo{
			Bucket: bucket, Key: key, Size: r.Size, ETag: r.ETag, Modified: r.Modified,
			ContentType: r.ContentType, Meta: r.Meta, Expires: r.Expires, Reads: r.Reads,
		},
		Blocks: r.Blocks,
	}
}

func recordOf(o Object) objectRecord {
	return objectRecord{
		Size: o.Size, ETag: o.ETag, Modified: o.Modified.UTC().Round(0), ContentType: o.ContentType,
		Meta: o.Meta, Expires: o.Expires.UTC().Round(0), Reads: o.Reads, Blocks: o.Blocks,
	}
}

// PutObject records obj under its bucket and key, replacing any object
// there, and returns the blocks of the object it replaced, which the
// caller frees. obj.Modified is set to now when zero.
func (db *DB) PutObject(obj Object) (Object, []Block, error) {
	if err := store.CheckKey(obj.Key); err != nil {
		return Object{}, nil, err
	}
	if obj.Modified.IsZero() {
		obj.Modified = db.now()
	}
	rec := recordOf(obj)
	var old []Block
	err := db.update(func(tx *bolt.Tx) error {
		var err error
		old, err = putObject(tx, obj.Bucket, obj.Key, &rec)
		return err
	})
	if err != nil {
		return Object{}, nil, err
	}
	return rec.object(obj.Bucket, obj.Key), old, nil
}

func putObject(tx *bolt.Tx, bucket, key string, rec *objectRecord) ([]Block, error) {
	objs, _, err := bucketsOf(tx, bucket)
	if err != nil {
		return nil, err
	}
	old, err := removeObject(tx, objs, bucket, key)
	if err != nil {
		return nil, err
	}
	if err := put(objs, []byte(key), rec); err != nil {
		return nil, err
	}
	if !rec.Expires.IsZero() {
		if err := tx.Bucket(bucketExpiry).Put(expiryKey(rec.Expires, bucket, key), nil); err != nil {
			return nil, err
		}
	}
	return old, nil
}

// removeObject deletes the object's record and expiry entry, if any, and
// returns its blocks.
func removeObject(tx *bolt.Tx, objs *bolt.Bucket, bucket, key string) ([]Block, error) {
	v := objs.Get([]byte(key))
	if v == nil {
		return nil, nil
	}
	var old objectRecord
	if err := json.Unmarshal(v, &old); err != nil {
		return nil, fmt.Errorf("meta: object %s/%s: %w", bucket, key, err)
	}
	if !old.Expires.IsZero() {
		if err := tx.Bucket(bucketExpiry).Delete(expiryKey(old.Expires, bucket, key)); err != nil {
			return nil, err
		}
	}
	return old.Blocks, objs.Delete([]byte(key))
}

// expiryKey orders the expiry index by time: 8 bytes of Unix nanoseconds,
// then the bucket, a zero byte (never in a bucket name) and the key.
func expiryKey(t time.Time, bucket, key string) []byte {
	k := make([]byte, 8, 8+len(bucket)+1+len(key))
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano()))
	k = append(k, bucket...)
	k = append(k, 0)
	return append(k, key...)
}

// Object returns the object under bucket and key. An object whose expiry
// has passed, or whose last allowed read has begun, is ErrNoSuchKey even
// before it is swept.
func (db *DB) Object(bucket, key string) (Object, error) {
	var obj Object
	err := db.view(func(tx *bolt.Tx) error {
		objs, _, err := bucketsOf(tx, bucket)
		if err != nil {
			return err
		}
		r, err := db.visible(objs, bucket, key)
		obj = r.object(bucket, key)
		return err
	})
	return obj, err
}

// ReadObject is Object for a read of the object's bytes. An object put
// with a number of reads (store.PutOptions.Reads) has one taken in the
// same transaction that finds it, so concurrent readers never share one,
// and the read is counted as in flight until ReadDone. Once the last read
// is taken nobody else finds the object; the last ReadDone removes it.
func (db *DB) ReadObject(bucket, key string) (Object, error) {
	obj, err := db.Object(bucket, key)
	if err != nil || obj.Reads == 0 {
		return obj, err
	}
	err = db.update(func(tx *bolt.Tx) error {
		objs, _, err := bucketsOf(tx, bucket)
		if err != nil {
			return err
		}
		r, err := db.visible(objs, bucket, key)
		if err != nil {
			return err
		}
		obj = r.object(bucket, key)
		if r.Reads == 0 { // replaced meanwhile by an object without a limit
			return nil
		}
		r.Reads--
		r.Reading++
		r.Spent = r.Reads == 0
		obj.Reads, obj.Counted = r.Reads, true
		return put(objs, []byte(key), &r)
	})
	return obj, err
}

// ReadDone ends a read that ReadObject counted, of the object version o
// (an object replaced since is left alone). When it was the last read in
// flight of an object whose reads are all taken, the object goes, and its
// blocks are returned for the caller to free.
func (db *DB) ReadDone(o Object) ([]Block, error) {
	if !o.Counted {
		return nil, nil
	}
	var freed []Block
	err := db.update(func(tx *bolt.Tx) error {
		freed = nil
		objs, _, err := bucketsOf(tx, o.Bucket)
		if err != nil {
			return nil // the bucket went with the object
		}
		r, err := objectIn(objs, o.Bucket, o.Key)
		if err != nil || r.Reading == 0 || !r.Modified.Equal(o.Modified.UTC().Round(0)) || r.ETag != o.ETag {
			return nil // gone or replaced
		}
		r.Reading--
		if r.Reading == 0 && r.Spent {
			freed, err = removeObject(tx, objs, o.Bucket, o.Key)
			return err
		}
		return put(objs, []byte(o.Key), &r)
	})
	return freed, err
}

// visible reads key's record, failing as absent when it has expired or
// its reads are spent.
func (db *DB) visible(objs *bolt.Bucket, bucket, key string) (objectRecord, error) {
	r, err := objectIn(objs, bucket, key)
	switch {
	case err != nil:
		return r, err
	case db.expired(r.Expires):
		return r, fmt.Errorf("%w: %s/%s expired at %s", store.ErrNoSuchKey, bucket, key, r.Expires.Format(time.RFC3339))
	case r.Spent:
		return r, fmt.Errorf("%w: %s/%s was read as many times as its writer allowed", store.ErrNoSuchKey, bucket, key)
	}
	return r, nil
}

// objectIn reads key's record from a bucket's objects.
func objectIn(objs *bolt.Bucket, bucket, key string) (objectRecord, error) {
	var r objectRecord
	v := objs.Get([]byte(key))
	if v == nil {
		return r, fmt.Errorf("%w: %s/%s", store.ErrNoSuchKey, bucket, key)
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, fmt.Errorf("meta: object %s/%s: %w", bucket, key, err)
	}
	return r, nil
}

func (db *DB) expired(t time.Time) bool { return !t.IsZero() && !db.now().Before(t) }

// DeleteObject removes the object and returns its blocks; an absent key
// returns none and no error.
func (db *DB) DeleteObject(bucket, key string) ([]Block, error) {
	var old []Block
	err := db.update(func(tx *bolt.Tx) error {
		objs, _, err := bucketsOf(tx, bucket)
		if err != nil {
			return err
		}
		old, err = removeObject(tx, objs, bucket, key)
		return err
	})
	return old, err
}

// DeleteExpired removes up to max objects whose expiry has passed,
// earliest first, and returns their blocks and how many objects went.
func (db *DB) DeleteExpired(max int) ([]Block, int, error) {
	var freed []Block
	var n int
	now := db.now()
	// The sweeper calls this every second: look before taking the write
	// transaction, which would write a page even when nothing is due.
	due := false
	if err := db.view(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketExpiry).Cursor().First()
		due = k != nil && len(k) >= 8 && int64(binary.BigEndian.Uint64(k)) <= now.UnixNano()
		return nil
	}); err != nil || !due {
		return nil, 0, err
	}
	err := db.update(func(tx *bolt.Tx) error {
		freed, n = nil, 0
		exp := tx.Bucket(bucketExpiry)
		var due [][]byte
		c := exp.Cursor()
		for k, _ := c.First(); k != nil && len(due) < max; k, _ = c.Next() {
			if len(k) < 9 || int64(binary.BigEndian.Uint64(k)) > now.UnixNano() {
				break
			}
			due = append(due, bytes.Clone(k))
		}
		for _, k := range due {
			bucket, key, _ := strings.Cut(string(k[8:]), "\x00")
			if err := exp.Delete(k); err != nil {
				return err
			}
			objs, _, err := bucketsOf(tx, bucket)
			if err != nil {
				continue // the bucket went with the object
			}
			old, err := removeObject(tx, objs, bucket, key)
			if err != nil {
				return err
			}
			freed = append(freed, old...)
			n++
		}
		return nil
	})
	return freed, n, err
}

// ForEachObject calls fn for every object, expired ones included, so a
// node can find the objects whose blocks it lost. It stops at fn's first
// error. fn must not call the DB.
func (db *DB) ForEachObject(fn func(Object) error) error {
	return db.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketObjects).ForEachBucket(func(name []byte) error {
			return tx.Bucket(bucketObjects).Bucket(name).ForEach(func(k, v []byte) error {
				var r objectRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("meta: object %s/%s: %w", name, k, err)
				}
				return fn(r.object(string(name), string(k)))
			})
		})
	})
}

// List lists a bucket's objects as store.Backend.List does, leaving out
// expired objects not yet swept.
func (db *DB) List(bucket string, opts store.ListOptions) (store.ListResult, error) {
	max := opts.Max
	if max <= 0 || max > store.MaxListKeys {
		max = store.MaxListKeys
	}
	var res store.ListResult
	err := db.view(func(tx *bolt.Tx) error {
		res = store.ListResult{}
		objs, _, err := bucketsOf(tx, bucket)
		if err != nil {
			return err
		}
		prefix, delim := opts.Prefix, opts.Delimiter
		c := objs.Cursor()
		start := prefix
		if opts.After >= prefix {
			start = opts.After
			// Resuming inside a rolled-up prefix: skip all of it.
			if cp := commonPrefix(opts.After, prefix, delim); cp != "" {
				start = cp + "\xff"
			}
		}
		count := 0
		for k, v := c.Seek([]byte(start)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
			key := string(k)
			if key <= opts.After {
				continue
			}
			if cp := commonPrefix(key, prefix, delim); cp != "" {
				if count == max {
					res.Truncated = true
					return nil
				}
				res.CommonPrefixes = append(res.CommonPrefixes, cp)
				res.Next = cp
				count++
				// Valid UTF-8 has no 0xff byte: this lands past every
				// key under cp. Seek, then step back one so Next lands
				// on it.
				k, _ = c.Seek([]byte(cp + "\xff"))
				if k == nil {
					return nil
				}
				c.Prev()
				continue
			}
			var r objectRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("meta: object %s/%s: %w", bucket, key, err)
			}
			if db.expired(r.Expires) || r.Spent {
				continue
			}
			if count == max {
				res.Truncated = true
				return nil
			}
			o := r.object(bucket, key)
			res.Objects = append(res.Objects, o.ObjectInfo)
			res.Next = key
			count++
		}
		return nil
	})
	if !res.Truncated {
		res.Next = ""
	}
	return res, err
}

// commonPrefix returns the prefix key rolls up into under prefix and
// delim, or "" when it does not roll up.
func commonPrefix(key, prefix, delim string) string {
	if delim == "" || !strings.HasPrefix(key, prefix) {
		return ""
	}
	i := strings.Index(key[len(prefix):], delim)
	if i < 0 {
		return ""
	}
	return key[:len(prefix)+i+len(delim)]
}

type uploadRecord struct {
	Key         string            `json:"key"`
	Initiated   time.Time         `json:"init"`
	ContentType string            `json:"ct,omitempty"`
	Meta        map[string]string `json:"meta,omitempty"`
	TTL         time.Duration     `json:"ttl,omitempty"`
	Reads       int               `json:"reads,omitempty"`
	Replicas    int               `json:"rep,omitempty"`
}

type partRecord struct {
	Size     int64     `json:"size"`
	ETag     string    `json:"etag"`
	Modified time.Time `json:"mod"`
	Blocks   []Block   `json:"blocks"`
}

// CreateUpload starts a multipart upload and returns it.
func (db *DB) CreateUpload(bucket, key string, opts store.PutOptions) (Upload, error) {
	if err := store.CheckKey(key); err != nil {
		return Upload{}, err
	}
	var idb [16]byte
	rand.Read(idb[:])
	u := Upload{ID: hex.EncodeToString(idb[:]), Bucket: bucket, Key: key, Initiated: db.now(), Opts: opts}
	u.Opts.MD5 = nil
	err := db.update(func(tx *bolt.Tx) error {
		_, ups, err := bucketsOf(tx, bucket)
		if err != nil {
			return err
		}
		rec := uploadRecord{Key: key, Initiated: u.Initiated, ContentType: opts.ContentType, Meta: opts.Meta, TTL: opts.TTL, Reads: opts.Reads, Replicas: opts.Replicas}
		if err := put(ups, []byte(u.ID), rec); err != nil {
			return err
		}
		_, err = tx.Bucket(bucketParts).CreateBucket([]byte(u.ID))
		return err
	})
	return u, err
}

// upload finds an upload of key in bucket, and its parts bucket.
func upload(tx *bolt.Tx, bucket, key, id string) (*bolt.Bucket, uploadRecord, *bolt.Bucket, error) {
	var rec uploadRecord
	_, ups, err := bucketsOf(tx, bucket)
	if err != nil {
		return nil, rec, nil, err
	}
	v := ups.Get([]byte(id))
	if v == nil {
		return nil, rec, nil, fmt.Errorf("%w: %s in %s", store.ErrNoSuchUpload, id, bucket)
	}
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, rec, nil, fmt.Errorf("meta: upload %s: %w", id, err)
	}
	if rec.Key != key {
		return nil, rec, nil, fmt.Errorf("%w: %s is an upload of %q, not %q", store.ErrNoSuchUpload, id, rec.Key, key)
	}
	parts := tx.Bucket(bucketParts).Bucket([]byte(id))
	if parts == nil {
		return nil, rec, nil, fmt.Errorf("meta: upload %s has no parts bucket", id)
	}
	return ups, rec, parts, nil
}

func partKey(n int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(n)) }

// Upload returns an upload in progress.
func (db *DB) Upload(bucket, key, id string) (Upload, error) {
	var u Upload
	err := db.view(func(tx *bolt.Tx) error {
		_, rec, _, err := upload(tx, bucket, key, id)
		u = Upload{ID: id, Bucket: bucket, Key: key, Initiated: rec.Initiated,
			Opts: store.PutOptions{ContentType: rec.ContentType, Meta: rec.Meta, TTL: rec.TTL, Replicas: rec.Replicas}}
		return err
	})
	return u, err
}

// PutPart records a part of an upload, replacing a part with the same
// number, and returns the replaced part's blocks.
func (db *DB) PutPart(bucket, key, id string, p Part) ([]Block, error) {
	if p.Number < 1 || p.Number > store.MaxParts {
		return nil, fmt.Errorf("%w: part number %d is outside 1 to %d", store.ErrInvalidPart, p.Number, store.MaxParts)
	}
	if p.Modified.IsZero() {
		p.Modified = db.now()
	}
	var old []Block
	err := db.update(func(tx *bolt.Tx) error {
		old = nil
		_, _, parts, err := upload(tx, bucket, key, id)
		if err != nil {
			return err
		}
		if v := parts.Get(partKey(p.Number)); v != nil {
			var r partRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("meta: upload %s part %d: %w", id, p.Number, err)
			}
			old = r.Blocks
		}
		return put(parts, partKey(p.Number), partRecord{Size: p.Size, ETag: p.ETag, Modified: p.Modified.UTC().Round(0), Blocks: p.Blocks})
	})
	return old, err
}

// Parts lists an upload's parts as store.Backend.ListParts does.
func (db *DB) Parts(bucket, key, id string, opts store.ListPartsOptions) (store.ListPartsResult, error) {
	max := opts.Max
	if max <= 0 || max > store.MaxListKeys {
		max = store.MaxListKeys
	}
	var res store.ListPartsResult
	err := db.view(func(tx *bolt.Tx) error {
		res = store.ListPartsResult{}
		_, _, parts, err := upload(tx, bucket, key, id)
		if err != nil {
			return err
		}
		c := parts.Cursor()
		for k, v := c.Seek(partKey(max0(opts.After) + 1)); k != nil; k, v = c.Next() {
			if len(res.Parts) == max {
				res.Truncated = true
				res.Next = res.Parts[len(res.Parts)-1].Number
				return nil
			}
			var r partRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("meta: upload %s part: %w", id, err)
			}
			res.Parts = append(res.Parts, store.PartInfo{Number: int(binary.BigEndian.Uint32(k)), Size: r.Size, ETag: r.ETag, Modified: r.Modified})
		}
		return nil
	})
	return res, err
}

func max0(n int) int { return max(n, 0) }

// CompleteUpload assembles the listed parts into the object, ends the
// upload and returns the object with the blocks to free: those of parts
// not listed and of the object it replaced. Every listed part but the
// last must be at least minPart bytes.
func (db *DB) CompleteUpload(bucket, key, id string, list []store.CompletePart, minPart int64) (Object, []Block, error) {
	if len(list) == 0 {
		return Object{}, nil, fmt.Errorf("%w: the upload lists no parts", store.ErrInvalidPart)
	}
	var obj Object
	var freed []Block
	now := db.now()
	err := db.update(func(tx *bolt.Tx) error {
		freed = nil
		ups, up, parts, err := upload(tx, bucket, key, id)
		if err != nil {
			return err
		}
		rec := objectRecord{Modified: now, ContentType: up.ContentType, Meta: up.Meta, Reads: up.Reads}
		if up.TTL > 0 {
			rec.Expires = now.Add(up.TTL)
		}
		sums := make([]byte, 0, md5.Size*len(list))
		used := make(map[int]bool, len(list))
		for i, cp := range list {
			if i > 0 && cp.Number <= list[i-1].Number {
				return fmt.Errorf("%w: part %d follows part %d", store.ErrInvalidPartOrder, cp.Number, list[i-1].Number)
			}
			v := parts.Get(partKey(cp.Number))
			if cp.Number < 1 || cp.Number > store.MaxParts || v == nil {
				return fmt.Errorf("%w: part %d was not uploaded", store.ErrInvalidPart, cp.Number)
			}
			var p partRecord
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("meta: upload %s part %d: %w", id, cp.Number, err)
			}
			if strings.Trim(cp.ETag, `"`) != p.ETag {
				return fmt.Errorf("%w: part %d has ETag %s, not %s", store.ErrInvalidPart, cp.Number, p.ETag, cp.ETag)
			}
			if i < len(list)-1 && p.Size < minPart {
				return fmt.Errorf("%w: part %d is %d bytes", store.ErrTooSmall, cp.Number, p.Size)
			}
			sum, err := hex.DecodeString(p.ETag)
			if err != nil || len(sum) != md5.Size {
				return fmt.Errorf("meta: upload %s part %d: bad ETag %q", id, cp.Number, p.ETag)
			}
			sums = append(sums, sum...)
			rec.Size += p.Size
			rec.Blocks = append(rec.Blocks, p.Blocks...)
			used[cp.Number] = true
		}
		all := md5.Sum(sums)
		rec.ETag = fmt.Sprintf("%x-%d", all, len(list))
		err = parts.ForEach(func(k, v []byte) error {
			if used[int(binary.BigEndian.Uint32(k))] {
				return nil
			}
			var p partRecord
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			freed = append(freed, p.Blocks...)
			return nil
		})
		if err != nil {
			return err
		}
		if err := dropUpload(tx, ups, id); err != nil {
			return err
		}
		old, err := putObject(tx, bucket, key, &rec)
		if err != nil {
			return err
		}
		freed = append(freed, old...)
		obj = rec.object(bucket, key)
		return nil
	})
	if err != nil {
		return Object{}, nil, err
	}
	return obj, freed, nil
}

func dropUpload(tx *bolt.Tx, ups *bolt.Bucket, id string) error {
	if err := tx.Bucket(bucketParts).DeleteBucket([]byte(id)); err != nil {
		return err
	}
	return ups.Delete([]byte(id))
}

// AbortUpload ends an upload and returns the blocks of its parts.
func (db *DB) AbortUpload(bucket, key, id string) ([]Block, error) {
	var freed []Block
	err := db.update(func(tx *bolt.Tx) error {
		freed = nil
		ups, _, parts, err := upload(tx, bucket, key, id)
		if err != nil {
			return err
		}
		err = parts.ForEach(func(k, v []byte) error {
			var p partRecord
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			freed = append(freed, p.Blocks...)
			return nil
		})
		if err != nil {
			return err
		}
		return dropUpload(tx, ups, id)
	})
	return freed, err
}

// Uploads lists every upload in progress, for a node that must find the
// ones whose blocks it lost.
func (db *DB) Uploads() ([]Upload, error) {
	var out []Upload
	err := db.view(func(tx *bolt.Tx) error {
		out = nil
		return tx.Bucket(bucketUploads).ForEachBucket(func(name []byte) error {
			return tx.Bucket(bucketUploads).Bucket(name).ForEach(func(k, v []byte) error {
				var r uploadRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return err
				}
				out = append(out, Upload{ID: string(k), Bucket: string(name), Key: r.Key, Initiated: r.Initiated})
				return nil
			})
		})
	})
	return out, err
}

func put(b *bolt.Bucket, k []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, data)
}
