package fdpass

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// The round-trip benchmarks run the answering side in a second process
// (this test binary, re-executed with benchChildEnv set), as an instance and
// its node agent are: a wake-up of another process is what an exchange
// costs, and two goroutines of one process would hide it.

const benchChildEnv = "FDPASS_BENCH_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(benchChildEnv); mode != "" {
		benchChild(mode)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// benchChild answers on descriptor 3 until the parent hangs up: each
// message with a descriptor gets a small answer. "raw" uses blocking
// system calls, "conn" a Conn, "netpoll" Send and Recv on a *net.UnixConn.
func benchChild(mode string) {
	sock := os.NewFile(3, "bench")
	switch mode {
	case "raw":
		buf, oob := make([]byte, 512), make([]byte, syscall.CmsgSpace(4))
		for {
			n, oobn, _, _, err := syscall.Recvmsg(3, buf, oob, 0)
			if err != nil || n == 0 {
				return
			}
			if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) == 1 {
				if fds, err := syscall.ParseUnixRights(&msgs[0]); err == nil {
					for _, fd := range fds {
						syscall.Close(fd)
					}
				}
			}
			if err := syscall.Sendmsg(3, buf[:n], nil, nil, 0); err != nil {
				return
			}
		}
	case "conn":
		c, err := NewConn(sock)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		for {
			var req Request
			f, err := c.Recv(&req)
			if err != nil {
				return
			}
			if f != nil {
				f.Close()
			}
			if err := c.Send(Response{Ref: "hr1.x", Size: req.Size}, nil); err != nil {
				return
			}
		}
	case "netpoll":
		fc, err := net.FileConn(sock)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		c := fc.(*net.UnixConn)
		for {
			var req Request
			f, err := Recv(c, &req)
			if err != nil {
				return
			}
			if f != nil {
				f.Close()
			}
			if err := Send(c, Response{Ref: "hr1.x", Size: req.Size}, nil); err != nil {
				return
			}
		}
	}
}

// startChild starts the answering process and returns the parent's end,
// and done, which hangs up, waits for the child and reports the CPU time
// both processes spent since the start (the parent's includes the
// benchmark's own bookkeeping). The round trip is mostly waiting, so CPU
// per exchange is the figure that a loaded machine leaves comparable.
func startChild(b *testing.B, mode string) (sock *os.File, done func(hangUp func()) (cpu time.Duration)) {
	b.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "parent"), os.NewFile(uintptr(fds[1]), "child")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchChildEnv+"="+mode)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	theirs.Close()
	before := selfCPU()
	return mine, func(hangUp func()) time.Duration {
		self := selfCPU() - before
		hangUp()
		if err := cmd.Wait(); err != nil {
			b.Fatalf("the answering process: %v", err)
		}
		return self + cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(b.N), "cpu-us/op")
}

// BenchmarkRoundTrip is one request with a descriptor attached and its
// answer between two processes, the shape of a Share: "raw" is the floor
// (blocking sendmsg and recvmsg on both sides, fixed bytes), "conn" a Conn
// on both sides, "netpoll" Send and Recv on *net.UnixConn (the runtime's
// poller parks and wakes the goroutine).
func BenchmarkRoundTrip(b *testing.B) {
	memfd, err := os.CreateTemp(b.TempDir(), "payload")
	if err != nil {
		b.Fatal(err)
	}
	defer memfd.Close()
	req := Request{Op: "put", Size: 1 << 30, Deferred: true, Readers: []string{"consumer"}, Reads: 1, TTLMillis: 600000}

	b.Run("raw", func(b *testing.B) {
		sock, done := startChild(b, "raw")
		msg := make([]byte, 120)
		buf := make([]byte, 512)
		rights := syscall.UnixRights(int(memfd.Fd()))
		fd := int(sock.Fd()) // blocking: Fd switches it back
		b.ResetTimer()
		for b.Loop() {
			if err := syscall.Sendmsg(fd, msg, rights, nil, 0); err != nil {
				b.Fatal(err)
			}
			if _, _, _, _, err := syscall.Recvmsg(fd, buf, nil, 0); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportCPU(b, done(func() { sock.Close() }))
	})
	b.Run("conn", func(b *testing.B) {
		sock, done := startChild(b, "conn")
		c, err := NewConn(sock)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for b.Loop() {
			if err := c.Send(req, memfd); err != nil {
				b.Fatal(err)
			}
			var resp Response
			if _, err := c.Recv(&resp); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportCPU(b, done(func() { c.Close() }))
	})
	b.Run("netpoll", func(b *testing.B) {
		sock, done := startChild(b, "netpoll")
		fc, err := net.FileConn(sock)
		if err != nil {
			b.Fatal(err)
		}
		sock.Close() // fc holds a duplicate; the child sees EOF once fc closes
		c := fc.(*net.UnixConn)
		b.ResetTimer()
		for b.Loop() {
			if err := Send(c, req, memfd); err != nil {
				b.Fatal(err)
			}
			var resp Response
			if _, err := Recv(c, &resp); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportCPU(b, done(func() { fc.Close() }))
	})
}
