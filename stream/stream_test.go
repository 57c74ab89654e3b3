package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

func payload(n int, seed uint64) []byte {
	p := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// encode writes data through a Writer with frame size frame, in writes of
// the sizes sizes cycles through (0 means Flush), and closes it.
func encode(t testing.TB, data []byte, frame int, sizes []int) []byte {
	t.Helper()
	var out bytes.Buffer
	w := NewWriterSize(&out, frame)
	for i, p := 0, data; len(p) > 0; i++ {
		n := sizes[i%len(sizes)]
		if n == 0 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		n = min(n, len(p))
		if m, err := w.Write(p[:n]); m != n || err != nil {
			t.Fatalf("Write(%d) = %d, %v", n, m, err)
		}
		p = p[n:]
	}
	if w.Bytes() != int64(len(data)) {
		t.Fatalf("Bytes() = %d, want %d", w.Bytes(), len(data))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// words returns the frame words of a well-formed encoding.
func words(t *testing.T, enc []byte) []uint32 {
	t.Helper()
	var ws []uint32
	for p := enc[headerLen:]; len(p) > 0; {
		w := binary.BigEndian.Uint32(p)
		ws = append(ws, w)
		switch w {
		case wordTrailer:
			p = p[4+trailerLen:]
		case wordAbort:
			p = p[4+2+int(binary.BigEndian.Uint16(p[4:])):]
		default:
			p = p[4+int(w):]
		}
	}
	return ws
}

func TestRoundTrip(t *testing.T) {
	patterns := [][]int{
		{1}, {7, 0}, {4096}, {1000, 3, 70000}, {1 << 20}, {DefaultFrame}, {DefaultFrame - 1, 2},
		{DefaultFrame + 1}, {3 * DefaultFrame}, {0, 5, 0, 0, 100000},
	}
	for _, frame := range []int{1, 100, 4096, DefaultFrame, MaxFrame} {
		for _, sizes := range patterns {
			for _, n := range []int{0, 1, 4095, DefaultFrame, 3*DefaultFrame + 17} {
				if frame == 1 && n > 5000 {
					continue
				}
				data := payload(n, uint64(n))
				enc := encode(t, data, frame, sizes)
				for _, ws := range words(t, enc) {
					if ws == 0 || (ws != wordTrailer && int(ws) > frame) {
						t.Fatalf("frame %d, sizes %v, n %d: frame word %d", frame, sizes, n, ws)
					}
				}
				for _, rd := range []func(io.Reader) io.Reader{
					func(r io.Reader) io.Reader { return r },
					iotest.OneByteReader,
					iotest.HalfReader,
					iotest.DataErrReader,
				} {
					r := NewReader(rd(bytes.NewReader(enc)))
					got, err := io.ReadAll(r)
					if err != nil || !bytes.Equal(got, data) {
						t.Fatalf("frame %d, sizes %v, n %d: read %d bytes, %v", frame, sizes, n, len(got), err)
					}
					if r.Bytes() != int64(n) {
						t.Fatalf("Bytes() = %d, want %d", r.Bytes(), n)
					}
				}
			}
		}
	}
}

func TestReadFrom(t *testing.T) {
	data := payload(3*DefaultFrame+5, 3)
	var out bytes.Buffer
	w := NewWriter(&out)
	if n, err := io.Copy(w, iotest.HalfReader(bytes.NewReader(data))); n != int64(len(data)) || err != nil {
		t.Fatalf("Copy = %d, %v", n, err)
	}
	w.Close()
	got, err := io.ReadAll(NewReader(&out))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
}

func TestEmptyStream(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	w.Flush()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := append(header[:], 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("empty stream = % x, want % x", out.Bytes(), want)
	}
	got, err := io.ReadAll(NewReader(&out))
	if err != nil || len(got) != 0 {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
}

func TestLargeWriteIsNotCopied(t *testing.T) {
	data := payload(2*DefaultFrame, 1)
	var rec recorder
	w := NewWriter(&rec)
	w.Write(data)
	for _, p := range rec.writes {
		if len(p) == DefaultFrame && &p[0] != &data[0] && &p[0] != &data[DefaultFrame] {
			t.Fatal("a whole frame of a large write was copied")
		}
	}
	if len(rec.writes) != 4 {
		t.Fatalf("%d writes, want 4 (word, frame, word, frame)", len(rec.writes))
	}
}

type recorder struct{ writes [][]byte }

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, p)
	return len(p), nil
}

func TestCloseIdempotent(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	w.Write([]byte("hello"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	n := out.Len()
	if err := w.Close(); err != nil || out.Len() != n {
		t.Fatalf("second Close = %v, wrote %d more bytes", err, out.Len()-n)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	if err := w.Abort("late"); err == nil {
		t.Fatal("Abort after Close succeeded")
	}
}

func TestWriteError(t *testing.T) {
	broken := errors.New("disk gone")
	w := NewWriterSize(errWriter{broken}, 4)
	if _, err := w.Write([]byte("12345678")); !errors.Is(err, broken) {
		t.Fatalf("Write = %v, want %v", err, broken)
	}
	if err := w.Close(); !errors.Is(err, broken) {
		t.Fatalf("Close = %v", err)
	}
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

func TestTruncation(t *testing.T) {
	data := []byte("a small stream, in three frames")
	enc := encode(t, data, 12, []int{5})
	for i := range len(enc) {
		_, err := io.ReadAll(NewReader(bytes.NewReader(enc[:i])))
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d of %d: %v, want ErrTruncated", i, len(enc), err)
		}
	}
	_, err := io.ReadAll(NewReader(bytes.NewReader(enc[:16])))
	if want := "stream: ended after 8 bytes without its trailer: the producer stopped before finishing"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	// A reader that fails keeps its cause.
	cause := errors.New("connection reset")
	_, err = io.ReadAll(NewReader(io.MultiReader(bytes.NewReader(enc[:20]), iotest.ErrReader(cause))))
	if !errors.Is(err, ErrTruncated) || !errors.Is(err, cause) {
		t.Fatalf("error %v, want ErrTruncated and the cause", err)
	}
}

func TestMismatch(t *testing.T) {
	data := payload(1000, 2)
	enc := encode(t, data, 300, []int{1000})
	for _, bit := range []int{headerLen + 4, headerLen + 4 + 299, len(enc) - 8, len(enc) - 1} {
		bad := bytes.Clone(enc)
		bad[bit] ^= 0x10
		_, err := io.ReadAll(NewReader(bytes.NewReader(bad)))
		if !errors.Is(err, ErrMismatch) {
			t.Fatalf("bit flipped at %d: %v, want ErrMismatch", bit, err)
		}
	}
	// A frame dropped on the way: the count disagrees.
	bad := append(bytes.Clone(enc[:headerLen]), enc[headerLen+4+300:]...)
	if _, err := io.ReadAll(NewReader(bytes.NewReader(bad))); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "1000 bytes") {
		t.Fatalf("frame dropped: %v", err)
	}
}

func TestAbort(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	w.Write([]byte("partial"))
	w.Flush()
	w.Write([]byte("buffered, dropped"))
	if err := w.Abort("upstream failed: disk full"); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close after Abort succeeded")
	}
	got, err := io.ReadAll(NewReader(&out))
	var ae *AbortError
	if !errors.Is(err, ErrAborted) || !errors.As(err, &ae) || ae.Reason != "upstream failed: disk full" || ae.After != 7 {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
	if string(got) != "partial" {
		t.Fatalf("delivered %q before the abort", got)
	}

	// Long reasons are cut at MaxReason, on a rune boundary.
	out.Reset()
	w = NewWriter(&out)
	w.Abort(strings.Repeat("é", MaxReason))
	_, err = io.ReadAll(NewReader(&out))
	if !errors.As(err, &ae) || len(ae.Reason) != MaxReason || !strings.HasSuffix(ae.Reason, "é") {
		t.Fatalf("long reason: %v", err)
	}
}

func TestMalformed(t *testing.T) {
	good := encode(t, []byte("data"), DefaultFrame, []int{4})
	word := func(w uint32) []byte { return binary.BigEndian.AppendUint32(bytes.Clone(header[:]), w) }
	cases := map[string][]byte{
		"magic":         append([]byte("GET "), good[4:]...),
		"version":       append([]byte{'H', 'F', 'S', 2}, good[4:]...),
		"zero frame":    word(0),
		"huge frame":    word(MaxFrame + 1),
		"unknown word":  word(0xFFFFFFF0),
		"long reason":   binary.BigEndian.AppendUint16(word(wordAbort), MaxReason+1),
		"after trailer": append(bytes.Clone(good), 0),
	}
	for name, in := range cases {
		_, err := io.ReadAll(NewReader(bytes.NewReader(in)))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func TestErrorsAreSticky(t *testing.T) {
	r := NewReader(strings.NewReader("nope"))
	_, err1 := r.Read(make([]byte, 10))
	_, err2 := r.Read(make([]byte, 10))
	if err1 == nil || err1 != err2 {
		t.Fatalf("errors %v then %v", err1, err2)
	}
}

func TestTrailerChecksum(t *testing.T) {
	data := payload(70000, 9)
	enc := encode(t, data, 4096, []int{1234})
	tr := enc[len(enc)-trailerLen:]
	if got, want := binary.BigEndian.Uint32(tr[8:]), crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)); got != want {
		t.Fatalf("trailer CRC %08x, want CRC-32C %08x", got, want)
	}
	if got := binary.BigEndian.Uint64(tr); got != uint64(len(data)) {
		t.Fatalf("trailer count %d", got)
	}
}

func ExampleWriter() {
	var pipe bytes.Buffer // a pipe or socket in real use
	w := NewWriter(&pipe)
	fmt.Fprintf(w, "hello, consumer")
	w.Close()

	b, err := io.ReadAll(NewReader(&pipe))
	fmt.Printf("%s %v\n", b, err)
	// Output: hello, consumer <nil>
}
