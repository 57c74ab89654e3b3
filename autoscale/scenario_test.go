package autoscale_test

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/autoscale"
	"github.com/handoff-dev/handoff/internal/scenariotest"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output in testdata/*.txt")

// TestScenarios replays the scripts in testdata/*.txt. A script is a list of
// commands, one a line; the lines starting with "> " below a command are its
// expected output. Blank lines and lines starting with "#" are kept as they
// are. With -rewrite the expected output is regenerated instead of checked:
//
//	go test ./autoscale/ -run TestScenarios -rewrite
//
// Commands (times are offsets from a fixed start, as Go durations):
//
//	config target=10 min=0 max=5 [stable=60s panic=6s grace=30s threshold=2 down=2 up=1000]
//	    start a new autoscaler; prints "ok" or the validation errors
//	record t=5s c=10
//	record from=0s to=59s c=10 [every=1s]
//	    one sample, or one every `every` from `from` to `to` inclusive
//	scale t=60s ready=1
//	    print the decision
//	run from=0s to=60s c=10 [ready=1] [every=1s]
//	    a control loop: each tick records c, then scales with ready set to
//	    the previous desired scale (instances start at once); prints the
//	    ticks where desired or panic changed, and the last tick. ready, when
//	    given, sets the starting ready count; otherwise it carries over from
//	    the previous run or scale.
func TestScenarios(t *testing.T) {
	scenariotest.Run(t, *rewrite, runScript)
}

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// script is the state of one scenario replay.
type script struct {
	t     *testing.T
	a     *autoscale.Autoscaler
	ready int
	out   strings.Builder
}

// runScript replays text and returns it with every command's output
// regenerated in place of the old one.
func runScript(t *testing.T, text string) string {
	s := &script{t: t}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i, line := range lines {
		if strings.HasPrefix(line, ">") {
			continue // old output, regenerated below its command
		}
		s.out.WriteString(line + "\n")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		for _, o := range s.exec(i+1, trimmed) {
			s.out.WriteString("> " + o + "\n")
		}
	}
	return s.out.String()
}

// exec runs one command and returns its output lines.
func (s *script) exec(lineNo int, line string) []string {
	fields := strings.Fields(line)
	cmd, args := fields[0], map[string]string{}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			s.t.Fatalf("line %d: argument %q is not key=value", lineNo, f)
		}
		args[k] = v
	}
	if cmd != "config" && s.a == nil {
		s.t.Fatalf("line %d: %s before config", lineNo, cmd)
	}
	p := argParser{t: s.t, line: lineNo, args: args}
	var out []string
	switch cmd {
	case "config":
		cfg := autoscale.Config{
			Target:           p.float("target", 0),
			Min:              p.int("min", 0),
			Max:              p.int("max", 0),
			StableWindow:     p.dur("stable", 0),
			PanicWindow:      p.dur("panic", 0),
			ScaleToZeroGrace: p.dur("grace", 0),
			PanicThreshold:   p.float("threshold", 0),
			MaxScaleDownRate: p.float("down", 0),
			MaxScaleUpRate:   p.float("up", 0),
		}
		a, err := autoscale.New(cfg)
		if err != nil {
			return strings.Split(err.Error(), "\n")
		}
		s.a, s.ready = a, 0
		out = append(out, "ok")
	case "record":
		c := p.float("c", -1)
		if _, ok := args["t"]; ok {
			s.a.Record(epoch.Add(p.dur("t", 0)), c)
			break
		}
		from, to, every := p.dur("from", 0), p.dur("to", 0), p.dur("every", time.Second)
		for at := from; at <= to; at += every {
			s.a.Record(epoch.Add(at), c)
		}
	case "scale":
		s.ready = p.int("ready", s.ready)
		d := s.a.Scale(epoch.Add(p.dur("t", 0)), s.ready)
		out = append(out, format(d))
	case "run":
		c := p.float("c", -1)
		s.ready = p.int("ready", s.ready)
		from, to, every := p.dur("from", 0), p.dur("to", 0), p.dur("every", time.Second)
		var last autoscale.Decision
		first := true
		for at := from; at <= to; at += every {
			now := epoch.Add(at)
			s.a.Record(now, c)
			d := s.a.Scale(now, s.ready)
			changed := first || d.Desired != last.Desired || d.Panic != last.Panic
			if changed || at+every > to {
				out = append(out, fmt.Sprintf("t=%v %s", at, format(d)))
			}
			s.ready, last, first = d.Desired, d, false
		}
	default:
		s.t.Fatalf("line %d: unknown command %q", lineNo, cmd)
	}
	for k := range args {
		if !p.used[k] {
			s.t.Fatalf("line %d: unknown argument %q for %s", lineNo, k, cmd)
		}
	}
	return out
}

func format(d autoscale.Decision) string {
	return fmt.Sprintf("desired=%d panic=%t stable=%s panic-avg=%s: %s",
		d.Desired, d.Panic, num(d.StableConcurrency), num(d.PanicConcurrency), d.Reason)
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }

// argParser reads typed key=value arguments, failing the test on bad input
// and remembering which keys were read so that typos are caught.
type argParser struct {
	t    *testing.T
	line int
	args map[string]string
	used map[string]bool
}

func (p *argParser) get(k string) (string, bool) {
	if p.used == nil {
		p.used = map[string]bool{}
	}
	p.used[k] = true
	v, ok := p.args[k]
	return v, ok
}

func (p *argParser) float(k string, def float64) float64 {
	v, ok := p.get(k)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		p.t.Fatalf("line %d: %s: %v", p.line, k, err)
	}
	return f
}

func (p *argParser) int(k string, def int) int {
	v, ok := p.get(k)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		p.t.Fatalf("line %d: %s: %v", p.line, k, err)
	}
	return n
}

func (p *argParser) dur(k string, def time.Duration) time.Duration {
	v, ok := p.get(k)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		p.t.Fatalf("line %d: %s: %v", p.line, k, err)
	}
	return d
}
