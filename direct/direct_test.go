package direct_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/direct"
	"github.com/handoff-dev/handoff/direct/shm"
)

var (
	_ direct.Conn        = (*direct.TCPConn)(nil)
	_ direct.Interrupter = (*direct.TCPConn)(nil)
	_ direct.Flusher     = (*direct.TCPConn)(nil)
)

// transports yields a fresh connection to an executor serving handler
// with check, for each transport the tests cover.
func transports(t *testing.T) map[string]func(t *testing.T) direct.Conn {
	return map[string]func(t *testing.T) direct.Conn{
		"shm-auto": func(t *testing.T) direct.Conn {
			c, _ := shmConn(t, "shm", shm.Options{Mode: shm.Auto, Hot: 20 * time.Microsecond}, "SHM_HOT_US=20")
			return c
		},
		"shm-warm": func(t *testing.T) direct.Conn {
			c, _ := shmConn(t, "shm", shm.Options{Mode: shm.Warm}, fmt.Sprintf("SHM_MODE=%d", shm.Warm))
			return c
		},
		"tcp": func(t *testing.T) direct.Conn {
			addr, _ := serveTCP(t, context.Background(), direct.ServerConfig{Check: check}, direct.TCPOptions{})
			return tcpConn(t, addr, direct.TCPOptions{})
		},
		// The executor busy-polls 2 ms after each message, the client
		// until its result comes (a hot lease over TCP).
		"tcp-spin": func(t *testing.T) direct.Conn {
			addr, _ := serveTCP(t, context.Background(), direct.ServerConfig{Check: check}, direct.TCPOptions{Batch: true, Spin: 2 * time.Millisecond})
			return tcpConn(t, addr, direct.TCPOptions{Batch: true, Spin: -1})
		},
		"tcp-batch": func(t *testing.T) direct.Conn {
			addr, _ := serveTCP(t, context.Background(), direct.ServerConfig{Check: check}, direct.TCPOptions{Batch: true})
			return tcpConn(t, addr, direct.TCPOptions{Batch: true})
		},
	}
}

func TestCalls(t *testing.T) {
	for name, dial := range transports(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := handshake(t, dial(t))
			ctx := context.Background()

			// Sizes from empty to 1 MiB, past the 64 KiB ring.
			for _, n := range []int{0, 1, 64, 4 << 10, 100 << 10, 1 << 20} {
				p := randomBytes(n)
				got, err := c.Call(ctx, p)
				if err != nil {
					t.Fatalf("%d bytes: %v", n, err)
				}
				if !bytes.Equal(got, p) {
					t.Fatalf("%d bytes: echo differs", n)
				}
			}

			_, err := c.Call(ctx, []byte("fail"))
			if !errors.Is(err, direct.ErrFunction) || !strings.Contains(err.Error(), "it failed") {
				t.Errorf("failing function: %v", err)
			}
			_, err = c.Call(ctx, []byte("panic"))
			if !errors.Is(err, direct.ErrFunction) || !strings.Contains(err.Error(), "boom") {
				t.Errorf("panicking function: %v", err)
			}
			_, err = c.Call(ctx, []byte("big"))
			if !errors.Is(err, direct.ErrPlatform) {
				t.Errorf("result over the limit: %v", err)
			}
			_, err = c.Call(ctx, make([]byte, direct.MaxPayload+1))
			if !errors.Is(err, direct.ErrTooLarge) {
				t.Errorf("payload over the limit: %v", err)
			}
			// The connection survived all of it.
			if got, err := c.Call(ctx, []byte("still here")); err != nil || string(got) != "still here" {
				t.Fatalf("after the errors: %q, %v", got, err)
			}
		})
	}
}

