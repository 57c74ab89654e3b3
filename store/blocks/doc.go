// Package blocks is a node's block tier of the ephemeral store: the place
// where the bytes of objects live, as blocks of up to a few MiB (1 MiB by
// default, as Apache Crail), each named by a random ID.
//
// Blocks are kept in memory under a byte budget (Config.Memory). When the
// budget is used up, new blocks are written to files in Config.SpillDir,
// the second tier, under an optional disk budget; while memory has room no
// disk is touched. When both are full a Put fails with ErrFull at once:
// the store never waits for room, since its callers (S3 PUTs) would rather
// report the quota than hang.
//
// Every block is stored with its CRC-32C, computed when it is put and
// checked on every Read, in memory and on disk alike: corrupt bytes fail
// with ErrChecksum and are never returned.
//
// Blocks are ephemeral: they do not survive their Store (Close removes the
// spill files, New removes leftovers of a crashed run).
//
// # Usage
//
//	bs, err := blocks.New(blocks.Config{Memory: 1 << 30, SpillDir: dir})
//	defer bs.Close()
//	id := blocks.NewID()
//	buf := bs.Alloc(n)           // recycled block memory; fill it
//	info, err := bs.Put(id, buf) // the store's now if !info.Spilled; else bs.Release(buf)
//	data, info, err := bs.Read(id, scratch[:0])
//	err = bs.Delete(id)
//
// # Accounting and concurrency
//
// Placement is a pure core (tiers.go) the Store drives under its one
// mutex, Store.mu, which guards the index, the tiers and the counters and
// is never held while bytes are copied, hashed or written. A block's bytes
// never change while it is held. A deleted block's memory is recycled for
// Alloc (fresh memory costs a page fault per 4 KiB page, which bound large
// writes to ~220 MB/s on the development VM), but only once no Read or
// View uses it, and only while the blocks in memory plus the free buffers
// stay within the memory budget; so a Read that raced a Delete still sees
// the bytes it looked up (memory) or finds the file gone (ErrNotFound).
package blocks
