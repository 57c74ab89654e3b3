package workflow_test

import (
	"fmt"

	"github.com/handoff-dev/handoff/workflow"
	"github.com/handoff-dev/handoff/xfer"
)

func Example() {
	w, err := workflow.Parse([]byte(`
name: wordcount
stages:
  - {name: gen, function: wc-gen, parallelism: 2}
  - {name: count, function: wc-count, overlap: false}
edges:
  - {from: gen, to: count, pattern: merge}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	policy := xfer.Policy{Available: map[xfer.Mode]bool{xfer.Ref: true, xfer.Stream: true}}
	plan, err := workflow.Build(w, []workflow.Node{{ID: "n1", Slots: 2}, {ID: "n2", Slots: 2}}, policy)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range plan.Tasks {
		fmt.Println(t.ID, "on", plan.Node[t.ID])
	}
	for _, c := range plan.Inputs("count-0") {
		fmt.Printf("%s: %s.%s → %s.%s[%d] by %s (%s)\n", c.ID, c.From.Task, c.From.Port, c.To.Task, c.To.Port, c.To.Part, c.Mode, c.Reason)
	}
	// Output:
	// gen-0 on n1
	// gen-1 on n2
	// count-0 on n1
	// c0: gen-0.out → count-0.in[0] by ref (consumer needs its whole input first: buffered by reference so the producer is not held back)
	// c1: gen-1.out → count-0.in[1] by ref (consumer needs its whole input first: buffered by reference so the producer is not held back)
}
