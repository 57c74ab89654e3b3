// Package ref implements references: signed, expiring, read-limited
// capabilities that stand in for a payload too large to travel inline
// between two functions (reference passing, after XDT and Zipline).
//
// The sender's node agent keeps the payload in one of its buffers and
// forwards a token in place of the body; the receiver's node agent pulls
// the bytes from the holder node, which verifies the token on every pull.
// This package is the pure core of that exchange: the token format,
// signing, verification and a read counter. It does no I/O besides what
// callers pass in and reads no clock: the holder passes now to Verify.
//
// # Trust
//
// A token is a capability: whoever holds it may pull the payload, within
// its readers, reads and expiry. Its content is signed, not encrypted:
// anyone can Parse it and read the holder, size, readers and issuer. Only
// node agents hold the keys; functions see tokens, never secrets, so a
// function cannot forge a token, widen its readers or raise its reads.
// Changing any byte of a token makes Verify fail.
//
// The holder both signs (when it takes the payload) and verifies (when
// it serves a pull), so only its own clock judges expiry and clock skew
// between nodes does not matter. A receiver's node that holds the keys may
// Verify before pulling to fail fast, but the holder's check is the one
// that counts.
//
// # Usage
//
// Every node agent builds one Keyring from the cluster's reference keys
// and uses the newest for signing:
//
//	keys := ref.NewKeyring()
//	keys.Add(7, secret7) // 32+ random bytes each, from the control plane
//	keys.Add(8, secret8)
//	keys.Use(8)
//
// The sender's node agent stores the payload and signs a reference to it:
//
//	tok, err := keys.Sign(ref.Ref{
//		Holder:   nodeID,
//		Buffer:   bufID, // 16 random bytes, never reused
//		Size:     int64(len(payload)),
//		Checksum: crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)),
//		Expires:  clock.Now().Add(ttl),
//		Readers:  []string{"count"}, // or []string{ref.AnyReader}
//		Reads:    1,
//		Issuer:   "split",
//	})
//
// The holder serves a pull by function fn like this, in this order:
//
//	r, err := keys.Verify(tok, clock.Now()) // forged, tampered, expired
//	err = r.AllowedFor(fn)                  // wrong reader
//	buf := buffers[r.Buffer]                // gone: freed after its last read
//	left, err := reads.Take(r.Buffer, r.Reads) // over-read (ErrExhausted)
//	// send buf; if left == 0, free it and call reads.Forget(r.Buffer)
//
// and frees buffers whose expiry has passed, calling Forget for them too.
// The receiver checks Size and Checksum against the bytes it pulled.
//
// Keys rotate without breaking tokens in flight: Add the new key on every
// node, then Use it everywhere, and Remove the old one once the longest
// ttl has passed. Tokens signed with a removed key fail with ErrUnknownKey.
//
// # Readers
//
// Readers lists the functions that may pull the payload. An empty list is
// refused by Sign rather than read as "anyone": a forgotten field must not
// widen a capability to the whole cluster. A sender that cannot know its
// receivers (for example a gateway response or a wide fan-out) says so
// with the single entry AnyReader ("*").
//
// # Errors
//
// Every error wraps one sentinel (ErrMalformed, ErrUnknownKey,
// ErrBadSignature, ErrExpired, ErrWrongReader, ErrExhausted, ErrInvalid),
// for errors.Is, and says what to do:
//
//	ref: expired at 2026-11-23T20:00:00Z (6m0s ago); ask the sender for a new reference or raise its ttl
//
// ErrExhausted comes from ReadCounter, never from Verify: a token cannot
// know how often it was used, so the holder counts reads.
//
// # Wire format
//
// A token is ASCII, at most MaxTokenLen (4096) bytes, safe in HTTP headers,
// URLs and JSON strings:
//
//	token = "hr2." base64url(body || tag)
//
// base64url is RFC 4648 §5 without padding; decoders must refuse padding,
// characters outside the alphabet and non-zero unused bits in the last
// character, so every token has one text form. "hr2." names version 2 of
// the layout; another layout takes another prefix.
//
// The body is these fields in this order, integers big-endian, with no
// padding or alignment; a name is one length byte n followed by n bytes:
//
//	size  field     encoding
//	4     key id    uint32, the keyring id of the signing key
//	1+n   holder    name, 1–63 bytes of a-z 0-9 '-'
//	16    buffer    the holder's buffer id
//	8     size      uint64, payload bytes, at most 2^63-1
//	4     checksum  uint32, CRC-32C (Castagnoli) of the payload; 0 if deferred
//	1     flags     bit 0: the checksum is deferred to the holder; others 0
//	8     expires   int64, Unix seconds, 1 .. 253402300799 (9999-12-31)
//	4     reads     uint32, pulls allowed, at least 1
//	1+n   issuer    name, a function name
//	1     readers   count r, 1–32
//	r×    reader    name each: a function name, all distinct; or r = 1
//	                and the one-byte name "*" for any function
//
// A function name is a DNS label: 1–63 bytes of a-z 0-9 '-', starting with
// a letter and not ending with '-'. Bytes after the last reader make the
// body malformed.
//
// The tag is the 32-byte HMAC-SHA256, keyed with the secret of the key id,
// over the ASCII prefix followed by the body:
//
//	tag = HMAC-SHA256(secret[key id], "hr2." || body)
//
// A verifier checks, in order: length at most 4096; the prefix; base64url;
// at least 84 decoded bytes (the shortest body, 52, plus the tag); the key
// id is known; the tag, compared in constant time; the body decodes
// exactly, with every field within its rules; and now is before expires.
package ref