func TestPipelined(t *testing.T) {
	for name, dial := range transports(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := handshake(t, dial(t))
			// More calls than the executor takes at once (256), some slow
			// so that results come back out of order.
			const n = 1000
			fs := make([]*direct.Future, n)
			want := make([][]byte, n)
			for i := range fs {
				want[i] = fmt.Appendf(nil, "call %d", i)
				if i%100 == 0 {
					want[i] = []byte("sleep:20")
				}
				fs[i] = c.Go(want[i])
			}
			// Wait from several goroutines at once, in reverse order.
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for i := n - 1 - g; i >= 0; i -= 4 {
						got, err := fs[i].Wait(context.Background())
						if err != nil || !bytes.Equal(got, want[i]) {
							t.Errorf("call %d: %q, %v", i, got, err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestConcurrentCallers(t *testing.T) {
	for name, dial := range transports(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := handshake(t, dial(t))
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for i := range 200 {
						p := fmt.Appendf(nil, "%d/%d", g, i)
						got, err := c.Call(context.Background(), p)
						if err != nil || !bytes.Equal(got, p) {
							t.Errorf("%s: %q, %v", p, got, err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestBadTokenRefused(t *testing.T) {
	for name, dial := range transports(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := direct.Handshake(dial(t), "stolen", 7)
			if !errors.Is(err, direct.ErrRefused) || !strings.Contains(err.Error(), "unknown or expired") {
				t.Fatalf("bad token: %v", err)
			}
			_, err = direct.Handshake(dial(t), goodToken, 8)
			if !errors.Is(err, direct.ErrRefused) || !strings.Contains(err.Error(), "not 8") {
				t.Fatalf("wrong executor: %v", err)
			}
		})
	}
}

func TestServeRefusalReturns(t *testing.T) {
	addr, errc := serveTCP(t, context.Background(), direct.ServerConfig{Check: check}, direct.TCPOptions{})
	if _, err := direct.Handshake(tcpConn(t, addr, direct.TCPOptions{}), "stolen", 7); !errors.Is(err, direct.ErrRefused) {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, direct.ErrRefused) {
		t.Fatalf("Serve returned %v, want ErrRefused", err)
	}

	// A wrong version is refused with its own code.
	addr, errc = serveTCP(t, context.Background(), direct.ServerConfig{Check: check}, direct.TCPOptions{})
	c := tcpConn(t, addr, direct.TCPOptions{})
	hello, _ := direct.AppendFrame(nil, &direct.Frame{Kind: direct.KindHello, Version: 2, Executor: 7, Token: goodToken})
	c.Send(hello)
	msg, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	w, err := direct.Decode(msg)
	if err != nil || w.Code != direct.CodeVersion {
		t.Fatalf("welcome %+v, %v; want code %d", w, err, direct.CodeVersion)
	}
	if err := <-errc; !errors.Is(err, direct.ErrRefused) {
		t.Fatalf("Serve returned %v, want ErrRefused", err)
	}
}

// TestExecutorKilled kills the executor process with calls in flight:
// every pending future fails with ErrExecutorLost, promptly.
func TestExecutorKilled(t *testing.T) {
	for _, name := range []string{"shm-hot", "shm-warm", "shm-auto", "tcp", "tcp-spin"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var conn direct.Conn
			var e *executor
			switch name {
			case "shm-hot":
				conn, e = shmConn(t, "shm", shm.Options{Mode: shm.Hot}, fmt.Sprintf("SHM_MODE=%d", shm.Hot))
			case "shm-warm":
				conn, e = shmConn(t, "shm", shm.Options{Mode: shm.Warm}, fmt.Sprintf("SHM_MODE=%d", shm.Warm))
			case "shm-auto":
				conn, e = shmConn(t, "shm", shm.Options{Mode: shm.Auto, Hot: 20 * time.Microsecond})
			case "tcp":
				e = startExecutor(t, "tcp", nil)
				conn = tcpConn(t, e.addr, direct.TCPOptions{})
			case "tcp-spin": // both ends spin for ever
				e = startExecutor(t, "tcp", nil, "TCP_SPIN=-1ns")
				conn = tcpConn(t, e.addr, direct.TCPOptions{Spin: -1})
			}
			c := handshake(t, conn)
			if _, err := c.Call(context.Background(), []byte("warm up")); err != nil {
				t.Fatal(err)
			}
			fs := make([]*direct.Future, 10)
			for i := range fs {
				fs[i] = c.Go([]byte("sleep:60000"))
			}
			time.Sleep(20 * time.Millisecond) // the calls are running
			start := time.Now()
			e.cmd.Process.Kill()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := fs[3].Wait(ctx); !errors.Is(err, direct.ErrExecutorLost) {
				t.Fatalf("got %v, want ErrExecutorLost", err)
			}
			took := time.Since(start)
			if took > time.Second {
				t.Errorf("noticed the loss after %v", took)
			}
			t.Logf("noticed the loss after %v", took)
			// Every other future failed at the same moment: a Wait with
			// an expired context still gets the result, not the context's error.
			done, cancel2 := context.WithCancel(context.Background())
			cancel2()
			for i, f := range fs {
				if _, err := f.Wait(done); !errors.Is(err, direct.ErrExecutorLost) {
					t.Errorf("future %d: %v", i, err)
				}
			}
			if _, err := c.Call(context.Background(), []byte("x")); !errors.Is(err, direct.ErrExecutorLost) {
				t.Errorf("a call after the loss: %v", err)
			}
		})
	}
}

// TestWaitHonoursContext cancels a Wait that is reading the connection
// (the only waiter): it returns at once, and the client still works.
func TestWaitHonoursContext(t *testing.T) {
	for name, dial := range transports(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := handshake(t, dial(t))
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			start := time.Now()
			f := c.Go([]byte("sleep:300"))
			if _, err := f.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want DeadlineExceeded", err)
			}
			if d := time.Since(start); d > 250*time.Millisecond {
				t.Fatalf("Wait returned after %v, its context ended after 50ms", d)
			}
			if got, err := c.Call(context.Background(), []byte("next")); err != nil || string(got) != "next" {
				t.Fatalf("next call: %q, %v", got, err)
			}
			// The abandoned Wait can be taken up again.
			if got, err := f.Wait(context.Background()); err != nil || string(got) != "sleep:300" {
				t.Fatalf("second Wait: %q, %v", got, err)
			}
		})
	}
}

// TestServeShutdown cancels Serve's context with a call in flight: the
// call sees it, its result goes out, then a goodbye.
func TestServeShutdown(t *testing.T) {
	for _, kind := range []string{"tcp", "shm"} {
		t.Run(kind, func(t *testing.T) { testServeShutdown(t, kind) })
	}
}

func testServeShutdown(t *testing.T, kind string) {
	ctx, cancel := context.WithCancel(context.Background())
	conn, errc := servePair(t, kind, ctx, direct.ServerConfig{})
	c := handshake(t, conn)
	select {
	case <-blockStarted:
	default:
	}
	f := c.Go([]byte("block"))
	<-blockStarted
	cancel()
	if _, err := f.Wait(context.Background()); !errors.Is(err, direct.ErrFunction) || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("call in flight: %v, want its handler's error", err)
	}
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve returned %v", err)
	}
	_, err := c.Call(context.Background(), []byte("x"))
	if !errors.Is(err, direct.ErrExecutorLost) || !strings.Contains(err.Error(), "goodbye") {
		t.Fatalf("call after the goodbye: %v", err)
	}
}

// TestServeShutdownIdle cancels Serve's context on an idle connection.
func TestServeShutdownIdle(t *testing.T) {
	for _, kind := range []string{"tcp", "shm"} {
		t.Run(kind, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			conn, errc := servePair(t, kind, ctx, direct.ServerConfig{})
			c := handshake(t, conn)
			if _, err := c.Call(context.Background(), []byte("x")); err != nil {
				t.Fatal(err)
			}
			cancel()
			select {
			case err := <-errc:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Serve returned %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Serve still running 5s after its context ended")
			}
			if _, err := c.Call(context.Background(), []byte("x")); !errors.Is(err, direct.ErrExecutorLost) {
				t.Fatalf("call after the executor left: %v", err)
			}
		})
	}
}

