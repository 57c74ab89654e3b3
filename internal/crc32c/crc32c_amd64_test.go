package crc32c

import (
	"hash/crc32"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// TestFoldConstants checks the assembly's constants (copied here by
// hand) and the table of shifts against foldConst, and foldConst's
// xPow against plain shifting.
func TestFoldConstants(t *testing.T) {
	slow := func(n int) uint32 {
		r := uint32(1)
		for range n {
			top := r >> 31
			r <<= 1
			if top != 0 {
				r ^= castagnoliP
			}
		}
		return r
	}
	for _, n := range []int{0, 1, 31, 32, 33, 64, 96, 160, 1000, 8192} {
		if got, want := xPow(n), slow(n); got != want {
			t.Fatalf("xPow(%d) = %#x, want %#x", n, got, want)
		}
	}
	for _, c := range []struct {
		n    int
		want uint64
	}{
		{2048 + 32, 0x0dcb17aa4}, {2048 - 32, 0x0b9e02b86},
		{512 + 32, 0x0740eef02}, {512 - 32, 0x09e4addf8},
		{128 + 32, 0x0f20c0dfe}, {128 - 32, 0x14cd00bd6},
	} {
		if got := foldConst(c.n); got != c.want {
			t.Errorf("k(%d) = %#x, the assembly has %#x", c.n, got, c.want)
		}
	}
	table := shiftTable(maxRounds)
	for n := 1; n <= maxRounds; n++ {
		if want := uint64(bits.Reverse32(slow(256*n-32))) << 1; table[n] != want {
			t.Fatalf("shiftTable(%d)[%d] = %#x, want %#x", maxRounds, n, table[n], want)
		}
	}
}

// TestHybridEveryRoundCount calls hybrid itself for every round count it
// is given, from several registers.
func TestHybridEveryRoundCount(t *testing.T) {
	if !haveFold {
		t.Skip("no AVX-512 VPCLMULQDQ here")
	}
	shifts := shiftTable(maxRounds)
	rng := rand.New(rand.NewPCG(7, 8))
	p := make([]byte, maxRounds*roundBytes+3)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	for n := 1; n <= maxRounds; n++ {
		q := p[n%4 : n%4+n*roundBytes]
		for _, init := range []uint32{0, 0xffffffff, rng.Uint32()} {
			want := crc32.Update(init, table, q)
			if got := ^hybrid(^init, q, 32*n, shifts[n]); got != want {
				t.Fatalf("hybrid over %d rounds from %#x: %#08x, want %#08x", n, init, got, want)
			}
		}
	}
}

// TestStdlibFallback runs Update as $HANDOFF_CRC32C=stdlib (or a CPU
// without the instructions) leaves it.
func TestStdlibFallback(t *testing.T) {
	defer func(h bool) { haveFold = h }(haveFold)
	haveFold = false
	p := make([]byte, 300<<10)
	for i := range p {
		p[i] = byte(i * 13)
	}
	for _, n := range []int{0, 100, 5000, len(p)} {
		if got, want := Update(1, p[:n]), crc32.Update(1, table, p[:n]); got != want {
			t.Fatalf("without folding, %d bytes: %#08x, want %#08x", n, got, want)
		}
	}
}
