// Package local is the store.Backend over a metadata service (Meta) and a
// block tier (Blocks). On a single node these are its own bbolt database
// (package meta) and its own block tier (package blocks; memory first,
// spill files second); on a cluster, the control plane's metadata (package
// store/metarpc) and blocks spread over node agents (package store/spread).
//
// A Put cuts the body into blocks of Config.BlockSize (1 MiB by default)
// as it arrives, into recycled block memory (Blocks.Alloc), while a
// goroutine hashes the blocks with MD5 for the ETag, and records the
// object only once every block is stored: a failed or short body leaves
// nothing behind, and a replaced object's blocks are freed after the new
// one is recorded. A Get streams the blocks of the selected range, each
// checked against its CRC-32C before any of its bytes leave, with up to
// four of the next ones fetched ahead in parallel; a reader pins its
// blocks, so a concurrent delete or replace frees them only when the
// reader closes.
//
// Metadata outlives the node agent, blocks do not: with its own metadata,
// Open drops the objects whose blocks are gone and the unfinished uploads,
// and keeps the buckets; with a cluster's, it drops nothing (other agents
// may hold the blocks) and a lost object reads as store.ErrLost. Objects with a TTL are invisible from their expiry on and their
// blocks are freed by the next Sweep (every second on the real clock).
//
// # Usage
//
//	s, err := local.Open(local.Config{
//		Dir:      filepath.Join(dataDir, "store"),
//		Memory:   4 << 30,
//		SpillDir: filepath.Join(dataDir, "spill"),
//	})
//	defer s.Close()
//	http.Handle("/", s3api.New(s3api.Config{Backend: s, ...}))
package local
