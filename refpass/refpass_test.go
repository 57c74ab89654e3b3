package refpass

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/buffer"
	"github.com/handoff-dev/handoff/clock"
	"github.com/handoff-dev/handoff/memfd"
	"github.com/handoff-dev/handoff/pki"
	"github.com/handoff-dev/handoff/ref"
)

// castagnoli is hash/crc32's CRC-32C, the reference the package's checksums
// are checked against.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// cluster is n real services, each with its own store and a peer listener
// on loopback, knowing each other, sharing one key.
type cluster struct {
	svcs  []*Service
	addrs map[string]string
}

func newCluster(t testing.TB, n int, clear bool, clk clock.Clock) *cluster {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	keys := ref.NewKeyring()
	keys.Add(1, bytes.Repeat([]byte{7}, 32))
	keys.Use(1)
	c := &cluster{addrs: map[string]string{}}
	for i := 0; i < n; i++ {
		name := []string{"n1", "n2", "n3"}[i]
		f, err := pki.WriteMember(filepath.Join(dir, name), name, []string{"127.0.0.1"}, ca, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		m, err := pki.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		store, err := buffer.New(buffer.Config{Memory: 3 << 30, Clock: clk, Wait: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(Config{Node: name + "-boot", Store: store, Keys: keys, Member: m, Clear: clear, Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := s.Server(clear)
		go srv.Serve(ln)
		t.Cleanup(func() { ln.Close(); srv.Close(); store.Close() })
		c.svcs = append(c.svcs, s)
		c.addrs[name+"-boot"] = ln.Addr().String()
	}
	for _, s := range c.svcs {
		s.SetPeers(c.addrs)
	}
	return c
}

func payload(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func readAll(t testing.TB, p *Payload) []byte {
	t.Helper()
	defer p.Close()
	b, err := io.ReadAll(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLocalAndRemoteOpen(t *testing.T) {
	for _, clear := range []bool{true, false} {
		c := newCluster(t, 2, clear, clock.Real{})
		data := payload(5<<20 + 3)
		tok, info, err := c.svcs[0].Put(context.Background(), bytes.NewReader(data), int64(len(data)), Options{Issuer: "split", Readers: []string{"count"}, Reads: 2})
		if err != nil {
			t.Fatal(err)
		}
		if info.Checksum != crc32.Checksum(data, castagnoli) {
			t.Fatal("checksum is not the CRC-32C of the payload")
		}
		p, err := c.svcs[0].Open(context.Background(), tok, "count")
		if err != nil {
			t.Fatal(err)
		}
		if p.File() == nil {
			t.Fatal("a local open has no descriptor to pass on")
		}
		if got := readAll(t, p); !bytes.Equal(got, data) {
			t.Fatal("local read damaged")
		}
		p, err = c.svcs[1].Open(context.Background(), tok, "count")
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, p); !bytes.Equal(got, data) {
			t.Fatalf("clear=%v: remote read damaged", clear)
		}
		// Both reads taken: the buffer is gone from the holder.
		if _, err := c.svcs[1].Open(context.Background(), tok, "count"); !errors.Is(err, buffer.ErrNotFound) && !errors.Is(err, ref.ErrExhausted) {
			t.Fatalf("third read: %v; want gone or exhausted", err)
		}
		if st := c.svcs[0].Store().Stats(); st.Buffers != 0 || st.MemoryBytes != 0 {
			t.Fatalf("after the last read the holder still keeps %+v", st)
		}
	}
}

func TestRefusals(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	c := newCluster(t, 2, true, clk)
	holder, puller := c.svcs[0], c.svcs[1]
	put := func(o Options) string {
		tok, _, err := holder.Put(context.Background(), bytes.NewReader([]byte("payload")), 7, o)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ctx := context.Background()
	tok := put(Options{Issuer: "split", Readers: []string{"count"}, TTL: time.Minute})

	forger := ref.NewKeyring()
	forger.Add(1, bytes.Repeat([]byte{8}, 32))
	forger.Use(1)
	r, _ := ref.Parse(tok)
	forged, _ := forger.Sign(r)
	// Change one signature character to another valid one (a flipped
	// bit could make '-' or '_' an invalid character: malformed, not
	// tampered).
	tampered := []byte(tok)
	if i := len(tampered) - 5; tampered[i] == 'A' {
		tampered[i] = 'B'
	} else {
		tampered[i] = 'A'
	}
	for _, tc := range []struct {
		name, token, reader string
		want                error
		code                string
	}{
		{"forged", forged, "count", ref.ErrBadSignature, "ref_forged"},
		{"tampered", string(tampered), "count", ref.ErrBadSignature, "ref_forged"},
		{"not a reference", "hello", "count", ref.ErrMalformed, "ref_malformed"},
		{"wrong reader", tok, "mallory", ref.ErrWrongReader, "ref_wrong_reader"},
	} {
		for i, s := range []*Service{holder, puller} {
			_, err := s.Open(ctx, tc.token, tc.reader)
			if !errors.Is(err, tc.want) {
				t.Errorf("%s on node %d: err = %v; want %v", tc.name, i, err, tc.want)
				continue
			}
			if _, code := Status(err); code != tc.code {
				t.Errorf("%s: code %q; want %q", tc.name, code, tc.code)
			}
		}
	}
	// The holder refuses a pull the puller's own check would have let
	// through: ask it directly, as a rogue member might.
	addr := c.addrs[r.Holder]
	if _, _, err := puller.link.Pull(ctx, addr, forged, "count"); err == nil {
		t.Error("the holder served a forged reference")
	}
	if _, _, err := puller.link.Pull(ctx, addr, tok, "mallory"); err == nil {
		t.Error("the holder served a wrong reader")
	}

	// Over-read: one read allowed.
	if got := readAll(t, mustOpen(t, puller, tok, "count")); string(got) != "payload" {
		t.Fatalf("got %q", got)
	}
	if _, err := puller.Open(ctx, tok, "count"); !errors.Is(err, buffer.ErrNotFound) && !errors.Is(err, ref.ErrExhausted) {
		t.Fatalf("over-read: err = %v; want gone or exhausted", err)
	}

	// Expired.
	tok2 := put(Options{Issuer: "split", Readers: []string{"count"}, TTL: time.Minute})
	clk.Advance(2 * time.Minute)
	for i, s := range []*Service{holder, puller} {
		if _, err := s.Open(ctx, tok2, "count"); !errors.Is(err, ref.ErrExpired) {
			t.Errorf("expired on node %d: err = %v", i, err)
		}
	}
	if n := holder.Store().Sweep(); n != 1 {
		t.Errorf("sweep freed %d buffers; want the expired one", n)
	}
}

func mustOpen(t testing.TB, s *Service, tok, reader string) *Payload {
	t.Helper()
	p, err := s.Open(context.Background(), tok, reader)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestChecksumMismatchWithholdsTheEnd(t *testing.T) {
	c := newCluster(t, 2, true, clock.Real{})
	data := payload(3 << 20)
	f, err := memfd.Create("test")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data)
	// The sender declares a checksum its bytes do not have.
	wrong := crc32.Checksum(data, castagnoli) ^ 1
	tok, _, err := c.svcs[0].Adopt(f, int64(len(data)), &wrong, Options{Issuer: "split", Readers: []string{"count"}})
	if err != nil {
		t.Fatal(err)
	}
	p := mustOpen(t, c.svcs[1], tok, "count")
	defer p.Close()
	got, err := io.ReadAll(p)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("err = %v; want ErrChecksum", err)
	}
	if len(got) >= len(data) {
		t.Fatalf("all %d bytes were handed over despite the mismatch", len(got))
	}
}

func TestDeferredChecksum(t *testing.T) {
	c := newCluster(t, 3, true, clock.Real{})
	data := payload(3 << 20)
	f, err := memfd.Create("test")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data)
	tok, _, err := c.svcs[0].Adopt(f, int64(len(data)), nil, Options{Issuer: "split", Readers: []string{"count"}, Reads: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := ref.Parse(tok); !r.Deferred || r.Checksum != 0 {
		t.Fatalf("adopted without a checksum, the reference says %s", r)
	}
	// Pulled: the holder computes the checksum, the puller checks the
	// bytes against it.
	if got := readAll(t, mustOpen(t, c.svcs[1], tok, "count")); !bytes.Equal(got, data) {
		t.Fatal("pull of a deferred-checksum buffer damaged")
	}
	// Handed over in a drain: the adopter gets the computed checksum.
	if n, err := c.svcs[0].Handoff(context.Background()); err != nil || n != 1 {
		t.Fatalf("Handoff = %d, %v", n, err)
	}
	c.svcs[2].SetPeers(map[string]string{"n1-boot": c.addrs["n2-boot"], "n2-boot": c.addrs["n2-boot"], "n3-boot": c.addrs["n3-boot"]})
	if got := readAll(t, mustOpen(t, c.svcs[2], tok, "count")); !bytes.Equal(got, data) {
		t.Fatal("pull after the hand-over damaged")
	}
}

func TestHandoffOnDrain(t *testing.T) {
	c := newCluster(t, 3, true, clock.Real{})
	leaving, adopter, reader := c.svcs[0], c.svcs[1], c.svcs[2]
	ctx := context.Background()
	data := payload(2 << 20)
	var toks []string
	for i := 0; i < 3; i++ {
		tok, _, err := leaving.Put(ctx, bytes.NewReader(data), int64(len(data)), Options{Issuer: "split", Readers: []string{"count"}, Reads: 2})
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	// One read before the drain: one read is left to hand over.
	readAll(t, mustOpen(t, reader, toks[0], "count"))

	n, err := leaving.Handoff(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Handoff = %d, %v; want 3 moved", n, err)
	}
	if st := leaving.Store().Stats(); st.Buffers != 0 {
		t.Fatalf("the leaving node still holds %d buffers", st.Buffers)
	}
	if got := adopter.Adopted(); len(got) != 1 || got[0] != "n1-boot" {
		t.Fatalf("Adopted = %v", got)
	}
	// The control plane points the leaving holder at its adopter.
	peers := map[string]string{"n2-boot": c.addrs["n2-boot"], "n3-boot": c.addrs["n3-boot"], "n1-boot": c.addrs["n2-boot"]}
	reader.SetPeers(peers)
	for i, tok := range toks {
		if got := readAll(t, mustOpen(t, reader, tok, "count")); !bytes.Equal(got, data) {
			t.Fatalf("buffer %d damaged after the hand-over", i)
		}
	}
	// The hand-over kept the read counts: buffer 0 had one read left.
	if _, err := reader.Open(ctx, toks[0], "count"); err == nil {
		t.Fatal("a buffer was read more often than allowed after its hand-over")
	}
}

func TestBudgetFull(t *testing.T) {
	keys := ref.NewKeyring()
	keys.Add(1, bytes.Repeat([]byte{7}, 32))
	keys.Use(1)
	store, err := buffer.New(buffer.Config{Memory: 1 << 20, Wait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	s, _ := New(Config{Node: "n1-boot", Store: store, Keys: keys})
	_, _, err = s.Put(context.Background(), bytes.NewReader(payload(2<<20)), 2<<20, Options{Issuer: "split", Readers: []string{"count"}})
	if !errors.Is(err, buffer.ErrFull) {
		t.Fatalf("err = %v; want ErrFull", err)
	}
	if status, code := Status(err); status != 507 || code != "buffers_full" {
		t.Fatalf("Status = %d %s", status, code)
	}
}

func BenchmarkPull(b *testing.B) {
	for _, clear := range []bool{true, false} {
		name := "clear"
		if !clear {
			name = "tls"
		}
		b.Run(name, func(b *testing.B) {
			c := newCluster(b, 2, clear, clock.Real{})
			data := payload(256 << 20)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer() // the put is not the pull
				tok, _, err := c.svcs[0].Put(context.Background(), bytes.NewReader(data), int64(len(data)), Options{Issuer: "split", Readers: []string{"count"}})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				p := mustOpen(b, c.svcs[1], tok, "count")
				if _, err := io.Copy(io.Discard, p); err != nil {
					b.Fatal(err)
				}
				p.Close()
			}
		})
	}
}

// flipProxy forwards TCP to target, flipping one bit of the answer stream
// at offset at: past the TLS handshake and answer, inside a clear payload.
func flipProxy(t *testing.T, target string, at int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(u, c); u.Close() }()
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				var off int64
				for {
					n, err := u.Read(buf)
					if at >= off && at < off+int64(n) {
						buf[at-off] ^= 0x10
					}
					off += int64(n)
					if _, werr := c.Write(buf[:n]); werr != nil || err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestDamageInTransitIsCaught(t *testing.T) {
	c := newCluster(t, 2, true, clock.Real{})
	data := payload(3 << 20)
	tok, _, err := c.svcs[0].Put(context.Background(), bytes.NewReader(data), int64(len(data)), Options{Issuer: "split", Readers: []string{"count"}})
	if err != nil {
		t.Fatal(err)
	}
	// The puller reaches the holder through a link that damages one bit
	// 1 MiB into the answer: TLS cannot see it (the payload is in the
	// clear), the checksum must.
	c.svcs[1].SetPeers(map[string]string{"n1-boot": flipProxy(t, c.addrs["n1-boot"], 1<<20)})
	p := mustOpen(t, c.svcs[1], tok, "count")
	defer p.Close()
	got, err := io.ReadAll(p)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("damaged pull: err = %v after %d bytes; want ErrChecksum", err, len(got))
	}
	if len(got) >= len(data) {
		t.Fatal("the damaged payload was delivered in full")
	}
}

// TestFetchLandsAndChecks: Fetch lands a remote payload in the puller's
// store (a descriptor to pass on), checked against the checksum the holder
// computed while sending it; the holder remembers that checksum, and a
// payload damaged on the way is refused and not kept.
func TestFetchLandsAndChecks(t *testing.T) {
	c := newCluster(t, 2, true, clock.Real{})
	data := payload(3<<20 + 5)
	f, err := memfd.Create("test")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data)
	// Two reads: the holder keeps the buffer, and its checksum, after one.
	tok, info, err := c.svcs[0].Adopt(f, int64(len(data)), nil, Options{Issuer: "split", Readers: []string{"count"}, Reads: 2})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.svcs[1].Fetch(context.Background(), tok, "count")
	if err != nil {
		t.Fatal(err)
	}
	if p.File() == nil {
		t.Fatal("a fetched payload has no descriptor to pass on")
	}
	if got := readAll(t, p); !bytes.Equal(got, data) {
		t.Fatal("fetched payload damaged")
	}
	c.svcs[0].mu.Lock()
	sum, known := c.svcs[0].sums[info.ID]
	c.svcs[0].mu.Unlock()
	if !known || sum != crc32.Checksum(data, castagnoli) {
		t.Fatalf("holder remembers checksum %08x (known %v); want the payload's", sum, known)
	}

	// Another payload travels through a link that flips a bit.
	tok, _, err = c.svcs[0].Put(context.Background(), bytes.NewReader(data), int64(len(data)), Options{Issuer: "split", Readers: []string{"count"}})
	if err != nil {
		t.Fatal(err)
	}
	c.svcs[1].SetPeers(map[string]string{"n1-boot": flipProxy(t, c.addrs["n1-boot"], 1<<20)})
	before := c.svcs[1].Store().Stats()
	if _, err := c.svcs[1].Fetch(context.Background(), tok, "count"); !errors.Is(err, ErrChecksum) {
		t.Fatalf("damaged fetch: err = %v; want ErrChecksum", err)
	}
	if st := c.svcs[1].Store().Stats(); st.Buffers != before.Buffers || st.MemoryBytes != before.MemoryBytes {
		t.Fatalf("the damaged payload was kept: %+v, before %+v", st, before)
	}
}

// TestBroadcastPullsOncePerNode: a reference with several reads, read by
// receivers on one node, is pulled there once and served from that node's
// copy; the holder still counts every read (takes), refuses reads past the
// budget and wrong readers, and the copy goes with the last read.
func TestBroadcastPullsOncePerNode(t *testing.T) {
	c := newCluster(t, 3, true, clock.Real{})
	holder, near, far := c.svcs[0], c.svcs[1], c.svcs[2]
	data := payload(4<<20 + 1)
	f, err := memfd.Create("test")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data)
	tok, _, err := holder.Adopt(f, int64(len(data)), nil, Options{Issuer: "split", Readers: []string{"count"}, Reads: 5})
	if err != nil {
		t.Fatal(err)
	}
	// Four receivers on one node at once, by Fetch (map) and Open (stream).
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			open := near.Fetch
			if i%2 == 1 {
				open = near.Open
			}
			p, err := open(context.Background(), tok, "count")
			if err != nil {
				errs <- err
				return
			}
			defer p.Close()
			got, err := io.ReadAll(p)
			if err == nil && !bytes.Equal(got, data) {
				err = errors.New("payload damaged")
			}
			errs <- err
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := holder.Stats().Served.Load(); got != 1 {
		t.Fatalf("the holder served %d pulls to one node; want 1", got)
	}
	if got := holder.Stats().Taken.Load(); got != 3 {
		t.Fatalf("the holder took %d reads without bytes; want 3", got)
	}
	if _, err := near.Fetch(context.Background(), tok, "intruder"); !errors.Is(err, ref.ErrWrongReader) {
		t.Fatalf("wrong reader on a node with a copy: err = %v", err)
	}
	// The fifth read, on another node, pulls; the holder frees the buffer.
	if got := readAll(t, mustOpen(t, far, tok, "count")); !bytes.Equal(got, data) {
		t.Fatal("the last read damaged")
	}
	if st := holder.Store().Stats(); st.Buffers != 0 {
		t.Fatalf("the holder keeps %d buffers after the last read", st.Buffers)
	}
	// A sixth read is refused, also where a copy was kept, and the copy goes.
	_, err = near.Fetch(context.Background(), tok, "count")
	if !errors.Is(err, buffer.ErrNotFound) && !errors.Is(err, ref.ErrExhausted) {
		t.Fatalf("read past the budget: err = %v; want gone or exhausted", err)
	}
	if st := near.Store().Stats(); st.Buffers != 0 || st.MemoryBytes != 0 {
		t.Fatalf("the reading node keeps its copy after the budget ran out: %+v", st)
	}
	near.mu.Lock()
	left := len(near.copies) + len(near.copyIDs)
	near.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d copy records left", left)
	}
}

// TestBroadcastCopyFreedWithLastRead: a node that takes every read frees
// its copy with the last one, without asking again.
func TestBroadcastCopyFreedWithLastRead(t *testing.T) {
	c := newCluster(t, 2, true, clock.Real{})
	data := payload(1 << 20)
	tok, _, err := c.svcs[0].Put(context.Background(), bytes.NewReader(data), int64(len(data)), Options{Issuer: "split", Readers: []string{"count"}, Reads: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if got := readAll(t, mustOpen(t, c.svcs[1], tok, "count")); !bytes.Equal(got, data) {
			t.Fatalf("read %d damaged", i)
		}
	}
	if st := c.svcs[1].Store().Stats(); st.Buffers != 0 || st.MemoryBytes != 0 {
		t.Fatalf("the copy outlived the last read: %+v", st)
	}
	if got := c.svcs[1].Stats().Copied.Load(); got != 2 {
		t.Fatalf("%d reads served from the copy; want 2", got)
	}
	if _, err := c.svcs[1].Open(context.Background(), tok, "count"); err == nil {
		t.Fatal("a fourth read was served")
	}
}

// TestPullWaitsForTheWriter: a memfd handed over while its writer still
// maps it, under a reference with several reads, is sent only once the
// writer unmapped it, so every puller gets the bytes as they were at the
// unmap, never bytes the writer could still change, whenever the pull
// started.
func TestPullWaitsForTheWriter(t *testing.T) {
	c := newCluster(t, 2, true, clock.Real{})
	const size = 2 << 20
	f, m := writableMemfd(t, size)
	copy(m, payload(size))
	tok, _, err := c.svcs[0].Adopt(f, size, nil, Options{Issuer: "split", Readers: []string{"count"}, Reads: 2})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := c.svcs[1].Fetch(context.Background(), tok, "count")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer p.Close()
		b, err := io.ReadAll(p)
		done <- result{b, err}
	}()
	// The writer's last change, then its unmap.
	final := payload(size)
	copy(m, final)
	if err := memfd.Unmap(m); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !bytes.Equal(r.b, final) {
		t.Fatal("the puller got bytes other than the ones fixed at the writer's unmap")
	}
}

// TestOneReadPullDoesNotWaitForTheWriter: the one read of a reference is
// sent while its writer still maps the memfd (the writer's unmap and the
// write seal keep several reads equal, and there is no other read), and
// arrives whole and checked.
func TestOneReadPullDoesNotWaitForTheWriter(t *testing.T) {
	c := newCluster(t, 2, true, clock.Real{})
	const size = 2 << 20
	f, m := writableMemfd(t, size)
	defer memfd.Unmap(m)
	want := payload(size)
	copy(m, want)
	tok, _, err := c.svcs[0].Adopt(f, size, nil, Options{Issuer: "split", Readers: []string{"count"}})
	if err != nil {
		t.Fatal(err)
	}
	// The writer keeps its mapping until the pull is over: a pull that
	// waited for the unmap would not end before sealWait.
	ctx, cancel := context.WithTimeout(context.Background(), sealWait/2)
	defer cancel()
	p, err := c.svcs[1].Fetch(ctx, tok, "count")
	if err != nil {
		t.Fatalf("a one-read pull of a buffer its writer still maps: %v", err)
	}
	defer p.Close()
	if got := readAll(t, p); !bytes.Equal(got, want) {
		t.Fatal("the puller got other bytes than the writer wrote before the hand-over")
	}
}

// writableMemfd makes a memfd of size bytes and maps it writable, as a
// writer that still fills it.
func writableMemfd(t *testing.T, size int64) (*os.File, []byte) {
	t.Helper()
	f, err := memfd.Create("test")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	m, err := memfd.Map(f, size, true)
	if err != nil {
		t.Fatal(err)
	}
	return f, m
}
