// Package storefs mounts the ephemeral store (a store.Backend) as a
// filesystem with FUSE, so programs that only know files read and write
// store objects: the node agent mounts it into every instance.
//
// # Usage
//
//	if err := storefs.Available(); err != nil {
//		log.Printf("store mount off: %v", err) // the S3 API still works
//	}
//	srv, err := storefs.Mount("/run/handoff/store", backend, storefs.Options{AllowOther: true})
//	if errors.Is(err, storefs.ErrUnavailable) { ... carry on without it ... }
//	defer srv.Unmount()
//
// # Layout
//
// The root lists the buckets as directories; mkdir at the root creates a
// bucket (S3's naming rules: EINVAL otherwise) and rmdir deletes an empty
// one. Within a bucket, objects are files and "/"-separated key prefixes
// are directories, as an S3 listing with the "/" delimiter shows them.
// mkdir below a bucket stores a zero-byte marker object "dir/" (the
// convention S3 consoles use), so an empty directory persists and other
// nodes and S3 clients see it; rmdir deletes the marker of an empty
// directory. A directory that only exists because keys lie under it
// (written over S3) disappears with its last key. When both an object
// "x" and keys under "x/" exist, the directory shadows the object. Keys
// that cannot be file names (an empty segment as in "a//b", ".", "..",
// segments over 255 bytes) are not listed. Files cannot be created at
// the root (EPERM).
//
// # Reading
//
// Open snapshots the object (Head) and reads that version. Sequential
// reads go through a read-ahead buffer of 1 MiB chunks, recycled from
// reader to reader, that one goroutine fills Options.ReadAhead (8 MiB)
// ahead of the reader from a single streaming Get; the kernel is told to read ahead as far, in requests of
// up to 1 MiB. Other reads are one ranged Get each. If the object is
// replaced or deleted while it is open, reads fail with ESTALE rather
// than mix versions. Reads bypass the kernel's page cache by default
// (direct I/O, the fastest for large sequential reads); with
// Options.PageCache they go through it, and it is kept across opens
// while the object is unchanged.
//
// # Writing
//
// Objects are immutable, so a file is written whole and sequentially:
//
//   - Writes must come in order, each at the file's current end (a write
//     past the end fills the gap with zeros). A write before the end is
//     EOPNOTSUPP.
//   - Bytes stream into the store as they come: a file up to 1 MiB is one
//     Put, a larger one a multipart upload whose parts (Options.PartSize,
//     64 MiB) are piped into UploadPart while they are written, so no file
//     is held in memory whole.
//   - The object appears (or is replaced) when the file is flushed: on
//     every close of a descriptor, and on fsync. Errors (ENOSPC when the
//     store is full) come back from write, close or fsync. Until then,
//     readers see the previous version; stat and ls through this mount
//     show the file and its size as written.
//   - O_TRUNC, ftruncate(0) and truncate(0) start the file over. Opening
//     an existing file without O_TRUNC and writing at its end (O_APPEND)
//     or writing on after a flush continues it: the new upload first
//     copies the stored object, so an append costs a copy of the file.
//     Truncating to any other size is EOPNOTSUPP, except growing a file
//     being written, which zero-fills.
//   - A handle opened O_RDWR reads the stored object until it writes;
//     reading after writing, before a close, is EOPNOTSUPP.
//   - chmod, chown and utimes succeed and change nothing: every file is
//     0644 and every directory 0755, owned by Options.UID and GID; mtime
//     is the object's.
//
// # Rename and remove
//
// The Backend has no rename, so renaming a file copies the object
// (streaming, keeping its content type, metadata and remaining TTL) and
// deletes the old key: it costs a read and a write of the file. Renaming
// a file with unstored writes is EBUSY (close it first). Renaming a
// directory or a bucket is EXDEV, which mv answers by copying the tree
// and deleting the original. unlink deletes the object; rmdir of a
// non-empty directory is ENOTEMPTY.
//
// # Errors
//
// Store errors map to errno: no such bucket or key ENOENT, exists EEXIST,
// bucket or directory not empty ENOTEMPTY, quota ENOSPC, too large
// EFBIG, invalid name EINVAL (ENAMETOOLONG past 1024 bytes of key),
// checksum mismatch or lost data EIO. The store's own error, behind
// every errno that does not say it all, goes to Options.Log.
//
// # Caching and other nodes
//
// The kernel trusts names and attributes for Options.CacheTimeout (1 s):
// `ls -l` and `stat` cost a Backend call at most once a second per file,
// and an object written elsewhere (another node, the S3 API) shows in
// lookups, stat and ls within that time; a name that did not exist is
// never cached, so a new object shows at once. Every open consults the
// store, so an open after the change reads the new bytes.
//
// When the server is told of every change (Options.Pushed, as a node
// agent's metadata cache tells it), the kernel trusts names and
// attributes for an hour instead and Server.Invalidate makes it forget
// the changed ones: a process's open of a path looked up before, by any
// process, costs one round trip (OPEN) rather than one per path element
// more.
package storefs
