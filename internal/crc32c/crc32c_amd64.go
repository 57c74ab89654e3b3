package crc32c

import (
	"os"

	"golang.org/x/sys/cpu"
)

// haveFold is off with $HANDOFF_CRC32C=stdlib, and haveHybrid with
// $HANDOFF_CRC32C=lanes: ways out should either misbehave on some CPU,
// and the baselines the stream benchmarks compare with in the same run.
var (
	haveFold = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512VPCLMULQDQ &&
		cpu.X86.HasPCLMULQDQ && cpu.X86.HasSSE42 &&
		os.Getenv("HANDOFF_CRC32C") != "stdlib"
	haveHybrid = haveFold && os.Getenv("HANDOFF_CRC32C") != "lanes"
)

// shifts[n] is k(256n-32): what hybrid multiplies a scalar stream's CRC
// by to move it over the m = 32n bytes after it.
var shifts = func() []uint64 {
	if !haveHybrid {
		return nil
	}
	return shiftTable(maxRounds)
}()

// fold returns the CRC register (not inverted) after p, starting from crc;
// len(p) is a positive multiple of foldBlock.
//
//go:noescape
func fold(crc uint32, p []byte) uint32

// hybrid is fold with the CPU's CRC32 instruction working beside the
// vector lanes: len(p) is 11*m, m = 32n for n rounds, k is shifts[n].
//
//go:noescape
func hybrid(crc uint32, p []byte, m int, k uint64) uint32
