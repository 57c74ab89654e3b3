// Package spread is the store's block tier across node agents: each
// block is written to the writing node's own tier first and, for objects
// with more than one replica, to other live node agents too; it is read
// from this node's tier when held here, else pulled from a holder over
// peerlink and checked against its CRC-32C on arrival. It implements
// local.Blocks (for the store on this node) and peerlink.BlockHandler (for
// the other nodes' requests).
//
// Block records name their holders by incarnation ("n1-<boot>", the
// holder name of node.Agent): a node agent that restarts comes back with
// an empty tier and a new name, so its old blocks read as lost, never as
// missing-but-maybe-elsewhere.
//
// # Usage
//
//	tier := spread.New(spread.Config{Self: holder, Local: bs, Link: link, Members: metaClient.Members})
//	peerServer.Blocks = tier
//	st, err := local.Open(local.Config{Meta: metaClient, Blocks: tier})
package spread

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-dev/handoff/peerlink"
	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/blocks"
	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/store/meta"
)

// Members lists the node agents that hold store blocks now: holder name
// → peer address. It may include this node.
type Members func(ctx context.Context) (map[string]string, error)

// Config sets up a Tier.
type Config struct {
	// Self is this node agent's holder name (its id and boot).
	Self string
	// Local is this node's own block tier. The Tier closes it.
	Local *blocks.Store
	// Link reaches the other members; nil: this node alone (replicas > 1
	// then fail with store.ErrUnavailable).
	Link *peerlink.Client
	// Members lists the live members; nil: none but this one.
	Members Members
	// Refresh is how long a members list is used before it is asked for
	// again (default 1s). A holder missing from it is looked up afresh
	// at most every tenth of that.
	Refresh time.Duration
	// Timeout bounds one block operation on another member (default 30s).
	Timeout time.Duration
	Logger  *slog.Logger
	// Now is the clock of the members cache (default time.Now).
	Now func() time.Time
}

// Tier is the block tier spread over node agents. It is safe for
// concurrent use.
type Tier struct {
	cfg Config // defaults filled in; read-only after New

	fetch sync.Mutex // serialises members lookups; taken before mu

	// mu guards all following fields.
	mu      sync.Mutex
	members map[string]string
	fetched time.Time
	closed  bool

	deletes sync.WaitGroup // deletes in flight on other members

	refreshing atomic.Bool // a members lookup runs in the background

	copies *copyCache // small blocks pulled from other members
}

var (
	_ local.Blocks            = (*Tier)(nil)
	_ peerlink.BlockHandler   = (*Tier)(nil)
	_ peerlink.BlockAllocator = (*Tier)(nil)
)

