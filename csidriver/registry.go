package csidriver

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/store"
)

// Record is a provisioned volume as the registry keeps it.
type Record struct {
	Name       string            `json:"name"`
	Capacity   int64             `json:"capacity"`
	Parameters map[string]string `json:"parameters,omitempty"`
	Created    time.Time         `json:"created"`
}

// Entry is a Record with its volume id, as List returns it.
type Entry struct {
	ID string
	Record
}

// Registry keeps a record of every volume the controller provisioned:
// its name, capacity and parameters, which a retried CreateVolume is
// checked against, and which tell the controller's buckets from buckets
// others made. The records must outlive the store's objects (which are
// ephemeral): the store keeps buckets across a restart but not the
// objects in memory. Calls come one at a time for a given id.
type Registry interface {
	// Get returns the volume's record; ok false if there is none.
	Get(id string) (r Record, ok bool, err error)
	// Put writes the volume's record, replacing any.
	Put(id string, r Record) error
	// Delete removes the volume's record; an absent one is no error.
	Delete(id string) error
	// List returns up to max records (max > 0) whose ids sort after
	// after, in id order, and whether more follow.
	List(after string, max int) (entries []Entry, more bool, err error)
}

// DirRegistry is a Registry of one small JSON file per volume in a
// directory, written atomically (temporary file, then rename). It suits
// one controller per store, which is what a store on one node has; a
// distributed store moves the records to its metadata service.
type DirRegistry struct {
	dir string
}

// OpenDirRegistry returns the registry kept in dir, created if absent.
func OpenDirRegistry(dir string) (*DirRegistry, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("csidriver: volume registry: %w", err)
	}
	return &DirRegistry{dir: dir}, nil
}

const recordExt = ".json"

// path returns a volume's file; ids are bucket names, so they are safe
// file names.
func (g *DirRegistry) path(id string) (string, error) {
	if err := store.CheckBucketName(id); err != nil {
		return "", fmt.Errorf("csidriver: volume registry: %w", err)
	}
	return filepath.Join(g.dir, id+recordExt), nil
}

func (g *DirRegistry) Get(id string) (Record, bool, error) {
	p, err := g.path(id)
	if err != nil {
		return Record{}, false, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("csidriver: volume registry: %w", err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, false, fmt.Errorf("csidriver: volume registry: %s is corrupt (%v); remove it and the volume's bucket, then create the volume again", p, err)
	}
	return r, true, nil
}

func (g *DirRegistry) Put(id string, r Record) error {
	p, err := g.path(id)
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(g.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("csidriver: volume registry: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("csidriver: volume registry: write %s: %w", p, err)
	}
	return nil
}

func (g *DirRegistry) Delete(id string) error {
	p, err := g.path(id)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("csidriver: volume registry: %w", err)
	}
	return nil
}

func (g *DirRegistry) List(after string, max int) ([]Entry, bool, error) {
	des, err := os.ReadDir(g.dir)
	if err != nil {
		return nil, false, fmt.Errorf("csidriver: volume registry: %w", err)
	}
	var ids []string
	for _, de := range des {
		id, ok := strings.CutSuffix(de.Name(), recordExt)
		if ok && id > after && store.CheckBucketName(id) == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var out []Entry
	for i, id := range ids {
		if len(out) == max {
			return out, i < len(ids), nil
		}
		r, ok, err := g.Get(id)
		if err != nil {
			return nil, false, err
		}
		if ok { // else deleted since ReadDir
			out = append(out, Entry{ID: id, Record: r})
		}
	}
	return out, false, nil
}
