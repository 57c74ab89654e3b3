package blocks

// tier says where a block lives.
type tier uint8

const (
	inMemory tier = iota + 1
	onDisk
)

// tiers is the byte accounting of a Store's two tiers, kept apart from any
// I/O so its rules can be tested step by step. It never blocks and is not
// safe for concurrent use; the Store calls it under Store.mu.
//
// Rules:
//   - memUsed never exceeds memLimit, and diskUsed never exceeds diskLimit
//     when diskLimit > 0.
//   - A block goes to memory whenever it fits there: no disk is touched
//     while the memory tier has room.
//   - Otherwise it goes to disk if spilling is on and the disk has room;
//     else it is refused. Nothing waits: a put that finds no room fails
//     at once, and the caller (an S3 PUT) reports the quota.
//   - Blocks stay in the tier they were placed in; memory freed later is
//     used by later blocks, spilled ones are not moved back.
type tiers struct {
	memLimit, memUsed   int64
	spill               bool
	diskLimit, diskUsed int64 // diskLimit 0: no limit
}

// place reserves n bytes in the first tier with room and says which, or
// returns 0 when neither has room.
func (t *tiers) place(n int64) tier {
	switch {
	case t.memUsed+n <= t.memLimit:
		t.memUsed += n
		return inMemory
	case t.spill && (t.diskLimit == 0 || t.diskUsed+n <= t.diskLimit):
		t.diskUsed += n
		return onDisk
	}
	return 0
}

// free gives back n bytes placed in tier w.
func (t *tiers) free(w tier, n int64) {
	p := &t.memUsed
	if w == onDisk {
		p = &t.diskUsed
	}
	if n < 0 || n > *p {
		panic("blocks: freed more than was placed")
	}
	*p -= n
}
