package ref_test

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/handoff-dev/handoff/ref"
)

func Example() {
	// Every node agent holds the same keys; the newest signs.
	keys := ref.NewKeyring()
	if err := keys.Add(1, bytes.Repeat([]byte{7}, 32)); err != nil { // use crypto/rand
		panic(err)
	}
	if err := keys.Use(1); err != nil {
		panic(err)
	}
	now := time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)

	// The sender's node agent keeps the payload and signs a reference.
	payload := []byte("a large intermediate result")
	tok, err := keys.Sign(ref.Ref{
		Holder:   "n1",
		Buffer:   [16]byte{1, 2, 3},
		Size:     int64(len(payload)),
		Checksum: crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)),
		Expires:  now.Add(5 * time.Minute),
		Readers:  []string{"count"},
		Reads:    1,
		Issuer:   "split",
	})
	if err != nil {
		panic(err)
	}

	fmt.Println(tok) // this is what travels in place of the payload
	// The holder serves a pull by "count": verify, check the reader, count.
	var reads ref.ReadCounter
	pull := func(fn string, at time.Time) error {
		r, err := keys.Verify(tok, at)
		if err != nil {
			return err
		}
		if err := r.AllowedFor(fn); err != nil {
			return err
		}
		left, err := reads.Take(r.Buffer, r.Reads)
		if err != nil {
			return err
		}
		fmt.Printf("%s pulls %d bytes from %s, %d reads left\n", fn, r.Size, r.Holder, left)
		return nil
	}
	_ = pull("count", now.Add(time.Minute))
	fmt.Println(errors.Is(pull("count", now.Add(time.Minute)), ref.ErrExhausted))
	fmt.Println(errors.Is(pull("merge", now.Add(time.Minute)), ref.ErrWrongReader))
	fmt.Println(pull("count", now.Add(11*time.Minute)))
	// Output:
	// hr2.AAAAAQJuMQECAwAAAAAAAAAAAAAAAAAAAAAAAAAAG1VG94IAAAAAAGsEnGwAAAABBXNwbGl0AQVjb3VudM1HsEbH3Nrz8htOcxzN-QSgKcBIioub-20RaIqm_WfF
	// count pulls 27 bytes from n1, 0 reads left
	// true
	// true
	// ref: expired at 2026-11-23T20:05:00Z (6m0s ago); ask the sender for a new reference or raise its ttl
}

func ExampleParse() {
	tok := "hr2.AAAAAQJuMQECAwAAAAAAAAAAAAAAAAAAAAAAAAAAG1VG94IAAAAAAGsEnGwAAAABBXNwbGl0AQVjb3VudM1HsEbH3Nrz8htOcxzN-QSgKcBIioub-20RaIqm_WfF"
	r, err := ref.Parse(tok) // no key needed: for logs, not for access decisions
	if err != nil {
		panic(err)
	}
	fmt.Println(r)
	// Output:
	// ref{key 1, holder n1, buffer 01020300000000000000000000000000, 27 bytes, crc32c 5546f782, expires 2026-11-23T20:05:00Z, readers [count], reads 1, issuer split}
}
