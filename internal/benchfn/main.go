// Command benchfn is the function behind `handoff bench transfer`'s
// function-to-function series. One binary plays every role; the harness
// deploys it as bench-producer, bench-consumer (one instance each, on
// different node agents) and bench-self (one instance that calls itself).
// A role is a short command in the body; any other body is a payload to
// consume.
//
// Producers answer with JSON (see [answer]): the hand-over time, from the
// moment the producer starts handing the payload over to the moment the
// consumer has it in hand, and the whole round trip. "In hand" is a
// wall-clock time (Unix nanoseconds) the consumer takes: both ends run on
// this machine, so their clocks are one. Payloads are made and their
// CRC-32C computed before the clock starts; every consumer checks the
// CRC-32C of what it got after it took its in-hand time, and the producer
// compares it with its own.
//
// Function to function, inline or by reference as the platform decides:
//
//	produce SIZE CONSUMER   sdk.Invoke(CONSUMER, payload); bodies over the
//	                        inline limit go by reference on their own
//
// Explicit references (see refs.go):
//
//	share SIZE SELF         same node: Share a filled Buffer readable by
//	                        SELF, invoke SELF with "keep REF"; SELF maps it
//	keep REF                Map REF, touch its first and last byte, answer
//	                        the in-hand time and the time Map took; the
//	                        mapping stays for the producer (the same
//	                        process) to check
//	pull SIZE CONSUMER      Share a filled Buffer, invoke CONSUMER with
//	                        "map REF"; CONSUMER on another node (a pull)
//	                        or on this one (two processes, no copy)
//	map REF                 Map REF (pulled to this node first when held
//	                        elsewhere), touch first and last byte (in
//	                        hand), then one byte of every page, answer
//	                        "SIZE CRC INHAND MAPNS TOUCHNS"
//	scatter N SIZE CONSUMER   N buffers, N parallel "map REF" invocations
//	broadcast N SIZE CONSUMER one buffer with N reads, N parallel "map REF"
//	gather N SIZE PRODUCER  run by the consumer: N parallel "give I
//	                        CONSUMER" to PRODUCER (which "prep N SIZE"
//	                        filled beforehand), mapping each reference as
//	                        it comes
//
// The same through an S3 server (see s3.go), whose endpoint and
// credentials come from $BENCH_S3_ENDPOINT, _ACCESS_KEY,
// _SECRET_KEY and _BUCKET:
//
//	s3 SIZE CONSUMER        PutObject, invoke CONSUMER with "s3get KEY SIZE"
//	s3get KEY SIZE          GetObject into a SIZE-byte buffer
//	scatter-s3, broadcast-s3, gather-s3 (with prep-s3, give-s3)
//
// Anything else is a payload: the answer is "SIZE CRC INHAND 0 0", INHAND
// being when the handler got the body.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
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

// maxCommand is the longest body read as a command. A payload is random
// bytes, so one that starts with a command word is not a concern.
const maxCommand = 8 << 10

// roles maps a command word to its role and its argument count.
var roles = map[string]struct {
	args int
	run  func(ctx context.Context, args []string) ([]byte, error)
}{
	"produce":      {2, produce},
	"share":        {2, shareSame},
	"keep":         {1, keep},
	"pull":         {2, pull},
	"map":          {1, mapRef},
	"scatter":      {3, scatter},
	"broadcast":    {3, broadcast},
	"gather":       {3, gather},
	"prep":         {2, prep},
	"give":         {2, give},
	"s3":           {2, s3Transfer},
	"s3get":        {2, s3Get},
	"scatter-s3":   {3, scatterS3},
	"broadcast-s3": {3, broadcastS3},
	"gather-s3":    {3, gatherS3},
	"prep-s3":      {2, prepS3},
	"give-s3":      {1, giveS3},
}

func handle(ctx context.Context, in []byte) ([]byte, error) {
	inHand := time.Now().UnixNano()
	// Look at the command only in a short input: a consumer's payload is
	// large and random, and splitting it into fields would dominate the time.
	if len(in) < maxCommand {
		word, _, _ := bytes.Cut(in, []byte(" "))
		if r, ok := roles[string(word)]; ok {
			f := bytes.Fields(in)
			if len(f) != r.args+1 {
				return nil, sdk.Errorf(400, "%s takes %d arguments, got %d", word, r.args, len(f)-1)
			}
			args := make([]string, r.args)
			for i := range args {
				args[i] = string(f[i+1])
			}
			return r.run(ctx, args)
		}
	}
	return []byte(consumed(len(in), crc32.Checksum(in, castagnoli), inHand, 0, 0)), nil
}

