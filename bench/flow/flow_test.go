package flow

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"time"
)

func TestProduceSum(t *testing.T) {
	for _, n := range []int64{StampLen, StampLen + 1, Chunk - 1, Chunk, Chunk + 7, 3*Chunk + 100} {
		var b bytes.Buffer
		before := time.Now().UnixNano()
		if err := Produce(&b, n); err != nil {
			t.Fatal(err)
		}
		if int64(b.Len()) != n {
			t.Fatalf("Produce(%d) wrote %d bytes", n, b.Len())
		}
		var passed bytes.Buffer
		if k, err := Pass(bytes.NewReader(b.Bytes()), &passed); err != nil || k != n {
			t.Fatalf("Pass: %d bytes, %v", k, err)
		}
		tl, err := Sum(iotest.OneByteReader(&passed)) // the stamp arrives over eight reads
		if err != nil {
			t.Fatal(err)
		}
		if tl.Bytes != n || tl.CRC != Expect(n) {
			t.Errorf("n=%d: Sum saw %d bytes, crc %08x; want %08x", n, tl.Bytes, tl.CRC, Expect(n))
		}
		if tl.Start < before || tl.End < tl.Start || tl.Throughput() <= 0 && tl.End > tl.Start {
			t.Errorf("n=%d: stamp %d, end %d, produced after %d", n, tl.Start, tl.End, before)
		}
		d, err := Discard(bytes.NewReader(b.Bytes()))
		if err != nil || d.Bytes != n || d.CRC != 0 || d.Start != tl.Start {
			t.Errorf("n=%d: Discard = %+v, %v", n, d, err)
		}
	}
}

func TestShortAndBroken(t *testing.T) {
	if err := Produce(io.Discard, StampLen-1); err == nil {
		t.Error("Produce accepted a stream too short for its stamp")
	}
	if _, err := Discard(bytes.NewReader([]byte{1, 2})); !errors.Is(err, ErrShort) {
		t.Errorf("Discard of 2 bytes: %v, want ErrShort", err)
	}
	boom := errors.New("boom")
	if _, err := Sum(io.MultiReader(bytes.NewReader(make([]byte, 100)), errReader{boom})); !errors.Is(err, boom) {
		t.Errorf("Sum over a failing reader: %v, want boom", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
