package spread

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/handofftest"
	"github.com/handoff-dev/handoff/peerlink"
	"github.com/handoff-dev/handoff/pki"
	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/blocks"
	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/store/meta"
)

var ctx = context.Background()

// cluster is a few members on loopback, each with its own block tier,
// peer server and store, sharing one metadata database as node agents
// share the control plane's.
type cluster struct {
	t  *testing.T
	db *meta.DB

	mu   sync.Mutex        // guards live
	live map[string]string // holder → peer address
}

// member is one node agent's share.
type member struct {
	name  string
	tier  *Tier
	st    *local.Store
	spill string
	ln    net.Listener
	srv   *peerlink.Server
}

// sharedMeta is the cluster's metadata as one store sees it: closing a
// store leaves it open for the others.
type sharedMeta struct{ *meta.DB }

func (sharedMeta) Close() error { return nil }

func newCluster(t *testing.T) *cluster {
	db, err := meta.Open(filepath.Join(t.TempDir(), "store.db"), meta.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.CreateBucket("bkt"); err != nil {
		t.Fatal(err)
	}
	return &cluster{t: t, db: db, live: map[string]string{}}
}

func (c *cluster) members(ctx context.Context) (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]string, len(c.live))
	for k, v := range c.live {
		m[k] = v
	}
	return m, nil
}

