package peerlink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"testing"
)

// castagnoli is hash/crc32's CRC-32C, the reference the package's checksums
// are checked against.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// mapBlocks holds blocks in a map, for the block operations' tests.
type mapBlocks struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (h *mapBlocks) GetBlock(id string, dst []byte) ([]byte, uint32, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.m[id]
	if !ok {
		return dst, 0, &RemoteError{Code: "lost", Message: "no block " + id}
	}
	return append(dst, b...), crc32.Checksum(b, castagnoli), nil
}

func (h *mapBlocks) PutBlock(id string, data []byte, crc uint32) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.m[id]; ok {
		return errors.New("exists")
	}
	h.m[id] = data
	return nil
}

func (h *mapBlocks) DeleteBlocks(ids []string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range ids {
		delete(h.m, id)
	}
	return nil
}

func TestBlockOps(t *testing.T) {
	ms := members(t, "n1", "n2")
	for _, clear := range []bool{true, false} {
		t.Run(fmt.Sprintf("clear=%v", clear), func(t *testing.T) {
			h := &mapBlocks{m: map[string][]byte{}}
			addr, srv := serve(t, ms[0], &fileHandler{t: t}, true)
			srv.Blocks = h
			c := &Client{TLS: ms[1].ClientConfig(""), Clear: clear}
			defer c.CloseIdle("")
			ctx := context.Background()
			data := random(t, 1<<20+3)
			sum := crc32.Checksum(data, castagnoli)
			if err := c.PutBlock(ctx, addr, "b1", data, sum); err != nil {
				t.Fatal(err)
			}
			// A block that arrives with another CRC is refused, and the
			// connection stays usable.
			var re *RemoteError
			if err := c.PutBlock(ctx, addr, "b2", data, sum+1); !errors.As(err, &re) || re.Code != "checksum" {
				t.Fatalf("put with a wrong CRC: %v", err)
			}
			if err := c.PutBlock(ctx, addr, "b1", data, sum); !errors.As(err, &re) || re.Code != "internal" {
				t.Fatalf("put over a held block: %v", err)
			}
			for range 2 {
				got, crc, err := c.GetBlock(ctx, addr, "b1", []byte("x"))
				if err != nil || crc != sum || !bytes.Equal(got[1:], data) || got[0] != 'x' {
					t.Fatalf("get: %d bytes, crc %08x, %v", len(got), crc, err)
				}
			}
			if err := c.DeleteBlocks(ctx, addr, []string{"b1", "nope"}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.GetBlock(ctx, addr, "b1", nil); !errors.As(err, &re) || re.Code != "lost" {
				t.Fatalf("get after delete: %v", err)
			}
			c.mu.Lock()
			idle := len(c.idle[addr])
			c.mu.Unlock()
			if idle != 1 {
				t.Fatalf("%d idle connections after sequential block ops; want 1 reused", idle)
			}
		})
	}
}

func TestBlockOpsRefusedWithoutHandler(t *testing.T) {
	ms := members(t, "n1", "n2")
	addr, _ := serve(t, ms[0], &fileHandler{t: t}, true)
	c := &Client{TLS: ms[1].ClientConfig(""), Clear: true}
	var re *RemoteError
	if _, _, err := c.GetBlock(context.Background(), addr, "b1", nil); !errors.As(err, &re) || re.Code != "bad_request" {
		t.Fatalf("get from a member without blocks: %v", err)
	}
}
