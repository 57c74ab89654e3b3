package s3api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/handoff-dev/handoff/spec"
)

// Function credentials. Every function gets an access key of its own that
// names it and carries its store grants, and a secret that is an HMAC of
// that key under a root secret all node agents derive from the cluster
// token (Config.FunctionKeys):
//
//	access key  fn-NAME[_wPATTERN...][_rPATTERN...]   e.g. fn-wc-count_wresults_rcorpus
//	secret      hex(HMAC-SHA256(root, access key))[:40]
//
// A node verifies a key it never saw from the key alone: no state to share,
// any node accepts a key minted on another, and every key changes when the
// cluster token does. The grants in the key are those of the spec the
// instance was started with: narrowing a function's grants takes effect
// for instances started after the new deploy, and keys already handed out
// keep working until the cluster token rotates.
//
// Function names are DNS labels and bucket patterns hold only lowercase
// letters, digits, '.', '-' and a final '*', so '_' separates the parts
// without escaping.

// fnKeyPrefix starts every function's access key; the admin key must not.
const fnKeyPrefix = "fn-"

// ErrFunctionKey is wrapped by the errors of ParseFunctionKey.
var ErrFunctionKey = errors.New("s3api: not a function's access key")

// FunctionKey returns the S3 credential of function name with the store
// grants g, under root (Config.FunctionKeys of every node).
func FunctionKey(root []byte, name string, g spec.Store) (accessKey, secret string) {
	var b strings.Builder
	b.WriteString(fnKeyPrefix + name)
	for _, p := range g.ReadWrite {
		b.WriteString("_w" + p)
	}
	for _, p := range g.Read {
		b.WriteString("_r" + p)
	}
	accessKey = b.String()
	return accessKey, functionSecret(root, accessKey)
}

func functionSecret(root []byte, accessKey string) string {
	m := hmac.New(sha256.New, root)
	m.Write([]byte(accessKey))
	return hex.EncodeToString(m.Sum(nil))[:40]
}

// maxFunctionKey bounds an access key: a name and spec.MaxGrants patterns.
const maxFunctionKey = len(fnKeyPrefix) + 63 + spec.MaxGrants*(2+63)

// ParseFunctionKey splits a function's access key into the function's name
// and its grants. It checks the form only: whether the key is genuine is
// decided by the request's signature.
func ParseFunctionKey(accessKey string) (name string, g spec.Store, err error) {
	rest, ok := strings.CutPrefix(accessKey, fnKeyPrefix)
	if !ok {
		return "", g, fmt.Errorf("%w: %q does not start with %q", ErrFunctionKey, accessKey, fnKeyPrefix)
	}
	if len(accessKey) > maxFunctionKey {
		return "", g, fmt.Errorf("%w: %d bytes long, above %d", ErrFunctionKey, len(accessKey), maxFunctionKey)
	}
	parts := strings.Split(rest, "_")
	name = parts[0]
	if !validFunctionName(name) {
		return "", g, fmt.Errorf("%w: %q is not a function name", ErrFunctionKey, name)
	}
	if len(parts)-1 > spec.MaxGrants {
		return "", g, fmt.Errorf("%w: %d grants, above %d", ErrFunctionKey, len(parts)-1, spec.MaxGrants)
	}
	for _, p := range parts[1:] {
		if len(p) < 2 || !spec.ValidGrant(p[1:]) {
			return "", spec.Store{}, fmt.Errorf("%w: bad grant %q", ErrFunctionKey, p)
		}
		switch p[0] {
		case 'w':
			g.ReadWrite = append(g.ReadWrite, p[1:])
		case 'r':
			g.Read = append(g.Read, p[1:])
		default:
			return "", spec.Store{}, fmt.Errorf("%w: grant %q is neither r nor w", ErrFunctionKey, p)
		}
	}
	return name, g, nil
}

// validFunctionName reports whether s is a DNS label, as spec requires of
// function names.
func validFunctionName(s string) bool {
	if s == "" || len(s) > 63 || s[0] < 'a' || s[0] > 'z' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// principal is who signed a request: nil for the admin credential, which
// may do everything, else a function and its grants.
type principal struct {
	name   string
	grants spec.Store
}

// lookupKey returns the secret of accessKey and who holds it, or
// InvalidAccessKeyId.
func (h *Handler) lookupKey(accessKey string) (string, *principal, *apiError) {
	if accessKey == h.cfg.AccessKey {
		return h.cfg.SecretKey, nil, nil
	}
	if h.cfg.FunctionKeys == nil || !strings.HasPrefix(accessKey, fnKeyPrefix) {
		return "", nil, errInvalidAccessKey
	}
	name, g, err := ParseFunctionKey(accessKey)
	if err != nil {
		return "", nil, errorf("InvalidAccessKeyId", http.StatusForbidden,
			"The access key id is not one the platform hands to functions; use the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY of the instance's environment.")
	}
	return functionSecret(h.cfg.FunctionKeys, accessKey), &principal{name: name, grants: g}, nil
}

// authorize checks a function's request against its grants: GET and HEAD
// read, every other method writes. ListBuckets is filtered instead
// (service). Only the addressed bucket is checked: an operation that
// names a second one (x-amz-copy-source, NotImplemented today) must check
// that one too when it is added.
func (p *principal) authorize(q *request) *apiError {
	if p == nil || q.bucket == "" {
		return nil
	}
	write := q.r.Method != http.MethodGet && q.r.Method != http.MethodHead
	if p.grants.Allows(q.bucket, write) {
		return nil
	}
	if write && p.grants.Allows(q.bucket, false) {
		return errorf("AccessDenied", http.StatusForbidden, fmt.Sprintf(
			"Function %s may only read bucket %q: its spec grants it in store.read. To write it (%s), move %q to store.readWrite in %s's spec and deploy the function again.",
			p.name, q.bucket, q.r.Method, q.bucket, p.name))
	}
	return errorf("AccessDenied", http.StatusForbidden, fmt.Sprintf(
		"Function %s has no grant for bucket %q. Add %q to store.read (to read it) or store.readWrite (to write it too) in %s's spec and deploy the function again.",
		p.name, q.bucket, q.bucket, p.name))
}
