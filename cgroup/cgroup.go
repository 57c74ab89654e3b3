// Package cgroup puts Handoff instances into Linux control groups with a memory
// limit, so that one function cannot take the whole node's memory.
//
// # Modes
//
// Two kernel interfaces are supported; Detect reports which one this machine
// offers:
//
//   - V2, the unified hierarchy: a cgroup2 mount (usually /sys/fs/cgroup) whose
//     cgroup.controllers lists "memory". New enables the memory controller in
//     cgroup.subtree_control of every ancestor it creates, writes memory.max,
//     and memory.swap.max=0 when the kernel has swap accounting. OOM kills are
//     read from the oom_kill field of memory.events. A process can be born
//     inside a V2 group (clone3 with CLONE_INTO_CGROUP), see [Group.Path].
//   - V1, the legacy memory controller: a "cgroup" mount with the memory option
//     (usually /sys/fs/cgroup/memory). New writes memory.limit_in_bytes and,
//     when swap accounting is on, memory.memsw.limit_in_bytes with the same
//     value so the limit cannot be dodged by swapping. OOM kills are read from
//     the oom_kill field of memory.oom_control (Linux 4.13+); older kernels
//     only offer memory.failcnt, which OOMKills returns instead (it counts
//     every time the limit was hit, an upper bound of the kills).
//
// V2 is preferred when both are mounted and both carry the memory controller
// (they cannot: a controller is bound to one hierarchy at a time).
//
// Groups are created under the root of the mount, at <root>/<parent>/<name>,
// where parent is a Handoff path such as "handoff/<node-id>". Creating groups
// needs write access to the mount, in practice root or a delegated subtree.
//
// # Concurrency
//
// All functions are safe for concurrent use. A Group holds no mutable state
// besides the kernel's; its methods may be called from any goroutine.
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Mode is the kind of memory controller a machine offers.
type Mode int

const (
	// Unavailable means no usable memory controller was found; memory limits
	// cannot be enforced.
	Unavailable Mode = iota
	// V1 is the legacy cgroup v1 memory controller.
	V1
	// V2 is the unified cgroup v2 hierarchy with the memory controller.
	V2
)

func (m Mode) String() string {
	switch m {
	case V1:
		return "cgroup v1"
	case V2:
		return "cgroup v2"
	default:
		return "unavailable"
	}
}

// ErrUnavailable is wrapped by Detect and New when the machine offers no usable
// memory controller. The error text says why.
var ErrUnavailable = errors.New("cgroup: memory limits cannot be enforced")

// detection is the cached result of probing the machine.
type detection struct {
	mode Mode
	root string // mount point of the hierarchy holding the memory controller
	err  error
}

var (
	detectOnce sync.Once
	detected   detection
)

// Detect reports which memory controller this machine offers. The probe reads
// /proc/self/mountinfo once per process; later calls return the same answer.
// When neither mode works the error wraps ErrUnavailable and says, for each
// mode, why it was rejected.
func Detect() (Mode, error) {
	detectOnce.Do(func() {
		detected = probe("/proc/self/mountinfo")
	})
	return detected.mode, detected.err
}

// probe finds a usable memory controller from a mountinfo file.
func probe(mountinfo string) detection {
	mounts, err := readMounts(mountinfo)
	if err != nil {
		return detection{err: fmt.Errorf("%w: %v", ErrUnavailable, err)}
	}
	var why []string
	v2seen, v1seen := false, false
	for _, m := range mounts {
		if m.fstype != "cgroup2" {
			continue
		}
		v2seen = true
		b, err := os.ReadFile(filepath.Join(m.point, "cgroup.controllers"))
		if err != nil {
			why = append(why, fmt.Sprintf("cgroup2 at %s: %v", m.point, err))
			continue
		}
		if !hasWord(string(b), "memory") {
			why = append(why, fmt.Sprintf("cgroup2 at %s does not offer the memory controller (cgroup.controllers: %q)",
				m.point, strings.TrimSpace(string(b))))
			continue
		}
		if err := writable(m.point); err != nil {
			why = append(why, fmt.Sprintf("cgroup2 at %s is not writable: %v", m.point, err))
			continue
		}
		return detection{mode: V2, root: m.point}
	}
	for _, m := range mounts {
		if m.fstype != "cgroup" || !hasOpt(m.superOpts, "memory") {
			continue
		}
		v1seen = true
		if _, err := os.Stat(filepath.Join(m.point, "memory.limit_in_bytes")); err != nil {
			why = append(why, fmt.Sprintf("cgroup v1 memory mount at %s: %v", m.point, err))
			continue
		}
		if err := writable(m.point); err != nil {
			why = append(why, fmt.Sprintf("cgroup v1 memory mount at %s is not writable: %v", m.point, err))
			continue
		}
		return detection{mode: V1, root: m.point}
	}
	if !v2seen {
		why = append(why, "no cgroup2 filesystem is mounted")
	}
	if !v1seen {
		why = append(why, "no cgroup v1 memory controller is mounted")
	}
	return detection{err: fmt.Errorf("%w: %s (see %s)", ErrUnavailable, strings.Join(why, "; "), mountinfo)}
}

