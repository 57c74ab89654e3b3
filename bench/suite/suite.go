// Package suite is `handoff bench`: it starts a real platform and real
// baselines on loopback, measures them side by side in one run, and writes
// JSON, Markdown and PNG reports.
package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/internal/platform"
	"github.com/handoff-dev/handoff/spec"
)

// Env is what every benchmark needs to know about its surroundings.
type Env struct {
	Binary string    // the handoff executable (runs `handoff up`)
	Repo   string    // repository root: examples/ and internal/ live here
	BinDir string    // where baseline binaries (MinIO) are cached
	Out    string    // report directory
	Log    io.Writer // progress
	Quick  bool      // fewer sizes and iterations, for tests
}

// startPlatform runs `handoff up` with two node agents in a fresh directory.
func (e Env) startPlatform(ctx context.Context, args ...string) (*platform.Platform, func(), error) {
	dir, err := os.MkdirTemp("", "handoff-bench-")
	if err != nil {
		return nil, nil, err
	}
	p, err := platform.Start(ctx, platform.Options{Binary: e.Binary, Dir: dir, Nodes: 2, Args: args})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	fmt.Fprintf(e.Log, "platform up at %s (2 node agents)\n", p.URL)
	return p, func() { p.Stop(); os.RemoveAll(dir) }, nil
}

// deploy installs a function from a Go package under the repository.
func (e Env) deploy(ctx context.Context, c *api.Client, name, pkg string, tweak func(*spec.Function)) error {
	f := spec.Function{Name: name, Run: spec.Run{Go: filepath.Join(e.Repo, pkg), Dir: e.Repo}}
	f.Timeout = spec.Duration(5 * time.Minute)
	if tweak != nil {
		tweak(&f)
	}
	f.ApplyDefaults()
	if err := f.Validate(); err != nil {
		return err
	}
	start := time.Now()
	if _, err := c.Deploy(ctx, f); err != nil {
		return fmt.Errorf("deploy %s: %w", name, err)
	}
	fmt.Fprintf(e.Log, "deployed %s in %s\n", name, time.Since(start).Round(time.Millisecond))
	return nil
}

// instanceAddr waits for a ready instance of fn and returns its address.
func instanceAddr(ctx context.Context, c *api.Client, fn string) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := c.Status(ctx)
		if err != nil {
			return "", err
		}
		for _, n := range st.Nodes {
			for _, in := range n.Instances {
				if in.Function == fn && in.State == "ready" {
					return in.Addr, nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", fmt.Errorf("no ready instance of %s within 30s", fn)
}

func (e Env) create(name string) (*os.File, error) {
	if err := os.MkdirAll(e.Out, 0o755); err != nil {
		return nil, err
	}
	return os.Create(filepath.Join(e.Out, name))
}

// writeJSON writes v, indented, to the report file name.
func (e Env) writeJSON(name string, v any) error {
	f, err := e.create(name)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// reportHeading is a report's first lines: its title, when it started and
// on what machine.
func reportHeading(title string, started time.Time, host map[string]string) string {
	keys := make([]string, 0, len(host))
	for k := range host {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + host[k]
	}
	return fmt.Sprintf("## %s\n\nStarted %s on %s.\n\n", title, started.Format("2006-01-02 15:04:05 MST"), strings.Join(parts, ", "))
}
