// Package s3api serves the S3 REST API over a store.Backend, so programs
// that already speak S3 reach a node's ephemeral store by pointing their
// endpoint at the node agent.
//
// Operations: ListBuckets, CreateBucket, DeleteBucket, HeadBucket,
// GetBucketLocation; PutObject, GetObject (with Range, and If-Match,
// If-None-Match, If-Modified-Since, If-Unmodified-Since), HeadObject,
// DeleteObject, DeleteObjects; ListObjectsV2 and ListObjects (V1);
// CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
// AbortMultipartUpload, ListParts. Others (copy, ACLs, policies,
// versioning, tagging) answer NotImplemented. Buckets are addressed by
// path (/bucket/key) and, for the domains in Config.Domains, by virtual
// host (bucket.domain/key).
//
// Every request must carry an AWS Signature Version 4, in the
// Authorization header or as a presigned URL, made with the admin
// credential (Config.AccessKey and SecretKey: everything is allowed) or
// with a function's credential (FunctionKey, when Config.FunctionKeys is
// set); anything else gets AccessDenied, InvalidAccessKeyId or
// SignatureDoesNotMatch. A function's access key names it and carries
// the store grants of its spec (spec.Store), and its secret is an HMAC of
// the key, so any node of the cluster checks it without state. A
// function may read (GET, HEAD) the buckets it is granted and write
// (every other method, bucket creation and deletion included) those
// granted read-write; ListBuckets shows it only its granted buckets.
// Anything else is AccessDenied, with a message that names the function,
// the bucket and the spec field to add it to. The payload is checked as
// x-amz-content-sha256 declares: a hex SHA-256 is compared at the end of
// the body (XAmzContentSHA256Mismatch), aws-chunked bodies
// (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER],
// STREAMING-UNSIGNED-PAYLOAD-TRAILER) are decoded as they stream with
// every chunk signature verified before the next chunk is read, and
// UNSIGNED-PAYLOAD is taken as is. Content-MD5 is checked by the store
// (BadDigest) and the ETag is then the body's MD5; without it the ETag is
// a digest of the blocks' CRC-32Cs, marked as not an MD5 with "-1" (a
// part's carries no mark, as every multipart ETag is opaque). A check that fails makes the store drop the whole upload,
// so nothing unverified is kept. Trailing checksums
// (x-amz-checksum-*) are accepted and signed-checked but not compared
// with the data: the store keeps its own CRC-32C per block.
//
// Bodies stream: a PUT goes from the socket into the store's blocks as it
// arrives, a GET from verified blocks to the socket. Only small XML
// documents (DeleteObjects, CompleteMultipartUpload) are read whole, up
// to 8 MiB. A GET whose data fails its checksum after the status was sent
// is cut short (the connection is aborted), so a client never takes a
// partial or corrupt object for a whole one.
//
// Handoff's own header X-Handoff-Ttl on a PUT or CreateMultipartUpload
// ("90s", "2h" or seconds) gives the object a time to live, and
// X-Handoff-Replicas (1 to 3, default 1) keeps its blocks on that many
// node agents, and X-Handoff-Reads deletes it after that many GETs (a HEAD
// answers how many are left; nobody finds it once the last GET has begun,
// and its memory goes when every GET has ended). Objects are ephemeral: with one replica an object is lost
// with the node agent that holds it (a read then fails with a 500
// InternalError that says so, never returns wrong bytes). A store that
// cannot reach its metadata service or the nodes its replicas need
// answers 503 ServiceUnavailable.
//
// # Usage
//
//	st, err := local.Open(local.Config{Dir: dir, Memory: 4 << 30, SpillDir: spill})
//	h, err := s3api.New(s3api.Config{Backend: st, AccessKey: key, SecretKey: secret})
//	srv := &http.Server{Addr: ":9000", Handler: h}
package s3api
