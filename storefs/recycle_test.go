package storefs_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/storefs"
)

// Several files read at once, in reads that straddle chunks, while their
// read-ahead chunks are recycled from reader to reader: every read
// returns its own file's bytes.
func TestConcurrentReadsWithRecycledChunks(t *testing.T) {
	m := mount(t, local.Config{Memory: 256 << 20}, storefs.Options{})
	m.bucket(t, "rec")
	const n = 6<<20 + 12345
	files := make([][]byte, 4)
	for i := range files {
		files[i] = randomBytes(n, uint64(40+i))
		m.put(t, "rec", fmt.Sprintf("f%d", i), files[i])
	}
	var wg sync.WaitGroup
	for i := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 3 {
				f, err := os.Open(m.path("rec", fmt.Sprintf("f%d", i)))
				if err != nil {
					t.Error(err)
					return
				}
				buf := make([]byte, 300<<10+round*4096+i) // straddles the 1 MiB chunks
				var got bytes.Buffer
				_, err = io.CopyBuffer(&got, struct{ io.Reader }{f}, buf)
				f.Close()
				if err != nil || !bytes.Equal(got.Bytes(), files[i]) {
					t.Errorf("file %d, round %d: %d bytes, equal %v, %v", i, round, got.Len(), bytes.Equal(got.Bytes(), files[i]), err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
