package baseline

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/handoff-dev/handoff/bench"
)

// LookRedis returns the path of redis-server on PATH or in the places Debian
// installs it, or ErrNotInstalled.
func LookRedis() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/bin", "/usr/sbin", "/usr/local/bin"} {
		if p, ok := executable(d, "redis-server"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: redis-server is not on PATH; install it with `apt-get install redis-server`", ErrNotInstalled)
}

// aptMu serializes apt-get runs; aptUpdated records that `apt-get update`
// has run in this process.
var (
	aptMu      sync.Mutex
	aptUpdated bool
)

// EnsureRedis returns the path of redis-server, installing Debian's package
// with apt-get when it is missing (`apt-get update` at most once per
// process). It says what it does, and apt-get's output goes, to log.
func EnsureRedis(ctx context.Context, log io.Writer) (string, error) {
	if p, err := LookRedis(); err == nil {
		return p, nil
	}
	if log == nil {
		log = io.Discard
	}
	aptMu.Lock()
	defer aptMu.Unlock()
	if p, err := LookRedis(); err == nil {
		return p, nil
	}
	apt := func(args ...string) error {
		fmt.Fprintf(log, "redis-server not found: running apt-get %s\n", args[0])
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("baseline: apt-get %s: %w (run it by hand as root to see why)", args[0], err)
		}
		return nil
	}
	if !aptUpdated {
		if err := apt("update"); err != nil {
			return "", err
		}
		aptUpdated = true
	}
	if err := apt("install", "-y", "--no-install-recommends", "redis-server"); err != nil {
		return "", err
	}
	return LookRedis()
}

// Redis is a private redis-server on 127.0.0.1 with persistence off and
// limits raised so that 1 GiB values work.
type Redis struct {
	addr string
	p    *proc
}

// StartRedis runs the redis-server at bin (see EnsureRedis) on a free port of
// 127.0.0.1 with its working directory dir, and waits until it answers PING.
func StartRedis(ctx context.Context, bin, dir string) (*Redis, error) {
	var err error
	for range 3 { // a free port can be taken between probe and bind
		var r *Redis
		if r, err = startRedis(ctx, bin, dir); err == nil {
			return r, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func startRedis(ctx context.Context, bin, dir string) (*Redis, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("baseline: redis: %w", err)
	}
	p, err := startProc(bin, []string{
		"--bind", "127.0.0.1",
		"--port", fmt.Sprint(port),
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "yes",
		"--proto-max-bulk-len", "2gb",
		"--client-query-buffer-limit", "2gb",
		"--daemonize", "no",
		"--loglevel", "warning",
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("baseline: start redis-server: %w", err)
	}
	r := &Redis{addr: addr(port), p: p}
	err = p.waitReady(ctx, "redis-server", r.ping)
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("baseline: %w", err)
	}
	return r, nil
}

// ping sends PING over a fresh connection and wants +PONG. It speaks RESP
// by hand so that polling a server that is still starting logs nothing.
func (r *Redis) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", r.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Addr returns the server's host:port.
func (r *Redis) Addr() string { return r.addr }

// Close kills the server and waits for it to exit.
func (r *Redis) Close() error {
	r.p.stop()
	return nil
}

func (r *Redis) clientOptions() *redis.Options {
	return &redis.Options{
		Addr:     r.addr,
		Protocol: 2,
		// 1 GiB values take seconds each way; ctx bounds a stuck call.
		ReadTimeout:              5 * time.Minute,
		WriteTimeout:             5 * time.Minute,
		ContextTimeoutEnabled:    true,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		PoolSize:                 2,
		MaxRetries:               -1,
	}
}

// RedisTransfer is a [bench.Transfer] named "redis": the producer SETs the
// payload under a fresh key and the consumer GETs it. The key is DELeted in
// Cleanup, which bench.RunTransfers calls outside the timed section.
type RedisTransfer struct {
	c    *redis.Client
	n    uint64
	last string // key to delete in Cleanup, "" when none
}

// NewTransfer returns a RedisTransfer on r with its own client.
func (r *Redis) NewTransfer() *RedisTransfer {
	return &RedisTransfer{c: redis.NewClient(r.clientOptions())}
}

// Name returns "redis".
func (t *RedisTransfer) Name() string { return "redis" }

// Transfer SETs payload under a fresh key, then GETs it.
func (t *RedisTransfer) Transfer(ctx context.Context, payload []byte) ([]byte, error) {
	t.n++
	key := fmt.Sprintf("handoff-bench:%d", t.n)
	if err := t.c.Set(ctx, key, payload, 0).Err(); err != nil {
		return nil, fmt.Errorf("baseline: redis SET %d bytes: %w", len(payload), err)
	}
	t.last = key
	b, err := t.c.Get(ctx, key).Bytes()
	if err != nil {
		return nil, fmt.Errorf("baseline: redis GET %d bytes: %w", len(payload), err)
	}
	return b, nil
}

// Cleanup deletes the key of the last Transfer.
func (t *RedisTransfer) Cleanup(ctx context.Context) error {
	if t.last == "" {
		return nil
	}
	if err := t.c.Del(ctx, t.last).Err(); err != nil {
		return fmt.Errorf("baseline: redis DEL: %w", err)
	}
	t.last = ""
	return nil
}

// Close deletes a leftover key, if any, and closes the client.
func (t *RedisTransfer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cerr := t.Cleanup(ctx)
	if err := t.c.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return err
	}
	return cerr
}

var (
	_ bench.Transfer = (*RedisTransfer)(nil)
	_ bench.Cleaner  = (*RedisTransfer)(nil)
)
