package control

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/spec"
)

// build compiles a function's Go package into the state directory and returns
// the binary's path. The Go build cache makes a rebuild of unchanged code cheap.
func (s *Server) build(f spec.Function, version int64) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		if _, serr := os.Stat("/usr/local/go/bin/go"); serr == nil {
			goBin = "/usr/local/go/bin/go"
		} else {
			return "", fmt.Errorf("function %s names a Go package (run.go) but no Go toolchain is on PATH; install Go or give run.command", f.Name)
		}
	}
	dir := filepath.Join(s.cfg.Dir, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, fmt.Sprintf("%s-v%d", f.Name, version))
	pkg, wd := f.Run.Go, f.Run.Dir
	if filepath.IsAbs(pkg) {
		wd, pkg = pkg, "."
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out+".tmp", pkg)
	cmd.Dir = wd
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("function %s: go build %s failed: %v\n%s", f.Name, f.Run.Go, err, strings.TrimSpace(buf.String()))
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		return "", err
	}
	s.log.Info("built function", "function", f.Name, "package", f.Run.Go, "took", time.Since(start).Round(time.Millisecond))
	return out, nil
}
