// Package crc32c computes CRC-32C (Castagnoli) as hash/crc32 does, faster
// on CPUs with AVX-512 and VPCLMULQDQ. There it folds four 64-byte lanes
// at a time with carry-less multiplication, where hash/crc32's SSE 4.2
// loop is bound by the CRC32 instruction; on long inputs it runs that
// instruction too, on three streams of its own beside the lanes (the two
// use different units of the core), and joins the results at the end. A
// stream checks every byte on both ends, so the checksum is most of what
// the stream format costs over a raw pipe.
package crc32c

import (
	"hash"
	"hash/crc32"
	"math/bits"
)

var table = crc32.MakeTable(crc32.Castagnoli)

// foldBlock is what one round of the folding loop takes (four 512-bit
// lanes); minFold is where folding starts to pay for its set-up and final
// reduction. A round of hybrid takes 256 bytes through the lanes and 32
// through each of three scalar streams; it pays from minRounds rounds on
// and takes at most maxRounds at once (a 256 KiB frame in one call).
// Measured with BenchmarkUpdate.
const (
	foldBlock   = 256
	minFold     = 256
	roundBytes  = 256 + 3*32
	minRounds   = 12
	maxRounds   = 256 << 10 / roundBytes
	castagnoliP = 0x1EDC6F41 // the polynomial, x^32 left out, highest power first
)

// Update returns the result of adding the bytes in p to crc, as
// crc32.Update(crc, crc32.MakeTable(crc32.Castagnoli), p) does.
func Update(crc uint32, p []byte) uint32 {
	if !haveFold || len(p) < minFold {
		return crc32.Update(crc, table, p)
	}
	reg := ^crc
	for haveHybrid && len(p) >= minRounds*roundBytes {
		n := min(len(p)/roundBytes, maxRounds)
		reg = hybrid(reg, p[:n*roundBytes], 32*n, shifts[n])
		p = p[n*roundBytes:]
	}
	if n := len(p) &^ (foldBlock - 1); n >= foldBlock {
		reg = fold(reg, p[:n])
		p = p[n:]
	}
	if len(p) == 0 {
		return ^reg
	}
	return crc32.Update(^reg, table, p)
}

// Checksum returns the CRC-32C of p.
func Checksum(p []byte) uint32 { return Update(0, p) }

// New returns a hash.Hash32 of CRC-32C, as crc32.New of the Castagnoli
// table does.
func New() hash.Hash32 { return new(digest) }

type digest struct{ crc uint32 }

func (d *digest) Write(p []byte) (int, error) { d.crc = Update(d.crc, p); return len(p), nil }
func (d *digest) Sum32() uint32               { return d.crc }
func (d *digest) Reset()                      { d.crc = 0 }
func (d *digest) Size() int                   { return crc32.Size }
func (d *digest) BlockSize() int              { return 1 }
func (d *digest) Sum(in []byte) []byte {
	return append(in, byte(d.crc>>24), byte(d.crc>>16), byte(d.crc>>8), byte(d.crc))
}

// mulMod returns a·b mod P, polynomials over GF(2) of degree < 32,
// highest power in the top bit.
func mulMod(a, b uint32) uint32 {
	var r uint32
	for i := 31; i >= 0; i-- {
		top := r >> 31
		r <<= 1
		if top != 0 {
			r ^= castagnoliP
		}
		if a>>i&1 != 0 {
			r ^= b
		}
	}
	return r
}

// xPow returns x^n mod P.
func xPow(n int) uint32 {
	r, sq := uint32(1), uint32(2) // x^0, x^1
	for ; n > 0; n >>= 1 {
		if n&1 != 0 {
			r = mulMod(r, sq)
		}
		sq = mulMod(sq, sq)
	}
	return r
}

// foldConst is k(n) = reflect32(x^n mod P) << 1: multiplied (carry-less)
// by a bit-reflected value, it moves that value n bits along, the shift
// by one making up for the reflected product landing one bit low. The
// assembly's constants are k(D±32) for a fold over D bits, and k(8m-32)
// takes a 32-bit CRC register over m bytes once the CRC32 instruction
// reduces the 64-bit product.
func foldConst(n int) uint64 { return uint64(bits.Reverse32(xPow(n))) << 1 }

// shiftTable returns k(256n-32) for n = 0..max (0 for n = 0).
func shiftTable(max int) []uint64 {
	t := make([]uint64, max+1)
	step := xPow(256)
	x := xPow(256 - 32)
	for n := 1; n <= max; n++ {
		t[n] = uint64(bits.Reverse32(x)) << 1
		x = mulMod(x, step)
	}
	return t
}
