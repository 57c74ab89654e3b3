package autoscale

import (
	"testing"
	"time"
)

// BenchmarkRecordScale measures one control-loop tick: a sample and a
// decision, with a full 60-bucket stable window.
func BenchmarkRecordScale(b *testing.B) {
	a, err := New(Config{Target: 10, Max: 100})
	if err != nil {
		b.Fatal(err)
	}
	now := start
	ready := 1
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now = now.Add(time.Second)
		a.Record(now, float64(i%97))
		ready = a.Scale(now, ready).Desired
	}
}
