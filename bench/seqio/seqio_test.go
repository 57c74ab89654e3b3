package seqio

import (
	"bytes"
	"hash/crc32"
	"io"
	"path/filepath"
	"testing"
)

func TestPatternWriteAndRead(t *testing.T) {
	for _, n := range []int64{0, 1, Chunk - 1, Chunk, 3*Chunk + 17} {
		var buf bytes.Buffer
		w, err := Write(&buf, n)
		if err != nil || w.Bytes != n || int64(buf.Len()) != n {
			t.Fatalf("Write(%d): %+v, %d bytes, %v", n, w, buf.Len(), err)
		}
		if sum := Sum(n); w.CRC != sum || crc32.Checksum(buf.Bytes(), castagnoli) != sum {
			t.Fatalf("n=%d: Write's CRC %08x, Sum %08x", n, w.CRC, sum)
		}
		// A reader read in odd pieces yields the same bytes.
		got, _ := io.ReadAll(io.LimitReader(NewReader(n), n+5))
		if !bytes.Equal(got, buf.Bytes()) {
			t.Fatalf("n=%d: Reader and Write disagree", n)
		}
		r, err := Read(&buf)
		if err != nil || r.Bytes != n || r.CRC != w.CRC {
			t.Fatalf("Read: %+v, %v", r, err)
		}
	}
	if bytes.Equal(mustRead(t, 2*Chunk)[:Chunk], mustRead(t, 2*Chunk)[Chunk:]) {
		t.Fatal("two chunks of the pattern are equal")
	}
}

func mustRead(t *testing.T, n int64) []byte {
	b, err := io.ReadAll(NewReader(n))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	w, err := WriteFile(path, 2*Chunk+3)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ReadFile(path)
	if err != nil || r != (Tally{Bytes: w.Bytes, Elapsed: r.Elapsed, CRC: w.CRC}) {
		t.Fatalf("ReadFile: %+v against %+v, %v", r, w, err)
	}
}
