package node

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// putRef puts body through the node-wide local API; it returns the status,
// the reference (on success) and the raw answer.
func putRef(t *testing.T, h *harness, query string, body []byte) (int, string, []byte) {
	t.Helper()
	resp, err := localClient(h).Post("http://handoff/v1/refs?"+query, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var put PutResult
	json.Unmarshal(raw, &put)
	return resp.StatusCode, put.Ref, raw
}

func getRef(t *testing.T, h *harness, tok string) (int, []byte) {
	t.Helper()
	resp, err := localClient(h).Get("http://handoff/v1/refs/" + tok)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestLocalRefRoundTrip(t *testing.T) {
	h := startAgent(t)
	data := bytes.Repeat([]byte("handoff "), 300_000)
	status, tok, raw := putRef(t, h, "readers=*&reads=2", data)
	if status != http.StatusCreated {
		t.Fatalf("put: %d %s", status, raw)
	}
	for i := 0; i < 2; i++ {
		if status, got := getRef(t, h, tok); status != http.StatusOK || !bytes.Equal(got, data) {
			t.Fatalf("read %d: %d, %d bytes", i, status, len(got))
		}
	}
	status, raw = getRef(t, h, tok)
	wantError(t, "third read", status, raw, http.StatusNotFound, "ref_gone")

	status, _, raw = putRef(t, h, "reads=1", data)
	wantError(t, "put without readers", status, raw, http.StatusBadRequest, "ref_invalid")
	status, _, raw = putRef(t, h, "readers=*&ttl=soon", data)
	wantError(t, "put with a bad ttl", status, raw, http.StatusBadRequest, "ref_invalid")
	status, raw = getRef(t, h, "hr2.bogus")
	wantError(t, "get of a non-reference", status, raw, http.StatusBadRequest, "ref_malformed")
}

func TestBufferBudgetFull(t *testing.T) {
	h := startAgentTuned(t, newFakeControl(t), "", func(c *Config) { c.BufferMemory, c.SpillDir = 1<<20, "-" })
	status, _, raw := putRef(t, h, "readers=*", make([]byte, 2<<20))
	msg := wantError(t, "put over the budget", status, raw, http.StatusInsufficientStorage, "buffers_full")
	if !bytes.Contains([]byte(msg), []byte("retry")) {
		t.Errorf("the error does not say what to do: %s", msg)
	}
	if v, _ := h.metricValue("handoff_node_buffer_full_total"); v != 1 {
		t.Errorf("handoff_node_buffer_full_total = %v; want 1", v)
	}
	// Within the budget it works.
	if status, _, raw := putRef(t, h, "readers=*", make([]byte, 512<<10)); status != http.StatusCreated {
		t.Fatalf("put within the budget: %d %s", status, raw)
	}
}

func TestBufferSpillsWhenFull(t *testing.T) {
	h := startAgentTuned(t, newFakeControl(t), "", func(c *Config) { c.BufferMemory = 1 << 20 })
	data := bytes.Repeat([]byte{7, 1, 3}, 1<<20)
	status, tok, raw := putRef(t, h, "readers=*", data)
	if status != http.StatusCreated {
		t.Fatalf("put over the budget with spilling on: %d %s", status, raw)
	}
	if v, _ := h.metricValue("handoff_node_buffer_spilled_bytes"); v != float64(len(data)) {
		t.Errorf("handoff_node_buffer_spilled_bytes = %v; want %d", v, len(data))
	}
	if v, _ := h.metricValue("handoff_node_buffer_spills_total"); v != 1 {
		t.Errorf("handoff_node_buffer_spills_total = %v; want 1", v)
	}
	if status, got := getRef(t, h, tok); status != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("read of a spilled buffer: %d, %d bytes", status, len(got))
	}
}
