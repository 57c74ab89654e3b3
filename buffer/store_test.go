package buffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/handoff-dev/handoff/clock"
	"github.com/handoff-dev/handoff/internal/handofftest"
	"github.com/handoff-dev/handoff/memfd"
)

const (
	KiB = 1 << 10
	MiB = 1 << 20
)

var start = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// newStore makes a store on a fake clock (unless cfg has a clock) and
// closes it when the test ends.
func newStore(t testing.TB, cfg Config) (*Store, *clock.Fake) {
	t.Helper()
	fake, _ := cfg.Clock.(*clock.Fake)
	if cfg.Clock == nil {
		fake = clock.NewFake(start)
		cfg.Clock = fake
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, fake
}

var payloads sync.Map // int -> []byte

// payload returns n reproducible pseudo-random bytes, the same slice for
// the same n: callers must not modify it.
func payload(n int) []byte {
	if b, ok := payloads.Load(n); ok {
		return b.([]byte)
	}
	b := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)})
	rng.Read(b)
	payloads.Store(n, b)
	return b
}

func meta(s *Store) Meta {
	return Meta{Reads: 1, Expires: s.cfg.Clock.Now().Add(time.Hour), Issuer: "split"}
}

func crc(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

func mustPut(t testing.TB, s *Store, data []byte, m Meta) Info {
	t.Helper()
	info, err := s.Put(context.Background(), bytes.NewReader(data), int64(len(data)), m)
	if err != nil {
		t.Fatalf("Put of %d bytes: %v", len(data), err)
	}
	return info
}

// readAll opens id, reads it whole and closes the reader.
func readAll(t testing.TB, s *Store, id ID) []byte {
	t.Helper()
	rd, err := s.Open(id)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer rd.Close()
	got, err := readReader(rd)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return got
}

// readReader reads rd to the end into one allocation of the right size:
// io.ReadAll's growing copies of 64 MiB take seconds under -race.
func readReader(rd *Reader) ([]byte, error) {
	b := bytes.NewBuffer(make([]byte, 0, rd.Info().Size+bytes.MinRead))
	_, err := b.ReadFrom(rd)
	return b.Bytes(), err
}

func checkStats(t testing.TB, s *Store, buffers int, memory, spilled int64) {
	t.Helper()
	st := s.Stats()
	if st.Buffers != buffers || st.MemoryBytes != memory || st.SpilledBytes != spilled {
		t.Fatalf("Stats: %d buffers, %d memory bytes, %d spilled bytes; want %d, %d, %d",
			st.Buffers, st.MemoryBytes, st.SpilledBytes, buffers, memory, spilled)
	}
}

func TestPutOpenRoundTrip(t *testing.T) {
	s, _ := newStore(t, Config{Memory: 256 * MiB})
	for _, n := range []int{0, 1, 4*KiB + 7, 3*MiB + 1, 64 * MiB} {
		for _, known := range []bool{true, false} {
			t.Run(fmt.Sprintf("%d/known=%v", n, known), func(t *testing.T) {
				data := payload(n)
				size := int64(n)
				if !known {
					size = -1
				}
				m := meta(s)
				m.Reads = 2
				info, err := s.Put(context.Background(), iotest.HalfReader(bytes.NewReader(data)), size, m)
				if err != nil {
					t.Fatal(err)
				}
				if info.Size != int64(n) || info.Checksum != crc(data) || info.Spilled || info.ReadsLeft != 2 || info.ID.IsZero() {
					t.Fatalf("Info = %+v; want size %d, checksum %08x, not spilled, 2 reads, an id", info, n, crc(data))
				}
				checkStats(t, s, 1, int64(n), 0)

				rd, err := s.Open(info.ID)
				if err != nil {
					t.Fatal(err)
				}
				defer rd.Close()
				if sealed, err := memfd.Sealed(rd.File()); err != nil || !sealed {
					t.Fatalf("buffer not sealed: %v, %v", sealed, err)
				}
				if got, err := readReader(rd); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("Read: %d bytes, %v; want the %d bytes put", len(got), err, n)
				}
				off := n / 2
				got := make([]byte, n-off+1) // one more than is left
				if k, err := rd.ReadAt(got, int64(off)); err != io.EOF || !bytes.Equal(got[:k], data[off:]) {
					t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want the tail and io.EOF", len(got), off, k, err)
				}
				if got := readAll(t, s, info.ID); !bytes.Equal(got, data) {
					t.Fatal("second reader saw different bytes")
				}
				rd.Close()
				checkStats(t, s, 0, 0, 0)
			})
		}
	}
	if st := s.Stats(); st.Puts != 10 || st.Exhausted != 10 || st.Spills != 0 {
		t.Fatalf("Stats = %+v; want 10 puts, 10 exhausted, 0 spills", st)
	}
}

