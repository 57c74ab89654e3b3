// Package flow holds the producer and consumer loops of the stream
// benchmarks (`handoff bench pipeline`). The same loops run inside the
// workflow stages, in the stages that stage their data through S3, and in
// the raw two-process baselines, so that every series moves its bytes the
// same way: writes of Chunk bytes from one prepared buffer, reads into one
// reused buffer.
//
// The first StampLen bytes a producer writes are its wall clock at the first
// write (Unix nanoseconds, little endian). Producer and consumer run on one
// machine, so the consumer times the stream from the producer's first write
// to its own end of input, whatever the set-up before it cost.
package flow

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"
)

// Chunk is the size of one write and one read: the stream format's
// default frame (stream.DefaultFrame), so a stage's writes go out as whole
// frames without a copy.
const Chunk = 256 << 10

// StampLen is the length of the producer's start stamp at the head of
// every stream.
const StampLen = 8

// ErrShort reports a stream too short to hold the producer's stamp.
var ErrShort = errors.New("flow: stream shorter than the producer's stamp")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// block is the bytes every producer writes, chunk after chunk: a
// deterministic pseudo-random pattern, so the consumer's checksum is not
// one of a constant.
var block = func() []byte {
	b := make([]byte, Chunk)
	x := uint64(0x9e3779b97f4a7c15)
	for i := 0; i+8 <= len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	return b
}()

// Produce writes n bytes to w (n ≥ StampLen): the stamp, then the block
// pattern, Chunk bytes at a time.
func Produce(w io.Writer, n int64) error {
	if n < StampLen {
		return fmt.Errorf("flow: produce %d bytes: at least %d are needed for the stamp", n, StampLen)
	}
	first := make([]byte, Chunk)
	copy(first, block)
	binary.LittleEndian.PutUint64(first, uint64(time.Now().UnixNano()))
	for sent := int64(0); sent < n; {
		b := block
		if sent == 0 {
			b = first
		}
		b = b[:min(int64(len(b)), n-sent)]
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("flow: producing, after %d of %d bytes: %w", sent, n, err)
		}
		sent += int64(len(b))
	}
	return nil
}

// Pass copies r to w through one Chunk buffer: a stage that touches every
// byte once and changes none. It returns the bytes copied.
func Pass(r io.Reader, w io.Writer) (int64, error) {
	buf := make([]byte, Chunk)
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, fmt.Errorf("flow: passing, after %d bytes: %w", n, werr)
			}
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("flow: passing, after %d bytes: %w", n, err)
		}
	}
}

// Tally is what a consumer saw of one stream.
type Tally struct {
	Bytes int64 `json:"bytes"`
	// Start is the producer's stamp and End the consumer's clock at the
	// end of input, both Unix nanoseconds.
	Start int64 `json:"start_ns"`
	End   int64 `json:"end_ns"`
	// CRC is the CRC-32C of the bytes after the stamp (Sum only): equal
	// for every series that moved the same bytes.
	CRC uint32 `json:"crc32c,omitempty"`
}

// Elapsed is the time from the producer's first write to the consumer's
// end of input.
func (t Tally) Elapsed() time.Duration { return time.Duration(t.End - t.Start) }

// Throughput is Bytes over Elapsed, in bytes per second.
func (t Tally) Throughput() float64 {
	if t.End <= t.Start {
		return 0
	}
	return float64(t.Bytes) / t.Elapsed().Seconds()
}

// Discard reads r to its end and keeps nothing but the count and the
// stamp.
func Discard(r io.Reader) (Tally, error) { return consume(r, false) }

// Sum reads r to its end and checksums the bytes after the stamp.
func Sum(r io.Reader) (Tally, error) { return consume(r, true) }

func consume(r io.Reader, sum bool) (Tally, error) {
	var t Tally
	buf := make([]byte, Chunk)
	var stamp [StampLen]byte
	for {
		k, err := r.Read(buf)
		if k > 0 {
			b := buf[:k]
			if t.Bytes < StampLen {
				c := copy(stamp[t.Bytes:], b)
				b = b[c:]
			}
			if sum {
				t.CRC = crc32.Update(t.CRC, castagnoli, b)
			}
			t.Bytes += int64(k)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return t, fmt.Errorf("flow: consuming, after %d bytes: %w", t.Bytes, err)
		}
	}
	t.End = time.Now().UnixNano()
	if t.Bytes < StampLen {
		return t, ErrShort
	}
	t.Start = int64(binary.LittleEndian.Uint64(stamp[:]))
	return t, nil
}

// Expect returns the CRC-32C that Sum reports for a stream of n bytes from
// Produce, so a consumer's checksum can be checked without a second copy
// of the data.
func Expect(n int64) uint32 {
	var crc uint32
	for sent := int64(0); sent < n; {
		c := min(int64(len(block)), n-sent)
		b := block[:c]
		if sent == 0 {
			b = b[min(StampLen, c):]
		}
		crc = crc32.Update(crc, castagnoli, b)
		sent += c
	}
	return crc
}