// TestClientClose closes a client with a call in flight: the call fails
// with ErrClosed, and Serve ends cleanly, its handler cancelled.
func TestClientClose(t *testing.T) {
	for _, kind := range []string{"tcp", "shm"} {
		t.Run(kind, func(t *testing.T) { testClientClose(t, kind) })
	}
}

func testClientClose(t *testing.T, kind string) {
	conn, errc := servePair(t, kind, context.Background(), direct.ServerConfig{})
	c, err := direct.Handshake(conn, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	f := c.Go([]byte("block"))
	waited := make(chan error)
	go func() { _, err := f.Wait(context.Background()); waited <- err }()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	if err := <-waited; !errors.Is(err, direct.ErrClosed) {
		t.Fatalf("pending call: %v, want ErrClosed", err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the client's goodbye")
	}
	if _, err := c.Call(context.Background(), nil); !errors.Is(err, direct.ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestExecutorSeesClientVanish: a client that disappears without a
// goodbye ends Serve with an error, and the handler's context.
func TestExecutorSeesClientVanish(t *testing.T) {
	addr, errc := serveTCP(t, context.Background(), direct.ServerConfig{}, direct.TCPOptions{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := direct.Handshake(direct.NewTCPConn(nc, direct.TCPOptions{}), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	c.Go([]byte("block"))
	time.Sleep(20 * time.Millisecond)
	nc.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("Serve returned %v, want io.EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running after the client vanished")
	}
}

func TestMalformedFromClient(t *testing.T) {
	addr, errc := serveTCP(t, context.Background(), direct.ServerConfig{}, direct.TCPOptions{})
	c := tcpConn(t, addr, direct.TCPOptions{})
	hello, _ := direct.AppendFrame(nil, &direct.Frame{Kind: direct.KindHello, Version: direct.Version})
	c.Send(hello)
	c.Recv()
	c.Send([]byte("garbage"))
	if err := <-errc; !errors.Is(err, direct.ErrMalformed) {
		t.Fatalf("Serve returned %v, want ErrMalformed", err)
	}
}

func TestAll(t *testing.T) {
	var clients []*direct.Client
	for range 3 {
		addr, _ := serveTCP(t, context.Background(), direct.ServerConfig{}, direct.TCPOptions{})
		clients = append(clients, handshake(t, tcpConn(t, addr, direct.TCPOptions{})))
	}
	out, err := direct.All(context.Background(), clients, []byte("v"))
	if err != nil || len(out) != 3 || string(out[2]) != "v" {
		t.Fatalf("got %q, %v", out, err)
	}
	clients[1].Close()
	out, err = direct.All(context.Background(), clients, []byte("v"))
	if !errors.Is(err, direct.ErrClosed) || !strings.Contains(err.Error(), "executor 1") || out[1] != nil || string(out[0]) != "v" {
		t.Fatalf("with a closed client: %q, %v", out, err)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestLongCallDoesNotBlockOthers: a call behind a long one is read by
// another goroutine after the hand-off time, not after the long call.
func TestLongCallDoesNotBlockOthers(t *testing.T) {
	for name, dial := range transports(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := handshake(t, dial(t))
			long := c.Go([]byte("sleep:2000"))
			start := time.Now()
			if _, err := c.Call(context.Background(), []byte("quick")); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Fatalf("a quick call behind a long one took %v", d)
			}
			if _, err := long.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCallByReference: a FlagRef call runs the handler on what Deref
// returns for the reference, the input is released once the result went
// out, and an executor without Deref refuses such calls as a platform
// failure, the connection intact.
func TestCallByReference(t *testing.T) {
	big := randomBytes(direct.MaxPayload + 1<<20) // over the inline limit
	released := make(chan string, 4)
	cfg := direct.ServerConfig{Check: check, Deref: func(_ context.Context, ref string) ([]byte, func(), error) {
		if ref != "ref-big" {
			return nil, nil, errors.New("no such reference")
		}
		return append([]byte("echo "), big...), func() { released <- ref }, nil
	}}
	addr, _ := serveTCP(t, context.Background(), cfg, direct.TCPOptions{})
	c := handshake(t, tcpConn(t, addr, direct.TCPOptions{}))
	ctx := context.Background()

	// The echo of a 17 MiB input is over the result limit: the handler
	// saw the whole input, and the platform refuses the result.
	if _, err := c.CallRef(ctx, "ref-big"); !errors.Is(err, direct.ErrPlatform) || !strings.Contains(err.Error(), fmt.Sprintf("result of %d bytes", len(big)+5)) {
		t.Fatalf("echo of a referenced 17 MiB input: %v; want the result refused as too large", err)
	}
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("the input was not released after the call")
	}
	if _, err := c.CallRef(ctx, "ref-unknown"); !errors.Is(err, direct.ErrPlatform) || !strings.Contains(err.Error(), "no such reference") {
		t.Fatalf("unknown reference: %v; want a platform error that names the cause", err)
	}
	if _, err := c.CallRef(ctx, strings.Repeat("r", direct.MaxRef+1)); !errors.Is(err, direct.ErrTooLarge) {
		t.Fatalf("reference over MaxRef: %v; want ErrTooLarge", err)
	}
	if got, err := c.Call(ctx, []byte("echo inline")); err != nil || string(got) != "echo inline" {
		t.Fatalf("inline call after them: %q, %v", got, err)
	}

	plain, _ := serveTCP(t, context.Background(), direct.ServerConfig{Check: check}, direct.TCPOptions{})
	c2 := handshake(t, tcpConn(t, plain, direct.TCPOptions{}))
	if _, err := c2.CallRef(ctx, "ref-big"); !errors.Is(err, direct.ErrPlatform) || !strings.Contains(err.Error(), "no input by reference") {
		t.Fatalf("executor without Deref: %v; want a platform error", err)
	}
	if got, err := c2.Call(ctx, []byte("echo still")); err != nil || string(got) != "echo still" {
		t.Fatalf("after a refused reference: %q, %v", got, err)
	}
}
