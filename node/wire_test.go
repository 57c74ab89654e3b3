package node

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/wire"
)

// dialWire opens a framed connection to the agent with token.
func dialWire(t *testing.T, h *harness, token string) (net.Conn, *bufio.Reader, *bufio.Writer) {
	t.Helper()
	c, err := net.Dial("tcp", h.agent.wireLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	br, bw := bufio.NewReader(c), bufio.NewWriter(c)
	if err := wire.WriteHello(bw, token); err != nil {
		t.Fatal(err)
	}
	return c, br, bw
}

func TestWireRefusesAWrongToken(t *testing.T) {
	h := startAgent(t)
	c, br, _ := dialWire(t, h, "not-the-token")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := br.ReadByte(); err == nil {
		t.Fatalf("the agent answered %q to a wrong token; want the connection closed", b)
	}
}

func TestWireInvokesAndStripsTheToken(t *testing.T) {
	h := startAgent(t)
	h.start("i1", "echo", nil)
	_, br, bw := dialWire(t, h, testToken)
	if b, err := br.ReadByte(); err != nil || b != 'K' {
		t.Fatalf("hello answered %q, %v", b, err)
	}
	call := func(target, body string) (int, http.Header, string) {
		t.Helper()
		hdr := http.Header{httpx.HeaderFunction: {"echo"}, "X-Testfn-Headers": {"1"}}
		httpx.SetToken(hdr, testToken)
		if body != "" {
			hdr.Del("X-Testfn-Headers")
		}
		if err := wire.WriteRequest(bw, &wire.Request{Target: target, Header: hdr, Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
		status, ah, err := wire.ReadAnswerHead(br)
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(wire.NewBodyReader(br))
		if err != nil {
			t.Fatal(err)
		}
		return status, ah, string(out)
	}
	// Several invocations on one connection.
	for range 3 {
		if status, _, out := call("i1", "echo over the wire"); status != http.StatusOK || out != "echo over the wire" {
			t.Fatalf("echo: %d %q", status, out)
		}
	}
	status, _, out := call("i1", "")
	if status != http.StatusOK || len(out) == 0 {
		t.Fatalf("headers: %d %q", status, out)
	}
	if strings.Contains(out, testToken) {
		t.Fatalf("the cluster token reached the instance:\n%s", out)
	}
	status, ah, out := call("nobody", "x")
	var e httpx.Error
	if status != http.StatusServiceUnavailable || ah.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(out), &e) != nil || e.Code != "instance_gone" {
		t.Fatalf("unknown instance: %d %v %q", status, ah, out)
	}
}

func TestStartGivesTheInstanceAFramedAddressAndSecret(t *testing.T) {
	h := startAgent(t)
	status, b := h.do("PUT", "/v1/instances/d1", testToken, startRequest(t, "echo", nil))
	if status != http.StatusOK {
		t.Fatalf("start: %d %s", status, b)
	}
	var ans StartAnswer
	if err := json.Unmarshal(b, &ans); err != nil || ans.Direct == nil || ans.Direct.Addr == "" || len(ans.Direct.Secret) < 32 || ans.ID != "d1" {
		t.Fatalf("start answer %s: want the instance and its framed address and secret (%v)", b, err)
	}
	call := func(secret, body string) (string, bool) {
		c, err := net.Dial("tcp", ans.Direct.Addr)
		if err != nil {
			t.Fatalf("the instance does not serve its framed address: %v", err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br, bw := bufio.NewReader(c), bufio.NewWriter(c)
		wire.WriteHello(bw, secret)
		if k, err := br.ReadByte(); err != nil || k != 'K' {
			return "", false
		}
		wire.WriteRequest(bw, &wire.Request{Target: "d1", Header: http.Header{}, Body: []byte(body)})
		if _, _, err := wire.ReadAnswerHead(br); err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(wire.NewBodyReader(br))
		return string(out), true
	}
	if _, ok := call(testToken, "echo x"); ok {
		t.Error("the instance accepted the cluster token as its secret")
	}
	if out, ok := call(ans.Direct.Secret, "env HANDOFF_WIRE"); !ok || out != ans.Direct.Addr {
		t.Errorf("framed call: %q, %v; want the instance's own framed address", out, ok)
	}
	// The secret opens this instance alone; a second one gets another.
	status, b = h.do("PUT", "/v1/instances/d2", testToken, startRequest(t, "echo", nil))
	var ans2 StartAnswer
	if status != http.StatusOK || json.Unmarshal(b, &ans2) != nil || ans2.Direct == nil || ans2.Direct.Secret == ans.Direct.Secret || ans2.Direct.Addr == ans.Direct.Addr {
		t.Errorf("second instance: %d %s", status, b)
	}
}
