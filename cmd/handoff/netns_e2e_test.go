package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/platform"
	"github.com/handoff-dev/handoff/pki"
)

// netnsPair makes two network namespaces joined by a veth pair, a at
// 10.77.0.1 and b at 10.77.0.2, and removes them at the end. It skips the
// test where the machine forbids it.
func netnsPair(t *testing.T) (a, b string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root; run the tests as root to cover the cross-namespace path")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no `ip` command (iproute2); install it to cover the cross-namespace path")
	}
	id := fmt.Sprint(os.Getpid() % 100000)
	a, b = "hoa"+id, "hob"+id
	va, vb := "vha"+id, "vhb"+id
	run := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", a).Run()
		exec.Command("ip", "netns", "del", b).Run()
	})
	steps := [][]string{
		{"netns", "add", a}, {"netns", "add", b},
		{"link", "add", va, "type", "veth", "peer", "name", vb},
		{"link", "set", va, "netns", a}, {"link", "set", vb, "netns", b},
		{"-n", a, "addr", "add", "10.77.0.1/24", "dev", va}, {"-n", b, "addr", "add", "10.77.0.2/24", "dev", vb},
		{"-n", a, "link", "set", va, "up"}, {"-n", b, "link", "set", vb, "up"},
		{"-n", a, "link", "set", "lo", "up"}, {"-n", b, "link", "set", "lo", "up"},
	}
	for i, s := range steps {
		if err := run(s...); err != nil {
			if i == 0 {
				t.Skipf("this machine forbids network namespaces: %v", err)
			}
			t.Fatal(err)
		}
	}
	return a, b
}

// splitCluster is a platform across two network namespaces: `handoff up`
// (the control plane and n1) in one, n2 started by hand in the other with
// an identity from the cluster's CA, as an operator would add a machine;
// the veth pair is the only way between them.
type splitCluster struct {
	dir, gateway, nsA string
}

// n2log is what n2 has logged so far.
func (c *splitCluster) n2log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "n2.log"))
	return string(b)
}

func startSplitCluster(t *testing.T, upArgs ...string) *splitCluster {
	t.Helper()
	nsA, nsB := netnsPair(t)
	dir := t.TempDir()
	// Runs after the processes below are killed: their store mounts die
	// with them and must be detached before the directory can go.
	t.Cleanup(func() { platform.DetachMounts(dir) })

	args := append([]string{"netns", "exec", nsA, binary, "up", "--dir", dir, "--listen", "10.77.0.1:0", "--nodes", "1", "--node-host", "10.77.0.1"}, upArgs...)
	up := exec.Command("ip", args...)
	stdout, _ := up.StdoutPipe()
	up.Stderr = io.Discard
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its node agents die with it
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-up.Process.Pid, syscall.SIGKILL); up.Wait() })
	lines := bufio.NewScanner(stdout)
	gateway := ""
	for lines.Scan() {
		if rest, ok := strings.CutPrefix(lines.Text(), "handoff ready gateway="); ok {
			gateway = strings.Fields(rest)[0]
			break
		}
	}
	if gateway == "" {
		t.Fatal("handoff up did not get ready")
	}
	go io.Copy(io.Discard, stdout)

	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	n2dir := filepath.Join(dir, "nodes", "n2")
	files, err := pki.WriteMember(filepath.Join(n2dir, "tls"), "n2", []string{"10.77.0.2"}, ca, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	n2 := exec.Command("ip", "netns", "exec", nsB, binary, "node", "--id", "n2", "--dir", n2dir,
		"--control", gateway, "--token-file", filepath.Join(dir, "cluster.token"),
		"--listen", "10.77.0.2:0", "--wire-listen", "10.77.0.2:0", "--peer-listen", "10.77.0.2:0",
		"--tls-ca", files.CA, "--tls-cert", files.Cert, "--tls-key", files.Key)
	logf, err := os.Create(filepath.Join(dir, "n2.log"))
	if err != nil {
		t.Fatal(err)
	}
	n2.Stderr = logf
	if err := n2.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Process.Kill(); n2.Wait(); logf.Close() })
	return &splitCluster{dir: dir, gateway: gateway, nsA: nsA}
}

