package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/handoff-dev/handoff/clock"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrNotFound is returned when the named function or the invocation with the
// given id does not exist (never deployed, deleted, or pruned).
var ErrNotFound = errors.New("state: not found")

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("state: database is closed")

// ErrNotRunning is returned by Complete and Fail for an invocation that is
// not running: it was never claimed, or it was already completed or failed.
var ErrNotRunning = errors.New("state: invocation is not running")

// ErrInUse is matched (errors.Is) by the error Open returns when another
// process holds the database file.
var ErrInUse = errors.New("state: database is in use by another process")

// lockTimeout is how long Open waits for the file lock before it reports the
// file in use: long enough to ride out a previous process that is just
// exiting, short enough that a second `handoff up` fails fast.
const lockTimeout = time.Second

// batchDelay is how long a write waits for others to share its
// transaction and fsync (see DB.batch). bbolt's default, 10ms, would more
// than double the latency of a lone Enqueue; 1ms still lets a burst of
// concurrent requests share one fsync.
const batchDelay = time.Millisecond

var (
	bucketFunctions   = []byte("functions")
	bucketInvocations = []byte("invocations")
	bucketInputs      = []byte("inputs")
	bucketOutputs     = []byte("outputs")
	bucketQueue       = []byte("queue")
	bucketRunning     = []byte("running")
	bucketDone        = []byte("done")
	bucketCounts      = []byte("counts")
	bucketWorkflows   = []byte("workflows")
	bucketRuns        = []byte("runs")

	allBuckets = [][]byte{
		bucketFunctions, bucketInvocations, bucketInputs, bucketOutputs,
		bucketQueue, bucketRunning, bucketDone, bucketCounts,
		bucketWorkflows, bucketRuns,
	}
)

// DB is the control plane's state database. Its methods are safe for
// concurrent use: bbolt runs one write transaction at a time, so every
// method that changes state is atomic with respect to the others.
type DB struct {
	bolt   *bolt.DB
	clock  clock.Clock
	closed atomic.Bool
}

// inUseError is the error Open returns when the file lock is held.
type inUseError struct {
	path string
	pid  int // 0 when unknown
}

func (e *inUseError) Error() string {
	pid := "pid unknown"
	if e.pid > 0 {
		pid = fmt.Sprintf("pid %d", e.pid)
	}
	return fmt.Sprintf("state: %s is in use by another handoff process (%s); stop it or use another --dir", e.path, pid)
}

func (e *inUseError) Is(target error) bool { return target == ErrInUse }

// Open opens the database at path, creating the file and its buckets when
// they do not exist, and takes an exclusive lock on it for the life of the
// DB. If another process holds the lock, Open gives up after about a second
// with an error that matches ErrInUse and names that process.
//
// Open then puts every invocation that a previous process left running back
// in the queue, without counting the interrupted attempt.
func Open(path string, c clock.Clock) (*DB, error) {
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, &inUseError{path: path, pid: lockHolder(path)}
	}
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	b.MaxBatchDelay = batchDelay
	db := &DB{bolt: b, clock: c}
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return requeueRunning(tx)
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	return db, nil
}

// Close releases the database file and its lock. Calls after the first
// return ErrClosed; so does every other method.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return ErrClosed
	}
	return db.bolt.Close()
}

// now reads the clock in UTC and without a monotonic reading, so that times
// returned straight away compare equal to the same times read back later.
func (db *DB) now() time.Time { return db.clock.Now().UTC() }

// update, batch and view run fn in a transaction and turn bbolt's "not
// open" into ErrClosed.
//
// batch is for the frequent, independent writes (Enqueue, Complete, Fail):
// bbolt runs the calls that arrive within MaxBatchDelay in one transaction
// with one fsync, which multiplies throughput under concurrency for up to
// MaxBatchDelay more latency on a lone call. bbolt may run fn more than
// once (again on its own when another call in the batch fails), so fn must
// derive everything from the transaction and only assign, never accumulate,
// results outside it.
func (db *DB) update(fn func(*bolt.Tx) error) error {
	return closedErr(db.bolt.Update(fn))
}

func (db *DB) batch(fn func(*bolt.Tx) error) error {
	return closedErr(db.bolt.Batch(fn))
}

func (db *DB) view(fn func(*bolt.Tx) error) error {
	return closedErr(db.bolt.View(fn))
}

func closedErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// wrap adds what the caller was doing to err. The package's sentinels keep
// their own text first ("state: not found: function \"x\""), and ErrClosed is
// returned as is.
func wrap(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrClosed):
		return ErrClosed
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrNotRunning):
		return fmt.Errorf("%w: %s", err, what)
	default:
		return fmt.Errorf("state: %s: %w", what, err)
	}
}

// timeKey encodes t so that byte order is time order, including before 1970.
func timeKey(t time.Time) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano())^(1<<63))
	return k
}

func keyTime(k []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])^(1<<63))).UTC()
}

// clone copies b out of bbolt's memory map, which is only valid inside the
// transaction; it returns nil for an empty slice.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}
