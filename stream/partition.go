package stream

import (
	"fmt"
	"io"
)

// Partition says how a Partitioner picks the part of a record.
type Partition int

const (
	Hash       Partition = iota // PartOf(key, parts): equal keys meet in one part
	RoundRobin                  // the next part per record; keys are ignored
)

// ParsePartition parses "hash" or "roundrobin", as written in workflow specs.
func ParsePartition(s string) (Partition, error) {
	switch s {
	case "hash":
		return Hash, nil
	case "roundrobin":
		return RoundRobin, nil
	}
	return 0, fmt.Errorf("stream: unknown partitioning %q: use hash or roundrobin", s)
}

func (p Partition) String() string {
	switch p {
	case Hash:
		return "hash"
	case RoundRobin:
		return "roundrobin"
	}
	return fmt.Sprintf("Partition(%d)", int(p))
}

// Partitioner spreads records over parts; a record always goes whole, in
// one Write, to one part. It adds no record framing: records carry their
// own (lines, length prefixes). It is not safe for concurrent use.
type Partitioner struct {
	parts []io.Writer
	by    Partition
	next  int // RoundRobin's next part
}

// NewPartitioner returns a Partitioner over parts, which must not be empty.
func NewPartitioner(parts []io.Writer, by Partition) *Partitioner {
	if len(parts) == 0 {
		panic("stream: NewPartitioner with no parts")
	}
	return &Partitioner{parts: parts, by: by}
}

// WriteRecord writes rec to the part chosen by key (Hash) or to the next
// part (RoundRobin).
func (p *Partitioner) WriteRecord(key, rec []byte) error {
	i := p.next
	if p.by == Hash {
		i = PartOf(key, len(p.parts))
	} else {
		p.next = (p.next + 1) % len(p.parts)
	}
	if _, err := p.parts[i].Write(rec); err != nil {
		return fmt.Errorf("stream: writing a record to part %d of %d: %w", i, len(p.parts), err)
	}
	return nil
}

// PartOf returns the part, in [0, n), of key: FNV-1a 64 of key, mixed by
// MurmurHash3's 64-bit finalizer, modulo n. Every process and machine
// computes the same part. The finalizer matters: FNV-1a alone leaves the
// last bytes of a key out of its high bits and the high bits of each byte out
// of its low bits, so "user-42" and "user-43" would often share a part. It
// panics if n <= 0.
func PartOf(key []byte, n int) int {
	if n <= 0 {
		panic("stream: PartOf with n <= 0")
	}
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for _, c := range key {
		h ^= uint64(c)
		h *= prime64
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return int(h % uint64(n))
}
