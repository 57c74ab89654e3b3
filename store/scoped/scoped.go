// Package scoped narrows a store.Backend to the buckets a function was
// granted (spec.Store): the view of the store that a function's mount
// serves. Reads need a grant, writes a read-write grant; ListBuckets
// shows only granted buckets. A refusal is an error that wraps an errno
// (EACCES for a bucket with no grant, EROFS for a write to a bucket
// granted for reading), so a FUSE server over the view (package storefs)
// answers with it, and that says which grant to add to which spec.
package scoped

import (
	"context"
	"fmt"
	"io"
	"syscall"

	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/store"
)

// Backend is a store.Backend seen by one function.
type Backend struct {
	b      store.Backend
	fn     string
	grants spec.Store
}

var _ store.Backend = (*Backend)(nil)

// New returns the view of b that function fn, with grants g, may use.
func New(b store.Backend, fn string, g spec.Store) *Backend {
	return &Backend{b: b, fn: fn, grants: g}
}

// DeniedError is a refused access: its Errno is what a program sees
// through the mount.
type DeniedError struct {
	Function, Bucket string
	Write            bool
	Errno            syscall.Errno // EACCES: no grant; EROFS: a read grant only
}

func (e *DeniedError) Error() string {
	if e.Errno == syscall.EROFS {
		return fmt.Sprintf("function %s may only read bucket %q (store.read); move it to store.readWrite in %s's spec and deploy it again to write it",
			e.Function, e.Bucket, e.Function)
	}
	return fmt.Sprintf("function %s has no grant for bucket %q; add it to store.read or store.readWrite in %s's spec and deploy it again",
		e.Function, e.Bucket, e.Function)
}

// Unwrap returns the errno.
func (e *DeniedError) Unwrap() error { return e.Errno }

func (v *Backend) check(bucket string, write bool) error {
	if v.grants.Allows(bucket, write) {
		return nil
	}
	e := &DeniedError{Function: v.fn, Bucket: bucket, Write: write, Errno: syscall.EACCES}
	if write && v.grants.Allows(bucket, false) {
		e.Errno = syscall.EROFS
	}
	return e
}

func (v *Backend) CreateBucket(ctx context.Context, name string) error {
	if err := v.check(name, true); err != nil {
		return err
	}
	return v.b.CreateBucket(ctx, name)
}

func (v *Backend) DeleteBucket(ctx context.Context, name string) error {
	if err := v.check(name, true); err != nil {
		return err
	}
	return v.b.DeleteBucket(ctx, name)
}

func (v *Backend) HeadBucket(ctx context.Context, name string) (store.BucketInfo, error) {
	if err := v.check(name, false); err != nil {
		return store.BucketInfo{}, err
	}
	return v.b.HeadBucket(ctx, name)
}

// ListBuckets lists the granted buckets only.
func (v *Backend) ListBuckets(ctx context.Context) ([]store.BucketInfo, error) {
	bs, err := v.b.ListBuckets(ctx)
	if err != nil {
		return nil, err
	}
	out := bs[:0:0]
	for _, b := range bs {
		if v.grants.Allows(b.Name, false) {
			out = append(out, b)
		}
	}
	return out, nil
}

func (v *Backend) Put(ctx context.Context, bucket, key string, r io.Reader, size int64, opts store.PutOptions) (store.ObjectInfo, error) {
	if err := v.check(bucket, true); err != nil {
		return store.ObjectInfo{}, err
	}
	return v.b.Put(ctx, bucket, key, r, size, opts)
}

func (v *Backend) Get(ctx context.Context, bucket, key string, rng *store.Range) (*store.Object, error) {
	if err := v.check(bucket, false); err != nil {
		return nil, err
	}
	return v.b.Get(ctx, bucket, key, rng)
}

func (v *Backend) Head(ctx context.Context, bucket, key string) (store.ObjectInfo, error) {
	if err := v.check(bucket, false); err != nil {
		return store.ObjectInfo{}, err
	}
	return v.b.Head(ctx, bucket, key)
}

func (v *Backend) Delete(ctx context.Context, bucket, key string) error {
	if err := v.check(bucket, true); err != nil {
		return err
	}
	return v.b.Delete(ctx, bucket, key)
}

func (v *Backend) List(ctx context.Context, bucket string, opts store.ListOptions) (store.ListResult, error) {
	if err := v.check(bucket, false); err != nil {
		return store.ListResult{}, err
	}
	return v.b.List(ctx, bucket, opts)
}

func (v *Backend) CreateUpload(ctx context.Context, bucket, key string, opts store.PutOptions) (string, error) {
	if err := v.check(bucket, true); err != nil {
		return "", err
	}
	return v.b.CreateUpload(ctx, bucket, key, opts)
}

func (v *Backend) UploadPart(ctx context.Context, bucket, key, uploadID string, part int, r io.Reader, size int64, opts store.PartOptions) (store.PartInfo, error) {
	if err := v.check(bucket, true); err != nil {
		return store.PartInfo{}, err
	}
	return v.b.UploadPart(ctx, bucket, key, uploadID, part, r, size, opts)
}

func (v *Backend) CompleteUpload(ctx context.Context, bucket, key, uploadID string, parts []store.CompletePart) (store.ObjectInfo, error) {
	if err := v.check(bucket, true); err != nil {
		return store.ObjectInfo{}, err
	}
	return v.b.CompleteUpload(ctx, bucket, key, uploadID, parts)
}

func (v *Backend) AbortUpload(ctx context.Context, bucket, key, uploadID string) error {
	if err := v.check(bucket, true); err != nil {
		return err
	}
	return v.b.AbortUpload(ctx, bucket, key, uploadID)
}

// ListParts reads, as S3's ListParts (a GET) does.
func (v *Backend) ListParts(ctx context.Context, bucket, key, uploadID string, opts store.ListPartsOptions) (store.ListPartsResult, error) {
	if err := v.check(bucket, false); err != nil {
		return store.ListPartsResult{}, err
	}
	return v.b.ListParts(ctx, bucket, key, uploadID, opts)
}
