package stream

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

// TestReadFrameSizedBuffersFromPipe reads a stream from a pipe with a
// buffer exactly one frame long, where each read takes the frame's data
// and the next frame word together (readv), and with odd buffer sizes.
func TestReadFrameSizedBuffersFromPipe(t *testing.T) {
	for _, bufSize := range []int{DefaultFrame, DefaultFrame - 1, 7, DefaultFrame + 3} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		payload := make([]byte, 5*DefaultFrame+12345)
		rng := rand.New(rand.NewPCG(1, uint64(bufSize)))
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		go func() {
			sw := NewWriter(w)
			for rest := payload; len(rest) > 0; {
				n := min(len(rest), []int{DefaultFrame, 1000, 3 * DefaultFrame}[rng.IntN(3)])
				sw.Write(rest[:n])
				rest = rest[n:]
			}
			sw.Close()
			w.Close()
		}()
		sr := NewReader(r)
		var got bytes.Buffer
		buf := make([]byte, bufSize)
		for {
			n, err := sr.Read(buf)
			got.Write(buf[:n])
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("buffer %d: after %d bytes: %v", bufSize, got.Len(), err)
			}
		}
		r.Close()
		if !bytes.Equal(got.Bytes(), payload) {
			t.Fatalf("buffer %d: read %d bytes that differ from the %d written", bufSize, got.Len(), len(payload))
		}
	}
}
