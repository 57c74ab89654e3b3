package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/spec"
)

// filler is len n of printable bytes (testfn splits its input on spaces,
// so the payload has none), different at every offset.
func filler(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(r.IntN(26))
	}
	return b
}

// nodeMetric sums a metric over every node agent of the platform.
func nodeMetric(t *testing.T, c *api.Client, name string) float64 {
	t.Helper()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, n := range st.Nodes {
		resp, err := http.Get("http://" + n.Addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, name+"{") {
				f := strings.Fields(line)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				sum += v
			}
		}
	}
	return sum
}

// localAPI is a client of a node agent's node-wide local API socket.
func localAPI(dir, node string) *http.Client {
	sock := filepath.Join(dir, "nodes", node, "api.sock")
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

func TestLargeBodiesPassByReference(t *testing.T) {
	p := startPlatform(t, t.TempDir(), "--inline-max", "256Ki")
	// One instance each, spread over both node agents: the call crosses
	// from one agent to the other, in both directions.
	deploy(t, p.Client, testfnSpec(t, "caller", func(f *spec.Function) { f.Scale.Min, f.Scale.Max = 1, 1 }))
	deploy(t, p.Client, testfnSpec(t, "callee", func(f *spec.Function) { f.Scale.Min, f.Scale.Max = 1, 1 }))

	payload := filler(3 << 20)
	want := append([]byte("echo "), payload...)
	// caller → callee carries 3 MiB by reference; callee's answer (the
	// same 3 MiB) comes back by reference too; the client gets bytes.
	out := invoke(t, p.Client, "caller", "call callee "+string(want))
	if out != string(want) {
		t.Fatalf("caller returned %d bytes, want the %d it sent through callee", len(out), len(want))
	}
	if puts := nodeMetric(t, p.Client, "handoff_node_ref_puts_total"); puts < 2 {
		t.Fatalf("%v references made; the request and the answer should each have gone by reference", puts)
	}
	if pulls := nodeMetric(t, p.Client, "handoff_node_ref_pulls_total"); pulls < 2 {
		t.Fatalf("%v pulls between node agents; want the request and the answer pulled across", pulls)
	}
	if n := nodeMetric(t, p.Client, "handoff_node_buffers"); n != 0 {
		t.Fatalf("%v buffers still held after their only read", n)
	}

	// A client upload over the inline limit goes by reference too.
	before := nodeMetric(t, p.Client, "handoff_node_ref_puts_total")
	out = invoke(t, p.Client, "callee", string(want))
	if out != string(want) {
		t.Fatalf("callee echoed %d bytes of a %d-byte upload", len(out), len(want))
	}
	if after := nodeMetric(t, p.Client, "handoff_node_ref_puts_total"); after != before+1 {
		t.Fatalf("upload made %v references; want 1", after-before)
	}
}

func TestUnreadBuffersSurviveNodeDrain(t *testing.T) {
	dir := t.TempDir()
	startPlatform(t, dir)
	payload := filler(5 << 20)

	// A buffer on n1, put through n1's node-wide local API.
	resp, err := localAPI(dir, "n1").Post("http://local/v1/refs?readers=*&reads=1", "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	var put struct{ Ref string }
	json.NewDecoder(resp.Body).Decode(&put)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || put.Ref == "" {
		t.Fatalf("put answered %s", resp.Status)
	}

	// n1 drains and exits (SIGTERM); the launcher starts a new n1, which
	// holds nothing of the old one.
	out, err := exec.Command("pgrep", "-f", "node --id n1 --dir "+filepath.Join(dir, "nodes", "n1")).Output()
	if err != nil {
		t.Fatalf("finding node agent n1: %v", err)
	}
	var pid int
	fmt.Sscan(string(out), &pid)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// The reference still works, read through n2: the buffer moved there
	// before n1 exited, and the control plane points n1's old holder name
	// at n2.
	checkFor(t, 30*time.Second, func() error {
		resp, err := localAPI(dir, "n2").Get("http://local/v1/refs/" + put.Ref)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			if resp.StatusCode == http.StatusGone || resp.StatusCode == http.StatusNotFound {
				t.Fatalf("buffer lost in the drain: %s %s", resp.Status, got)
			}
			return fmt.Errorf("get: %s %s", resp.Status, got)
		}
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("got %d bytes (err %v), want the %d put before the drain", len(got), err, len(payload))
		}
		return nil
	})
}
