package peerlink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/handoff-dev/handoff/internal/crc32c"
)

// The store's block operations, between the node agents that hold an
// object's blocks (package store/spread). A block is named by its id (32
// hex digits) in Request.Ref; its length and CRC-32C travel in Size and
// Checksum. Payloads follow the same discipline as pull and adopt: in the
// clear on the TCP socket when both ends allow it, else through TLS.
//
//	block-get: C→S Request{op:"block-get", ref}  S→C Answer (error, or size, checksum and mode)
//	           clear: C→S 'G' (TLS), then S→C size bytes on the socket
//	           tls:   S→C size bytes through TLS
//	block-put: C→S Request{op:"block-put", ref, size, checksum}  S→C Answer (ready, or error)
//	           C→S size bytes (clear on the socket, or through TLS)
//	           S→C Answer (kept, or error: code "checksum" when the bytes
//	           arrived with another CRC-32C)
//	block-del: C→S Request{op:"block-del", ref: ids separated by ","}  S→C Answer
//
// The receiving end of every payload checks it against its CRC-32C: the
// holder on a put, the store on a get (against the CRC its metadata
// recorded, which is what matters).

// MaxBlock is the largest block the block operations carry.
const MaxBlock = 64 << 20

// maxDelete is how many block ids one block-del names, so that its frame
// stays under MaxFrame.
const maxDelete = 1000

// BlockHandler serves the store's blocks on the holder's side. Errors it
// returns that are (or wrap) a *RemoteError travel with their code;
// others as "internal".
type BlockHandler interface {
	// GetBlock appends block id's bytes, checked against its CRC-32C, to
	// dst and returns them with the CRC.
	GetBlock(id string, dst []byte) ([]byte, uint32, error)
	// PutBlock stores data (already checked against crc) as block id. The
	// handler may keep data.
	PutBlock(id string, data []byte, crc uint32) error
	// DeleteBlocks drops the blocks; ids it does not hold are no error.
	DeleteBlocks(ids []string) error
}

// BlockAllocator is implemented by a BlockHandler that supplies the
// buffers block-put receives into (recycled block memory: fresh memory
// costs a page fault per 4 KiB). PutBlock then owns the buffer: it keeps
// it or gives it back itself; ReleaseBlock gives back one that never
// reached PutBlock.
type BlockAllocator interface {
	AllocBlock(n int) []byte
	ReleaseBlock(buf []byte)
}

// block answers one block operation; false means the connection is
// unusable.
func (s *Server) block(tc *tls.Conn, raw net.Conn, req Request) bool {
	if s.Blocks == nil {
		return writeFrame(tc, Answer{Code: "bad_request", Error: "peerlink: this member holds no store blocks"}) == nil
	}
	switch req.Op {
	case "block-get":
		return s.blockGet(tc, raw, req)
	case "block-put":
		return s.blockPut(tc, raw, req)
	default:
		var ids []string
		if req.Ref != "" {
			ids = strings.Split(req.Ref, ",")
		}
		if err := s.Blocks.DeleteBlocks(ids); err != nil {
			return writeFrame(tc, blockErr(err)) == nil
		}
		return writeFrame(tc, Answer{}) == nil
	}
}

func blockErr(err error) Answer {
	var re *RemoteError
	if errors.As(err, &re) {
		return Answer{Code: re.Code, Error: re.Message}
	}
	return Answer{Code: "internal", Error: err.Error()}
}

var blockBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

func (s *Server) blockGet(tc *tls.Conn, raw net.Conn, req Request) bool {
	bp := blockBufs.Get().(*[]byte)
	defer blockBufs.Put(bp)
	data, sum, err := s.Blocks.GetBlock(req.Ref, (*bp)[:0])
	if cap(data) <= 4<<20 {
		*bp = data[:0]
	}
	if err != nil {
		return writeFrame(tc, blockErr(err)) == nil
	}
	clear := req.Clear && s.Clear
	if err := writeFrame(tc, Answer{Size: int64(len(data)), Checksum: sum, Clear: clear}); err != nil {
		return false
	}
	if !clear {
		_, err := tc.Write(data)
		return err == nil
	}
	var g [1]byte
	if _, err := io.ReadFull(tc, g[:]); err != nil || g[0] != 'G' {
		return false
	}
	_, err = raw.Write(data)
	return err == nil
}

