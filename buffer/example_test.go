package buffer_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/buffer"
)

func Example() {
	store, err := buffer.New(buffer.Config{Memory: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	// The sender's node agent takes the payload; the id goes into a
	// signed reference.
	body := strings.NewReader("a large payload")
	info, err := store.Put(context.Background(), body, body.Size(), buffer.Meta{
		Reads:   1,
		Expires: time.Now().Add(time.Minute),
		Issuer:  "split",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d bytes, crc32c %08x, in memory: %v\n", info.Size, info.Checksum, !info.Spilled)

	// A pull takes the one read and streams the bytes (to a connection,
	// in practice, with sendfile).
	rd, err := store.Open(info.ID)
	if err != nil {
		log.Fatal(err)
	}
	var got bytes.Buffer
	io.Copy(&got, rd)
	rd.Close()
	fmt.Println(got.String())

	// The read was the last: the buffer is gone.
	_, err = store.Open(info.ID)
	fmt.Println(err != nil)
	// Output:
	// 15 bytes, crc32c 56f3b7f0, in memory: true
	// a large payload
	// true
}