// start issues members of one cluster CA and starts each: memory is each
// one's memory budget for blocks (everything beyond spills to disk).
func (c *cluster) start(memory int64, names ...string) []*member {
	t := c.t
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	var out []*member
	for _, name := range names {
		f, err := pki.WriteMember(filepath.Join(dir, name), name, []string{"127.0.0.1"}, ca, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		id, err := pki.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		spill := filepath.Join(dir, name+"-spill")
		os.MkdirAll(spill, 0o700)
		bs, err := blocks.New(blocks.Config{Memory: memory, SpillDir: spill})
		if err != nil {
			t.Fatal(err)
		}
		link := &peerlink.Client{TLS: id.ClientConfig(""), Clear: true}
		holder := name + "-b00t"
		tier := New(Config{Self: holder, Local: bs, Link: link, Members: c.members, Refresh: 50 * time.Millisecond, Timeout: 5 * time.Second})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &peerlink.Server{TLS: id.ServerConfig(), Clear: true, Blocks: tier}
		go srv.Serve(ln)
		st, err := local.Open(local.Config{Meta: sharedMeta{c.db}, Blocks: tier, BlockSize: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		m := &member{name: holder, tier: tier, st: st, spill: spill, ln: ln, srv: srv}
		t.Cleanup(func() { m.stop(c); link.CloseIdle("") })
		c.mu.Lock()
		c.live[holder] = ln.Addr().String()
		c.mu.Unlock()
		out = append(out, m)
	}
	return out
}

// stop ends a member as a lost node agent ends: it leaves the list and its
// blocks go with it.
func (m *member) stop(c *cluster) {
	c.mu.Lock()
	delete(c.live, m.name)
	c.mu.Unlock()
	m.ln.Close()
	m.srv.Close()
	m.st.Close()
}

func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, m *member, key string, body []byte, opts store.PutOptions) {
	t.Helper()
	if _, err := m.st.Put(ctx, "bkt", key, bytes.NewReader(body), int64(len(body)), opts); err != nil {
		t.Fatalf("put %s through %s: %v", key, m.name, err)
	}
}

func get(m *member, key string, rng *store.Range) ([]byte, error) {
	o, err := m.st.Get(ctx, "bkt", key, rng)
	if err != nil {
		return nil, err
	}
	defer o.Body.Close()
	return io.ReadAll(o.Body)
}

func holders(t *testing.T, db *meta.DB, key string) []string {
	t.Helper()
	o, err := db.Object("bkt", key)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var out []string
	for _, b := range o.Blocks {
		for _, h := range b.Holders {
			if !seen[h] {
				seen[h] = true
				out = append(out, h)
			}
		}
	}
	return out
}

func TestWrittenOnOneReadOnAnother(t *testing.T) {
	c := newCluster(t)
	ms := c.start(64<<20, "n1", "n2")
	body := payload(1, 300<<10+5) // 5 blocks of 64 KiB
	put(t, ms[0], "k", body, store.PutOptions{})
	if h := holders(t, c.db, "k"); len(h) != 1 || h[0] != "n1-b00t" {
		t.Fatalf("holders %v; the writer should hold every block", h)
	}
	got, err := get(ms[1], "k", nil)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read through n2: %d bytes, %v", len(got), err)
	}
	got, err = get(ms[1], "k", &store.Range{First: 100 << 10, Last: 200<<10 + 3})
	if err != nil || !bytes.Equal(got, body[100<<10:200<<10+4]) {
		t.Fatalf("range through n2: %d bytes, %v", len(got), err)
	}
	if st := ms[1].tier.Stats(); st.Blocks != 0 {
		t.Fatalf("the reader kept %d blocks; reads must not copy", st.Blocks)
	}
}

func TestReplicaSurvivesLostNode(t *testing.T) {
	c := newCluster(t)
	ms := c.start(64<<20, "n1", "n2", "n3")
	kept, single := payload(2, 200<<10), payload(3, 70<<10)
	put(t, ms[0], "kept", kept, store.PutOptions{Replicas: 2})
	put(t, ms[0], "single", single, store.PutOptions{})
	o, _ := c.db.Object("bkt", "kept")
	for _, b := range o.Blocks {
		if len(b.Holders) != 2 || b.Holders[0] != "n1-b00t" || b.Holders[1] == "n1-b00t" {
			t.Fatalf("block %s held by %v; want n1 and one other", b.ID, b.Holders)
		}
	}
	ms[0].stop(c)
	got, err := get(ms[1], "kept", nil)
	if err != nil || !bytes.Equal(got, kept) {
		t.Fatalf("replicated object after n1 left, through n2: %d bytes, %v", len(got), err)
	}
	got, err = get(ms[2], "kept", nil)
	if err != nil || !bytes.Equal(got, kept) {
		t.Fatalf("replicated object after n1 left, through n3: %d bytes, %v", len(got), err)
	}
	_, err = get(ms[1], "single", nil)
	if !errors.Is(err, store.ErrLost) || !strings.Contains(err.Error(), "bkt/single") || !strings.Contains(err.Error(), "node n1") {
		t.Fatalf("unreplicated object after n1 left: %v; want ErrLost naming the object and n1", err)
	}
	t.Logf("the lost object reads as: %v", err)
}

// TestUnreachableHolder checks a holder still listed but not answering:
// the read fails as unavailable, not as lost, and not as wrong bytes.
func TestUnreachableHolder(t *testing.T) {
	c := newCluster(t)
	ms := c.start(64<<20, "n1", "n2")
	put(t, ms[0], "k", payload(4, 1000), store.PutOptions{})
	ms[0].ln.Close()
	ms[0].srv.Close()
	_, err := get(ms[1], "k", nil)
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "n1") {
		t.Fatalf("read from an unreachable holder: %v", err)
	}
}

func TestCorruptBlockOnHolderIsDetected(t *testing.T) {
	c := newCluster(t)
	ms := c.start(1, "n1", "n2") // every block spills to a file
	body := payload(5, 100<<10)
	put(t, ms[0], "k", body, store.PutOptions{})
	o, _ := c.db.Object("bkt", "k")
	path := filepath.Join(ms[0].spill, o.Blocks[1].ID.String()+".blk")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff ^ body[64<<10+10]}, 10)
	f.Close()
	got, err := get(ms[1], "k", &store.Range{First: 64 << 10, Last: -1})
	if !errors.Is(err, store.ErrChecksum) || !strings.Contains(err.Error(), o.Blocks[1].ID.String()) {
		t.Fatalf("remote read of a corrupt block: %d bytes, %v; want ErrChecksum", len(got), err)
	}
	// The first block is sound: a read that starts there returns it, then
	// fails at the corrupt one.
	ob, err := ms[1].st.Get(ctx, "bkt", "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(ob.Body)
	ob.Body.Close()
	if !errors.Is(err, store.ErrChecksum) || !bytes.Equal(got, body[:64<<10]) {
		t.Fatalf("read across the corrupt block: %d bytes, %v", len(got), err)
	}
}

