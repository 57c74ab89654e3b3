package main

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/sdk"
)

// pageSize is the stride of touchPages.
var pageSize = os.Getpagesize()

// touchEnds reads the first and last byte of b: proof that the mapping is
// there and whole, without faulting in the pages between.
func touchEnds(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0] ^ b[len(b)-1]
}

// touchPages reads one byte of every page of b, which faults the whole
// mapping in.
func touchPages(b []byte) byte {
	var x byte
	for i := 0; i < len(b); i += pageSize {
		x ^= b[i]
	}
	return x
}

// sink keeps the compiler from dropping the reads of touchEnds and
// touchPages.
var sink struct {
	mu sync.Mutex // guards x
	x  byte
}

func keepByte(x byte) {
	sink.mu.Lock()
	sink.x ^= x
	sink.mu.Unlock()
}

// kept holds the mappings that "keep" took, by reference, until the
// producer in this same process checks and closes them.
var kept struct {
	mu sync.Mutex // guards m
	m  map[string]*sdk.Mapping
}

// newBuffer makes a shared-memory buffer of size bytes and fills it.
func newBuffer(size int) (*sdk.Buffer, uint32, error) {
	buf, err := sdk.NewBuffer(int64(size))
	if err != nil {
		return nil, 0, err
	}
	return buf, fill(buf.Bytes()), nil
}

// shareSame is the same-node hand-over: this function invokes itself.
// With one instance (scale min = max = 1) the "keep" call is served by
// this very process, so sender and receiver are on one node by
// construction, and the mapping "keep" leaves behind is checked here.
func shareSame(ctx context.Context, args []string) ([]byte, error) {
	size, err := atoi(args[0], "size")
	if err != nil {
		return nil, err
	}
	self := args[1]
	buf, sum, err := newBuffer(size)
	if err != nil {
		return nil, err
	}
	defer buf.Close()

	start := time.Now()
	ref, err := buf.Share(ctx, sdk.RefOptions{Readers: []string{self}})
	shared := time.Since(start)
	if err != nil {
		return nil, err
	}
	out, err := sdk.Invoke(ctx, self, []byte("keep "+ref))
	rt := time.Since(start)
	if err != nil {
		return nil, err
	}
	var inHand, mapped int64
	if _, err := fmt.Sscanf(string(out), "%d %d", &inHand, &mapped); err != nil {
		return nil, fmt.Errorf("share: keep answered %q; want INHAND MAPNS", out)
	}

	kept.mu.Lock()
	m := kept.m[ref]
	delete(kept.m, ref)
	kept.mu.Unlock()
	if m == nil {
		return nil, errors.New("share: the keep call ran in another instance; deploy this function with scale min = max = 1 so that it calls itself")
	}
	defer m.Close()
	t := time.Now()
	keepByte(touchPages(m.Bytes()))
	touch := time.Since(t)
	if b := m.Bytes(); len(b) != size || crc32.Checksum(b, castagnoli) != sum {
		return nil, fmt.Errorf("share: the mapping holds %d bytes with CRC-32C %08x; want %d bytes with %08x", len(b), crc32.Checksum(b, castagnoli), size, sum)
	}
	return answer{Handover: inHand - start.UnixNano(), RoundTrip: rt.Nanoseconds(), Share: shared.Nanoseconds(), Map: mapped, Touch: touch.Nanoseconds()}.bytes()
}

// keep maps ref and keeps the mapping for the producer in this process.
// It answers "INHAND MAPNS": the in-hand time and how long sdk.Map took.
func keep(ctx context.Context, args []string) ([]byte, error) {
	start := time.Now()
	m, err := sdk.Map(ctx, args[0])
	if err != nil {
		return nil, err
	}
	keepByte(touchEnds(m.Bytes()))
	inHand := time.Now()
	kept.mu.Lock()
	if kept.m == nil {
		kept.m = map[string]*sdk.Mapping{}
	}
	kept.m[args[0]] = m
	kept.mu.Unlock()
	return fmt.Appendf(nil, "%d %d", inHand.UnixNano(), inHand.Sub(start).Nanoseconds()), nil
}