func writable(dir string) error {
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return err
	}
	return nil
}

type mount struct {
	point, fstype, superOpts string
}

// readMounts parses the fields of /proc/self/mountinfo that matter here:
// "36 35 98:0 /root /mnt opts [optional...] - fstype source superopts".
func readMounts(path string) ([]mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || len(fields) < sep+4 {
			continue
		}
		out = append(out, mount{
			point:     unescapeMount(fields[4]),
			fstype:    fields[sep+1],
			superOpts: fields[sep+3],
		})
	}
	return out, sc.Err()
}

// unescapeMount undoes the octal escaping (\040 for space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

func hasOpt(opts, o string) bool {
	for _, f := range strings.Split(opts, ",") {
		if f == o {
			return true
		}
	}
	return false
}

// Group is one control group with a memory limit.
type Group struct {
	mode Mode
	path string
}

// New creates the group <root>/<parent>/<name> with the given memory limit in
// bytes (memory > 0), creating parent directories as needed. If the group
// already exists (left over by a crashed node agent) it is reused and its
// limit rewritten. parent and name must be relative, clean and free of "..".
func New(parent, name string, memory int64) (*Group, error) {
	mode, err := Detect()
	if err != nil {
		return nil, err
	}
	return newAt(mode, detected.root, parent, name, memory)
}

func newAt(mode Mode, root, parent, name string, memory int64) (*Group, error) {
	if memory <= 0 {
		return nil, fmt.Errorf("cgroup: memory limit must be positive, got %d", memory)
	}
	if err := checkRel(parent, true); err != nil {
		return nil, err
	}
	if err := checkRel(name, false); err != nil {
		return nil, err
	}
	g := &Group{mode: mode, path: filepath.Join(root, parent, name)}
	switch mode {
	case V2:
		// Walk down from the root, creating each level and enabling the memory
		// controller for its children. The root and Handoff's own levels hold
		// no processes, so the "no internal processes" rule is satisfied.
		dir := root
		for _, part := range strings.Split(filepath.Join(parent, name), "/") {
			if err := enableMemory(dir); err != nil {
				return nil, err
			}
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return nil, fmt.Errorf("cgroup: create %s: %w", dir, err)
			}
		}
		if err := writeFile(g.path, "memory.max", strconv.FormatInt(memory, 10)); err != nil {
			return nil, g.undo(err)
		}
		if err := writeFile(g.path, "memory.swap.max", "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, g.undo(err)
		}
	case V1:
		if err := os.MkdirAll(g.path, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup: create %s: %w", g.path, err)
		}
		// The kernel keeps memsw >= memory. Memory first, then memsw to the
		// same value, works for a fresh group (both unlimited).
		if err := writeFile(g.path, "memory.limit_in_bytes", strconv.FormatInt(memory, 10)); err != nil {
			// A reused group with a lower memsw limit refuses a higher memory
			// limit; lift memsw and retry once.
			if err2 := writeFile(g.path, "memory.memsw.limit_in_bytes", "-1"); err2 != nil {
				return nil, g.undo(err)
			}
			if err := writeFile(g.path, "memory.limit_in_bytes", strconv.FormatInt(memory, 10)); err != nil {
				return nil, g.undo(err)
			}
		}
		// Without swap accounting the file does not exist; the limit then
		// bounds RAM only.
		if err := writeFile(g.path, "memory.memsw.limit_in_bytes", strconv.FormatInt(memory, 10)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, g.undo(err)
		}
	default:
		return nil, fmt.Errorf("%w: mode %v", ErrUnavailable, mode)
	}
	return g, nil
}

func (g *Group) undo(err error) error {
	os.Remove(g.path)
	return err
}

func checkRel(p string, emptyOK bool) error {
	if p == "" && emptyOK {
		return nil
	}
	if p == "" || filepath.IsAbs(p) || filepath.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") ||
		strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") || p == "." {
		return fmt.Errorf("cgroup: invalid group path %q: must be relative, clean and without ..", p)
	}
	return nil
}

func enableMemory(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	if hasWord(string(b), "memory") {
		return nil
	}
	if err := writeFile(dir, "cgroup.subtree_control", "+memory"); err != nil {
		return fmt.Errorf("%w (enable the memory controller for children of %s)", err, dir)
	}
	return nil
}

func writeFile(dir, file, value string) error {
	p := filepath.Join(dir, file)
	// O_TRUNC is meaningless on cgroupfs and refused by some kernels' fakes;
	// a plain write of the whole value is what the kernel expects.
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cgroup: write %q to %s: %w", value, p, err)
	}
	return nil
}

