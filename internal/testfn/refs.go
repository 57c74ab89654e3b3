package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"

	"github.com/handoff-dev/handoff/sdk"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// refAction runs one of the reference actions (see the package comment).
func refAction(ctx context.Context, action string, args []string) ([]byte, error) {
	switch action {
	case "get", "map", "open":
		if len(args) != 1 {
			return nil, sdk.Errorf(400, "%s: want %s REF", action, action)
		}
		b, release, err := read(ctx, action, args[0])
		if err != nil {
			return nil, err
		}
		defer release()
		return []byte(describe(b)), nil
	}
	if len(args) != 3 {
		return nil, sdk.Errorf(400, "%s: want %s READERS READS SIZE", action, action)
	}
	reads, err1 := strconv.ParseUint(args[1], 10, 32)
	size, err2 := strconv.ParseInt(args[2], 10, 64)
	if err1 != nil || err2 != nil || size < 0 {
		return nil, sdk.Errorf(400, "%s: READS and SIZE must be whole numbers, got %q and %q", action, args[1], args[2])
	}
	o := sdk.RefOptions{Readers: strings.Split(args[0], ","), Reads: uint32(reads)}
	var ref, desc string
	var err error
	switch action {
	case "put":
		b := make([]byte, size)
		fill(b)
		desc = describe(b)
		ref, err = sdk.Put(ctx, b, o)
	case "putreader":
		// The bytes are made as they are sent: never all in memory.
		sum := crc32.New(castagnoli)
		r := io.TeeReader(io.LimitReader(&pattern{}, size), sum)
		ref, err = sdk.PutReader(ctx, r, size, o)
		desc = fmt.Sprintf("%d %08x", size, sum.Sum32())
	case "share":
		var buf *sdk.Buffer
		if buf, err = sdk.NewBuffer(size); err != nil {
			return nil, err
		}
		defer buf.Close()
		fill(buf.Bytes())
		desc = describe(buf.Bytes())
		ref, err = buf.Share(ctx, o)
	}
	if err != nil {
		return nil, err
	}
	return []byte(ref + " " + desc), nil
}

// read takes one read of ref the way action says; release frees what it
// holds.
func read(ctx context.Context, action, ref string) (b []byte, release func(), err error) {
	switch action {
	case "get":
		b, err = sdk.Get(ctx, ref)
		return b, func() {}, err
	case "map":
		m, err := sdk.Map(ctx, ref)
		if err != nil {
			return nil, nil, err
		}
		return m.Bytes(), func() { m.Close() }, nil
	}
	rc, err := sdk.Open(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, rc); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), func() {}, nil
}

// describe is "SIZE CRC" of b.
func describe(b []byte) string {
	return fmt.Sprintf("%d %08x", len(b), crc32.Checksum(b, castagnoli))
}

// fill writes the deterministic bytes of pattern into b.
func fill(b []byte) {
	var p pattern
	p.Read(b)
}

// pattern is an endless reader of deterministic, incompressible bytes
// (xorshift64), the same for every reader started afresh.
type pattern struct {
	x   uint64
	off int // bytes of cur already handed out
	cur [8]byte
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.x == 0 {
		p.x, p.off = 0x9e3779b97f4a7c15, 8
	}
	n := 0
	for n < len(b) && p.off < 8 { // the rest of a word begun before
		b[n] = p.cur[p.off]
		n, p.off = n+1, p.off+1
	}
	for ; n+8 <= len(b); n += 8 {
		p.next()
		binary.LittleEndian.PutUint64(b[n:], p.x)
	}
	if n < len(b) {
		p.next()
		binary.LittleEndian.PutUint64(p.cur[:], p.x)
		p.off = copy(b[n:], p.cur[:])
		n = len(b)
	}
	return n, nil
}

func (p *pattern) next() {
	p.x ^= p.x << 13
	p.x ^= p.x >> 7
	p.x ^= p.x << 17
}
