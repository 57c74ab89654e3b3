package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/node"
	"github.com/handoff-dev/handoff/spec"
)

// parkedOn returns the pids of fn's parked processes on every node agent of
// the platform in dir (asked with the cluster token, as the control plane
// does).
func parkedOn(t *testing.T, dir string, addrs []string, fn string) []int {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(dir, "cluster.token"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, addr := range addrs {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/parked", nil)
		req.Header.Set(httpx.HeaderToken, strings.TrimSpace(string(tok)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var ps []node.ParkedInfo
		json.NewDecoder(resp.Body).Decode(&ps)
		resp.Body.Close()
		for _, p := range ps {
			if p.Function == fn && p.Parked {
				pids = append(pids, p.PID)
			}
		}
	}
	return pids
}

// TestScaleFromZeroFromParkedProcess scales a function to zero and back
// with a burst of buffered requests: the first instance comes from the
// process its node parked, and no request is lost.
func TestScaleFromZeroFromParkedProcess(t *testing.T) {
	dir := t.TempDir()
	p := startPlatform(t, dir)
	deploy(t, p.Client, testfnSpec(t, "warm", func(f *spec.Function) {
		f.Concurrency = 2
		f.Scale.StableWindow = spec.Duration(time.Second)
		f.Scale.PanicWindow = spec.Duration(time.Second)
		f.Scale.ScaleToZeroGrace = spec.Duration(time.Second)
	}))
	invoke(t, p.Client, "warm", "echo first")
	ctx := context.Background()
	var parked []int
	var nodeAddrs []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := p.Client.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		nodeAddrs = nodeAddrs[:0]
		for _, n := range st.Nodes {
			nodeAddrs = append(nodeAddrs, n.Addr)
		}
		// The router's view: node heartbeats lag by up to a second.
		fn, err := p.Client.Function(ctx, "warm")
		if err != nil {
			t.Fatal(err)
		}
		running := fn.Ready + fn.Starting + fn.Draining
		parked = parkedOn(t, dir, nodeAddrs, "warm")
		if running == 0 && len(parked) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm did not scale to zero with a parked process within 30s (%d instances, parked %v)", running, parked)
		}
		time.Sleep(50 * time.Millisecond)
	}
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf("sleep 50ms request %d", i)
			out, err := p.Client.Invoke(ctx, "warm", []byte(body))
			if err == nil && string(out) != body {
				err = fmt.Errorf("request %d got %q", i, out)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := p.Client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range st.Nodes {
		for _, in := range nd.Instances {
			for _, pid := range parked {
				if in.PID == pid {
					t.Logf("instance %s came from parked process %d: ready %v after its activation", in.ID, pid, in.ColdStart)
					return
				}
			}
		}
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "nodes", "*", "agent.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		t.Logf("%s:\n%s", l, b)
	}
	t.Errorf("no instance of warm runs as the parked process %v: %+v", parked, st.Nodes)
}