// TestCrossNamespacePull moves a payload between two node agents in two
// network namespaces: the control plane and n1 in one, n2 in the other,
// the veth pair the only way between them.
func TestCrossNamespacePull(t *testing.T) {
	c := startSplitCluster(t)
	dir := c.dir

	// A buffer on n1 (namespace a), read through n2 (namespace b). The
	// Unix sockets are files, reachable from here; the pull between the
	// agents can only cross the veth pair.
	payload := filler(24 << 20)
	resp, err := localAPI(dir, "n1").Post("http://local/v1/refs?readers=*", "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	var put struct{ Ref string }
	json.NewDecoder(resp.Body).Decode(&put)
	resp.Body.Close()
	if put.Ref == "" {
		t.Fatalf("put answered %s", resp.Status)
	}
	checkFor(t, 20*time.Second, func() error {
		resp, err := localAPI(dir, "n2").Get("http://local/v1/refs/" + put.Ref)
		if err != nil {
			return fmt.Errorf("n2 not serving yet: %v (log: %s)", err, c.n2log())
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusBadGateway {
			return fmt.Errorf("n2 does not know n1 yet: %s", got) // its directory comes with heartbeats
		}
		if resp.StatusCode != http.StatusOK || err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("cross-namespace pull: %s, %d bytes, %v: %.300s", resp.Status, len(got), err, got)
		}
		return nil
	})
}

// TestCrossNamespaceStream runs a workflow whose one channel must cross
// between two node agents in two network namespaces (one task slot per
// node), through the CLI as an operator would.
func TestCrossNamespaceStream(t *testing.T) {
	c := startSplitCluster(t, "--run-slots", "1")
	dir, gateway, nsA := c.dir, c.gateway, c.nsA

	cli := func(args ...string) (string, error) {
		token, _ := os.ReadFile(filepath.Join(dir, "admin.token"))
		full := append([]string{"netns", "exec", nsA, binary}, args...)
		full = append(full, "--gateway", gateway, "--token", strings.TrimSpace(string(token)))
		out, err := exec.Command("ip", full...).CombinedOutput()
		return string(out), err
	}
	wd, _ := os.Getwd()
	specFile := filepath.Join(dir, "stagefn.yaml")
	os.WriteFile(specFile, []byte("name: stagefn\nrun:\n  go: "+filepath.Join(wd, "..", "..", "internal", "stagefn")+"\ntimeout: 1m\n"), 0o644)
	if out, err := cli("deploy", "-f", specFile); err != nil {
		t.Fatalf("deploy: %v: %s", err, out)
	}
	wfFile := filepath.Join(dir, "cross.yaml")
	os.WriteFile(wfFile, []byte(`name: cross
stages:
  - {name: gen, function: stagefn, params: {role: gen, bytes: "50000000"}}
  - {name: sum, function: stagefn, params: {role: sum}}
edges:
  - {from: gen, to: sum}
`), 0o644)
	// Both node agents must be up before the run can place a task on each.
	checkFor(t, 30*time.Second, func() error {
		out, err := cli("status")
		if err != nil || !strings.Contains(out, "n2") {
			return fmt.Errorf("n2 not registered yet: %v %s (n2 log: %s)", err, out, c.n2log())
		}
		return nil
	})
	out, err := cli("run", wfFile, "--quiet")
	if err != nil {
		t.Fatalf("run: %v: %s", err, out)
	}
	if !strings.Contains(out, `"bytes":50000000`) && !strings.Contains(out, `"bytes":4999`) {
		t.Errorf("the consumer did not sum the ~50 MB the producer wrote:\n%s", out)
	}
	// The summary's edge row: 1 channel, 1 of them cross-node.
	crossed := false
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 5 && f[0] == "gen.out→sum.in" && f[2] == "stream" && f[3] == "1" && f[4] == "1" {
			crossed = true
		}
	}
	if !crossed {
		t.Errorf("the edge did not run as one cross-node stream:\n%s", out)
	}
}
