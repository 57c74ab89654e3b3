package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/direct"
	"github.com/handoff-dev/handoff/leaseclient"
	"github.com/handoff-dev/handoff/spec"
)

func TestLeasedExecutorsTakeDirectCalls(t *testing.T) {
	dir := t.TempDir()
	p := startPlatform(t, dir)
	deploy(t, p.Client, testfnSpec(t, "direct-echo", func(f *spec.Function) { f.Scale.Min, f.Scale.Max = 0, 1 }))
	st, err := p.Client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	node := "http://" + st.Nodes[0].Addr
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(dir, "nodes", "*", "logs", "direct-echo", "*.log"))
		for _, f := range logs {
			b, _ := os.ReadFile(f)
			if len(b) > 3000 {
				b = b[len(b)-3000:]
			}
			t.Logf("%s:\n%s", f, b)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Without the admin token: refused.
	resp, err := http.Post(node+"/v1/leases", "application/json", strings.NewReader(`{"function":"direct-echo","executors":1,"duration":"10s"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("lease without the admin token: %s", resp.Status)
	}

	for _, k := range []struct {
		tcpOnly bool
		mode    string
		n       int
	}{{false, "auto", 2}, {true, "auto", 2}, {true, "hot", 1}} { // hot over TCP: both ends spin
		tcpOnly := k.tcpOnly
		c := &leaseclient.Client{Node: node, Token: strings.TrimSpace(string(admin)), TCPOnly: tcpOnly}
		t0 := time.Now()
		l, err := c.Acquire(ctx, api.LeaseRequest{Function: "direct-echo", Executors: k.n, Duration: "30s", Mode: k.mode})
		if err != nil {
			t.Fatalf("acquire (tcpOnly=%v, %s): %v", tcpOnly, k.mode, err)
		}
		t.Logf("acquired on %s in %v", l.Grant().Node, time.Since(t0))
		out, err := l.Call(ctx, []byte("echo direct"))
		if err != nil || string(out) != "echo direct" {
			t.Fatalf("direct call (tcpOnly=%v) = %q, %v", tcpOnly, out, err)
		}
		// Pipelined.
		var fs []*direct.Future
		for i := 0; i < 100; i++ {
			f, err := l.Go([]byte("echo pipelined"))
			if err != nil {
				t.Fatal(err)
			}
			fs = append(fs, f)
		}
		for _, f := range fs {
			if out, err := f.Wait(ctx); err != nil || string(out) != "echo pipelined" {
				t.Fatalf("pipelined call = %q, %v", out, err)
			}
		}
		outs, err := l.All(ctx, []byte("echo all"))
		if err != nil || len(outs) != k.n {
			t.Fatalf("vector call = %d answers, %v", len(outs), err)
		}
		// An input over the protocol's 16 MiB limit goes by reference
		// through the lease's node, to one executor and to all.
		big := append([]byte("sum "), filler(direct.MaxPayload+3<<20)...)
		want := fmt.Sprintf("%d %08x", len(big), crc32.Checksum(big, crc32.MakeTable(crc32.Castagnoli)))
		if out, err := l.Call(ctx, big); err != nil || string(out) != want {
			t.Fatalf("call with a %d-byte input (tcpOnly=%v) = %q, %v; want %q", len(big), tcpOnly, out, err, want)
		}
		outs, err = l.All(ctx, big)
		if err != nil || len(outs) != k.n {
			t.Fatalf("vector call with a %d-byte input = %d answers, %v", len(big), len(outs), err)
		}
		for i, out := range outs {
			if string(out) != want {
				t.Fatalf("vector call with a large input: executor %d answered %q, want %q", i, out, want)
			}
		}
		if err := l.Renew(ctx, time.Minute); err != nil {
			t.Fatalf("renew: %v", err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatalf("release: %v", err)
		}
	}

	// A wrong token is refused by the executor.
	c := &leaseclient.Client{Node: node, Token: strings.TrimSpace(string(admin)), TCPOnly: true}
	l, err := c.Acquire(ctx, api.LeaseRequest{Function: "direct-echo", Executors: 1, Duration: "30s"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(context.Background())
	g := l.Grant()
	nc, err := net.Dial("tcp", g.Executors[0].TCP)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Handshake(direct.NewTCPConn(nc, direct.TCPOptions{}), "not-the-token", 0); !errors.Is(err, direct.ErrRefused) {
		t.Fatalf("handshake with a wrong token: %v; want ErrRefused", err)
	}

	// An executor that dies fails its call at once.
	_, err = l.Call(ctx, []byte("crash"))
	if !errors.Is(err, direct.ErrExecutorLost) {
		t.Fatalf("call that crashes the executor: %v; want ErrExecutorLost", err)
	}
	checkFor(t, 10*time.Second, func() error {
		var all bytes.Buffer
		for _, n := range st.Nodes { // the lease may have been redirected
			req, _ := http.NewRequest(http.MethodGet, "http://"+n.Addr+"/v1/leases", nil)
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(admin)))
			r, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			all.ReadFrom(r.Body)
			r.Body.Close()
		}
		if !strings.Contains(strings.ReplaceAll(all.String(), " ", ""), `"state":"lost"`) {
			return errors.New("no lease lists its executor as lost: " + all.String())
		}
		return nil
	})
}
