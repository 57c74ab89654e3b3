// Package platform starts a real embedded Handoff platform (`handoff up`) as a
// child process, for the demo, the benchmark harness and end-to-end tests.
package platform

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/api"
)

// Platform is a running `handoff up`.
type Platform struct {
	URL    string
	Token  string // the admin token
	Dir    string
	Client *api.Client
	cmd    *exec.Cmd
	exited chan error
	log    *os.File
}

// Options configure Start.
type Options struct {
	Binary string   // the handoff executable
	Dir    string   // state directory
	Nodes  int      // node agents (default 2)
	Args   []string // extra flags for `handoff up`
	// Stderr receives the platform's log; default Dir/platform.log.
	Stderr io.Writer
}

// Start runs `handoff up` and returns once it printed its ready line.
func Start(ctx context.Context, o Options) (*Platform, error) {
	if o.Nodes == 0 {
		o.Nodes = 2
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	p := &Platform{Dir: o.Dir, exited: make(chan error, 1)}
	args := append([]string{"up", "--dir", o.Dir, "--listen", "127.0.0.1:0", "--nodes", fmt.Sprint(o.Nodes)}, o.Args...)
	cmd := exec.Command(o.Binary, args...)
	if o.Stderr != nil {
		cmd.Stderr = o.Stderr
	} else {
		f, err := os.OpenFile(filepath.Join(o.Dir, "platform.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		p.log = f
		cmd.Stderr = f
	}
	// Own process group, so a terminal's Ctrl-C reaches us first and we stop
	// the platform in order; Pdeathsig so it never outlives us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s up: %w", o.Binary, err)
	}
	p.cmd = cmd
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "handoff ready gateway="); ok {
				ready <- strings.Fields(rest)[0]
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() { p.exited <- cmd.Wait() }()
	select {
	case url := <-ready:
		p.URL = url
		p.Client = api.NewClient(url)
		tok, err := os.ReadFile(filepath.Join(o.Dir, "admin.token"))
		if err != nil {
			p.Kill()
			return nil, fmt.Errorf("handoff up is ready but its admin token is unreadable: %w", err)
		}
		p.Token = strings.TrimSpace(string(tok))
		p.Client.Token = p.Token
		return p, nil
	case err := <-p.exited:
		return nil, fmt.Errorf("handoff up exited before it was ready (%v); see %s", err, filepath.Join(o.Dir, "platform.log"))
	case <-time.After(60 * time.Second):
		p.Kill()
		return nil, errors.New("handoff up did not print its ready line within 60s")
	case <-ctx.Done():
		p.Kill()
		return nil, ctx.Err()
	}
}

// Stop sends SIGTERM and waits for the platform to drain and exit.
func (p *Platform) Stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.closeLog()
		return err
	case <-time.After(90 * time.Second):
		p.Kill()
		return errors.New("handoff up did not stop within 90s; killed")
	}
}

// Kill ends the platform at once (SIGKILL), as a crash would.
func (p *Platform) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
	}
	p.closeLog()
	DetachMounts(p.Dir)
}

// DetachMounts lazily unmounts every mount under dir: the store mounts
// of node agents killed before they could unmount, which would otherwise
// fail every access with "transport endpoint is not connected".
func DetachMounts(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil || dir == "" {
		return
	}
	prefix := filepath.Clean(dir) + string(filepath.Separator)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], prefix) {
			_ = syscall.Unmount(f[4], syscall.MNT_DETACH)
		}
	}
}

// Exited yields the platform's exit error once it exits by itself.
func (p *Platform) Exited() <-chan error { return p.exited }

func (p *Platform) closeLog() {
	if p.log != nil {
		p.log.Close()
	}
}
