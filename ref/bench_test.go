package ref

import (
	"testing"
)

// BenchmarkSign signs a typical reference (two readers).
func BenchmarkSign(b *testing.B) {
	k := newKeyring(b)
	r := sample()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Sign(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify verifies a typical reference, as the holder does on
// every pull.
func BenchmarkVerify(b *testing.B) {
	k := newKeyring(b)
	tok := sign(b, k, sample())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyParallel verifies from every core at once, to show the
// keyring's lock is not a bottleneck.
func BenchmarkVerifyParallel(b *testing.B) {
	k := newKeyring(b)
	tok := sign(b, k, sample())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := k.Verify(tok, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTake counts a pull on the holder's read counter.
func BenchmarkTake(b *testing.B) {
	var c ReadCounter
	buf := [16]byte{1}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Take(buf, 1<<31); err != nil {
			b.Fatal(err)
		}
	}
}
