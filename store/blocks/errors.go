package blocks

import "errors"

// Sentinel errors. Every error a Store returns wraps one of them, so
// callers branch with errors.Is.
var (
	// ErrNotFound means the store holds no block with the id: it was
	// never put, it was deleted, or the store was restarted (blocks do
	// not survive their store).
	ErrNotFound = errors.New("blocks: no such block")

	// ErrChecksum means a block's bytes no longer match the CRC-32C taken
	// when it was put: it was corrupted in memory or in its spill file.
	// The bytes are not returned.
	ErrChecksum = errors.New("blocks: block failed its CRC-32C check")

	// ErrFull means neither tier had room for the block: the memory
	// budget is used up and spilling is off or the disk budget is used
	// up too. Nothing was kept.
	ErrFull = errors.New("blocks: memory and spill budgets are full")

	// ErrExists means Put named an id the store already holds.
	ErrExists = errors.New("blocks: block id already held")

	// ErrInvalid means an argument or the Config breaks a documented rule.
	ErrInvalid = errors.New("blocks: invalid argument")

	// ErrClosed means the store is closed.
	ErrClosed = errors.New("blocks: store closed")
)
