//go:build !amd64

package crc32c

const haveFold, haveHybrid = false, false

var shifts []uint64

func fold(crc uint32, p []byte) uint32 { panic("crc32c: no folding on this architecture") }

func hybrid(crc uint32, p []byte, m int, k uint64) uint32 {
	panic("crc32c: no folding on this architecture")
}