// mapRef maps ref (its node pulls it first when another node holds it),
// takes the in-hand time once the first and last byte are readable, times
// reading one byte of every page, then checks the whole payload.
func mapRef(ctx context.Context, args []string) ([]byte, error) {
	start := time.Now()
	m, err := sdk.Map(ctx, args[0])
	if err != nil {
		return nil, err
	}
	defer m.Close()
	b := m.Bytes()
	keepByte(touchEnds(b))
	inHand := time.Now()
	keepByte(touchPages(b))
	touched := time.Since(inHand)
	return []byte(consumed(len(b), crc32.Checksum(b, castagnoli), inHand.UnixNano(), inHand.Sub(start).Nanoseconds(), touched.Nanoseconds())), nil
}

// pull hands a shared buffer to a consumer, which maps it: pulled to its
// node first when that is another, the very pages when it is this one.
func pull(ctx context.Context, args []string) ([]byte, error) {
	size, err := atoi(args[0], "size")
	if err != nil {
		return nil, err
	}
	buf, sum, err := newBuffer(size)
	if err != nil {
		return nil, err
	}
	defer buf.Close()
	start := time.Now()
	ref, err := buf.Share(ctx, sdk.RefOptions{Readers: []string{args[1]}})
	shared := time.Since(start)
	if err != nil {
		return nil, err
	}
	got, err := sdk.Invoke(ctx, args[1], []byte("map "+ref))
	rt := time.Since(start)
	if err != nil {
		return nil, err
	}
	r, err := checkConsumed(got, size, sum)
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	return answer{Handover: r.inHand - start.UnixNano(), RoundTrip: rt.Nanoseconds(), Share: shared.Nanoseconds(), Map: r.mapped, Touch: r.touched}.bytes()
}

// patternArgs parses "N SIZE FUNCTION".
func patternArgs(args []string) (n, size int, fn string, err error) {
	if n, err = atoi(args[0], "count"); err != nil {
		return
	}
	if n == 0 || n > 64 {
		return 0, 0, "", sdk.Errorf(400, "count %d: give 1 to 64", n)
	}
	size, err = atoi(args[1], "size")
	return n, size, args[2], err
}

// fanOut runs n calls at once and returns, from the start, when the last
// consumer had its item in hand and when the last answer came back.
func fanOut(n int, start time.Time, call func(i int) (int64, error)) (answer, error) {
	inHands := make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { inHands[i], errs[i] = call(i) })
	}
	wg.Wait()
	rt := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return answer{}, err
	}
	last := int64(0)
	for _, t := range inHands {
		last = max(last, t)
	}
	return answer{Handover: last - start.UnixNano(), RoundTrip: rt.Nanoseconds()}, nil
}

// scatter hands n different buffers to n parallel invocations of the
// consumer, each sharing its buffer and invoking the consumer at once.
func scatter(ctx context.Context, args []string) ([]byte, error) {
	n, size, consumer, err := patternArgs(args)
	if err != nil {
		return nil, err
	}
	bufs := make([]*sdk.Buffer, n)
	sums := make([]uint32, n)
	for i := range bufs {
		if bufs[i], sums[i], err = newBuffer(size); err != nil {
			return nil, err
		}
		defer bufs[i].Close()
	}
	start := time.Now()
	a, err := fanOut(n, start, func(i int) (int64, error) {
		ref, err := bufs[i].Share(ctx, sdk.RefOptions{Readers: []string{consumer}})
		if err != nil {
			return 0, err
		}
		got, err := sdk.Invoke(ctx, consumer, []byte("map "+ref))
		if err != nil {
			return 0, err
		}
		r, err := checkConsumed(got, size, sums[i])
		return r.inHand, err
	})
	if err != nil {
		return nil, fmt.Errorf("scatter: %w", err)
	}
	return a.bytes()
}

// broadcast shares one buffer with n reads and has n parallel invocations
// of the consumer map it.
func broadcast(ctx context.Context, args []string) ([]byte, error) {
	n, size, consumer, err := patternArgs(args)
	if err != nil {
		return nil, err
	}
	buf, sum, err := newBuffer(size)
	if err != nil {
		return nil, err
	}
	defer buf.Close()
	start := time.Now()
	ref, err := buf.Share(ctx, sdk.RefOptions{Readers: []string{consumer}, Reads: uint32(n)})
	if err != nil {
		return nil, err
	}
	a, err := fanOut(n, start, func(int) (int64, error) {
		got, err := sdk.Invoke(ctx, consumer, []byte("map "+ref))
		if err != nil {
			return 0, err
		}
		r, err := checkConsumed(got, size, sum)
		return r.inHand, err
	})
	if err != nil {
		return nil, fmt.Errorf("broadcast: %w", err)
	}
	return a.bytes()
}

