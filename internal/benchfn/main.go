// Command benchfn is the function behind `handoff bench transfer`'s
// function-to-function series. One binary plays both roles:
//
//	produce SIZE CONSUMER   make a SIZE-byte payload (cached, not timed), hand
//	                        it to function CONSUMER, check the CRC-32C that
//	                        comes back, and answer with the nanoseconds the
//	                        hand-over took
//	anything else           consume: answer with the body's length and CRC-32C
package main

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/sdk"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func main() { sdk.Serve(handle) }

func handle(ctx context.Context, in []byte) ([]byte, error) {
	// Look at the command only in a short input: a consumer's payload is
	// large and random, and splitting it into fields would dominate the time.
	if len(in) < 256 && bytes.HasPrefix(in, []byte("produce ")) {
		f := bytes.Fields(in)
		if len(f) != 3 {
			return nil, sdk.Errorf(400, "want: produce SIZE CONSUMER")
		}
		size, err := strconv.Atoi(string(f[1]))
		if err != nil || size < 0 {
			return nil, sdk.Errorf(400, "produce: size %q is not a byte count", f[1])
		}
		return produce(ctx, size, string(f[2]))
	}
	return []byte(fmt.Sprintf("%d %d", len(in), crc32.Checksum(in, castagnoli))), nil
}

var (
	mu      sync.Mutex // guards payload
	payload []byte
)

// payloadOf returns a random payload of size bytes, reused across calls so
// that generating it is not part of the measurement.
func payloadOf(size int) []byte {
	mu.Lock()
	defer mu.Unlock()
	if len(payload) != size {
		payload = nil // let the old one go before allocating the new one
		payload = make([]byte, size)
		r := rand.NewChaCha8([32]byte{'b', 'e', 'n', 'c', 'h'})
		_, _ = r.Read(payload)
	}
	return payload
}

func produce(ctx context.Context, size int, consumer string) ([]byte, error) {
	p := payloadOf(size)
	want := fmt.Sprintf("%d %d", size, crc32.Checksum(p, castagnoli))
	start := time.Now()
	got, err := sdk.Invoke(ctx, consumer, p)
	took := time.Since(start)
	if err != nil {
		return nil, err
	}
	if string(got) != want {
		return nil, fmt.Errorf("produce: the consumer got %q; want %q: the payload was corrupted", got, want)
	}
	return []byte(strconv.FormatInt(took.Nanoseconds(), 10)), nil
}
