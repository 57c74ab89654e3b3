// Package meta keeps the ephemeral store's metadata in an embedded bbolt
// database: buckets, objects with their block lists, multipart uploads
// with their parts, and an index of expiries. It holds no object bytes;
// those live in block tiers (package blocks), named by the block ids
// recorded here.
//
// A DB serves one node today. It is written so that it can move to the
// control plane unchanged when the store is spread over nodes: every call
// is one transaction that takes and returns plain values, and a call that
// drops blocks (a delete, a replace, a completed upload's unused parts, an
// expiry) returns their ids for the caller to free wherever they live.
//
// # Layout
//
//	buckets  name                          → JSON {created}
//	objects  name → key                    → JSON {size, etag, mod, ct, meta, exp, blocks}
//	uploads  name → upload id              → JSON {key, init, ct, meta, ttl}
//	parts    upload id → number (4 bytes)  → JSON {size, etag, mod, blocks}
//	expiry   unix nanos (8 bytes) | name | 0 | key → ""
//
// Keys of the nested object buckets are the S3 keys' bytes, so bbolt's
// byte order is S3's listing order, and a delimiter roll-up skips the
// rest of a common prefix with one Seek.
//
// # Usage
//
//	db, err := meta.Open(filepath.Join(dir, "store.db"), meta.Options{})
//	defer db.Close()
//	err = db.CreateBucket("results")
//	obj, replaced, err := db.PutObject(meta.Object{ObjectInfo: info, Blocks: refs})
//	// free replaced's blocks
package meta
