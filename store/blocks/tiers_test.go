package blocks

import "testing"

func TestTiersMemoryFirstThenDisk(t *testing.T) {
	tr := tiers{memLimit: 10, spill: true, diskLimit: 8}
	steps := []struct {
		n    int64
		want tier
	}{
		{6, inMemory},
		{4, inMemory}, // exactly full
		{1, onDisk},
		{7, onDisk}, // disk exactly full
		{1, 0},      // both full
	}
	for i, s := range steps {
		if got := tr.place(s.n); got != s.want {
			t.Fatalf("step %d: place(%d) = %v, want %v", i, s.n, got, s.want)
		}
	}
	tr.free(inMemory, 6)
	if got := tr.place(5); got != inMemory {
		t.Fatalf("after freeing memory, place(5) = %v, want memory", got)
	}
	tr.free(onDisk, 7)
	if tr.memUsed != 9 || tr.diskUsed != 1 {
		t.Fatalf("used mem %d disk %d, want 9 and 1", tr.memUsed, tr.diskUsed)
	}
}

func TestTiersNoSpill(t *testing.T) {
	tr := tiers{memLimit: 4}
	if tr.place(4) != inMemory || tr.place(1) != 0 {
		t.Fatal("without a disk tier a full memory budget must refuse")
	}
}

func TestTiersUnlimitedDisk(t *testing.T) {
	tr := tiers{memLimit: 1, spill: true}
	for range 100 {
		if tr.place(1<<30) != onDisk {
			t.Fatal("disk limit 0 must mean no limit")
		}
	}
}

func TestTiersOverFreePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("freeing more than placed did not panic")
		}
	}()
	tr := tiers{memLimit: 4}
	tr.place(2)
	tr.free(inMemory, 3)
}
