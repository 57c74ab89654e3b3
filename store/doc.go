// Package store is Handoff's ephemeral object store as its front ends see
// it: the Backend interface, the object and bucket types and the sentinel
// errors. The S3-compatible API (package s3api) serves a Backend; the
// mount and the workflow `store` edges will too.
//
// The store keeps data that must outlive the function that produced it,
// be read by many, or reach programs that only speak S3 or files. It is
// ephemeral by design: objects live in node agents' memory, spill to local
// disk when memory is full, and do not survive the loss of the node agent
// that holds them. Bucket and object metadata persist (package meta), so
// an object whose blocks are gone reads as ErrLost, never as wrong bytes.
//
// # Layers
//
//	store        Backend, types, errors, name rules (this package)
//	store/blocks a node's block tier: fixed-size blocks in memory under a
//	             budget, spilled to files, each with a CRC-32C checked on
//	             every read
//	store/meta   buckets, objects → block lists, multipart uploads, in
//	             bbolt; meant to move to the control plane
//	store/local  the Backend of a single node: meta and blocks together
//
// Distributing the store adds a block tier that spreads an object's blocks
// over node agents (behind the same interface local uses for its own
// blocks) and serves meta from the control plane; the Backend and the S3
// API above it stay as they are.
//
// # Usage
//
//	b, err := local.Open(local.Config{Dir: dir, Memory: 4 << 30, SpillDir: spill})
//	defer b.Close()
//	err = b.CreateBucket(ctx, "results")
//	info, err := b.Put(ctx, "results", "run-7/part-0", body, size, store.PutOptions{TTL: time.Hour})
//	obj, err := b.Get(ctx, "results", "run-7/part-0", &store.Range{First: 0, Last: 1023})
//	defer obj.Body.Close()
package store
