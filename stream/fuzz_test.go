package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"testing"
	"testing/iotest"
)

// castagnoli is hash/crc32's CRC-32C, the reference the package's own
// (internal/crc32c) is checked against.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// FuzzReader checks that the Reader never panics, never reports a complete
// stream without a matching trailer at the very end, and never delivers
// more bytes than its input holds.
func FuzzReader(f *testing.F) {
	for _, s := range [][]int{{1}, {5}, {0, 3}} {
		f.Add(encode(f, []byte("seed data for the fuzzer"), 8, s))
	}
	f.Add(encode(f, nil, 8, []int{1}))
	var ab bytes.Buffer
	w := NewWriterSize(&ab, 4)
	w.Write([]byte("abcdefgh"))
	w.Abort("broke")
	f.Add(ab.Bytes())
	f.Add([]byte("HFS\x01\x00\x00\x00\x02hi"))
	f.Add([]byte("HFS\x02"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(iotest.HalfReader(bytes.NewReader(in)))
		got, err := io.ReadAll(r)
		if int64(len(got)) != r.Bytes() {
			t.Fatalf("delivered %d bytes, Bytes() = %d", len(got), r.Bytes())
		}
		if len(got) > max(0, len(in)-headerLen-4) {
			t.Fatalf("delivered %d bytes from %d input bytes", len(got), len(in))
		}
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMismatch) &&
				!errors.Is(err, ErrAborted) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		// Complete: the input must end in a trailer for exactly got.
		if len(in) < headerLen+4+trailerLen {
			t.Fatalf("complete stream of %d input bytes", len(in))
		}
		tail := in[len(in)-4-trailerLen:]
		if binary.BigEndian.Uint32(tail) != wordTrailer ||
			binary.BigEndian.Uint64(tail[4:]) != uint64(len(got)) ||
			binary.BigEndian.Uint32(tail[12:]) != crc32.Checksum(got, castagnoli) {
			t.Fatalf("complete stream without a matching trailer: % x", tail)
		}
	})
}
