package state

import (
	"bytes"
	"errors"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// PutWorkflow stores a workflow's spec (its YAML, as the user wrote it)
// under its name, replacing any before it.
func (db *DB) PutWorkflow(name string, spec []byte) error {
	if name == "" {
		return errors.New("state: put workflow: the workflow has no name")
	}
	err := db.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketWorkflows).Put([]byte(name), spec)
	})
	return wrap(err, "put workflow %q", name)
}

// Workflow returns a stored workflow's spec, or ErrNotFound.
func (db *DB) Workflow(name string) ([]byte, error) {
	var out []byte
	err := db.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketWorkflows).Get([]byte(name))
		if v == nil {
			return ErrNotFound
		}
		out = bytes.Clone(v)
		return nil
	})
	return out, wrap(err, "workflow %q", name)
}

// Workflows lists the stored workflows' names.
func (db *DB) Workflows() ([]string, error) {
	var names []string
	err := db.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketWorkflows).ForEach(func(k, _ []byte) error {
			names = append(names, string(k))
			return nil
		})
	})
	sort.Strings(names)
	return names, wrap(err, "list workflows")
}

// PutRun stores the status of a workflow run (JSON, as the runner makes
// it), so finished runs can still be looked up after a restart.
func (db *DB) PutRun(id string, status []byte) error {
	err := db.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRuns).Put([]byte(id), status)
	})
	return wrap(err, "put run %q", id)
}

// Run returns a stored run status, or ErrNotFound.
func (db *DB) Run(id string) ([]byte, error) {
	var out []byte
	err := db.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRuns).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		out = bytes.Clone(v)
		return nil
	})
	return out, wrap(err, "run %q", id)
}
