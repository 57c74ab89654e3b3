package crc32c

import (
	"os"

	"golang.org/x/sys/cpu"
)

// foldBlock is what one round of the folding loop takes (four 512-bit
// lanes); minFold is where folding starts to pay for its set-up and final
// reduction (measured: BenchmarkUpdate).
const (
	foldBlock = 256
	minFold   = 1024
)

// haveFold is off with $HANDOFF_CRC32C=stdlib: a way out should the fold
// misbehave on some CPU, and the baseline the stream benchmarks compare
// with in the same run.
var haveFold = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512VPCLMULQDQ && cpu.X86.HasPCLMULQDQ &&
	os.Getenv("HANDOFF_CRC32C") != "stdlib"

// fold returns the CRC register (not inverted) after p, starting from crc;
// len(p) is a positive multiple of foldBlock.
//
//go:noescape
func fold(crc uint32, p []byte) uint32
