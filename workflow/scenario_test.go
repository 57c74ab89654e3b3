package workflow_test

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/handoff-dev/handoff/internal/scenariotest"
	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/workflow"
	"github.com/handoff-dev/handoff/xfer"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output in testdata/*.txt")

// TestScenarios replays the scripts in testdata/*.txt. A script is a list of
// commands, one a line; the lines starting with "> " below a command are its
// expected output. Blank lines and lines starting with "#" are kept as they
// are. With -rewrite the expected output is regenerated instead of checked:
//
//	go test ./workflow/ -run TestScenarios -rewrite
//
// Commands:
//
//	nodes n1=4 n2=4
//	    the nodes of the next builds, in order, with their slots
//	policy [ref] [stream] [store] [inline-max=6MiB]
//	    the xfer.Policy of the next builds (default: ref and stream run)
//	workflow
//	  name: ...
//	    parse the YAML indented below (two spaces are removed from each
//	    line; the block ends at the first line not indented); prints "ok"
//	    or the errors, one a line
//	build
//	    build the last workflow parsed; prints each task's node, each
//	    edge's mode and reason, and each channel's ends, mode and whether
//	    it stays on one node
func TestScenarios(t *testing.T) {
	scenariotest.Run(t, *rewrite, runScript)
}

type script struct {
	t      *testing.T
	nodes  []workflow.Node
	policy xfer.Policy
	w      *workflow.Workflow
	out    strings.Builder
}

func runScript(t *testing.T, text string) string {
	s := &script{t: t, policy: xfer.Policy{Available: map[xfer.Mode]bool{xfer.Ref: true, xfer.Stream: true}}}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.HasPrefix(line, ">") {
			continue // old output, regenerated below its command
		}
		s.out.WriteString(line + "\n")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		var block []string
		if trimmed == "workflow" {
			for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "  ") {
				i++
				s.out.WriteString(lines[i] + "\n")
				block = append(block, lines[i][2:])
			}
		}
		for _, o := range s.exec(i+1, trimmed, block) {
			s.out.WriteString("> " + o + "\n")
		}
	}
	return s.out.String()
}

func (s *script) exec(lineNo int, line string, block []string) []string {
	fields := strings.Fields(line)
	switch cmd, args := fields[0], fields[1:]; cmd {
	case "nodes":
		s.nodes = nil
		for _, a := range args {
			id, slots, ok := strings.Cut(a, "=")
			n, err := strconv.Atoi(slots)
			if !ok || err != nil {
				s.t.Fatalf("line %d: node %q is not id=slots", lineNo, a)
			}
			s.nodes = append(s.nodes, workflow.Node{ID: id, Slots: n})
		}
	case "policy":
		s.policy = xfer.Policy{Available: map[xfer.Mode]bool{}}
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "inline-max="); ok {
				b, err := spec.ParseBytes(v)
				if err != nil {
					s.t.Fatalf("line %d: %v", lineNo, err)
				}
				s.policy.InlineMax = int64(b)
				continue
			}
			s.policy.Available[xfer.Mode(a)] = true
		}
	case "workflow":
		w, err := workflow.Parse([]byte(strings.Join(block, "\n")))
		if err != nil {
			s.w = nil
			return strings.Split(err.Error(), "\n")
		}
		s.w = w
		return []string{"ok"}
	case "build":
		if s.w == nil {
			s.t.Fatalf("line %d: build without a workflow parsed", lineNo)
		}
		p, err := workflow.Build(s.w, s.nodes, s.policy)
		if err != nil {
			return strings.Split(err.Error(), "\n")
		}
		return describe(p)
	default:
		s.t.Fatalf("line %d: unknown command %q", lineNo, cmd)
	}
	return nil
}

// describe prints a plan for a golden file.
func describe(p *workflow.Plan) []string {
	var out []string
	var tasks []string
	for _, t := range p.Tasks {
		tasks = append(tasks, t.ID+"@"+p.Node[t.ID])
	}
	out = append(out, "tasks: "+strings.Join(tasks, " "))
	for i, e := range p.Workflow.Edges {
		for _, c := range p.Channels {
			if c.Edge == i {
				out = append(out, fmt.Sprintf("edge %s→%s %s: %s (%s)", e.From, e.To, e.Pattern, c.Mode, c.Reason))
				break
			}
		}
	}
	local := 0
	for _, c := range p.Channels {
		where := "same-node " + p.Node[c.From.Task]
		if p.Local(c) {
			local++
		} else {
			where = "cross-node " + p.Node[c.From.Task] + "→" + p.Node[c.To.Task]
		}
		out = append(out, fmt.Sprintf("  %s %s.%s[%d] → %s.%s[%d] %s %s", c.ID,
			c.From.Task, c.From.Port, c.From.Part, c.To.Task, c.To.Port, c.To.Part, c.Mode, where))
	}
	out = append(out, fmt.Sprintf("%d of %d channels on one node", local, len(p.Channels)))
	return out
}