// prepared holds a producer's buffers (or, for S3, payloads) between
// "prep" and the "give" calls of one gather.
var prepared struct {
	mu   sync.Mutex // guards all following fields
	bufs []*sdk.Buffer
	data [][]byte
}

// prep fills n buffers of size bytes for the gather to come and answers
// with their CRC-32Cs. Buffers left from an earlier gather are released.
func prep(_ context.Context, args []string) ([]byte, error) {
	n, err := atoi(args[0], "count")
	if err != nil {
		return nil, err
	}
	size, err := atoi(args[1], "size")
	if err != nil {
		return nil, err
	}
	prepared.mu.Lock()
	defer prepared.mu.Unlock()
	for _, b := range prepared.bufs {
		if b != nil { // given away already
			b.Close()
		}
	}
	prepared.bufs, prepared.data = make([]*sdk.Buffer, n), nil
	sums := make([]string, n)
	for i := range n {
		buf, sum, err := newBuffer(size)
		if err != nil {
			return nil, err
		}
		prepared.bufs[i] = buf
		sums[i] = strconv.FormatUint(uint64(sum), 10)
	}
	return []byte(strings.Join(sums, " ")), nil
}

// give shares prepared buffer I with the consumer and answers the
// reference.
func give(ctx context.Context, args []string) ([]byte, error) {
	i, err := atoi(args[0], "index")
	if err != nil {
		return nil, err
	}
	prepared.mu.Lock()
	var buf *sdk.Buffer
	if i < len(prepared.bufs) {
		buf = prepared.bufs[i]
		prepared.bufs[i] = nil
	}
	prepared.mu.Unlock()
	if buf == nil {
		return nil, sdk.Errorf(409, "give %d: no such prepared buffer; call prep first", i)
	}
	defer buf.Close()
	ref, err := buf.Share(ctx, sdk.RefOptions{Readers: []string{args[1]}})
	if err != nil {
		return nil, err
	}
	return []byte(ref), nil
}

// prepSums asks producer to prepare n items of size bytes with cmd ("prep"
// or "prep-s3") and returns their CRC-32Cs.
func prepSums(ctx context.Context, producer, cmd string, n, size int) ([]uint32, error) {
	out, err := sdk.Invoke(ctx, producer, fmt.Appendf(nil, "%s %d %d", cmd, n, size))
	if err != nil {
		return nil, err
	}
	f := strings.Fields(string(out))
	if len(f) != n {
		return nil, fmt.Errorf("%s answered %q; want %d checksums", cmd, out, n)
	}
	sums := make([]uint32, n)
	for i, s := range f {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%s answered %q; want %d checksums", cmd, out, n)
		}
		sums[i] = uint32(v)
	}
	return sums, nil
}

// gather runs in the consumer: the producer prepares n buffers (not
// timed), then n parallel calls each get one reference from the producer
// and map it here.
func gather(ctx context.Context, args []string) ([]byte, error) {
	n, size, producer, err := patternArgs(args)
	if err != nil {
		return nil, err
	}
	self := os.Getenv("HANDOFF_FUNCTION") // set by the node agent
	if self == "" {
		return nil, sdk.Errorf(500, "gather: $HANDOFF_FUNCTION is not set; run this under a node agent")
	}
	sums, err := prepSums(ctx, producer, "prep", n, size)
	if err != nil {
		return nil, fmt.Errorf("gather: %w", err)
	}
	maps := make([]*sdk.Mapping, n)
	defer func() {
		for _, m := range maps {
			if m != nil {
				m.Close()
			}
		}
	}()
	start := time.Now()
	a, err := fanOut(n, start, func(i int) (int64, error) {
		ref, err := sdk.Invoke(ctx, producer, fmt.Appendf(nil, "give %d %s", i, self))
		if err != nil {
			return 0, err
		}
		m, err := sdk.Map(ctx, string(ref))
		if err != nil {
			return 0, err
		}
		maps[i] = m
		keepByte(touchEnds(m.Bytes()))
		return time.Now().UnixNano(), nil
	})
	if err != nil {
		return nil, fmt.Errorf("gather: %w", err)
	}
	for i, m := range maps {
		if b := m.Bytes(); len(b) != size || crc32.Checksum(b, castagnoli) != sums[i] {
			return nil, fmt.Errorf("gather: item %d holds %d bytes with CRC-32C %08x; want %d bytes with %08x", i, len(b), crc32.Checksum(b, castagnoli), size, sums[i])
		}
	}
	return a.bytes()
}