func TestWrongSize(t *testing.T) {
	s, _ := newStore(t, Config{Memory: 16 * MiB, MaxSize: 8 * MiB})
	data := payload(MiB)
	cases := []struct {
		name string
		r    io.Reader
		size int64
	}{
		{"short", bytes.NewReader(data[:MiB-1]), MiB},
		{"long", bytes.NewReader(data), MiB - 1},
		{"long by far", bytes.NewReader(payload(3 * MiB)), MiB},
		{"empty but declared", bytes.NewReader(nil), 1},
		{"over MaxSize, declared", bytes.NewReader(data), 8*MiB + 1},
		{"over MaxSize, unknown", bytes.NewReader(payload(8*MiB + 1)), -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Put(context.Background(), c.r, c.size, meta(s))
			if !errors.Is(err, ErrSize) {
				t.Fatalf("Put = %v; want ErrSize", err)
			}
			t.Log(err)
			checkStats(t, s, 0, 0, 0)
		})
	}
	// Exactly MaxSize is fine, with or without the size.
	mustPut(t, s, payload(8*MiB), meta(s))
	if _, err := s.Put(context.Background(), bytes.NewReader(payload(8*MiB)), -1, meta(s)); err != nil {
		t.Fatalf("unknown-size Put of exactly MaxSize: %v", err)
	}
}

func TestMetaRules(t *testing.T) {
	s, clk := newStore(t, Config{Memory: MiB})
	ctx := context.Background()
	for _, c := range []struct {
		name string
		m    Meta
		size int64
		want error
	}{
		{"no reads", Meta{Expires: clk.Now().Add(time.Minute)}, 0, ErrInvalid},
		{"no expiry", Meta{Reads: 1}, 0, ErrInvalid},
		{"expired", Meta{Reads: 1, Expires: clk.Now()}, 0, ErrInvalid},
		{"negative size", meta(s), -2, ErrInvalid},
	} {
		if _, err := s.Put(ctx, bytes.NewReader(nil), c.size, c.m); !errors.Is(err, c.want) {
			t.Errorf("%s: Put = %v; want %v", c.name, err, c.want)
		}
	}

	m := meta(s)
	m.ID = ID{1, 2, 3}
	if info := mustPut(t, s, []byte("x"), m); info.ID != m.ID {
		t.Fatalf("Put with Meta.ID %s stored %s", m.ID, info.ID)
	}
	if _, err := s.Put(ctx, bytes.NewReader([]byte("y")), 1, m); !errors.Is(err, ErrExists) {
		t.Fatalf("second Put with the same id = %v; want ErrExists", err)
	}
	if got := readAll(t, s, m.ID); string(got) != "x" {
		t.Fatalf("the refused Put changed the buffer: %q", got)
	}
	checkStats(t, s, 0, 0, 0)

	for _, cfg := range []Config{{}, {Memory: -1}, {Memory: 1, MaxSize: -1}, {Memory: 1, SpillDir: "/nonexistent/spill"}} {
		if _, err := New(cfg); !errors.Is(err, ErrInvalid) {
			t.Errorf("New(%+v) = %v; want ErrInvalid", cfg, err)
		}
	}
}

