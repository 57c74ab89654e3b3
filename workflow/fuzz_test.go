package workflow

import (
	"errors"
	"os"
	"testing"

	"github.com/handoff-dev/handoff/xfer"
)

// FuzzParse checks that Parse never panics, that every error wraps
// ErrInvalid, and that a workflow it accepts validates and builds into a
// consistent plan.
func FuzzParse(f *testing.F) {
	sample, err := os.ReadFile("testdata/wordcount.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sample)
	f.Add([]byte("name: a\nstages: [{name: s, function: f}]\n"))
	f.Add([]byte("name: a\nstages: [{name: s, function: f, parallelism: 3}, {name: t, function: g}]\nedges: [{from: s.x, to: t.y, pattern: merge, mode: ref, size: 1.5MiB}]\n"))
	f.Add([]byte("name: a\nstages: [&s {name: s, function: f}, {<<: *s, name: t, interface: http, overlap: false}]\nedges: [{from: s, to: t, pattern: partition, key: roundrobin, buffers: {count: 1, size: 4KiB}}]\n"))
	f.Add([]byte("name: a\nstages: [{name: s, function: f}]\nedges: [{from: s, to: s}, {from: s., to: x.y.z, mode: fast, key: k}]\n"))
	f.Add([]byte("name: a\n---\nname: b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if err := w.Validate(); err != nil {
			t.Fatalf("parsed workflow is invalid: %v", err)
		}
		all := xfer.Policy{Available: map[xfer.Mode]bool{xfer.Ref: true, xfer.Stream: true, xfer.Store: true}}
		p, err := Build(w, []Node{{"n1", MaxTasks / 2}, {"n2", MaxTasks / 2}}, all)
		if err != nil {
			if !errors.Is(err, xfer.ErrTooLarge) { // an inline pin over a large size hint
				t.Fatalf("Build: %v", err)
			}
			return
		}
		checkPlan(t, p)
	})
}
