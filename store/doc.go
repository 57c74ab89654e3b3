// Package store is Handoff's ephemeral object store as its front ends see
// it: the Backend interface, the object and bucket types and the sentinel
// errors. The S3-compatible API (package s3api) serves a Backend; the
// mount and the workflow `store` edges will too.
//
// The store keeps data that must outlive the function that produced it,
// be read by many, or reach programs that only speak S3 or files. It is
// ephemeral by design: objects live in node agents' memory, spill to local
// disk when memory is full, and do not survive the loss of the node agent
// that holds them, unless written with PutOptions.Replicas of 2 or more.
// Bucket and object metadata persist (package meta, in the control plane
// on a cluster), so an object whose blocks are gone reads as ErrLost,
// never as wrong bytes.
//
// # Layers
//
//	store         Backend, types, errors, name rules (this package)
//	store/blocks  a node's block tier: fixed-size blocks in memory under a
//	              budget, spilled to files, each with a CRC-32C checked on
//	              every read
//	store/meta    buckets, objects → block lists (with their holders),
//	              multipart uploads, in bbolt
//	store/metarpc meta served by the control plane to node agents over
//	              HTTP, and the node agents' client of it
//	store/spread  the block tier across node agents: local first, replicas
//	              on other nodes, remote blocks pulled over peerlink and
//	              checked on arrival
//	store/local   the Backend: a Meta and a Blocks together; on one node
//	              its own meta.DB and blocks.Store, on a cluster a
//	              metarpc.Client and a spread.Tier
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
