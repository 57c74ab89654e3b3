package ref

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"
)

// MinSecretLen is the shortest key secret Keyring.Add accepts (256 bits,
// the HMAC-SHA256 block strength).
const MinSecretLen = 32

// Keyring holds the HMAC keys of a node, by id, and which one signs new
// references. It is safe for concurrent use. The zero value is not usable;
// call NewKeyring.
type Keyring struct {
	mu      sync.RWMutex // guards all following fields
	keys    map[uint32][]byte
	current uint32
	hasCur  bool
}

// NewKeyring returns an empty keyring. Add a key and Use it before Sign.
func NewKeyring() *Keyring {
	return &Keyring{keys: make(map[uint32][]byte)}
}

// Add stores secret (at least MinSecretLen bytes, copied) under id. Adding
// the same secret again under the same id is a no-op, so a node can apply
// a pushed key set twice; a different secret under a known id is refused,
// because it would silently invalidate every token signed with the old one.
func (k *Keyring) Add(id uint32, secret []byte) error {
	if len(secret) < MinSecretLen {
		return fmt.Errorf("ref: key %d: secret is %d bytes, fewer than %d; use 32 random bytes (crypto/rand)", id, len(secret), MinSecretLen)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if old, ok := k.keys[id]; ok {
		if hmac.Equal(old, secret) {
			return nil
		}
		return fmt.Errorf("ref: key %d already exists with another secret; give a new key a new id", id)
	}
	k.keys[id] = slices.Clone(secret)
	return nil
}

// Use makes key id the one Sign uses. It returns an error wrapping
// ErrUnknownKey when id was not added.
func (k *Keyring) Use(id uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.keys[id]; !ok {
		return fmt.Errorf("%w: cannot sign with key %d, which was never added; Add it first", ErrUnknownKey, id)
	}
	k.current, k.hasCur = id, true
	return nil
}

// Remove forgets key id: tokens signed with it no longer verify. Removing
// the current key leaves the keyring unable to Sign until the next Use.
func (k *Keyring) Remove(id uint32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	// The secret is not zeroed: a Sign or Verify running now may still
	// hold it outside the lock.
	delete(k.keys, id)
	if k.hasCur && k.current == id {
		k.hasCur = false
	}
}

// IDs returns the ids of the keys held, in increasing order.
func (k *Keyring) IDs() []uint32 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ids := make([]uint32, 0, len(k.keys))
	for id := range k.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Sign validates r, sets r.KeyID to the current key, truncates r.Expires to
// the second and returns the token. Errors wrap ErrInvalid for bad fields
// and ErrUnknownKey when no key is in use. Sign does not read the clock:
// the caller sets Expires from its own (injected) clock.
func (k *Keyring) Sign(r Ref) (string, error) {
	if msg := r.validate(); msg != "" {
		return "", fmt.Errorf("%w: %s", ErrInvalid, msg)
	}
	k.mu.RLock()
	id, ok := k.current, k.hasCur
	secret := k.keys[id]
	k.mu.RUnlock()
	if !ok {
		return "", fmt.Errorf("%w: no key is in use for signing; Add a key and Use it", ErrUnknownKey)
	}
	r.KeyID = id
	raw := encodeBody(make([]byte, 0, bodyLen(r)+tagLen), r)
	raw = appendTag(raw, secret, raw)
	out := make([]byte, len(Prefix)+b64.EncodedLen(len(raw)))
	copy(out, Prefix)
	b64.Encode(out[len(Prefix):], raw)
	return string(out), nil
}

// appendTag appends HMAC-SHA256(secret, Prefix || body) to dst.
func appendTag(dst, secret, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(Prefix))
	m.Write(body)
	return m.Sum(dst)
}

// Verify parses token, checks its tag in constant time against the key it
// names, and checks that it has not expired at now (a reference is valid
// while now is before Expires). Errors wrap ErrMalformed, ErrUnknownKey,
// ErrBadSignature or ErrExpired. Verify does not check readers (see
// Ref.AllowedFor) or count reads (see ReadCounter).
func (k *Keyring) Verify(token string, now time.Time) (Ref, error) {
	body, tag, err := split(token)
	if err != nil {
		return Ref{}, err
	}
	id := binary.BigEndian.Uint32(body)
	k.mu.RLock()
	secret, ok := k.keys[id]
	k.mu.RUnlock()
	if !ok {
		return Ref{}, fmt.Errorf("%w: the reference was signed with key %d, which this node does not hold (keys: %v); the key was rotated out or this node's keys are stale: refresh its keys or ask the sender for a new reference",
			ErrUnknownKey, id, k.IDs())
	}
	var sum [tagLen]byte
	if !hmac.Equal(appendTag(sum[:0], secret, body), tag) {
		return Ref{}, fmt.Errorf("%w: the tag does not match key %d, so the reference was forged or altered in transit; ask the sender for a new reference", ErrBadSignature, id)
	}
	r, err := decodeBody(body)
	if err != nil {
		// Signed but undecodable: only a signer with a different layout
		// under the same prefix could produce it.
		return Ref{}, err
	}
	if !now.Before(r.Expires) {
		return Ref{}, fmt.Errorf("%w at %s (%s ago); ask the sender for a new reference or raise its ttl",
			ErrExpired, r.Expires.Format(time.RFC3339), now.Sub(r.Expires).Round(time.Second))
	}
	return r, nil
}
