package control

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/pki"
)

// Launcher runs node agents as child processes of the embedded platform
// (`handoff up`), each with its own address, and restarts one that dies.
type Launcher struct {
	Binary     string   // the handoff executable
	Dir        string   // platform state directory; node n gets Dir/nodes/<id>
	ControlURL string   // the gateway the agents report to
	TokenFile  string   // file holding the cluster token
	ExtraArgs  []string // passed to every `handoff node`
	// CA, when set, issues each agent its cluster identity (written to
	// Dir/nodes/<id>/tls before every start, so a restart gets a fresh
	// certificate); agents then pull buffers from each other over mutual TLS.
	CA *pki.CA
	// Host is the address node agents listen on (API, wire and peer
	// ports); default 127.0.0.1. Members on other machines or network
	// namespaces reach them there.
	Host   string
	Logger *slog.Logger

	wg sync.WaitGroup
}

// Start launches node agents n1..nN and keeps them running until ctx is done;
// Wait returns once all have exited.
func (l *Launcher) Start(ctx context.Context, n int) {
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		l.wg.Add(1)
		go func() { defer l.wg.Done(); l.keep(ctx, id) }()
	}
}

// Wait blocks until every node agent has exited.
func (l *Launcher) Wait() { l.wg.Wait() }

func (l *Launcher) keep(ctx context.Context, id string) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := l.run(ctx, id)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		l.Logger.Error("node agent exited; restarting", "node", id, "err", err, "in", backoff,
			"log", filepath.Join(l.Dir, "nodes", id, "agent.log"))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// run starts one node agent process and waits for it. On ctx done it sends
// SIGTERM (the agent drains its instances) and SIGKILL after a grace period.
func (l *Launcher) run(ctx context.Context, id string) error {
	dir := filepath.Join(l.Dir, "nodes", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"node", "--id", id, "--dir", dir, "--control", l.ControlURL, "--token-file", l.TokenFile}
	hosts := []string{"127.0.0.1", "localhost"}
	if l.Host != "" {
		hp := net.JoinHostPort(l.Host, "0")
		args = append(args, "--listen", hp, "--wire-listen", hp, "--peer-listen", hp)
		hosts = append(hosts, l.Host)
	}
	if l.CA != nil {
		f, err := pki.WriteMember(filepath.Join(dir, "tls"), id, hosts, l.CA, 365*24*time.Hour)
		if err != nil {
			return fmt.Errorf("node agent %s identity: %w", id, err)
		}
		args = append(args, "--tls-ca", f.CA, "--tls-cert", f.Cert, "--tls-key", f.Key)
	}
	args = append(args, l.ExtraArgs...)
	cmd := exec.Command(l.Binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start node agent %s: %w", id, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		return err
	case <-ctx.Done():
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		return err
	case <-time.After(45 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return <-exited
	}
}
