package storefs

import (
	"context"
	"errors"
	"io"
	"syscall"

	"github.com/handoff-dev/handoff/store"
)

// errnoOf maps a Backend error to the errno a program sees. Errors
// without a clear counterpart are EIO; the caller logs them.
func errnoOf(err error) syscall.Errno {
	var en syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.As(err, &en):
		return en
	case errors.Is(err, store.ErrNoSuchBucket), errors.Is(err, store.ErrNoSuchKey), errors.Is(err, store.ErrNoSuchUpload):
		return syscall.ENOENT
	case errors.Is(err, store.ErrBucketExists):
		return syscall.EEXIST
	case errors.Is(err, store.ErrBucketNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, store.ErrQuota):
		return syscall.ENOSPC
	case errors.Is(err, store.ErrTooLarge):
		return syscall.EFBIG
	case errors.Is(err, store.ErrInvalidName), errors.Is(err, store.ErrInvalidArgument), errors.Is(err, store.ErrInvalidRange):
		return syscall.EINVAL
	case errors.Is(err, store.ErrChecksum), errors.Is(err, store.ErrLost):
		return syscall.EIO
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, context.DeadlineExceeded):
		return syscall.ETIMEDOUT
	case errors.Is(err, io.ErrClosedPipe):
		return syscall.EIO
	}
	return syscall.EIO
}

// fail logs err when its errno hides the reason (EIO and friends) and
// returns the errno. Expected outcomes (ENOENT, EEXIST, ENOTEMPTY) are
// and invalid names are not logged.
func (f *fsys) fail(op, bucket, key string, err error) syscall.Errno {
	e := errnoOf(err)
	switch e {
	case syscall.ENOENT, syscall.EEXIST, syscall.ENOTEMPTY, syscall.EINTR, syscall.EINVAL:
	default:
		f.log.Warn("storefs: operation failed", "op", op, "bucket", bucket, "key", key, "errno", e.Error(), "err", err)
	}
	return e
}
