package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/handoff-dev/handoff/spec"
	bolt "go.etcd.io/bbolt"
)

// StoredFunction is a deployed function as the database holds it.
type StoredFunction struct {
	Function spec.Function
	// Version identifies this deploy of the function (see PutFunction).
	Version int64
	// Updated is when this version was put.
	Updated time.Time
}

// functionRecord is the JSON value in the functions bucket.
type functionRecord struct {
	Function spec.Function `json:"function"`
	Version  int64         `json:"version"`
	Updated  time.Time     `json:"updated"`
}

// PutFunction inserts f, or replaces the function of the same name, and
// returns its new version. Versions come from one counter for the whole
// database, so every put yields a larger version than any before it, and a
// function deleted and deployed again never reuses an old version number.
func (db *DB) PutFunction(f spec.Function) (int64, error) {
	if f.Name == "" {
		return 0, errors.New("state: put function: the function has no name")
	}
	var version int64
	err := db.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFunctions)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		version = int64(seq)
		v, err := json.Marshal(functionRecord{Function: f, Version: version, Updated: db.now()})
		if err != nil {
			return err
		}
		return b.Put([]byte(f.Name), v)
	})
	if err != nil {
		return 0, wrap(err, "put function %q", f.Name)
	}
	return version, nil
}

// Function returns the named function and its version, or ErrNotFound.
func (db *DB) Function(name string) (spec.Function, int64, error) {
	var rec functionRecord
	err := db.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketFunctions).Get([]byte(name))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &rec)
	})
	if err != nil {
		return spec.Function{}, 0, wrap(err, "function %q", name)
	}
	return rec.Function, rec.Version, nil
}

// Functions returns every deployed function, sorted by name.
func (db *DB) Functions() ([]StoredFunction, error) {
	var out []StoredFunction
	err := db.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFunctions).ForEach(func(k, v []byte) error {
			var rec functionRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("function %q: %w", k, err)
			}
			out = append(out, StoredFunction(rec))
			return nil
		})
	})
	if err != nil {
		return nil, wrap(err, "list functions")
	}
	// bbolt iterates in key order already; sort anyway so the contract does
	// not rest on the key being exactly the name.
	sort.Slice(out, func(i, j int) bool { return out[i].Function.Name < out[j].Function.Name })
	return out, nil
}

// DeleteFunction removes the named function, or returns ErrNotFound.
// Queued invocations of it are left alone; the dispatcher fails them when
// it finds the function gone.
func (db *DB) DeleteFunction(name string) error {
	err := db.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFunctions)
		if b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(name))
	})
	if err != nil {
		return wrap(err, "delete function %q", name)
	}
	return nil
}
