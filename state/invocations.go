package state

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Status is where an asynchronous invocation is in its life cycle.
type Status string

// The statuses of an invocation. Succeeded and failed are final.
const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
)

// Invocation is an asynchronous invocation: its input, where it is, and once
// finished its result.
type Invocation struct {
	// ID is 128 random bits, base64url without padding (22 characters): it
	// is safe in a URL and cannot be guessed, so it serves as the
	// capability to read the result.
	ID       string
	Function string
	Status   Status
	Input    []byte
	// Output, HTTPStatus: the function's response, set by Complete.
	Output     []byte
	HTTPStatus int
	// Error is the last error Fail recorded: kept while retrying, cleared
	// by Complete.
	Error string
	// Attempts counts the claims so far; MaxAttempts bounds them.
	Attempts, MaxAttempts int
	Created, Updated      time.Time
	// NotBefore is the earliest time Claim hands the invocation out.
	NotBefore time.Time
	// RequestID is the X-Handoff-Request-Id of the request that enqueued it.
	RequestID string
}

// meta is the JSON value in the invocations bucket: the invocation without
// its payloads, which live in the inputs and outputs buckets.
type meta struct {
	Function    string    `json:"fn"`
	Status      Status    `json:"status"`
	HTTPStatus  int       `json:"http,omitempty"`
	Error       string    `json:"err,omitempty"`
	Attempts    int       `json:"attempts"`
	MaxAttempts int       `json:"max"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	NotBefore   time.Time `json:"notBefore"`
	RequestID   string    `json:"req,omitempty"`
	// QueueSeq is the second half of the queue key while queued: a
	// sequence that keeps invocations due at the same instant in the order
	// they were queued.
	QueueSeq uint64 `json:"qseq,omitempty"`
}

func (m *meta) invocation(id string) Invocation {
	return Invocation{
		ID: id, Function: m.Function, Status: m.Status,
		HTTPStatus: m.HTTPStatus, Error: m.Error,
		Attempts: m.Attempts, MaxAttempts: m.MaxAttempts,
		Created: m.Created, Updated: m.Updated, NotBefore: m.NotBefore,
		RequestID: m.RequestID,
	}
}

// newID returns 128 random bits, base64url-encoded.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Enqueue durably queues an invocation of function with input, to be
// claimed at most maxAttempts times (values below 1 mean 1). It returns once
// the invocation is on disk.
//
// The input is stored as one bbolt value as it is; inputs reach the inline
// limit (6 MiB by default), which bbolt keeps on overflow pages without
// trouble. Larger payloads travel as streams and never come here.
func (db *DB) Enqueue(function string, input []byte, maxAttempts int, requestID string) (Invocation, error) {
	if function == "" {
		return Invocation{}, errors.New("state: enqueue: no function named")
	}
	if maxAttempts < 1 {
		maxAttempts = 1
	}
	id, err := newID()
	if err != nil {
		return Invocation{}, fmt.Errorf("state: enqueue %s: new id: %w", function, err)
	}
	now := db.now()
	m := meta{
		Function: function, Status: StatusQueued, MaxAttempts: maxAttempts,
		Created: now, Updated: now, NotBefore: now, RequestID: requestID,
	}
	err = db.batch(func(tx *bolt.Tx) error {
		if len(input) > 0 {
			if err := tx.Bucket(bucketInputs).Put([]byte(id), input); err != nil {
				return err
			}
		}
		if err := addCount(tx, StatusQueued, 1); err != nil {
			return err
		}
		return pushQueue(tx, id, &m)
	})
	if err != nil {
		return Invocation{}, wrap(err, "enqueue %s", function)
	}
	inv := m.invocation(id)
	inv.Input = clone(input)
	return inv, nil
}

// Claim moves up to limit queued invocations that are due (NotBefore not
// after now) to running, counting an attempt for each, and returns them
// with their inputs, the longest-due first. One transaction does it all, so
// concurrent claimers never get the same invocation.
func (db *DB) Claim(limit int) ([]Invocation, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []Invocation
	err := db.update(func(tx *bolt.Tx) error {
		now := db.now()
		due := timeKey(now)
		var keys, ids [][]byte
		c := tx.Bucket(bucketQueue).Cursor()
		for k, v := c.First(); k != nil && len(keys) < limit; k, v = c.Next() {
			if string(k[:8]) > string(due) {
				break // the index is in NotBefore order: nothing later is due
			}
			keys = append(keys, clone(k))
			ids = append(ids, clone(v))
		}
		q, inputs := tx.Bucket(bucketQueue), tx.Bucket(bucketInputs)
		running := tx.Bucket(bucketRunning)
		for i, k := range keys {
			id := ids[i]
			m, err := getMeta(tx, id)
			if err != nil {
				return err
			}
			if err := q.Delete(k); err != nil {
				return err
			}
			m.Status, m.QueueSeq = StatusRunning, 0
			m.Attempts++
			m.Updated = now
			if err := putMeta(tx, id, m); err != nil {
				return err
			}
			if err := running.Put(id, nil); err != nil {
				return err
			}
			inv := m.invocation(string(id))
			inv.Input = clone(inputs.Get(id))
			out = append(out, inv)
		}
		if err := addCount(tx, StatusQueued, -len(keys)); err != nil {
			return err
		}
		return addCount(tx, StatusRunning, len(keys))
	})
	if err != nil {
		return nil, wrap(err, "claim")
	}
	return out, nil
}

// Complete records the function's response to a running invocation and
// finishes it: succeeded for a 2xx httpStatus, failed otherwise (a response
// the caller decided not to retry; use Fail to retry). It returns
// ErrNotRunning if the invocation is not running.
func (db *DB) Complete(id string, httpStatus int, output []byte) error {
	err := db.batch(func(tx *bolt.Tx) error {
		m, err := runningMeta(tx, id)
		if err != nil {
			return err
		}
		m.HTTPStatus = httpStatus
		m.Error = "" // an error from an earlier attempt no longer applies
		final := StatusSucceeded
		if httpStatus < 200 || httpStatus > 299 {
			final = StatusFailed
		}
		if len(output) > 0 {
			if err := tx.Bucket(bucketOutputs).Put([]byte(id), output); err != nil {
				return err
			}
		}
		return finish(tx, id, m, final, db.now())
	})
	return wrap(err, "complete invocation %s", id)
}

// Fail records errMsg for a running invocation. If it has attempts left it
// goes back to the queue, due retryAfter from now; otherwise it is failed.
// Fail returns the invocation as it now stands, without its payloads.
func (db *DB) Fail(id string, errMsg string, retryAfter time.Duration) (Invocation, error) {
	var inv Invocation
	err := db.batch(func(tx *bolt.Tx) error {
		m, err := runningMeta(tx, id)
		if err != nil {
			return err
		}
		now := db.now()
		m.Error = errMsg
		if m.Attempts >= m.MaxAttempts {
			if err := finish(tx, id, m, StatusFailed, now); err != nil {
				return err
			}
			inv = m.invocation(id)
			return nil
		}
		if err := tx.Bucket(bucketRunning).Delete([]byte(id)); err != nil {
			return err
		}
		m.Status, m.Updated = StatusQueued, now
		m.NotBefore = now.Add(max(retryAfter, 0))
		if err := pushQueue(tx, id, m); err != nil {
			return err
		}
		if err := addCount(tx, StatusRunning, -1); err != nil {
			return err
		}
		inv = m.invocation(id)
		return addCount(tx, StatusQueued, 1)
	})
	if err != nil {
		return Invocation{}, wrap(err, "fail invocation %s", id)
	}
	return inv, nil
}

// Invocation returns the invocation with its input and output, or
// ErrNotFound (never enqueued, or pruned).
func (db *DB) Invocation(id string) (Invocation, error) {
	var inv Invocation
	err := db.view(func(tx *bolt.Tx) error {
		m, err := getMeta(tx, []byte(id))
		if err != nil {
			return err
		}
		inv = m.invocation(id)
		inv.Input = clone(tx.Bucket(bucketInputs).Get([]byte(id)))
		inv.Output = clone(tx.Bucket(bucketOutputs).Get([]byte(id)))
		return nil
	})
	if err != nil {
		return Invocation{}, wrap(err, "invocation %s", id)
	}
	return inv, nil
}

// Counts returns how many invocations are in each status; every status is
// present, zero or not.
func (db *DB) Counts() (map[Status]int, error) {
	out := make(map[Status]int, 4)
	err := db.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCounts)
		for _, s := range []Status{StatusQueued, StatusRunning, StatusSucceeded, StatusFailed} {
			out[s] = int(getCount(b, s))
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "counts")
	}
	return out, nil
}

// Prune deletes the invocations that finished (succeeded or failed) more
// than olderThan ago, with their payloads, and returns how many it deleted.
// Queued and running invocations are never pruned.
func (db *DB) Prune(olderThan time.Duration) (int, error) {
	n := 0
	err := db.update(func(tx *bolt.Tx) error {
		n = 0
		cutoff := timeKey(db.now().Add(-olderThan))
		var keys [][]byte
		c := tx.Bucket(bucketDone).Cursor()
		for k, _ := c.First(); k != nil && string(k[:8]) < string(cutoff); k, _ = c.Next() {
			keys = append(keys, clone(k))
		}
		done := tx.Bucket(bucketDone)
		delta := map[Status]int{}
		for _, k := range keys {
			id := k[8:]
			m, err := getMeta(tx, id)
			if err != nil {
				return err
			}
			for _, name := range [][]byte{bucketInvocations, bucketInputs, bucketOutputs} {
				if err := tx.Bucket(name).Delete(id); err != nil {
					return err
				}
			}
			if err := done.Delete(k); err != nil {
				return err
			}
			delta[m.Status]--
			n++
		}
		for s, d := range delta {
			if err := addCount(tx, s, d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, wrap(err, "prune")
	}
	return n, nil
}

// requeueRunning puts every running invocation back in the queue, keeping
// its NotBefore (so it goes ahead of later work) and not counting the
// interrupted attempt. Open calls it: whatever was running belongs to a
// process that is gone.
func requeueRunning(tx *bolt.Tx) error {
	running := tx.Bucket(bucketRunning)
	var ids [][]byte
	if err := running.ForEach(func(k, _ []byte) error {
		ids = append(ids, clone(k))
		return nil
	}); err != nil {
		return err
	}
	for _, id := range ids {
		m, err := getMeta(tx, id)
		if err != nil {
			return err
		}
		if err := running.Delete(id); err != nil {
			return err
		}
		m.Status = StatusQueued
		if m.Attempts > 0 {
			m.Attempts--
		}
		if err := pushQueue(tx, string(id), m); err != nil {
			return err
		}
	}
	if err := addCount(tx, StatusRunning, -len(ids)); err != nil {
		return err
	}
	return addCount(tx, StatusQueued, len(ids))
}

// pushQueue stores m as queued under id and adds it to the queue index,
// keyed NotBefore|seq.
func pushQueue(tx *bolt.Tx, id string, m *meta) error {
	q := tx.Bucket(bucketQueue)
	seq, err := q.NextSequence()
	if err != nil {
		return err
	}
	m.QueueSeq = seq
	if err := putMeta(tx, []byte(id), m); err != nil {
		return err
	}
	return q.Put(queueKey(m), []byte(id))
}

func queueKey(m *meta) []byte {
	return binary.BigEndian.AppendUint64(timeKey(m.NotBefore), m.QueueSeq)
}

func doneKey(id []byte, m *meta) []byte {
	return append(timeKey(m.Updated), id...)
}

// finish moves a running invocation to a final status at now.
func finish(tx *bolt.Tx, id string, m *meta, final Status, now time.Time) error {
	if err := tx.Bucket(bucketRunning).Delete([]byte(id)); err != nil {
		return err
	}
	m.Status, m.Updated = final, now
	if err := putMeta(tx, []byte(id), m); err != nil {
		return err
	}
	if err := tx.Bucket(bucketDone).Put(doneKey([]byte(id), m), nil); err != nil {
		return err
	}
	if err := addCount(tx, StatusRunning, -1); err != nil {
		return err
	}
	return addCount(tx, final, 1)
}

func getMeta(tx *bolt.Tx, id []byte) (*meta, error) {
	v := tx.Bucket(bucketInvocations).Get(id)
	if v == nil {
		return nil, ErrNotFound
	}
	m := new(meta)
	if err := json.Unmarshal(v, m); err != nil {
		return nil, fmt.Errorf("decode invocation %s: %w", id, err)
	}
	return m, nil
}

func runningMeta(tx *bolt.Tx, id string) (*meta, error) {
	m, err := getMeta(tx, []byte(id))
	if err != nil {
		return nil, err
	}
	if m.Status != StatusRunning {
		return nil, fmt.Errorf("%w (it is %s)", ErrNotRunning, m.Status)
	}
	return m, nil
}

func putMeta(tx *bolt.Tx, id []byte, m *meta) error {
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketInvocations).Put(id, v)
}

func getCount(b *bolt.Bucket, s Status) int64 {
	v := b.Get([]byte(s))
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

func addCount(tx *bolt.Tx, s Status, d int) error {
	if d == 0 {
		return nil
	}
	b := tx.Bucket(bucketCounts)
	n := getCount(b, s) + int64(d)
	return b.Put([]byte(s), binary.BigEndian.AppendUint64(nil, uint64(n)))
}
