package stream

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"

	"github.com/handoff-dev/handoff/cgroup"
)

// The two-process benchmarks run the producer and the consumer as
// processes of their own, as a workflow's stages are, with a pipe between
// them passed as descriptor 3 (as the node agent hands a channel's end).
// The test binary is both: TestMain runs a child's part when
// $STREAM_BENCH_ROLE is set.
//
//	go test -run '^$' -bench Proc -count 5 ./stream/
const (
	envRole   = "STREAM_BENCH_ROLE"   // send or recv
	envChunks = "STREAM_BENCH_CHUNKS" // chunks of 256 KiB to move
	envFramed = "STREAM_BENCH_FRAMED" // "1": through Writer and Reader
	envShift  = "STREAM_BENCH_SHIFT"  // raw: bytes written before the chunks
)

func TestMain(m *testing.M) {
	if role := os.Getenv(envRole); role != "" {
		if err := child(role); err != nil {
			fmt.Fprintln(os.Stderr, "stream bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child moves the chunks once its parent says go (a byte on standard
// input, after it placed the child in its cgroup).
func child(role string) error {
	n, err := strconv.Atoi(os.Getenv(envChunks))
	if err != nil {
		return err
	}
	framed := os.Getenv(envFramed) == "1"
	f := os.NewFile(3, "channel")
	if _, err := os.Stdin.Read(make([]byte, 1)); err != nil {
		return fmt.Errorf("waiting for go: %w", err)
	}
	buf := make([]byte, chunk)
	switch role {
	case "send":
		shift, _ := strconv.Atoi(os.Getenv(envShift))
		if _, err := f.Write(make([]byte, shift)); err != nil {
			return err
		}
		var w io.Writer = f
		var sw *Writer
		if framed {
			sw = NewWriter(f)
			w = sw
		}
		for range n {
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
		if sw != nil {
			return sw.Close()
		}
		return nil
	case "recv":
		var r io.Reader = f
		if framed {
			r = NewReader(f)
		}
		var got int64
		for {
			k, err := r.Read(buf)
			got += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		shift, _ := strconv.Atoi(os.Getenv(envShift))
		if got != int64(n)*chunk+int64(shift) {
			return fmt.Errorf("read %d bytes, want %d", got, int64(n)*chunk)
		}
		return nil
	}
	return fmt.Errorf("unknown role %q", role)
}

// procCase is one way of moving the chunks between the two processes.
type procCase struct {
	name   string
	framed bool     // through Writer and Reader
	groups bool     // each child in a memory cgroup of its own
	shift  int      // raw: bytes written before the chunks
	tcp    bool     // a loopback TCP connection instead of a pipe
	env    []string // more for both children
}

// BenchmarkProcPipe moves b.N chunks of 256 KiB from a producer process to
// a consumer process through a 1 MiB pipe: raw, and framed by Writer and
// Reader; with hash/crc32's checksum instead of the package's, or with
// its vector lanes alone (no scalar streams beside them); with the
// data off page alignment in the pipe (as the frame words put it); each
// outside any memory cgroup of its own and inside one made as the
// supervisor makes an instance's (so the pipe's pages are charged to the
// producer's group and freed by the consumer's).
func BenchmarkProcPipe(b *testing.B) {
	stdlib := []string{"HANDOFF_CRC32C=stdlib"}
	for _, v := range []procCase{
		{name: "raw"},
		{name: "raw/shift=4", shift: 4},
		{name: "stream", framed: true},
		{name: "stream/stdlib-crc", framed: true, env: stdlib},
		{name: "stream/lanes-crc", framed: true, env: []string{"HANDOFF_CRC32C=lanes"}},
		{name: "raw/cgroup", groups: true},
		{name: "stream/cgroup", framed: true, groups: true},
	} {
		b.Run(v.name, func(b *testing.B) { procPipe(b, v) })
	}
}

// BenchmarkProcTCP is BenchmarkProcPipe over loopback TCP, as a stream
// between two nodes goes once the node agents hand the socket to the
// instances.
func BenchmarkProcTCP(b *testing.B) {
	for _, v := range []procCase{
		{name: "raw", tcp: true},
		{name: "stream", tcp: true, framed: true},
		{name: "stream/stdlib-crc", tcp: true, framed: true, env: []string{"HANDOFF_CRC32C=stdlib"}},
		{name: "stream/lanes-crc", tcp: true, framed: true, env: []string{"HANDOFF_CRC32C=lanes"}},
	} {
		b.Run(v.name, func(b *testing.B) { procPipe(b, v) })
	}
}

func procPipe(b *testing.B, v procCase) {
	b.SetBytes(chunk)
	var r, w *os.File
	if v.tcp {
		a, c := tcpPair(b)
		var err error
		if w, err = a.File(); err != nil {
			b.Fatal(err)
		}
		if r, err = c.File(); err != nil {
			b.Fatal(err)
		}
		a.Close()
		c.Close()
	} else {
		r, w = pipe(b, 1<<20)
	}
	env := append(os.Environ(), envChunks+"="+strconv.Itoa(b.N), envFramed+"="+map[bool]string{true: "1"}[v.framed], envShift+"="+strconv.Itoa(v.shift))
	env = append(env, v.env...)
	var gos []io.WriteCloser
	var cmds []*exec.Cmd
	for _, c := range []struct {
		role string
		end  *os.File
	}{{"recv", r}, {"send", w}} {
		var g *cgroup.Group
		if v.groups {
			parent := fmt.Sprintf("handoff-stream-bench/%d", os.Getpid())
			var err error
			if g, err = cgroup.New(parent, c.role, 256<<20); err != nil {
				b.Skipf("no memory cgroup: %v", err)
			}
			b.Cleanup(func() { g.Close(); cgroup.RemoveParent(parent) })
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(env, envRole+"="+c.role)
		cmd.ExtraFiles = []*os.File{c.end}
		cmd.Stderr = os.Stderr
		start, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		if g != nil {
			if err := g.Add(cmd.Process.Pid); err != nil {
				b.Fatal(err)
			}
		}
		gos = append(gos, start)
		cmds = append(cmds, cmd)
	}
	r.Close()
	w.Close()
	b.ResetTimer()
	for _, g := range gos {
		g.Write([]byte{1})
		g.Close()
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			b.Fatalf("%s: %v", cmd.Env[len(cmd.Env)-1], err)
		}
		// CPU time per chunk tells where the time goes even on a busy
		// machine, where the wall clock does not.
		role := []string{"recv", "send"}[i]
		st := cmd.ProcessState
		b.ReportMetric(float64(st.UserTime().Nanoseconds())/float64(b.N), role+"-user-ns/op")
		b.ReportMetric(float64(st.SystemTime().Nanoseconds())/float64(b.N), role+"-sys-ns/op")
		// Waits per chunk: how often a side found the pipe empty (full)
		// and slept until the other side woke it.
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			b.ReportMetric(float64(ru.Nvcsw)/float64(b.N), role+"-waits/op")
		}
	}
}