// New makes a tier.
func New(cfg Config) *Tier {
	if cfg.Refresh <= 0 {
		cfg.Refresh = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Tier{cfg: cfg, copies: newCopyCache()}
}

// live returns the members list, asking for it again when it is older
// than Refresh, or, with fresh, older than a tenth of that. A failed
// lookup keeps the last list.
func (t *Tier) live(ctx context.Context, fresh bool) map[string]string {
	maxAge := t.cfg.Refresh
	if fresh {
		maxAge /= 10
	}
	t.mu.Lock()
	m, at := t.members, t.fetched
	t.mu.Unlock()
	if t.cfg.Members == nil || (m != nil && t.cfg.Now().Sub(at) < maxAge) {
		return m
	}
	if m != nil && !fresh {
		// A list a little old serves while a new one is fetched beside
		// the read, which would otherwise wait a round trip to the
		// control plane once a second.
		if t.refreshing.CompareAndSwap(false, true) {
			go func() {
				defer t.refreshing.Store(false)
				t.live(context.WithoutCancel(ctx), true)
			}()
		}
		return m
	}
	t.fetch.Lock()
	defer t.fetch.Unlock()
	t.mu.Lock()
	if t.fetched.After(at) { // another caller looked meanwhile
		m = t.members
		t.mu.Unlock()
		return m
	}
	t.mu.Unlock()
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	got, err := t.cfg.Members(lctx)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fetched = t.cfg.Now()
	if err != nil {
		t.cfg.Logger.Warn("store: cannot list the members holding blocks; using the last list", "err", err)
		return t.members
	}
	if got == nil {
		got = map[string]string{}
	}
	t.members = got
	return got
}

// others lists the live members but this one, in an order that depends
// on the block id, so that an object's copies spread over the members.
func (t *Tier) others(ctx context.Context, id blocks.ID) []string {
	if t.cfg.Link == nil {
		return nil
	}
	var names []string
	for h := range t.live(ctx, false) {
		if h != t.cfg.Self {
			names = append(names, h)
		}
	}
	sort.Strings(names)
	if len(names) > 1 {
		k := int(id[0]) % len(names)
		names = append(names[k:], names[:k]...)
	}
	return names
}

// Put stores the block here and, for replicas > 1, on other members; when
// this node's tier is full, on other members only. It fails, keeping
// nothing, when fewer than replicas members took the block.
func (t *Tier) Put(ctx context.Context, id blocks.ID, data []byte, replicas int) (meta.Block, bool, error) {
	replicas = max(replicas, 1)
	b := meta.Block{ID: id, Size: int64(len(data)), CRC: blocks.Checksum(data)}
	kept := false
	var full, other []string
	info, err := t.cfg.Local.PutSum(id, data, b.CRC)
	switch {
	case err == nil:
		b.Holders = append(b.Holders, t.cfg.Self)
		kept = !info.Spilled
	case errors.Is(err, blocks.ErrFull):
		full = append(full, t.cfg.Self)
	default:
		return meta.Block{}, false, local.BlockError(err)
	}
	if len(b.Holders) < replicas {
		for _, h := range t.others(ctx, id) {
			addr := t.addr(ctx, h)
			if addr == "" {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
			err := t.cfg.Link.PutBlock(rctx, addr, id.String(), data, b.CRC)
			cancel()
			if err == nil {
				b.Holders = append(b.Holders, h)
				if len(b.Holders) == replicas {
					break
				}
				continue
			}
			if errors.Is(remote(err), store.ErrQuota) {
				full = append(full, h)
			} else {
				other = append(other, fmt.Sprintf("%s: %v", h, err))
			}
		}
	}
	if len(b.Holders) == replicas {
		return b, kept, nil
	}
	placed := len(b.Holders)
	if placed > 0 && b.Holders[0] == t.cfg.Self {
		// data is the caller's again, not memory to recycle.
		t.cfg.Local.Unput(id)
		b.Holders = b.Holders[1:]
	}
	if len(b.Holders) > 0 {
		t.Delete([]meta.Block{b})
	}
	if len(other) == 0 && len(full) > 0 {
		return meta.Block{}, false, fmt.Errorf("%w: %d of %d copies of a block placed; no room on %s",
			store.ErrQuota, placed, replicas, strings.Join(full, ", "))
	}
	why := "no other node agent is up"
	if len(other) > 0 {
		why = strings.Join(other, "; ")
	}
	return meta.Block{}, false, fmt.Errorf("%w: %d of %d copies of a block placed: %s",
		store.ErrUnavailable, placed, replicas, why)
}

// addr returns the peer address of member h, or "" when h is not live.
func (t *Tier) addr(ctx context.Context, h string) string {
	if a := t.live(ctx, false)[h]; a != "" {
		return a
	}
	return t.live(ctx, true)[h]
}

// remote turns an error from another member into the store's terms: its
// answer's code names the store sentinel.
func remote(err error) error {
	var re *peerlink.RemoteError
	if errors.As(err, &re) {
		return store.FromCode(re.Code, re.Message)
	}
	return err
}

// holds says whether the block's record names this node, or no one (a
// record of a single node's store, read here).
func (t *Tier) holds(b meta.Block) bool {
	return len(b.Holders) == 0 || slices.Contains(b.Holders, t.cfg.Self)
}

// nodeOf is the node id in a holder name ("n1" of "n1-k3x9").
func nodeOf(holder string) string {
	if i := strings.LastIndexByte(holder, '-'); i > 0 {
		return holder[:i]
	}
	return holder
}

// Read reads the block here when held here, else from its other holders
// in turn, each copy checked against b.CRC and b.Size. A copy that fails
// its check is skipped for the next; when every copy failed, the error is
// store.ErrChecksum; when every holder is gone, store.ErrLost naming them;
// when the ones still listed cannot be reached, store.ErrUnavailable.
func (t *Tier) Read(ctx context.Context, b meta.Block, dst []byte) ([]byte, error) {
	start := len(dst)
	var corrupt error
	var gone, unreachable []string
	if t.holds(b) {
		data, err := local.NodeTier{Store: t.cfg.Local}.Read(ctx, b, dst)
		switch {
		case err == nil:
			return data, nil
		case errors.Is(err, store.ErrChecksum):
			corrupt = err
		case errors.Is(err, store.ErrLost):
			gone = append(gone, fmt.Sprintf("%s (this node agent; it no longer holds it)", t.cfg.Self))
		default:
			return data, err
		}
		dst = data[:start]
	}
	if data, ok := t.copies.get(b.ID, dst); ok {
		return data, nil
	}
	for _, h := range b.Holders {
		if h == t.cfg.Self {
			continue
		}
		addr := ""
		if t.cfg.Link != nil {
			addr = t.addr(ctx, h)
		}
		if addr == "" {
			gone = append(gone, fmt.Sprintf("%s (node %s, whose agent left the cluster or restarted)", h, nodeOf(h)))
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
		data, _, err := t.cfg.Link.GetBlock(rctx, addr, b.ID.String(), dst)
		cancel()
		if err != nil {
			err = remote(err)
			switch {
			case errors.Is(err, store.ErrChecksum):
				corrupt = fmt.Errorf("%w (held by %s)", err, h)
			case errors.Is(err, store.ErrLost):
				gone = append(gone, fmt.Sprintf("%s (node %s, which no longer holds it)", h, nodeOf(h)))
			case ctx.Err() != nil:
				return dst, ctx.Err()
			default:
				unreachable = append(unreachable, fmt.Sprintf("%s (node %s at %s: %v)", h, nodeOf(h), addr, err))
			}
			dst = data[:start]
			continue
		}
		if got := blocks.Checksum(data[start:]); got != b.CRC || int64(len(data)-start) != b.Size {
			corrupt = fmt.Errorf("%w: block %s arrived from %s as %d bytes with CRC-32C %08x; the object recorded %d bytes with %08x",
				store.ErrChecksum, b.ID, h, len(data)-start, got, b.Size, b.CRC)
			dst = data[:start]
			continue
		}
		t.copies.put(b.ID, data[start:])
		return data, nil
	}
	switch {
	case corrupt != nil:
		return dst, corrupt
	case len(unreachable) > 0:
		return dst, fmt.Errorf("%w: block %s: its holders cannot be reached: %s", store.ErrUnavailable, b.ID, strings.Join(unreachable, "; "))
	}
	return dst, fmt.Errorf("%w: block %s was held by %s", store.ErrLost, b.ID, strings.Join(gone, " and "))
}

// Alloc returns a buffer for a block from this node's recycled memory.
func (t *Tier) Alloc(n int) []byte { return t.cfg.Local.Alloc(n) }

// Release gives back a buffer from Alloc that no block holds.
func (t *Tier) Release(buf []byte) { t.cfg.Local.Release(buf) }

// Check says whether a holder of the block is live: this node, holding
// it, or another member in the current list.
func (t *Tier) Check(b meta.Block) error {
	if t.holds(b) && t.cfg.Local.Has(b.ID) {
		return nil
	}
	ctx := context.Background()
	for _, fresh := range []bool{false, true} {
		m := t.live(ctx, fresh)
		for _, h := range b.Holders {
			if h != t.cfg.Self && m[h] != "" && t.cfg.Link != nil {
				return nil
			}
		}
	}
	var names []string
	for _, h := range b.Holders {
		names = append(names, fmt.Sprintf("%s (node %s)", h, nodeOf(h)))
	}
	if len(names) == 0 {
		names = append(names, "this node agent before it restarted")
	}
	return fmt.Errorf("%w: block %s was held only by %s, gone from the cluster", store.ErrLost, b.ID, strings.Join(names, " and "))
}

// Delete frees the blocks: here at once, on other members in the
// background, best effort (a member that is gone took its blocks with
// it; one that misses the request keeps an orphan).
func (t *Tier) Delete(bl []meta.Block) {
	remoteIDs := map[string][]string{}
	for _, b := range bl {
		t.copies.drop(b.ID)
		if t.holds(b) {
			t.cfg.Local.Delete(b.ID) // ErrNotFound: gone already
		}
		for _, h := range b.Holders {
			if h != t.cfg.Self {
				remoteIDs[h] = append(remoteIDs[h], b.ID.String())
			}
		}
	}
	if len(remoteIDs) == 0 || t.cfg.Link == nil {
		return
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.deletes.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.deletes.Done()
		ctx, cancel := context.WithTimeout(context.Background(), t.cfg.Timeout)
		defer cancel()
		for h, ids := range remoteIDs {
			addr := t.addr(ctx, h)
			if addr == "" {
				continue
			}
			if err := t.cfg.Link.DeleteBlocks(ctx, addr, ids); err != nil {
				t.cfg.Logger.Warn("store: blocks not freed on their holder; they stay until it restarts", "holder", h, "blocks", len(ids), "err", err)
			}
		}
	}()
}

// Stats are this node's block gauges and counters.
func (t *Tier) Stats() blocks.Stats { return t.cfg.Local.Stats() }

// Close waits for deletes in flight and drops this node's blocks.
func (t *Tier) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.deletes.Wait()
	return t.cfg.Local.Close()
}

// GetBlock serves another member's read of a block held here.
func (t *Tier) GetBlock(id string, dst []byte) ([]byte, uint32, error) {
	var bid blocks.ID
	if err := bid.UnmarshalText([]byte(id)); err != nil {
		return dst, 0, wire(fmt.Errorf("%w: %v", store.ErrInvalidArgument, err))
	}
	data, info, err := t.cfg.Local.Read(bid, dst)
	if err != nil {
		return data, 0, wire(fmt.Errorf("%w (on %s)", local.BlockError(err), t.cfg.Self))
	}
	return data, info.Checksum, nil
}

// PutBlock keeps another member's copy of a block. data comes from
// AllocBlock: what this node's tier does not keep goes back to it.
func (t *Tier) PutBlock(id string, data []byte, crc uint32) error {
	var bid blocks.ID
	if err := bid.UnmarshalText([]byte(id)); err != nil {
		t.cfg.Local.Release(data)
		return wire(fmt.Errorf("%w: %v", store.ErrInvalidArgument, err))
	}
	info, err := t.cfg.Local.PutSum(bid, data, crc) // the peer link checked data against crc
	if err != nil || info.Spilled {
		t.cfg.Local.Release(data)
	}
	if err != nil {
		return wire(fmt.Errorf("%w (on %s)", local.BlockError(err), t.cfg.Self))
	}
	return nil
}

// AllocBlock gives the peer link recycled block memory to receive a
// block into.
func (t *Tier) AllocBlock(n int) []byte { return t.cfg.Local.Alloc(n) }

// ReleaseBlock gives back a buffer from AllocBlock no block holds.
func (t *Tier) ReleaseBlock(buf []byte) { t.cfg.Local.Release(buf) }

// DeleteBlocks drops blocks another member freed.
func (t *Tier) DeleteBlocks(ids []string) error {
	for _, id := range ids {
		var bid blocks.ID
		if bid.UnmarshalText([]byte(id)) == nil {
			t.cfg.Local.Delete(bid) // ErrNotFound: gone already
		}
	}
	return nil
}

// wire gives err the code of its store sentinel for the other member.
func wire(err error) error {
	return &peerlink.RemoteError{Code: store.Code(err), Message: err.Error()}
}