func (s *Server) blockPut(tc *tls.Conn, raw net.Conn, req Request) bool {
	if req.Size < 0 || req.Size > MaxBlock {
		return writeFrame(tc, Answer{Code: "bad_request", Error: fmt.Sprintf("peerlink: block of %d bytes; blocks are 0 to %d bytes", req.Size, MaxBlock)}) == nil
	}
	clear := req.Clear && s.Clear
	if err := writeFrame(tc, Answer{Clear: clear}); err != nil {
		return false
	}
	var src io.Reader = tc
	if clear {
		src = raw
	}
	alloc, _ := s.Blocks.(BlockAllocator)
	var data []byte // the handler may keep it
	if alloc != nil {
		data = alloc.AllocBlock(int(req.Size))
	} else {
		data = make([]byte, req.Size)
	}
	if _, err := io.ReadFull(src, data); err != nil {
		if alloc != nil {
			alloc.ReleaseBlock(data)
		}
		return false
	}
	if got := crc32c.Checksum(data); got != req.Checksum {
		if alloc != nil {
			alloc.ReleaseBlock(data)
		}
		return writeFrame(tc, Answer{Code: "checksum", Error: fmt.Sprintf(
			"peerlink: block %s arrived with CRC-32C %08x, sent as %08x", req.Ref, got, req.Checksum)}) == nil
	}
	if err := s.Blocks.PutBlock(req.Ref, data, req.Checksum); err != nil {
		return writeFrame(tc, blockErr(err)) == nil
	}
	return writeFrame(tc, Answer{}) == nil
}

// GetBlock fetches block id from the member at addr, appending its bytes
// to dst, and returns them with the CRC-32C the holder has for it. The
// caller checks the bytes against the CRC it expects. An error answer is a
// *RemoteError.
func (c *Client) GetBlock(ctx context.Context, addr, id string, dst []byte) ([]byte, uint32, error) {
	cn, ans, stop, err := c.exchange(ctx, addr, Request{Op: "block-get", Ref: id, Clear: c.Clear})
	if err != nil {
		return dst, 0, err
	}
	if ans.Code != "" {
		c.release(addr, cn, stop, true)
		return dst, 0, &RemoteError{Code: ans.Code, Message: ans.Error}
	}
	if ans.Size < 0 || ans.Size > MaxBlock {
		c.release(addr, cn, stop, false)
		return dst, 0, fmt.Errorf("%w: block of %d bytes", ErrMalformed, ans.Size)
	}
	var src io.Reader = cn.tc
	if ans.Clear {
		if _, err := cn.tc.Write([]byte{'G'}); err != nil {
			c.release(addr, cn, stop, false)
			return dst, 0, err
		}
		src = cn.raw
	}
	start := len(dst)
	dst = slices.Grow(dst, int(ans.Size))[:start+int(ans.Size)]
	_, err = io.ReadFull(src, dst[start:])
	c.release(addr, cn, stop, err == nil)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return dst[:start], 0, fmt.Errorf("block %s from %s: %w", id, addr, err)
	}
	return dst, ans.Checksum, nil
}

// PutBlock stores data as block id on the member at addr, which checks it
// against crc before it keeps it. An error answer is a *RemoteError.
func (c *Client) PutBlock(ctx context.Context, addr, id string, data []byte, crc uint32) error {
	cn, ans, stop, err := c.exchange(ctx, addr, Request{Op: "block-put", Ref: id, Size: int64(len(data)), Checksum: crc, Clear: c.Clear})
	if err != nil {
		return err
	}
	if ans.Code != "" {
		c.release(addr, cn, stop, true)
		return &RemoteError{Code: ans.Code, Message: ans.Error}
	}
	var dst io.Writer = cn.tc
	if ans.Clear {
		dst = cn.raw
	}
	_, err = dst.Write(data)
	if err == nil {
		err = readFrame(cn.tc, &ans)
	}
	c.release(addr, cn, stop, err == nil)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("block %s to %s: %w", id, addr, err)
	}
	if ans.Code != "" {
		return &RemoteError{Code: ans.Code, Message: ans.Error}
	}
	return nil
}

// DeleteBlocks asks the member at addr to drop the blocks.
func (c *Client) DeleteBlocks(ctx context.Context, addr string, ids []string) error {
	for len(ids) > 0 {
		n := min(len(ids), maxDelete)
		cn, ans, stop, err := c.exchange(ctx, addr, Request{Op: "block-del", Ref: strings.Join(ids[:n], ",")})
		if err != nil {
			return err
		}
		c.release(addr, cn, stop, true)
		if ans.Code != "" {
			return &RemoteError{Code: ans.Code, Message: ans.Error}
		}
		ids = ids[n:]
	}
	return nil
}
