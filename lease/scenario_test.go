package lease_test

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/scenariotest"
	"github.com/handoff-dev/handoff/lease"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output in testdata/*.txt")

// TestScenarios replays the scripts in testdata/*.txt. A script is a list of
// commands, one a line; the lines starting with "> " below a command are its
// expected output. Blank lines and lines starting with "#" are kept as they
// are. With -rewrite the expected output is regenerated instead of checked:
//
//	go test ./lease -run TestScenarios -rewrite
//
// The script's clock starts at t=0s and moves only with advance. Cores are
// whole or fractional cores ("2", "0.5") or milli-cores ("500m"); memory is
// bytes with an optional Ki, Mi or Gi suffix. Commands:
//
//	capacity cores=2 mem=8Gi executors=4 [max=10m stale=5s grace=10s]
//	    start a new manager (and forget the peers); prints "ok" or the errors
//	peer n2 cores=4 mem=8Gi executors=4 [total-cores= total-mem= total-executors=] [age=0s] [addr=n2:7100]
//	    add or replace a peer measured age ago (totals default to the free
//	    figures), then hand all the peers to SetPeers
//	grant fn=echo executors=2 cores=1 mem=1Gi for=10s [mode=auto] [hotpoll=50ms]
//	advance 5s
//	renew L1 10s | release L1 | reclaimed L1 | tick
//	up L1 0 [1 ...] | lost L1 0 reason... | topup L1 1
//	busy L1 0 300ms | hotpolled L1 0 50ms | calls L1 0 10
//	show
//	    the node's capacity and every lease, executor by executor
//
// An error prints the sentinels it matches (and a Redirect's target), then
// its message, one line per joined error.
func TestScenarios(t *testing.T) {
	scenariotest.Run(t, *rewrite, runScript)
}

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// script is the state of one scenario replay.
type script struct {
	t     *testing.T
	m     *lease.Manager
	now   time.Time
	peers []lease.PeerCapacity
	out   strings.Builder
}

func runScript(t *testing.T, text string) string {
	s := &script{t: t, now: epoch}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
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
	p := &argParser{t: s.t, line: lineNo, args: map[string]string{}}
	cmd := fields[0]
	for _, f := range fields[1:] {
		if k, v, ok := strings.Cut(f, "="); ok {
			p.args[k] = v
		} else {
			p.pos = append(p.pos, f)
		}
	}
	if cmd != "capacity" && s.m == nil {
		s.t.Fatalf("line %d: %s before capacity", lineNo, cmd)
	}
	var out []string
	switch cmd {
	case "capacity":
		m, err := lease.New(lease.Config{
			Capacity:      p.resources(""),
			MaxDuration:   p.dur("max", 0),
			PeerStaleness: p.dur("stale", 0),
			DrainGrace:    p.dur("grace", 0),
		})
		if err != nil {
			return errLines(err)
		}
		s.m, s.peers = m, nil
		out = append(out, "ok")
	case "peer":
		free := p.resources("")
		total := p.resources("total-")
		if total == (lease.Resources{}) {
			total = free
		}
		name := p.at(0)
		pc := lease.PeerCapacity{Node: name, Addr: p.str("addr", name+":7100"),
			Capacity: lease.Capacity{Free: free, Total: total}, AsOf: s.now.Add(-p.dur("age", 0))}
		s.peers = append(slicesDeleteNode(s.peers, name), pc)
		s.m.SetPeers(s.now, s.peers)
	case "grant":
		mode := lease.Auto
		if v := p.str("mode", ""); v != "" {
			var err error
			if mode, err = lease.ParseMode(v); err != nil {
				return errLines(err)
			}
		}
		l, err := s.m.Grant(s.now, lease.Request{
			Function:   p.str("fn", ""),
			Executors:  p.int("executors", 0),
			MilliCores: p.cores("cores", 0),
			Memory:     p.bytes("mem", 0),
			Duration:   p.dur("for", 0),
			Mode:       mode,
			HotPoll:    p.dur("hotpoll", 0),
		})
		if err != nil {
			return errLines(err)
		}
		out = append(out, s.header(l))
	case "advance":
		d, err := time.ParseDuration(p.at(0))
		if err != nil {
			s.t.Fatalf("line %d: %v", lineNo, err)
		}
		s.now = s.now.Add(d)
		out = append(out, "t="+s.t0(s.now))
	case "renew":
		d, err := time.ParseDuration(p.at(1))
		if err != nil {
			s.t.Fatalf("line %d: %v", lineNo, err)
		}
		l, err := s.m.Renew(s.now, p.at(0), d)
		if err != nil {
			return errLines(err)
		}
		out = append(out, fmt.Sprintf("%s expires t=%s", l.ID, s.t0(l.Expires)))
	case "release":
		r, err := s.m.Release(s.now, p.at(0))
		if err != nil {
			return errLines(err)
		}
		out = append(out, reclaim(r))
	case "tick":
		for _, r := range s.m.Tick(s.now) {
			out = append(out, reclaim(r))
		}
		if len(out) == 0 {
			out = append(out, "nothing to reclaim")
		}
	case "reclaimed":
		l, err := s.m.Reclaimed(s.now, p.at(0))
		if err != nil {
			return errLines(err)
		}
		out = append(out, fmt.Sprintf("%s %s: %s", l.ID, l.State, accounting(l.Accounting)), s.free())
	case "up":
		for _, a := range p.pos[1:] {
			if err := s.m.ExecutorUp(p.at(0), atoi(s.t, lineNo, a)); err != nil {
				return errLines(err)
			}
		}
		out = append(out, s.state(p.at(0)))
	case "lost":
		err := s.m.ExecutorLost(s.now, p.at(0), p.index(1), strings.Join(p.pos[2:], " "))
		if err != nil {
			return errLines(err)
		}
		out = append(out, s.state(p.at(0)), s.free())
	case "topup":
		slots, err := s.m.TopUp(s.now, p.at(0), p.index(1))
		if err != nil {
			return errLines(err)
		}
		var idx []string
		for _, e := range slots {
			idx = append(idx, fmt.Sprintf("%d %s", e.Index, e.State))
		}
		out = append(out, fmt.Sprintf("%s +%s", p.at(0), strings.Join(idx, ", ")), s.free())
	case "busy", "hotpolled":
		d, err := time.ParseDuration(p.at(2))
		if err != nil {
			s.t.Fatalf("line %d: %v", lineNo, err)
		}
		report := s.m.Busy
		if cmd == "hotpolled" {
			report = s.m.HotPolled
		}
		if err := report(p.at(0), p.index(1), d); err != nil {
			return errLines(err)
		}
	case "calls":
		n, err := strconv.ParseUint(p.at(2), 10, 64)
		if err != nil {
			s.t.Fatalf("line %d: %v", lineNo, err)
		}
		if err := s.m.Invocations(p.at(0), p.index(1), n); err != nil {
			return errLines(err)
		}
	case "show":
		out = append(out, s.free())
		for _, l := range s.m.Leases(s.now) {
			out = append(out, s.header(l))
			for _, e := range l.Executors {
				st := e.State.String()
				if e.Reason != "" {
					st += " (" + e.Reason + ")"
				}
				out = append(out, fmt.Sprintf("  %d %s: %s", e.Index, st, accounting(e.Accounting)))
			}
			out = append(out, "  all: "+accounting(l.Accounting))
		}
	default:
		s.t.Fatalf("line %d: unknown command %q", lineNo, cmd)
	}
	p.done(cmd)
	return out
}

func (s *script) t0(t time.Time) string { return t.Sub(epoch).String() }

func (s *script) free() string {
	c := s.m.Capacity()
	return fmt.Sprintf("free %v of %v", c.Free, c.Total)
}

func (s *script) state(id string) string {
	l, err := s.m.Get(s.now, id)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%s %s", l.ID, l.State)
}

func (s *script) header(l lease.Lease) string {
	mode := l.Mode.String()
	if l.HotPoll > 0 {
		mode += fmt.Sprintf(" (hot-poll %v)", l.HotPoll)
	}
	state := l.State.String()
	if l.State == lease.Draining {
		state += fmt.Sprintf(" (%s at t=%s)", l.EndReason, s.t0(l.EndedAt))
	}
	return fmt.Sprintf("%s %s %s: %d × %gc/%s, %s, granted t=%s, expires t=%s",
		l.ID, l.Function, state, l.Size, float64(l.MilliCores)/1000, fmtBytes(l.Memory), mode, s.t0(l.GrantedAt), s.t0(l.Expires))
}

func reclaim(r lease.Reclaim) string {
	why := r.Reason
	if r.Overdue {
		why += ", overdue: stop now"
	}
	return fmt.Sprintf("reclaim %s %s (%s): stop executors %v", r.ID, r.Function, why, r.Executors)
}

func accounting(a lease.Accounting) string {
	return fmt.Sprintf("allocated %v, busy %v, hot-polling %v, %d invocations", a.Allocated, a.Busy, a.HotPolling, a.Invocations)
}

// errLines prints the sentinels err matches, then its message.
func errLines(err error) []string {
	tags := []string{"error"}
	var r *lease.Redirect
	if errors.As(err, &r) {
		tags = append(tags, fmt.Sprintf("Redirect(%s %s)", r.Node, r.Addr))
	}
	for _, e := range []struct {
		name string
		err  error
	}{
		{"ErrInvalid", lease.ErrInvalid},
		{"ErrNoCapacity", lease.ErrNoCapacity},
		{"ErrUnsatisfiable", lease.ErrUnsatisfiable},
		{"ErrUnknownLease", lease.ErrUnknownLease},
		{"ErrExpired", lease.ErrExpired},
	} {
		if errors.Is(err, e.err) {
			tags = append(tags, e.name)
		}
	}
	out := []string{strings.Join(tags, " ") + ":"}
	for _, l := range strings.Split(err.Error(), "\n") {
		out = append(out, "  "+l)
	}
	return out
}

func slicesDeleteNode(ps []lease.PeerCapacity, node string) []lease.PeerCapacity {
	var out []lease.PeerCapacity
	for _, p := range ps {
		if p.Node != node {
			out = append(out, p)
		}
	}
	return out
}

func fmtBytes(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "Gi"}, {1 << 20, "Mi"}, {1 << 10, "Ki"}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

func atoi(t *testing.T, line int, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("line %d: %v", line, err)
	}
	return n
}

// argParser reads positional and typed key=value arguments, failing the
// test on bad input and on keys no command read, so that typos are caught.
type argParser struct {
	t    *testing.T
	line int
	pos  []string
	args map[string]string
	used map[string]bool
}

func (p *argParser) at(i int) string {
	if i >= len(p.pos) {
		p.t.Fatalf("line %d: argument %d missing", p.line, i+1)
	}
	return p.pos[i]
}

func (p *argParser) index(i int) int { return atoi(p.t, p.line, p.at(i)) }

func (p *argParser) str(k, def string) string {
	if p.used == nil {
		p.used = map[string]bool{}
	}
	p.used[k] = true
	if v, ok := p.args[k]; ok {
		return v
	}
	return def
}

func (p *argParser) done(cmd string) {
	for k := range p.args {
		if !p.used[k] {
			p.t.Fatalf("line %d: unknown argument %q for %s", p.line, k, cmd)
		}
	}
}

func (p *argParser) int(k string, def int) int {
	v := p.str(k, "")
	if v == "" {
		return def
	}
	return atoi(p.t, p.line, v)
}

func (p *argParser) dur(k string, def time.Duration) time.Duration {
	v := p.str(k, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		p.t.Fatalf("line %d: %s: %v", p.line, k, err)
	}
	return d
}

// cores reads "2", "0.5" (cores) or "500m" (milli-cores) as milli-cores.
func (p *argParser) cores(k string, def int64) int64 {
	v := p.str(k, "")
	if v == "" {
		return def
	}
	if m, ok := strings.CutSuffix(v, "m"); ok {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil {
			p.t.Fatalf("line %d: %s: %v", p.line, k, err)
		}
		return n
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		p.t.Fatalf("line %d: %s: %v", p.line, k, err)
	}
	return int64(f * 1000)
}

// bytes reads a byte count with an optional Ki, Mi or Gi suffix.
func (p *argParser) bytes(k string, def int64) int64 {
	v := p.str(k, "")
	if v == "" {
		return def
	}
	mult := int64(1)
	for suffix, m := range map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30} {
		if n, ok := strings.CutSuffix(v, suffix); ok {
			v, mult = n, m
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		p.t.Fatalf("line %d: %s: %v", p.line, k, err)
	}
	return n * mult
}

// resources reads prefix+cores, prefix+mem and prefix+executors.
func (p *argParser) resources(prefix string) lease.Resources {
	return lease.Resources{
		MilliCores: p.cores(prefix+"cores", 0),
		Memory:     p.bytes(prefix+"mem", 0),
		Executors:  p.int(prefix+"executors", 0),
	}
}