// TestArrivalCheck reads a block whose record says another CRC than the
// holder's: the bytes that arrive are checked against the record.
func TestArrivalCheck(t *testing.T) {
	c := newCluster(t)
	ms := c.start(64<<20, "n1", "n2")
	put(t, ms[0], "k", payload(6, 1000), store.PutOptions{})
	o, _ := c.db.Object("bkt", "k")
	b := o.Blocks[0]
	b.CRC++
	if _, err := ms[1].tier.Read(ctx, b, nil); !errors.Is(err, store.ErrChecksum) || !strings.Contains(err.Error(), "arrived from n1-b00t") {
		t.Fatalf("a block that arrives with another CRC: %v", err)
	}
}

// TestCorruptReplicaFallsBack reads an object whose copy on one holder is
// corrupt: the other copy serves the read.
func TestCorruptReplicaFallsBack(t *testing.T) {
	c := newCluster(t)
	ms := c.start(1, "n1", "n2", "n3")
	body := payload(7, 1000)
	put(t, ms[0], "k", body, store.PutOptions{Replicas: 2})
	o, _ := c.db.Object("bkt", "k")
	os.WriteFile(filepath.Join(ms[0].spill, o.Blocks[0].ID.String()+".blk"), make([]byte, 1000), 0o600)
	for _, m := range ms {
		got, err := get(m, "k", nil)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("read through %s with one corrupt copy: %d bytes, %v", m.name, len(got), err)
		}
	}
}

func TestReplicasNeedMembers(t *testing.T) {
	c := newCluster(t)
	ms := c.start(64<<20, "n1", "n2")
	body := payload(8, 1000)
	_, err := ms[0].st.Put(ctx, "bkt", "k", bytes.NewReader(body), 1000, store.PutOptions{Replicas: 3})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "2 of 3 copies") {
		t.Fatalf("3 replicas on 2 members: %v", err)
	}
	waitBlocks(t, ms, 0)
}

// TestFullNodeWritesElsewhere fills the writer's tier: its blocks go to
// another member.
func TestFullNodeWritesElsewhere(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	bs, _ := blocks.New(blocks.Config{Memory: 1 << 10}) // no spill: full at once
	ms := c.start(64<<20, "n2")
	link := ms[0].tier.cfg.Link // any member's client will do: one CA
	tier := New(Config{Self: "n1-b00t", Local: bs, Link: link, Members: c.members})
	st, err := local.Open(local.Config{Meta: sharedMeta{c.db}, Blocks: tier, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	body := payload(9, 10<<10)
	if _, err := st.Put(ctx, "bkt", "k", bytes.NewReader(body), int64(len(body)), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if h := holders(t, c.db, "k"); len(h) != 1 || h[0] != "n2-b00t" {
		t.Fatalf("holders %v; want n2 alone", h)
	}
	got, err := get(ms[0], "k", nil)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read: %d bytes, %v", len(got), err)
	}
}

func TestDeleteFreesEveryHolder(t *testing.T) {
	c := newCluster(t)
	ms := c.start(64<<20, "n1", "n2", "n3")
	put(t, ms[0], "a", payload(10, 200<<10), store.PutOptions{Replicas: 3})
	put(t, ms[1], "b", payload(11, 200<<10), store.PutOptions{Replicas: 2})
	if err := ms[2].st.Delete(ctx, "bkt", "a"); err != nil {
		t.Fatal(err)
	}
	// Replacing frees the old object's blocks too.
	put(t, ms[2], "b", payload(12, 10), store.PutOptions{})
	if err := ms[2].st.Delete(ctx, "bkt", "b"); err != nil {
		t.Fatal(err)
	}
	waitBlocks(t, ms, 0)
}

func waitBlocks(t *testing.T, ms []*member, want int) {
	t.Helper()
	handofftest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, m := range ms {
			if n := m.tier.Stats().Blocks; n != want {
				return fmt.Errorf("%s holds %d blocks, want %d", m.name, n, want)
			}
		}
		return nil
	})
}
