package raw

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/bench"
)

func payload(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

func TestStreamsDeliverEveryByte(t *testing.T) {
	for _, mk := range []func() (*Stream, error){NewTCPStream, NewUnixStream} {
		s, err := mk()
		if err != nil {
			t.Fatal(err)
		}
		t.Run(s.Name(), func(t *testing.T) {
			defer s.Close()
			// Sizes around the chunk size, and a shrink after a grow.
			for _, n := range []int{1, 1000, ChunkSize - 1, ChunkSize, 3*ChunkSize + 7, 10} {
				p := payload(n)
				got, err := s.Transfer(context.Background(), p)
				if err != nil {
					t.Fatalf("%d bytes: %v", n, err)
				}
				if !bytes.Equal(got, p) {
					t.Fatalf("%d bytes: received bytes differ", n)
				}
			}
		})
	}
}

func TestStreamCancelBreaksTransfer(t *testing.T) {
	s, err := NewTCPStream()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A canceled context sets a past deadline before the first write.
	if _, err := s.Transfer(ctx, payload(64<<20)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, err := s.Transfer(context.Background(), payload(10)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after a broken transfer err = %v, want ErrClosed", err)
	}
}

func TestRunRawTransfers(t *testing.T) {
	ts, err := Transfers()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, tr := range ts {
			tr.Close()
		}
	}()
	var progress strings.Builder
	res, err := bench.RunTransfers(context.Background(), bench.Options{
		Sizes: []int64{bench.KiB, bench.MiB, 16 * bench.MiB}, MinIters: 3, MaxIters: 50,
		Budget: 100 * time.Millisecond, Progress: &progress,
	}, ts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", progress.String())
	if len(res.Points) != 9 {
		t.Fatalf("got %d points, want 9", len(res.Points))
	}
	for _, p := range res.Points {
		if p.Throughput <= 0 {
			t.Errorf("%s at %d: no throughput", p.Series, p.Size)
		}
	}
}

func TestRoundTripsAndHTTPEcho(t *testing.T) {
	ctx := context.Background()
	for _, nw := range []string{"tcp", "unix"} {
		p, err := RoundTrip(ctx, nw, 64, 200)
		if err != nil {
			t.Fatal(err)
		}
		if p.Series != nw+"-rtt" || p.N != 200 || p.P50 <= 0 || p.P99 < p.P50 {
			t.Errorf("implausible %+v", p)
		}
		t.Logf("%s: p50 %v p99 %v", p.Series, p.P50, p.P99)
	}
	p, err := HTTPEcho(ctx, 64, 200)
	if err != nil {
		t.Fatal(err)
	}
	if p.Series != "http-rtt" || p.N != 200 || p.P50 <= 0 {
		t.Errorf("implausible %+v", p)
	}
	t.Logf("%s: p50 %v p99 %v", p.Series, p.P50, p.P99)
	if _, err := RoundTrip(ctx, "udp", 64, 1); err == nil {
		t.Error("RoundTrip over udp did not fail")
	}
}

func TestMeasure(t *testing.T) {
	if testing.Short() {
		t.Skip("measures for a few seconds")
	}
	res, err := Measure(context.Background(), bench.Options{
		Sizes: []int64{bench.MiB}, MaxIters: 20, Budget: 50 * time.Millisecond,
	}, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"memcpy", "tcp", "unix", "tcp-rtt", "unix-rtt", "http-rtt"}
	if got := res.Series(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("series %v, want %v", got, want)
	}
}

func benchTransfer(b *testing.B, t bench.Transfer, size int) {
	defer t.Close()
	p := payload(size)
	ctx := context.Background()
	if _, err := t.Transfer(ctx, p); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for b.Loop() {
		if _, err := t.Transfer(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMemcpy(b *testing.B) {
	for _, size := range []int{64 << 10, 16 << 20, 256 << 20} {
		b.Run(bench.FormatSize(int64(size)), func(b *testing.B) { benchTransfer(b, NewMemcpy(), size) })
	}
}

func BenchmarkStreamTCP(b *testing.B) {
	for _, size := range []int{64 << 10, 16 << 20, 256 << 20} {
		b.Run(bench.FormatSize(int64(size)), func(b *testing.B) {
			s, err := NewTCPStream()
			if err != nil {
				b.Fatal(err)
			}
			benchTransfer(b, s, size)
		})
	}
}

func BenchmarkStreamUnix(b *testing.B) {
	for _, size := range []int{64 << 10, 16 << 20, 256 << 20} {
		b.Run(bench.FormatSize(int64(size)), func(b *testing.B) {
			s, err := NewUnixStream()
			if err != nil {
				b.Fatal(err)
			}
			benchTransfer(b, s, size)
		})
	}
}

func BenchmarkRoundTrip64(b *testing.B) {
	for _, nw := range []string{"tcp", "unix"} {
		b.Run(nw, func(b *testing.B) {
			p, err := RoundTrip(context.Background(), nw, 64, max(b.N, 1))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(p.P50.Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(p.P99.Nanoseconds()), "p99-ns")
		})
	}
}
