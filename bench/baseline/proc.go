// Package baseline starts the real stores that Handoff's transfers are
// compared against, Redis and MinIO, as child processes on loopback
// addresses, and wraps them as [bench.Transfer]s.
//
// EnsureRedis and EnsureMinIO find the server binaries and, when they are
// missing, install them: redis-server from Debian's packages, MinIO built from
// the Go module proxy (minutes, once) and cached in a bin directory.
// StartRedis and StartMinIO run a private server with a fresh port and wait
// until it answers; Close kills it and waits for it.
package baseline

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// ErrNotInstalled reports that a server binary is not on this machine and
// installing it was not asked for.
var ErrNotInstalled = errors.New("baseline: server binary not installed")

// startTimeout bounds how long a server may take to answer after start.
const startTimeout = 30 * time.Second

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// caller starts a server on it and retries on a clash.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// proc is a child server process whose output goes to a bounded buffer.
type proc struct {
	cmd    *exec.Cmd
	out    *tailBuffer
	exited chan struct{} // closed when Wait returns
	err    error         // Wait's error; read after exited is closed
	once   sync.Once
}

func startProc(name string, args, env []string) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &tailBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// waitReady polls ready every 50ms until it succeeds, the process exits,
// ctx ends or startTimeout passes.
func (p *proc) waitReady(ctx context.Context, what string, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = ready(ctx); last == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready (%v); its output:\n%s", what, p.err, p.out.String())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v: %v; its output:\n%s", what, startTimeout, last, p.out.String())
		case <-tick.C:
		}
	}
}

// stop kills the process and waits for it. It is safe to call twice.
func (p *proc) stop() {
	p.once.Do(func() { p.cmd.Process.Kill() })
	<-p.exited
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex // guards buf
	buf []byte
	max int
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = bytes.Clone(t.buf[len(t.buf)-t.max:])
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// executable returns dir/name if it is an executable file.
func executable(dir, name string) (string, bool) {
	if dir == "" {
		return "", false
	}
	p := filepath.Join(dir, name)
	fi, err := os.Stat(p)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", false
	}
	return p, true
}
