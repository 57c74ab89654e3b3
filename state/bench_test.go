package state

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/handoff-dev/handoff/clock"
)

// openBench opens a database with the real clock, so that Claim finds the
// invocations due, and sync on, as in production.
func openBench(b *testing.B) *DB {
	b.Helper()
	db, err := Open(filepath.Join(b.TempDir(), "state.db"), clock.Real{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// BenchmarkEnqueue measures one durable enqueue: a write transaction and its
// fdatasync, which dominate for small inputs.
func BenchmarkEnqueue(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("input=%dKiB", size>>10), func(b *testing.B) {
			db := openBench(b)
			in := make([]byte, size)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for b.Loop() {
				if _, err := db.Enqueue("bench", in, 3, "req"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEnqueueParallel measures enqueues from many goroutines: bbolt runs
// one write transaction at a time, so they queue behind each other's fsync.
func BenchmarkEnqueueParallel(b *testing.B) {
	db := openBench(b)
	in := make([]byte, 1<<10)
	b.SetBytes(int64(len(in)))
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := db.Enqueue("bench", in, 3, "req"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkClaimComplete measures the dispatcher's side per invocation:
// claim in batches of 16, then one Complete each.
func BenchmarkClaimComplete(b *testing.B) {
	db := openBench(b)
	in := make([]byte, 1<<10)
	for range b.N {
		if _, err := db.Enqueue("bench", in, 3, "req"); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	done := 0
	for done < b.N {
		batch, err := db.Claim(16)
		if err != nil {
			b.Fatal(err)
		}
		if len(batch) == 0 {
			b.Fatalf("queue empty after %d of %d", done, b.N)
		}
		for _, inv := range batch {
			if err := db.Complete(inv.ID, 200, in); err != nil {
				b.Fatal(err)
			}
		}
		done += len(batch)
	}
}

// BenchmarkCompleteParallel measures Complete from many dispatcher workers
// at once; their transactions are batched and share an fsync.
func BenchmarkCompleteParallel(b *testing.B) {
	db := openBench(b)
	in := make([]byte, 1<<10)
	ids := make(chan string, b.N)
	for range b.N {
		if _, err := db.Enqueue("bench", in, 3, "req"); err != nil {
			b.Fatal(err)
		}
	}
	for {
		batch, err := db.Claim(1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		for _, inv := range batch {
			ids <- inv.ID
		}
	}
	close(ids)
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := db.Complete(<-ids, 200, in); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