// Mode reports which controller the group uses.
func (g *Group) Mode() Mode { return g.mode }

// Path is the group's directory in the cgroup filesystem. On V2 a directory
// file descriptor opened from it can be passed as SysProcAttr.CgroupFD (with
// UseCgroupFD) so a child starts inside the group.
func (g *Group) Path() string { return g.path }

// Add moves the process pid (all its threads) into the group. Memory the
// process allocated before the move stays charged where it was.
func (g *Group) Add(pid int) error {
	return writeFile(g.path, "cgroup.procs", strconv.Itoa(pid))
}

// Rename gives the group a new name under the same parent, keeping its
// processes, limit and every page charged to it (cgroup v1 only: v2 has no
// rename). A node agent uses it to make a parked process's group its
// instance's. It must not run concurrently with the group's other methods.
func (g *Group) Rename(name string) error {
	if err := checkRel(name, false); err != nil || strings.Contains(name, "/") {
		return fmt.Errorf("cgroup: invalid group name %q: one path element", name)
	}
	if g.mode != V1 {
		return fmt.Errorf("cgroup: rename %s: %w", g.path, ErrNoRename)
	}
	to := filepath.Join(filepath.Dir(g.path), name)
	if err := os.Rename(g.path, to); err != nil {
		return fmt.Errorf("cgroup: rename %s to %s: %w", g.path, name, err)
	}
	g.path = to
	return nil
}

// ErrNoRename is returned by Rename on cgroup v2, which cannot rename a
// group; the caller keeps the group under its old name.
var ErrNoRename = errors.New("cgroup v2 cannot rename a group")

// Procs lists the processes in the group.
func (g *Group) Procs() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(g.path, "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Kill sends SIGKILL to every process in the group, using cgroup.kill where
// the kernel has it (V2, Linux 5.14+), which also catches processes forking
// concurrently.
func (g *Group) Kill() error {
	if g.mode == V2 {
		if err := writeFile(g.path, "cgroup.kill", "1"); err == nil {
			return nil
		}
	}
	pids, err := g.Procs()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("cgroup: kill %d: %w", pid, err)
		}
	}
	return nil
}

// MemoryUsage reports the group's current memory use in bytes (page cache
// included, as the kernel charges it against the limit).
func (g *Group) MemoryUsage() (int64, error) {
	file := "memory.current"
	if g.mode == V1 {
		file = "memory.usage_in_bytes"
	}
	b, err := os.ReadFile(filepath.Join(g.path, file))
	if err != nil {
		return 0, fmt.Errorf("cgroup: %w", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup: parse %s: %w", file, err)
	}
	return n, nil
}

// OOMKills reports how many processes the kernel killed in this group for
// exceeding the limit. On V1 kernels older than 4.13 it returns
// memory.failcnt instead (how often the limit was hit), see the package
// documentation.
func (g *Group) OOMKills() (int, error) {
	file := "memory.events"
	if g.mode == V1 {
		file = "memory.oom_control"
	}
	b, err := os.ReadFile(filepath.Join(g.path, file))
	if err != nil {
		return 0, fmt.Errorf("cgroup: %w", err)
	}
	if n, ok := field(b, "oom_kill"); ok {
		return n, nil
	}
	if g.mode == V1 {
		b, err := os.ReadFile(filepath.Join(g.path, "memory.failcnt"))
		if err != nil {
			return 0, fmt.Errorf("cgroup: %w", err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return 0, fmt.Errorf("cgroup: parse memory.failcnt: %w", err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("cgroup: no oom_kill field in %s", filepath.Join(g.path, file))
}

// field finds "key value" in a flat-keyed cgroup file.
func field(b []byte, key string) (int, bool) {
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) == 2 && f[0] == key {
			n, err := strconv.Atoi(f[1])
			return n, err == nil
		}
	}
	return 0, false
}

// RemoveParent removes the empty parent directory made by New (for example
// "handoff/<node-id>" when a node agent shuts down) and then each of its
// ancestors that is empty too. A directory that still holds groups is left
// alone without error.
func RemoveParent(parent string) error {
	if _, err := Detect(); err != nil {
		return err
	}
	if err := checkRel(parent, false); err != nil {
		return err
	}
	for p := parent; p != "." && p != "/"; p = filepath.Dir(p) {
		err := os.Remove(filepath.Join(detected.root, p))
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EBUSY) {
			return nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cgroup: %w", err)
		}
	}
	return nil
}

// Close removes the group. Processes that are still exiting keep the group
// busy for a moment, so Close retries for up to a second; it does not kill
// anything (see Kill). Removing a group that no longer exists is not an error.
func (g *Group) Close() error {
	deadline := time.Now().Add(time.Second)
	delay := time.Millisecond
	for {
		err := os.Remove(g.path)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("cgroup: remove %s: %w", g.path, err)
		}
		time.Sleep(delay)
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}