func TestReadsCounted(t *testing.T) {
	s, _ := newStore(t, Config{Memory: MiB})
	m := meta(s)
	m.Reads = 3
	info := mustPut(t, s, []byte("abc"), m)
	for want := uint32(2); ; want-- {
		rd, err := s.Open(info.ID)
		if err != nil {
			t.Fatalf("Open with %d reads left: %v", want+1, err)
		}
		if rd.Info().ReadsLeft != want {
			t.Fatalf("Reader.Info().ReadsLeft = %d; want %d", rd.Info().ReadsLeft, want)
		}
		rd.Close()
		if want == 0 {
			break
		}
		if st, err := s.Stat(info.ID); err != nil || st.ReadsLeft != want {
			t.Fatalf("Stat = %+v, %v; want %d reads left", st, err, want)
		}
	}
	// The last read took the buffer out of the store: it is gone, not
	// merely exhausted.
	if _, err := s.Open(info.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after the last read = %v; want ErrNotFound", err)
	}
	if _, err := s.Stat(info.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat after the last read = %v; want ErrNotFound", err)
	}
	if _, err := s.Open(newID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of an unknown id = %v; want ErrNotFound", err)
	}
}

func TestConcurrentOpens(t *testing.T) {
	s, _ := newStore(t, Config{Memory: MiB})
	for round := 0; round < 50; round++ {
		m := meta(s)
		m.Reads = 3
		info := mustPut(t, s, []byte("shared"), m)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			readers []*Reader
			errs    []error
		)
		for range 20 {
			wg.Go(func() {
				rd, err := s.Open(info.ID)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				readers = append(readers, rd)
			})
		}
		wg.Wait()
		if len(readers) != 3 {
			t.Fatalf("round %d: %d Opens of a 3-read buffer succeeded", round, len(readers))
		}
		for _, err := range errs {
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExhausted) {
				t.Fatalf("round %d: failed Open = %v; want ErrNotFound or ErrExhausted", round, err)
			}
		}
		for _, rd := range readers {
			if got, err := io.ReadAll(rd); err != nil || string(got) != "shared" {
				t.Fatalf("read %q, %v", got, err)
			}
			rd.Close()
		}
		checkStats(t, s, 0, 0, 0)
	}
}

func TestExpiry(t *testing.T) {
	s, clk := newStore(t, Config{Memory: MiB})
	m := Meta{Reads: 5, Expires: clk.Now().Add(10 * time.Second)}
	a := mustPut(t, s, []byte("aaaa"), m)
	b := mustPut(t, s, []byte("bb"), m)
	m.Expires = clk.Now().Add(time.Hour)
	c := mustPut(t, s, []byte("c"), m)

	clk.Advance(9 * time.Second)
	if n := s.Sweep(); n != 0 {
		t.Fatalf("Sweep before expiry freed %d", n)
	}
	rd, err := s.Open(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()

	clk.Advance(time.Second) // exactly at Expires: gone
	if _, err := s.Open(b.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of an expired buffer = %v; want ErrNotFound", err)
	}
	if n := s.Sweep(); n != 1 { // b went lazily with the Open above
		t.Fatalf("Sweep freed %d; want 1", n)
	}
	if got := s.List(); len(got) != 1 || got[0].ID != c.ID {
		t.Fatalf("List after expiry = %+v; want only the unexpired buffer", got)
	}
	if st := s.Stats(); st.Expired != 2 || st.Buffers != 1 || st.MemoryBytes != 5 {
		t.Fatalf("Stats = %+v; want 2 expired, 1 buffer, 5 bytes (4 still read)", st)
	}
	// The reader opened before expiry still works, until it is closed.
	if got, err := io.ReadAll(rd); err != nil || string(got) != "aaaa" {
		t.Fatalf("reader after expiry read %q, %v", got, err)
	}
	rd.Close()
	checkStats(t, s, 1, 1, 0)
}

func TestReaderOutlivesFree(t *testing.T) {
	s, _ := newStore(t, Config{Memory: MiB})
	data := payload(100 * KiB)
	m := meta(s)
	m.Reads = 2
	info := mustPut(t, s, data, m)
	rd, err := s.Open(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Free(info.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Free(info.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Free = %v; want ErrNotFound", err)
	}
	if _, err := s.Open(info.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after Free = %v; want ErrNotFound", err)
	}
	checkStats(t, s, 0, int64(len(data)), 0) // still counted: being read
	if got, err := io.ReadAll(rd); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reader after Free: %d bytes, %v", len(got), err)
	}
	if err := rd.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rd.Close(); err != nil {
		t.Fatalf("second Close = %v; want nil", err)
	}
	checkStats(t, s, 0, 0, 0)
	if st := s.Stats(); st.Frees != 1 {
		t.Fatalf("Stats.Frees = %d; want 1", st.Frees)
	}
}

// waitFor polls until n Puts wait for memory.
func waitFor(t *testing.T, s *Store, n int) {
	t.Helper()
	handofftest.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if got := s.Stats().Waiting; got != n {
			return fmt.Errorf("%d Puts waiting for memory; want %d", got, n)
		}
		return nil
	})
}

