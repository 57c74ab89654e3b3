package buffer

import "errors"

// Sentinel errors. Every error a Store returns wraps one of them (errors
// from Adopt may wrap a memfd error as well), so callers branch with
// errors.Is and show err.Error() to people.
var (
	// ErrNotFound means no buffer has the id: it never existed, it was
	// freed (Free, Close, or its last read was taken), or it expired.
	// Ids are never reused, so a stale reference finds nothing.
	ErrNotFound = errors.New("buffer: no such buffer")

	// ErrExhausted means every allowed read of the buffer has been taken.
	// A buffer leaves the store with its last read, so Open returns this
	// only to a caller that raced that last read; later Opens get
	// ErrNotFound.
	ErrExhausted = errors.New("buffer: reads exhausted")

	// ErrFull means the memory budget had no room for the payload within
	// Config.Wait and it could not spill to disk: Config.SpillDir is
	// unset, the spill failed, or the payload came by Adopt, which never
	// spills. Nothing was kept.
	ErrFull = errors.New("buffer: memory budget full")

	// ErrSize means the payload's length broke a rule: the reader yielded a
	// different number of bytes than declared, an adopted memfd is not the
	// declared size, or the payload exceeds Config.MaxSize. Nothing was
	// kept.
	ErrSize = errors.New("buffer: wrong payload size")

	// ErrExists means Meta.ID names a buffer the store already holds.
	ErrExists = errors.New("buffer: id already held")

	// ErrInvalid means an argument breaks a documented rule: a malformed
	// id string, Reads of 0, an unset or past expiry, a negative size.
	// Nothing was kept.
	ErrInvalid = errors.New("buffer: invalid argument")

	// ErrClosed means the store is closed.
	ErrClosed = errors.New("buffer: store closed")
)
