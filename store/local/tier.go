package local

import (
	"context"
	"errors"
	"fmt"

	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/blocks"
	"github.com/handoff-dev/handoff/store/meta"
)

// Meta is the metadata service the store keeps buckets, objects and
// uploads in: *meta.DB on a single node, a client of the control plane's
// copy in a cluster (package store/metarpc). Errors wrap the store's
// sentinels; a client that cannot reach its service fails with
// store.ErrUnavailable and never reports a change it did not make.
type Meta interface {
	CreateBucket(name string) error
	DeleteBucket(name string) error
	Bucket(name string) (store.BucketInfo, error)
	Buckets() ([]store.BucketInfo, error)
	PutObject(obj meta.Object) (meta.Object, []meta.Block, error)
	Object(bucket, key string) (meta.Object, error)
	ReadObject(bucket, key string) (meta.Object, error)
	ReadDone(o meta.Object) ([]meta.Block, error)
	DeleteObject(bucket, key string) ([]meta.Block, error)
	DeleteExpired(max int) ([]meta.Block, int, error)
	List(bucket string, opts store.ListOptions) (store.ListResult, error)
	CreateUpload(bucket, key string, opts store.PutOptions) (meta.Upload, error)
	Upload(bucket, key, id string) (meta.Upload, error)
	PutPart(bucket, key, id string, p meta.Part) ([]meta.Block, error)
	Parts(bucket, key, id string, opts store.ListPartsOptions) (store.ListPartsResult, error)
	CompleteUpload(bucket, key, id string, list []store.CompletePart, minPart int64) (meta.Object, []meta.Block, error)
	AbortUpload(bucket, key, id string) ([]meta.Block, error)
	Close() error
}

var _ Meta = (*meta.DB)(nil)

// Blocks is the block tier the store keeps object bytes in: this node's
// blocks.Store alone (the default), or blocks spread over node agents
// (package store/spread). Errors wrap the store's sentinels: ErrQuota
// when no holder has room, ErrLost when every holder of a block is gone,
// ErrChecksum when every copy failed its CRC-32C, ErrUnavailable when a
// put cannot reach the members its replicas need.
type Blocks interface {
	// Put stores data as a new block with id, on replicas different
	// holders (<= 1: one), and returns its record. kept says the tier
	// holds data itself: the caller must not change it afterwards.
	Put(ctx context.Context, id blocks.ID, data []byte, replicas int) (b meta.Block, kept bool, err error)
	// Read appends the block's bytes to dst, verified against b.CRC and
	// b.Size, and returns the result.
	Read(ctx context.Context, b meta.Block, dst []byte) ([]byte, error)
	// Alloc returns a buffer of n bytes to fill and Put: recycled block
	// memory where there is some. Release gives back one Put did not keep.
	Alloc(n int) []byte
	Release(buf []byte)
	// Check says whether the block can be read as far as the tier knows
	// without reading it: nil, or an error wrapping store.ErrLost that
	// names the holders that are gone.
	Check(b meta.Block) error
	// Delete frees blocks on their holders, best effort: a block that is
	// already gone is no error.
	Delete(bl []meta.Block)
	// Stats are this node's block gauges and counters.
	Stats() blocks.Stats
	// Close drops this node's blocks.
	Close() error
}

// NodeTier is the Blocks of a single node: its own blocks.Store. Its
// blocks name no holders.
type NodeTier struct{ *blocks.Store }

var _ Blocks = NodeTier{}

// Put stores the block here; there is nowhere else for a replica.
func (t NodeTier) Put(ctx context.Context, id blocks.ID, data []byte, replicas int) (meta.Block, bool, error) {
	if replicas > 1 {
		return meta.Block{}, false, fmt.Errorf("%w: %d replicas asked of a single node's store", store.ErrUnavailable, replicas)
	}
	info, err := t.Store.Put(id, data)
	if err != nil {
		return meta.Block{}, false, BlockError(err)
	}
	return meta.Block{ID: id, Size: int64(info.Size), CRC: info.Checksum}, !info.Spilled, nil
}

// Read reads the block from this node's tier.
func (t NodeTier) Read(ctx context.Context, b meta.Block, dst []byte) ([]byte, error) {
	start := len(dst)
	data, info, err := t.Store.Read(b.ID, dst)
	if err != nil {
		return data, BlockError(err)
	}
	if err := Verify(b, info); err != nil {
		return data[:start], err
	}
	return data, nil
}

// Verify checks a block's Info from this node's tier against the size
// and CRC-32C the object recorded for it.
func Verify(b meta.Block, info blocks.Info) error {
	if info.Checksum != b.CRC || int64(info.Size) != b.Size {
		return fmt.Errorf("%w: block %s holds %d bytes with CRC-32C %08x, the object recorded %d bytes with %08x",
			store.ErrChecksum, b.ID, info.Size, info.Checksum, b.Size, b.CRC)
	}
	return nil
}

// Check says whether this node holds the block.
func (t NodeTier) Check(b meta.Block) error {
	if !t.Store.Has(b.ID) {
		return fmt.Errorf("%w: block %s is not held by this node agent (it restarted)", store.ErrLost, b.ID)
	}
	return nil
}

// Delete drops the blocks from this node's tier.
func (t NodeTier) Delete(bl []meta.Block) {
	for _, b := range bl {
		t.Store.Delete(b.ID) // ErrNotFound: already gone
	}
}

// BlockError turns an error of a blocks.Store into the store's terms.
func BlockError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, blocks.ErrChecksum):
		return fmt.Errorf("%w: %v", store.ErrChecksum, err)
	case errors.Is(err, blocks.ErrNotFound):
		return fmt.Errorf("%w: %v", store.ErrLost, err)
	case errors.Is(err, blocks.ErrFull):
		return fmt.Errorf("%w: %v", store.ErrQuota, err)
	case errors.Is(err, blocks.ErrClosed):
		return fmt.Errorf("%w: %v", store.ErrClosed, err)
	}
	return fmt.Errorf("store: %w", err)
}