type result struct {
	info Info
	err  error
}

func putAsync(ctx context.Context, s *Store, r io.Reader, size int64) chan result {
	ch := make(chan result, 1)
	go func() {
		info, err := s.Put(ctx, r, size, meta(s))
		ch <- result{info, err}
	}()
	return ch
}

func TestFullWithoutSpill(t *testing.T) {
	s, clk := newStore(t, Config{Memory: MiB, Wait: 5 * time.Second})
	mustPut(t, s, payload(MiB), meta(s))

	ch := putAsync(context.Background(), s, bytes.NewReader([]byte("x")), 1)
	waitFor(t, s, 1)
	clk.Advance(5*time.Second - time.Nanosecond)
	select {
	case r := <-ch:
		t.Fatalf("Put gave up before Wait: %v", r.err)
	case <-time.After(10 * time.Millisecond):
	}
	clk.Advance(time.Nanosecond)
	if r := <-ch; !errors.Is(r.err, ErrFull) {
		t.Fatalf("Put into a full budget = %v; want ErrFull", r.err)
	} else {
		t.Log(r.err)
	}
	// Larger than the whole budget: refused at once, no wait.
	if _, err := s.Put(context.Background(), bytes.NewReader(payload(2*MiB)), 2*MiB, meta(s)); !errors.Is(err, ErrFull) {
		t.Fatalf("Put larger than the budget = %v; want ErrFull", err)
	}
	st := s.Stats()
	if st.Refusals != 2 || st.Waiting != 0 || st.MemoryBytes != MiB || st.Buffers != 1 {
		t.Fatalf("Stats = %+v; want 2 refusals, nobody waiting, the first buffer alone", st)
	}
}

func TestFullWithSpill(t *testing.T) {
	dir := t.TempDir()
	s, _ := newStore(t, Config{Memory: MiB, SpillDir: dir, Wait: -1})
	held := mustPut(t, s, payload(MiB), meta(s))

	data := payload(3 * MiB)
	for _, size := range []int64{3 * MiB, -1} {
		info, err := s.Put(context.Background(), bytes.NewReader(data), size, meta(s))
		if err != nil {
			t.Fatal(err)
		}
		if !info.Spilled || info.Size != 3*MiB || info.Checksum != crc(data) {
			t.Fatalf("Info = %+v; want spilled, 3 MiB, checksum %08x", info, crc(data))
		}
		checkStats(t, s, 2, MiB, 3*MiB)
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("spill directory holds %d names; spill files must be unlinked", len(entries))
		}
		rd, err := s.Open(info.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := readReader(rd); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("spilled buffer read back %d bytes, %v", len(got), err)
		}
		if _, err := rd.File().Write([]byte("x")); err == nil {
			t.Fatal("a reader's file is writable")
		}
		rd.Close()
		checkStats(t, s, 1, MiB, 0)
	}
	// The budget frees up: the next Put is in memory again.
	if err := s.Free(held.ID); err != nil {
		t.Fatal(err)
	}
	if info := mustPut(t, s, data[:MiB], meta(s)); info.Spilled {
		t.Fatal("Put spilled with memory free")
	}
	if st := s.Stats(); st.Spills != 2 || st.Refusals != 0 {
		t.Fatalf("Stats = %+v; want 2 spills, no refusals", st)
	}
}

