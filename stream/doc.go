// Package stream carries one producer→consumer byte stream of a workflow
// edge (proactive streaming, after Floki): a framed, checksummed byte stream
// over a kernel pipe on one node, or over a TCP socket between node agents.
//
// The producer wraps its end in a Writer and the consumer its end in a
// Reader. Data goes in frames of up to DefaultFrame bytes; Close ends the
// stream with a trailer holding the byte count and CRC-32C of all data, so
// the consumer can tell a finished stream from one whose producer died:
// Reader returns io.EOF only after a trailer that matches what arrived, and
// ErrTruncated, ErrMismatch, ErrAborted or ErrMalformed otherwise. Partial
// data is never passed off as complete.
//
// Node agents set up the channel before the producer writes: Pipe makes a
// pipe with a large buffer (backpressure without copies through user
// space), and Relay moves a pipe into a TCP socket and back with splice(2).
// Partitioner spreads records over several streams (hash or round robin) for
// fan-out edges; PartOf is the hash every process shares.
//
// # Wire format
//
// All integers are big-endian; docs/stream-format.md is the contract.
//
//	header:  "HFS" version(1 byte, 1)
//	frames:  u32 word, then
//	         word 1..MaxFrame  data of that many bytes
//	         word 0xFFFFFFFF   trailer: u64 count, u32 CRC-32C of all data; then end of stream
//	         word 0xFFFFFFFE   abort: u16 len, reason (at most MaxReason bytes)
//
// Any other word is malformed, as is any byte after the trailer.
//
// # Cost
//
// Next to a raw pipe, a stream adds a frame word per frame (sent with its
// data in one writev, read with the previous frame's data in one readv)
// and CRC-32C over every byte on both ends. The checksum is most of the
// difference: with hash/crc32's SSE 4.2 loop it took more CPU than the
// kernel's copies into and out of the pipe (BenchmarkProcPipe under
// perf), so where the CPU has AVX-512 with VPCLMULQDQ the package folds
// 256 bytes per round with the vector unit while the CRC32 instruction
// takes three more streams of its own (internal/crc32c, about 2.5 times
// as fast as hash/crc32 on 256 KiB frames). Without the checksum a stream
// moves as fast as the raw pipe (BenchmarkProcPipe, measured once with
// Update stubbed out).
//
// # Usage
//
// Producer:
//
//	w := stream.NewWriter(pipe)
//	if _, err := io.Copy(w, src); err != nil {
//		w.Abort(err.Error())
//		return err
//	}
//	return w.Close() // then close pipe
//
// Consumer:
//
//	r := stream.NewReader(pipe)
//	if _, err := io.Copy(dst, r); err != nil {
//		return err // the data in dst is incomplete
//	}
package stream
