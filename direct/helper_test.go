package direct_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/direct"
	"github.com/handoff-dev/handoff/direct/shm"
)

// TestMain runs helperMain instead of the tests when DIRECT_HELPER names a
// mode: the test binary re-executed as an executor process.
func TestMain(m *testing.M) {
	if mode := os.Getenv("DIRECT_HELPER"); mode != "" {
		if err := helperMain(mode); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const goodToken = "good-lease"

// check accepts goodToken for executor 7.
func check(token string, executor int) error {
	if token != goodToken {
		return errors.New("lease token unknown or expired")
	}
	if executor != 7 {
		return fmt.Errorf("this is executor 7, not %d", executor)
	}
	return nil
}

// blockStarted hears (if there is room) that a "block" call started.
var blockStarted = make(chan struct{}, 1)

// handler echoes its payload, except for a few commands:
// "sleep:<ms>", "fail", "panic", "big" (a result over MaxPayload) and
// "block" (until the context ends).
func handler(ctx context.Context, p []byte) ([]byte, error) {
	s := string(p)
	switch {
	case strings.HasPrefix(s, "sleep:"):
		ms, _ := strconv.Atoi(s[len("sleep:"):])
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case s == "fail":
		return nil, errors.New("it failed")
	case s == "panic":
		panic("boom")
	case s == "big":
		return make([]byte, direct.MaxPayload+1), nil
	case s == "block":
		select {
		case blockStarted <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return p, nil
}

// helperMain is an executor process:
//
//	shm:     serves the ring file at fd 3 (SHM_MODE, SHM_HOT_US and
//	         SHM_LOCK=1 set its wait)
//	tcp:     serves TCP on 127.0.0.1:0 (TCP_BATCH=1 to batch), printing the address
//
// (DIRECT_HANDOFF_US sets ServerConfig.HandOff for both), or for the
// baselines:
//
//	rawshm:  echoes messages on the ring file at fd 3, no protocol
//	rawtcp:  echoes 64-byte blocks on TCP, no protocol
func helperMain(mode string) error {
	ctx := context.Background()
	cfg := direct.ServerConfig{Check: check}
	if v, err := strconv.Atoi(os.Getenv("DIRECT_HANDOFF_US")); err == nil {
		cfg.HandOff = time.Duration(v) * time.Microsecond
	}
	switch mode {
	case "shm", "rawshm":
		p, err := shm.WatchProcess(os.Getppid())
		if err != nil {
			return err
		}
		c, err := shm.Open(os.NewFile(3, "ring"), shm.Executor, shmOptions(p.Alive))
		if err != nil {
			return err
		}
		if mode == "shm" {
			err := direct.Serve(ctx, c, cfg, handler)
			if errors.Is(err, io.EOF) || errors.Is(err, direct.ErrRefused) {
				err = nil
			}
			return err
		}
		for {
			msg, err := c.Recv()
			if err != nil {
				return nil
			}
			if err := c.Send(msg); err != nil {
				return nil
			}
		}
	case "tcp", "rawtcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		fmt.Println(ln.Addr())
		opts := direct.TCPOptions{Batch: os.Getenv("TCP_BATCH") == "1"}
		opts.Spin, _ = time.ParseDuration(os.Getenv("TCP_SPIN"))
		for {
			nc, err := ln.Accept()
			if err != nil {
				return err
			}
			if mode == "tcp" {
				go direct.Serve(ctx, direct.NewTCPConn(nc, opts), cfg, handler)
				continue
			}
			go func() {
				nc.(*net.TCPConn).SetNoDelay(true)
				var b [64]byte
				for {
					if _, err := io.ReadFull(nc, b[:]); err != nil {
						nc.Close()
						return
					}
					if _, err := nc.Write(b[:]); err != nil {
						nc.Close()
						return
					}
				}
			}()
		}
	}
	return fmt.Errorf("unknown mode %q", mode)
}

func shmOptions(alive func() bool) shm.Options {
	o := shm.Options{Alive: alive}
	if v, err := strconv.Atoi(os.Getenv("SHM_MODE")); err == nil {
		o.Mode = shm.Mode(v)
	}
	if v, err := strconv.Atoi(os.Getenv("SHM_HOT_US")); err == nil {
		o.Hot = time.Duration(v) * time.Microsecond
	}
	o.LockThread = os.Getenv("SHM_LOCK") == "1"
	return o
}

// executor is a helper process.
type executor struct {
	cmd  *exec.Cmd
	addr string // tcp modes
}

// startExecutor runs the helper in mode; ring, if not nil, is its fd 3.
// env adds to the helper's environment.
func startExecutor(t testing.TB, mode string, ring *os.File, env ...string) *executor {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "DIRECT_HELPER="+mode), env...)
	cmd.Stderr = os.Stderr
	if ring != nil {
		cmd.ExtraFiles = []*os.File{ring}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	e := &executor{cmd: cmd}
	if strings.HasSuffix(mode, "tcp") {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			t.Fatalf("executor did not print its address: %v", err)
		}
		e.addr = strings.TrimSpace(line)
	}
	return e
}

// shmConn makes a ring, starts an executor process in mode on it and
// returns the client's side, waiting as opts says.
func shmConn(t testing.TB, mode string, opts shm.Options, env ...string) (*shm.Conn, *executor) {
	t.Helper()
	f, err := shm.New(64 << 10)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e := startExecutor(t, mode, f, env...)
	p, err := shm.WatchProcess(e.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	opts.Alive = p.Alive
	c, err := shm.Open(f, shm.Client, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, e
}

// tcpConn dials addr.
func tcpConn(t testing.TB, addr string, opts direct.TCPOptions) *direct.TCPConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := direct.NewTCPConn(nc, opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// handshake opens a client on c with the good token.
func handshake(t testing.TB, c direct.Conn) *direct.Client {
	t.Helper()
	cl, err := direct.Handshake(c, goodToken, 7)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// serveTCP runs Serve in this process on a loopback listener and returns
// its address and the first session's error.
func serveTCP(t testing.TB, ctx context.Context, cfg direct.ServerConfig, opts direct.TCPOptions) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	errc := make(chan error, 1)
	go func() {
		for first := true; ; first = false {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func(first bool) {
				err := direct.Serve(ctx, direct.NewTCPConn(nc, opts), cfg, handler)
				if first {
					errc <- err
				}
			}(first)
		}
	}()
	return ln.Addr().String(), errc
}

// servePair runs Serve in this process on one side of a fresh transport
// ("tcp" or "shm", warm) and returns the other side and Serve's error.
func servePair(t testing.TB, kind string, ctx context.Context, cfg direct.ServerConfig) (direct.Conn, <-chan error) {
	t.Helper()
	if kind == "tcp" {
		addr, errc := serveTCP(t, ctx, cfg, direct.TCPOptions{})
		return tcpConn(t, addr, direct.TCPOptions{}), errc
	}
	f, err := shm.New(64 << 10)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts := shm.Options{Mode: shm.Warm}
	c, err := shm.Open(f, shm.Client, opts)
	if err != nil {
		t.Fatal(err)
	}
	e, err := shm.Open(f, shm.Executor, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	errc := make(chan error, 1)
	go func() { errc <- direct.Serve(ctx, e, cfg, handler) }()
	return c, errc
}