// A Put of unknown size that outgrows the budget midway moves to a spill
// file and loses nothing.
func TestUnknownSizeSpillsMidway(t *testing.T) {
	s, _ := newStore(t, Config{Memory: 8 * MiB, SpillDir: t.TempDir(), Wait: -1})
	data := payload(13*MiB + 5)
	info, err := s.Put(context.Background(), iotest.HalfReader(bytes.NewReader(data)), -1, meta(s))
	if err != nil {
		t.Fatal(err)
	}
	if !info.Spilled || info.Size != int64(len(data)) || info.Checksum != crc(data) {
		t.Fatalf("Info = %+v; want spilled, %d bytes, checksum %08x", info, len(data), crc(data))
	}
	checkStats(t, s, 1, 0, int64(len(data)))
	if got := readAll(t, s, info.ID); !bytes.Equal(got, data) {
		t.Fatal("bytes changed on the way to the spill file")
	}

	// Without a spill directory the same Put fails and gives the memory back.
	s2, _ := newStore(t, Config{Memory: 8 * MiB, Wait: -1})
	if _, err := s2.Put(context.Background(), bytes.NewReader(data), -1, meta(s2)); !errors.Is(err, ErrFull) {
		t.Fatalf("unknown-size Put past the budget without spilling = %v; want ErrFull", err)
	}
	checkStats(t, s2, 0, 0, 0)
	if st := s2.Stats(); st.Refusals != 1 {
		t.Fatalf("Refusals = %d; want 1", st.Refusals)
	}
}

func TestWaitingPutGetsFreedMemory(t *testing.T) {
	s, _ := newStore(t, Config{Memory: MiB})
	first := mustPut(t, s, payload(600*KiB), meta(s))
	data := payload(600 * KiB)
	ch := putAsync(context.Background(), s, bytes.NewReader(data), int64(len(data)))
	waitFor(t, s, 1)
	if err := s.Free(first.ID); err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil || r.info.Spilled {
		t.Fatalf("waiting Put = %+v, %v; want it in memory once Free made room", r.info, r.err)
	}
	if got := readAll(t, s, r.info.ID); !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
}

func TestCancelWhileWaiting(t *testing.T) {
	s, _ := newStore(t, Config{Memory: MiB, SpillDir: t.TempDir()})
	mustPut(t, s, payload(MiB), meta(s))
	ctx, cancel := context.WithCancel(context.Background())
	ch := putAsync(ctx, s, bytes.NewReader([]byte("x")), 1)
	waitFor(t, s, 1)
	cancel()
	if r := <-ch; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled Put = %v; want context.Canceled (not a spill)", r.err)
	}
	st := s.Stats()
	if st.Waiting != 0 || st.MemoryBytes != MiB || st.Buffers != 1 || st.Refusals != 0 {
		t.Fatalf("Stats = %+v; want the cancelled Put to leave no trace", st)
	}
}

