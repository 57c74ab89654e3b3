// Package procstat reads what Linux accounts per process under /proc: the
// process tree, resident memory (VmRSS, and the peak VmHWM, which root can
// reset through clear_refs) and the bytes a process made the kernel write
// to storage (write_bytes in /proc/PID/io). `handoff bench pipeline`
// samples the platform's processes with it while a workflow runs.
//
// A process's counters die with it, so a Sampler reads the whole tree every
// few milliseconds and keeps the last figures of every process it saw: what
// a process wrote after its last sample is lost, and the interval bounds
// that loss.
package procstat

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrNoField reports a /proc file without the field asked for.
var ErrNoField = errors.New("procstat: field not found")

// Root is the proc file system; tests may point it elsewhere.
var Root = "/proc"

// parents maps every live process to its parent, read from /proc/*/stat.
func parents() (map[int]int, error) {
	ents, err := os.ReadDir(Root)
	if err != nil {
		return nil, fmt.Errorf("procstat: %w", err)
	}
	m := make(map[int]int, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(Root, e.Name(), "stat"))
		if err != nil {
			continue // gone since the listing
		}
		// The command name is in parentheses and may hold anything: the
		// fields after the last ')' are state, then ppid.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			m[pid] = ppid
		}
	}
	return m, nil
}

// Tree returns root and every live descendant of it, root first.
func Tree(root int) ([]int, error) {
	pp, err := parents()
	if err != nil {
		return nil, err
	}
	return tree(pp, root), nil
}

func tree(pp map[int]int, root int) []int {
	kids := map[int][]int{}
	for pid, ppid := range pp {
		kids[ppid] = append(kids[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		k := kids[out[i]]
		slices.Sort(k)
		out = append(out, k...)
	}
	return out
}

// Cmdline returns a process's arguments.
func Cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(Root, strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return nil, fmt.Errorf("procstat: %w", err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}

// Find returns the live processes whose arguments match, lowest pid first.
func Find(match func(args []string) bool) ([]int, error) {
	pp, err := parents()
	if err != nil {
		return nil, err
	}
	var out []int
	for pid := range pp {
		if args, err := Cmdline(pid); err == nil && match(args) {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	return out, nil
}

// WriteBytes is write_bytes of /proc/PID/io: the bytes the process caused
// to be sent to the storage layer (page cache pages it dirtied, direct I/O),
// not pipe or socket traffic.
func WriteBytes(pid int) (int64, error) {
	return field(pid, "io", "write_bytes:", 1)
}

// RSS is the process's resident memory now (VmRSS), in bytes.
func RSS(pid int) (int64, error) { return field(pid, "status", "VmRSS:", 1024) }

// PeakRSS is the process's peak resident memory (VmHWM), in bytes: since
// it started, or since ResetPeak.
func PeakRSS(pid int) (int64, error) { return field(pid, "status", "VmHWM:", 1024) }

// ResetPeak sets the process's VmHWM to its current VmRSS (clear_refs 5,
// Linux 4.0 and later; root or the process's owner).
func ResetPeak(pid int) error {
	if err := os.WriteFile(filepath.Join(Root, strconv.Itoa(pid), "clear_refs"), []byte("5"), 0); err != nil {
		return fmt.Errorf("procstat: reset peak RSS of %d: %w", pid, err)
	}
	return nil
}

func field(pid int, file, name string, unit int64) (int64, error) {
	f, err := os.Open(filepath.Join(Root, strconv.Itoa(pid), file))
	if err != nil {
		return 0, fmt.Errorf("procstat: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("procstat: %s of %d: %w", name, pid, err)
		}
		return v * unit, nil
	}
	return 0, fmt.Errorf("%w: %s in %s of %d", ErrNoField, name, file, pid)
}

// RSSSample is the resident memory of the watched processes at one moment.
type RSSSample struct {
	At  time.Duration `json:"at_ns"` // since Start
	RSS map[int]int64 `json:"rss"`   // by pid
}

// Sampler watches the process trees under Roots from Start to Stop: the
// write_bytes of every process in them, and the RSS of Watch.
type Sampler struct {
	Roots []int
	Watch []int         // processes whose RSS is sampled
	Every time.Duration // default 50ms

	mu      sync.Mutex    // guards the fields below
	base    map[int]int64 // write_bytes of the processes alive at Start
	last    map[int]int64 // latest write_bytes of every process seen
	names   map[int]string
	samples []RSSSample
	peak    map[int]int64
	start   time.Time

	stop context.CancelFunc
	done chan struct{}
}

// Start reads the trees once (the base of the write figures) and samples
// them in the background until Stop.
func (s *Sampler) Start() error {
	if s.Every <= 0 {
		s.Every = 50 * time.Millisecond
	}
	s.base, s.last, s.names, s.peak = map[int]int64{}, map[int]int64{}, map[int]string{}, map[int]int64{}
	s.start = time.Now()
	if err := s.sample(true); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.Every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = s.sample(false)
			}
		}
	}()
	return nil
}

// Stop takes a last sample and ends the sampling.
func (s *Sampler) Stop() {
	s.stop()
	<-s.done
	_ = s.sample(false)
}

func (s *Sampler) sample(first bool) error {
	pp, err := parents()
	if err != nil {
		return err
	}
	var pids []int
	for _, r := range s.Roots {
		if _, ok := pp[r]; ok {
			pids = append(pids, tree(pp, r)...)
		}
	}
	at := time.Since(s.start)
	rss := map[int]int64{}
	for _, pid := range s.Watch {
		if v, err := RSS(pid); err == nil {
			rss[pid] = v
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pid := range pids {
		v, err := WriteBytes(pid)
		if err != nil {
			continue
		}
		if _, seen := s.last[pid]; !seen {
			if args, err := Cmdline(pid); err == nil {
				s.names[pid] = describe(args)
			}
			if first {
				s.base[pid] = v
			}
		}
		s.last[pid] = max(s.last[pid], v)
	}
	s.samples = append(s.samples, RSSSample{At: at, RSS: rss})
	for pid, v := range rss {
		s.peak[pid] = max(s.peak[pid], v)
	}
	return nil
}

// describe shortens a command line to its program and first argument.
func describe(args []string) string {
	if len(args) == 0 {
		return "?"
	}
	d := filepath.Base(args[0])
	if len(args) > 1 {
		d += " " + args[1]
	}
	return d
}

// Written is what the trees wrote to storage between Start and the last
// sample: in all, and by program ("handoff node", "flowfn").
func (s *Sampler) Written() (total int64, by map[string]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	by = map[string]int64{}
	for pid, v := range s.last {
		d := v - s.base[pid]
		total += d
		by[s.names[pid]] += d
	}
	return total, by
}

// PeakRSS is the largest RSS sampled of each watched process.
func (s *Sampler) PeakRSS() map[int]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.peak)
}

// Samples are the RSS samples taken so far.
func (s *Sampler) Samples() []RSSSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.samples)
}