// answer is what a producer reports: durations in nanoseconds.
type answer struct {
	// Handover is from the start of the hand-over to the consumer's
	// in-hand time (for a pattern, the last consumer's).
	Handover int64 `json:"handover_ns"`
	// RoundTrip is from the same start until the producer has the
	// consumer's answer (after the consumer's checksum).
	RoundTrip int64 `json:"rt_ns"`
	// Share is Buffer.Share alone (seal and adopt), when there is one.
	Share int64 `json:"share_ns,omitempty"`
	// Map is sdk.Map alone, in the consumer, when it reports it.
	Map int64 `json:"map_ns,omitempty"`
	// Touch is reading one byte of every page of the mapping after it was
	// in hand (page faults), when the consumer maps.
	Touch int64 `json:"touch_ns,omitempty"`
}

func (a answer) bytes() ([]byte, error) { return json.Marshal(a) }

// consumed is a consumer's answer: "SIZE CRC INHAND MAPNS TOUCHNS",
// MAPNS being how long sdk.Map took and TOUCHNS how long reading one byte
// of every page took after the in-hand time, or 0 when there was none.
func consumed(size int, sum uint32, inHand, mapped, touched int64) string {
	return fmt.Sprintf("%d %d %d %d %d", size, sum, inHand, mapped, touched)
}

// report is a consumer's answer, parsed.
type report struct {
	inHand, mapped, touched int64
}

// checkConsumed parses a consumer's answer and checks it against what was
// sent.
func checkConsumed(got []byte, size int, sum uint32) (report, error) {
	var n int
	var c uint32
	var r report
	if _, err := fmt.Sscanf(string(got), "%d %d %d %d %d", &n, &c, &r.inHand, &r.mapped, &r.touched); err != nil {
		return report{}, fmt.Errorf("the consumer answered %q; want SIZE CRC INHAND MAPNS TOUCHNS", got)
	}
	if n != size || c != sum {
		return report{}, fmt.Errorf("the consumer got %d bytes with CRC-32C %08x; want %d bytes with %08x: the payload was corrupted", n, c, size, sum)
	}
	return r, nil
}

func atoi(s, what string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, sdk.Errorf(400, "%s %q is not a whole number", what, s)
	}
	return n, nil
}

var (
	mu      sync.Mutex // guards payload
	payload []byte
)

// payloadOf returns a random payload of size bytes, reused across calls so
// that generating it is not part of the measurement. Callers must not
// change it.
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

var seq struct {
	mu sync.Mutex // guards n
	n  uint64
}

// fill copies the cached random payload into b, stamps a sequence number
// over its first 8 bytes, so that a stale or mixed-up buffer fails the
// check, and returns b's CRC-32C. It is not timed.
func fill(b []byte) uint32 {
	copy(b, payloadOf(len(b)))
	seq.mu.Lock()
	seq.n++
	n := seq.n
	seq.mu.Unlock()
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], n)
	copy(b, s[:])
	return crc32.Checksum(b, castagnoli)
}

// produce hands a payload to consumer with plain sdk.Invoke: inline up to
// the platform's inline limit, by reference (the node agents' buffers)
// above it.
func produce(ctx context.Context, args []string) ([]byte, error) {
	size, err := atoi(args[0], "size")
	if err != nil {
		return nil, err
	}
	p := payloadOf(size)
	sum := crc32.Checksum(p, castagnoli)
	start := time.Now()
	got, err := sdk.Invoke(ctx, args[1], p)
	rt := time.Since(start)
	if err != nil {
		return nil, err
	}
	r, err := checkConsumed(got, size, sum)
	if err != nil {
		return nil, fmt.Errorf("produce: %w", err)
	}
	return answer{Handover: r.inHand - start.UnixNano(), RoundTrip: rt.Nanoseconds()}.bytes()
}