// A reader that cancels its Put's context halfway: nothing is kept.
func TestCancelWhileCopying(t *testing.T) {
	s, _ := newStore(t, Config{Memory: 64 * MiB})
	ctx, cancel := context.WithCancel(context.Background())
	r := io.MultiReader(bytes.NewReader(payload(2*MiB)), readFunc(func([]byte) (int, error) {
		cancel()
		return 0, io.EOF // on to the next part, whose first write sees ctx done
	}), bytes.NewReader(payload(2*MiB)))
	if _, err := s.Put(ctx, r, -1, meta(s)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put = %v; want context.Canceled", err)
	}
	checkStats(t, s, 0, 0, 0)
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

func TestClose(t *testing.T) {
	s, _ := newStore(t, Config{Memory: MiB})
	a := mustPut(t, s, []byte("aaa"), meta(s))
	mustPut(t, s, payload(MiB-3), meta(s))
	rd, err := s.Open(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	ch := putAsync(context.Background(), s, bytes.NewReader([]byte("x")), 1)
	waitFor(t, s, 1)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if r := <-ch; !errors.Is(r.err, ErrClosed) {
		t.Fatalf("Put waiting during Close = %v; want ErrClosed", r.err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v; want ErrClosed", err)
	}
	for name, err := range map[string]error{
		"Put":  func() error { _, err := s.Put(context.Background(), bytes.NewReader(nil), 0, meta(s)); return err }(),
		"Open": func() error { _, err := s.Open(a.ID); return err }(),
		"Stat": func() error { _, err := s.Stat(a.ID); return err }(),
		"Free": s.Free(a.ID),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v; want ErrClosed", name, err)
		}
	}
	if got := s.List(); len(got) != 0 {
		t.Errorf("List after Close = %v", got)
	}
	checkStats(t, s, 0, 3, 0) // the open reader still holds its bytes
	if got, err := io.ReadAll(rd); err != nil || string(got) != "aaa" {
		t.Fatalf("reader after Close read %q, %v", got, err)
	}
	rd.Close()
	st := s.Stats()
	if st.Buffers != 0 || st.MemoryBytes != 0 || st.Puts != 2 || st.BudgetBytes != MiB {
		t.Fatalf("Stats after Close = %+v", st)
	}
}

// TestRealClock runs a store on the wall clock: its own sweeper frees an
// expired buffer, and a short Wait refuses a Put in time.
func TestRealClock(t *testing.T) {
	s, _ := newStore(t, Config{Memory: KiB, Wait: 20 * time.Millisecond, Clock: clock.Real{}})
	m := Meta{Reads: 1, Expires: time.Now().Add(50 * time.Millisecond)}
	mustPut(t, s, payload(KiB), m)
	began := time.Now()
	if _, err := s.Put(context.Background(), bytes.NewReader([]byte("x")), 1, meta(s)); !errors.Is(err, ErrFull) {
		t.Fatalf("Put = %v; want ErrFull", err)
	}
	if d := time.Since(began); d < 20*time.Millisecond {
		t.Fatalf("Put gave up after %v; want it to wait 20ms", d)
	}
	handofftest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := s.Stats(); st.Expired != 1 || st.MemoryBytes != 0 {
			return fmt.Errorf("stats %+v; want the sweeper to free the expired buffer", st)
		}
		return nil
	})
}

// TestConcurrentUse puts, reads and frees from many goroutines at once on
// a small budget that spills, then checks that every byte was given back.
func TestConcurrentUse(t *testing.T) {
	s, _ := newStore(t, Config{Memory: 4 * MiB, SpillDir: t.TempDir(), Wait: 5 * time.Millisecond, Clock: clock.Real{}})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 30 {
				data := payload(g*1000 + i*37*KiB%(3*MiB))
				size := int64(len(data))
				if i%3 == 0 {
					size = -1
				}
				m := meta(s)
				m.Reads = 2
				info, err := s.Put(context.Background(), bytes.NewReader(data), size, m)
				if err != nil {
					t.Error(err)
					return
				}
				rd, err := s.Open(info.ID)
				if err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					s.Free(info.ID)
				}
				got, err := readReader(rd)
				rd.Close()
				if err != nil || !bytes.Equal(got, data) || crc(got) != info.Checksum {
					t.Errorf("read back %d of %d bytes, %v", len(got), len(data), err)
					return
				}
				if i%2 == 1 {
					s.Free(info.ID)
				}
			}
		})
	}
	wg.Wait()
	checkStats(t, s, 0, 0, 0)
	st := s.Stats()
	t.Logf("stats: %+v", st)
	if st.Puts != 240 {
		t.Fatalf("Puts = %d; want 240", st.Puts)
	}
}
