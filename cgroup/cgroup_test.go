package cgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as a child process: with CGROUP_TEST_ALLOC set it
// waits for a line on stdin (so the parent can move it into a group first),
// then allocates and touches that many MiB.
func TestMain(m *testing.M) {
	if v := os.Getenv("CGROUP_TEST_ALLOC"); v != "" {
		var mib int
		fmt.Sscan(v, &mib)
		var b [1]byte
		os.Stdin.Read(b[:])
		var keep [][]byte
		for i := 0; i < mib; i++ {
			c := make([]byte, 1<<20)
			for j := range c {
				c[j] = byte(j)
			}
			keep = append(keep, c)
		}
		fmt.Println("allocated", len(keep))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestProbeMountinfo(t *testing.T) {
	dir := t.TempDir()
	v2 := filepath.Join(dir, "unified")
	v1 := filepath.Join(dir, "memory")
	os.MkdirAll(v2, 0o755)
	os.MkdirAll(v1, 0o755)
	os.WriteFile(filepath.Join(v2, "cgroup.controllers"), []byte("cpu io\n"), 0o644)
	os.WriteFile(filepath.Join(v1, "memory.limit_in_bytes"), []byte("9223372036854771712\n"), 0o644)
	mi := filepath.Join(dir, "mountinfo")
	write := func(lines ...string) {
		t.Helper()
		if err := os.WriteFile(mi, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v2line := "40 30 0:37 / " + v2 + " rw,relatime - cgroup2 cgroup2 rw"
	v1line := "34 30 0:31 / " + v1 + " rw,relatime shared:9 - cgroup cgroup rw,memory"

	write(v2line, v1line)
	if d := probe(mi); d.err != nil || d.mode != V1 || d.root != v1 {
		t.Fatalf("v2 without memory + v1 memory: got %v %q %v, want V1 at %s", d.mode, d.root, d.err, v1)
	}

	os.WriteFile(filepath.Join(v2, "cgroup.controllers"), []byte("cpu memory io\n"), 0o644)
	if d := probe(mi); d.err != nil || d.mode != V2 || d.root != v2 {
		t.Fatalf("v2 with memory: got %v %q %v, want V2 at %s", d.mode, d.root, d.err, v2)
	}

	os.WriteFile(filepath.Join(v2, "cgroup.controllers"), []byte("cpu\n"), 0o644)
	write(v2line)
	d := probe(mi)
	if !errors.Is(d.err, ErrUnavailable) {
		t.Fatalf("nothing usable: got %v %v, want ErrUnavailable", d.mode, d.err)
	}
	for _, want := range []string{"memory limits cannot be enforced", "does not offer the memory controller", "no cgroup v1 memory controller is mounted"} {
		if !strings.Contains(d.err.Error(), want) {
			t.Errorf("error %q does not say %q", d.err, want)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/a\040b\134c`); got != `/a b\c` {
		t.Fatalf("got %q", got)
	}
}

func TestCheckRel(t *testing.T) {
	for _, bad := range []string{"/abs", "..", "a/../b", "a/..", "a//b", "."} {
		if checkRel(bad, false) == nil {
			t.Errorf("checkRel(%q) accepted", bad)
		}
	}
	for _, ok := range []string{"handoff/n1", "i-1"} {
		if err := checkRel(ok, false); err != nil {
			t.Errorf("checkRel(%q): %v", ok, err)
		}
	}
}

// TestV2Files drives the V2 code path against a directory laid out like a
// cgroup2 mount. It checks which files New writes; the kernel behaviour itself
// is covered by TestMemoryLimit on machines with cgroup v2.
func TestV2Files(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), nil, 0o644)
	for _, d := range []string{"handoff", "handoff/n1", "handoff/n1/i1"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	for _, f := range []string{"handoff/cgroup.subtree_control", "handoff/n1/cgroup.subtree_control", "handoff/n1/i1/memory.max", "handoff/n1/i1/memory.swap.max"} {
		os.WriteFile(filepath.Join(root, f), nil, 0o644)
	}
	g, err := newAt(V2, root, "handoff/n1", "i1", 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"cgroup.subtree_control":            "+memory",
		"handoff/cgroup.subtree_control":    "+memory",
		"handoff/n1/cgroup.subtree_control": "+memory",
		"handoff/n1/i1/memory.max":          "33554432",
		"handoff/n1/i1/memory.swap.max":     "0",
	}
	for f, v := range want {
		b, _ := os.ReadFile(filepath.Join(root, f))
		if string(b) != v {
			t.Errorf("%s = %q, want %q", f, b, v)
		}
	}
	if g.Path() != filepath.Join(root, "handoff/n1/i1") {
		t.Errorf("path %s", g.Path())
	}
}

// TestMemoryLimit runs a real process in a real group on this machine: it
// must be OOM-killed when it touches more than the limit.
func TestMemoryLimit(t *testing.T) {
	mode, err := Detect()
	if err != nil {
		t.Skipf("no memory controller on this machine, limits are not testable here: %v", err)
	}
	t.Logf("mode %v at %s", mode, detected.root)
	parent := fmt.Sprintf("handoff-test/cg-%d", os.Getpid())
	g, err := New(parent, "oom", 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Kill()
		if err := g.Close(); err != nil {
			t.Error(err)
		}
		if err := RemoveParent(parent); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(filepath.Join(detected.root, parent)); err == nil {
			t.Errorf("RemoveParent left %s", parent)
		}
	})

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "CGROUP_TEST_ALLOC=128")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	pids, err := g.Procs()
	if err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Errorf("Procs = %v, %v; want [%d]", pids, err, cmd.Process.Pid)
	}
	// Usage may still be 0 here: on V1 the charges of pages touched before
	// the move stay in the old group.
	if n, err := g.MemoryUsage(); err != nil || n < 0 {
		t.Errorf("MemoryUsage = %d, %v", n, err)
	}
	stdin.Write([]byte("go\n"))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("allocating child neither finished nor was killed")
	}
	if err == nil {
		t.Fatalf("child allocated 128 MiB under a 32 MiB limit: %s", out.String())
	}
	t.Logf("child ended: %v", err)
	n, err := g.OOMKills()
	if err != nil {
		t.Fatal(err)
	}
	if n < 1 {
		t.Errorf("OOMKills = %d, want >= 1", n)
	}
}

func TestRenameKeepsLimitAndCharges(t *testing.T) {
	mode, err := Detect()
	if err != nil {
		t.Skipf("no memory controller on this machine: %v", err)
	}
	parent := fmt.Sprintf("handoff-test/rn-%d", os.Getpid())
	g, err := New(parent, "parked.1", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Kill()
		g.Close()
		RemoveParent(parent)
	})
	if err := g.Rename("bad/name"); err == nil {
		t.Error("Rename accepted a name with a slash")
	}
	err = g.Rename("i-1")
	if mode != V1 {
		if !errors.Is(err, ErrNoRename) {
			t.Errorf("Rename on %v = %v, want ErrNoRename", mode, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(g.Path()) != "i-1" {
		t.Errorf("Path after Rename = %s", g.Path())
	}
	b, err := os.ReadFile(filepath.Join(g.Path(), "memory.limit_in_bytes"))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(64<<20) {
		t.Errorf("limit after Rename = %q (%v), want %d", b, err, 64<<20)
	}
	if _, err := os.Stat(filepath.Join(detected.root, parent, "parked.1")); !os.IsNotExist(err) {
		t.Errorf("old name still there: %v", err)
	}
}
