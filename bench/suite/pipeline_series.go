package suite

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/baseline"
	"github.com/handoff-dev/handoff/bench/flow"
	"github.com/handoff-dev/handoff/bench/procstat"
	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/stream"
	"github.com/handoff-dev/handoff/workflow"
)

// The stream series.
const (
	seriesRawPipe   = "raw-pipe"
	seriesSameNode  = "handoff-same-node"
	seriesRawTCP    = "raw-tcp"
	seriesCrossNode = "handoff-cross-node"
)

// streamYAML is the two-stage workflow of the stream series.
func streamYAML(n int64) string {
	return fmt.Sprintf(`name: bench-stream
stages:
  - {name: gen, function: %s, params: {role: gen, bytes: "%d"}}
  - {name: sink, function: %s, params: {role: discard}}
edges:
  - {from: gen, to: sink, mode: stream, buffers: {count: %d, size: %d}}
`, flowFn, n, flowFn, streamBufCount, streamBufSize)
}

// measureStreams runs the four stream series, one repetition of each in
// turn, so that the machine's noise falls on all of them alike.
func (e Env) measureStreams(ctx context.Context, near, far *pipelinePlatform, rawflow string, sz pipelineSizes) ([]StreamSeries, error) {
	series := []StreamSeries{
		{Name: seriesRawPipe, Bytes: sz.stream, Placement: fmt.Sprintf("two processes, a pipe of %s between them", bench.FormatSize(streamBufCount*streamBufSize))},
		{Name: seriesSameNode, Bytes: sz.stream},
		{Name: seriesRawTCP, Bytes: sz.stream, Placement: "two processes, one loopback TCP connection"},
		{Name: seriesCrossNode, Bytes: sz.stream},
	}
	type runner func(n int64) (flow.Tally, time.Duration, string, error)
	wf := func(p *pipelinePlatform, cross int) runner {
		return func(n int64) (flow.Tally, time.Duration, string, error) {
			r, took, err := runWorkflow(ctx, p.Client, streamYAML(n))
			if err != nil {
				return flow.Tally{}, 0, "", err
			}
			if len(r.Edges) != 1 || r.Edges[0].CrossNode != cross || r.Edges[0].Mode != "stream" {
				return flow.Tally{}, 0, "", fmt.Errorf("bench: the stream on platform %s ran as %+v; want one stream channel with %d crossing nodes", p.name, r.Edges, cross)
			}
			t, err := tallyOf(r, "sink-0")
			return t, took, placementOf(r), err
		}
	}
	runners := []runner{
		func(n int64) (flow.Tally, time.Duration, string, error) {
			t, err := rawPipe(ctx, rawflow, n)
			return t, 0, "", err
		},
		wf(near, 0),
		func(n int64) (flow.Tally, time.Duration, string, error) {
			t, err := rawTCP(ctx, rawflow, n)
			return t, 0, "", err
		},
		wf(far, 1),
	}
	fmt.Fprintf(e.Log, "measuring streams of %s: raw pipe, Handoff on one node, raw TCP, Handoff across nodes (%d repetitions)\n", bench.FormatSize(sz.stream), sz.streamReps)
	// A small warm-up of each: instances built and started once, the
	// placement checked before the long runs.
	for i, run := range runners {
		if _, _, where, err := run(bench.MiB); err != nil {
			return nil, fmt.Errorf("%s: %w", series[i].Name, err)
		} else if where != "" {
			series[i].Placement = where
		}
	}
	for range sz.streamReps {
		for i, run := range runners {
			t, took, _, err := run(sz.stream)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", series[i].Name, err)
			}
			if t.Bytes != sz.stream {
				return nil, fmt.Errorf("%s: the consumer read %d bytes of %d", series[i].Name, t.Bytes, sz.stream)
			}
			s := &series[i]
			s.Elapsed = append(s.Elapsed, t.Elapsed())
			if took > 0 {
				s.Runs = append(s.Runs, took)
			}
			fmt.Fprintf(e.Log, "  %-20s %s in %s: %s\n", s.Name, bench.FormatSize(t.Bytes), bench.FormatDuration(t.Elapsed()), bench.FormatThroughput(t.Throughput()))
		}
	}
	for i := range series {
		series[i].Throughput = float64(series[i].Bytes) / median(series[i].Elapsed).Seconds()
	}
	return series, nil
}

// rawPipe moves n bytes from one rawflow process to another through a pipe
// of the stream series' channel capacity.
func rawPipe(ctx context.Context, bin string, n int64) (flow.Tally, error) {
	r, w, _, err := stream.Pipe(int(streamBufCount * streamBufSize))
	if err != nil {
		return flow.Tally{}, err
	}
	recv := exec.CommandContext(ctx, bin, "recv")
	recv.Stdin = r
	var out, errs bytes.Buffer
	recv.Stdout, recv.Stderr = &out, &errs
	// The consumer first, so the producer never waits for it to start.
	if err := recv.Start(); err != nil {
		r.Close()
		w.Close()
		return flow.Tally{}, err
	}
	r.Close()
	send := exec.CommandContext(ctx, bin, "send", fmt.Sprint(n))
	send.Stdout, send.Stderr = w, &errs
	serr := send.Run()
	w.Close()
	rerr := recv.Wait()
	if err := errors.Join(serr, rerr); err != nil {
		return flow.Tally{}, fmt.Errorf("raw pipe: %w: %s", err, errs.String())
	}
	var t flow.Tally
	return t, json.Unmarshal(out.Bytes(), &t)
}

// rawTCP moves n bytes from one rawflow process to another over one
// loopback TCP connection.
func rawTCP(ctx context.Context, bin string, n int64) (flow.Tally, error) {
	recv := exec.CommandContext(ctx, bin, "recv", "tcp")
	var errs bytes.Buffer
	recv.Stderr = &errs
	stdout, err := recv.StdoutPipe()
	if err != nil {
		return flow.Tally{}, err
	}
	if err := recv.Start(); err != nil {
		return flow.Tally{}, err
	}
	br := bufio.NewReader(stdout)
	addr, err := br.ReadString('\n')
	if err != nil {
		recv.Process.Kill()
		recv.Wait()
		return flow.Tally{}, fmt.Errorf("raw tcp: the receiver printed no address: %v: %s", err, errs.String())
	}
	send := exec.CommandContext(ctx, bin, "send", fmt.Sprint(n), strings.TrimSpace(addr))
	send.Stderr = &errs
	serr := send.Run()
	var t flow.Tally
	derr := json.NewDecoder(br).Decode(&t)
	rerr := recv.Wait()
	if err := errors.Join(serr, rerr, derr); err != nil {
		return flow.Tally{}, fmt.Errorf("raw tcp: %w: %s", err, errs.String())
	}
	return t, nil
}

// runWorkflow stores yaml, runs it and waits for its end; took is the
// harness's time from StartRun to seeing the run ended (polled every
// 10 ms). A run that did not succeed is an error.
func runWorkflow(ctx context.Context, c *api.Client, yaml string) (api.Run, time.Duration, error) {
	wf, err := workflow.Parse([]byte(yaml))
	if err != nil {
		return api.Run{}, 0, err
	}
	name := wf.Name
	if err := c.PutWorkflow(ctx, name, []byte(yaml)); err != nil {
		return api.Run{}, 0, fmt.Errorf("put workflow %s: %w", name, err)
	}
	start := time.Now()
	run, err := c.StartRun(ctx, name, nil)
	if err != nil {
		return run, 0, fmt.Errorf("start a run of %s: %w", name, err)
	}
	for !run.Done() {
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = c.CancelRun(cctx, name, run.ID)
			cancel()
			return run, 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if run, err = c.Run(ctx, name, run.ID); err != nil {
			return run, 0, fmt.Errorf("status of run %s: %w", run.ID, err)
		}
	}
	took := time.Since(start)
	if run.State != "succeeded" {
		return run, took, fmt.Errorf("run %s of %s %s: %s", run.ID, name, run.State, run.Error)
	}
	return run, took, nil
}

func tallyOf(r api.Run, task string) (flow.Tally, error) {
	for _, res := range r.Results {
		if res.Task == task {
			var t flow.Tally
			if err := json.Unmarshal(res.Output, &t); err != nil {
				return t, fmt.Errorf("bench: result of %s: %.200q is not a tally: %w", task, res.Output, err)
			}
			return t, nil
		}
	}
	return flow.Tally{}, fmt.Errorf("bench: run %s has no result from %s", r.ID, task)
}

// placementOf says which node agent ran each stage.
func placementOf(r api.Run) string {
	var parts []string
	for _, st := range r.Stages {
		parts = append(parts, st.Name+" on "+strings.Join(st.Nodes, ","))
	}
	cross := 0
	for _, e := range r.Edges {
		cross += e.CrossNode
	}
	return fmt.Sprintf("%s (%d of the channels cross nodes)", strings.Join(parts, ", "), cross)
}

// stagedYAML is the three-stage pipeline of the staged comparison.
func stagedYAML(n int64) string {
	return fmt.Sprintf(`name: bench-staged
stages:
  - {name: gen, function: %s, params: {role: gen, bytes: "%d"}}
  - {name: pass, function: %s, params: {role: pass}}
  - {name: sum, function: %s, params: {role: sum}}
edges:
  - {from: gen, to: pass, mode: stream}
  - {from: pass, to: sum, mode: stream}
`, flowFn, n, flowFn, flowFn)
}

// s3Job mirrors flowfn's job over S3.
type s3Job struct {
	Role  string `json:"role"`
	Bytes int64  `json:"bytes,omitempty"`
	In    string `json:"in,omitempty"`
	Out   string `json:"out,omitempty"`
}

type s3Answer struct {
	Tally   flow.Tally    `json:"tally"`
	Elapsed time.Duration `json:"elapsed"`
}

// measureStaged runs the three-stage pipeline through Handoff and through
// MinIO, repetitions interleaved, sampling the disk writes of each.
func (e Env) measureStaged(ctx context.Context, p *pipelinePlatform, mn *baseline.MinIO, sz pipelineSizes, res StagedResult) (StagedResult, error) {
	res.Bytes, res.Stages = sz.staged, "gen → pass → sum (flowfn), parallelism 1"
	res.HandoffDiskBy, res.MinIODiskBy = map[string]int64{}, map[string]int64{}
	want := flow.Expect(sz.staged)
	res.CRC = want
	mc, err := minio.New(mn.Endpoint(), &minio.Options{Creds: credentials.NewStaticV4(mn.AccessKey(), mn.SecretKey(), "")})
	if err != nil {
		return res, err
	}
	minioPids, err := procstat.Find(func(a []string) bool {
		return len(a) > 2 && filepath.Base(a[0]) == "minio" && a[1] == "server" && a[2] == mn.DataDir()
	})
	if err != nil || len(minioPids) != 1 {
		return res, fmt.Errorf("bench: the MinIO server's process: found %v (%v)", minioPids, err)
	}
	fmt.Fprintf(e.Log, "measuring a three-stage pipeline of %s: Handoff streams against MinIO staging (%d repetitions)\n", bench.FormatSize(sz.staged), sz.reps)
	for rep := range sz.reps {
		// Through Handoff.
		s := &procstat.Sampler{Roots: []int{p.pid}, Every: 20 * time.Millisecond}
		if err := s.Start(); err != nil {
			return res, err
		}
		r, took, err := runWorkflow(ctx, p.Client, stagedYAML(sz.staged))
		s.Stop()
		if err != nil {
			return res, err
		}
		t, err := tallyOf(r, "sum-0")
		if err != nil {
			return res, err
		}
		if t.Bytes != sz.staged || t.CRC != want {
			return res, fmt.Errorf("bench: the Handoff pipeline delivered %d bytes with CRC-32C %08x; want %d with %08x", t.Bytes, t.CRC, sz.staged, want)
		}
		res.Placement = placementOf(r)
		res.Handoff = append(res.Handoff, took)
		disk, by := s.Written()
		if disk >= res.HandoffDisk {
			res.HandoffDisk, res.HandoffDiskBy = disk, by
		}
		fmt.Fprintf(e.Log, "  handoff  %s in %s (set-up %s), %d bytes to disk\n", bench.FormatSize(sz.staged), bench.FormatDuration(took), bench.FormatDuration(r.Prepare), disk)

		// Through MinIO: each stage a call of the same function, one
		// after the other, its edges objects.
		s = &procstat.Sampler{Roots: []int{p.pid, minioPids[0]}, Every: 20 * time.Millisecond}
		if err := s.Start(); err != nil {
			return res, err
		}
		prefix := fmt.Sprintf("staged/%d/", rep)
		jobs := []s3Job{
			{Role: "gen", Bytes: sz.staged, Out: prefix + "gen"},
			{Role: "pass", In: prefix + "gen", Out: prefix + "pass"},
			{Role: "sum", In: prefix + "pass"},
		}
		start := time.Now()
		var stages []time.Duration
		var last s3Answer
		for _, j := range jobs {
			body, _ := json.Marshal(j)
			t0 := time.Now()
			out, err := p.Client.Invoke(ctx, flowFn, body)
			if err != nil {
				s.Stop()
				return res, fmt.Errorf("bench: stage %s over MinIO: %w", j.Role, err)
			}
			stages = append(stages, time.Since(t0))
			if err := json.Unmarshal(out, &last); err != nil {
				s.Stop()
				return res, fmt.Errorf("bench: stage %s over MinIO answered %.200q", j.Role, out)
			}
		}
		took = time.Since(start)
		s.Stop()
		if last.Tally.Bytes != sz.staged || last.Tally.CRC != want {
			return res, fmt.Errorf("bench: the MinIO pipeline delivered %d bytes with CRC-32C %08x; want %d with %08x", last.Tally.Bytes, last.Tally.CRC, sz.staged, want)
		}
		res.MinIO = append(res.MinIO, took)
		res.MinIOStages = append(res.MinIOStages, stages)
		disk, by = s.Written()
		if disk >= res.MinIODisk {
			res.MinIODisk, res.MinIODiskBy = disk, by
		}
		fmt.Fprintf(e.Log, "  minio    %s in %s (stages %v), %d bytes to disk\n", bench.FormatSize(sz.staged), bench.FormatDuration(took), stages, disk)
		for _, j := range jobs[:2] {
			if err := mc.RemoveObject(ctx, mn.Bucket(), j.Out, minio.RemoveObjectOptions{}); err != nil {
				return res, fmt.Errorf("bench: remove %s from MinIO: %w", j.Out, err)
			}
		}
	}
	res.Speedup = median(res.MinIO).Seconds() / median(res.Handoff).Seconds()
	return res, nil
}

// measureExample runs examples/pipeline with its own stages, as shipped
// but for the input size.
func (e Env) measureExample(ctx context.Context, p *pipelinePlatform, n int64) (ExampleResult, error) {
	for _, fn := range []struct{ name, pkg string }{
		{"pl-gen", "examples/pipeline/gen"}, {"pl-transform", "examples/pipeline/transform"}, {"pl-aggregate", "examples/pipeline/aggregate"},
	} {
		tweak := func(f *spec.Function) { f.Scale.Max, f.Memory, f.Timeout = 8, 0, spec.Duration(30*time.Minute) }
		if err := e.deploy(ctx, p.Client, fn.name, fn.pkg, tweak); err != nil {
			return ExampleResult{}, err
		}
	}
	yaml, err := exampleYAML(e.Repo, n)
	if err != nil {
		return ExampleResult{}, err
	}
	fmt.Fprintf(e.Log, "measuring examples/pipeline on %s\n", bench.FormatSize(n))
	r, took, err := runWorkflow(ctx, p.Client, yaml)
	if err != nil {
		return ExampleResult{}, err
	}
	fmt.Fprintf(e.Log, "  examples/pipeline %s in %s: %s\n", bench.FormatSize(n), bench.FormatDuration(took), bench.FormatThroughput(float64(n)/took.Seconds()))
	return ExampleResult{Bytes: n, Elapsed: took, Prepare: r.Prepare, Placement: placementOf(r)}, nil
}

// exampleYAML is examples/pipeline/pipeline.yaml with n bytes of input.
func exampleYAML(repo string, n int64) (string, error) {
	b, err := os.ReadFile(filepath.Join(repo, "examples", "pipeline", "pipeline.yaml"))
	if err != nil {
		return "", err
	}
	yaml := strings.Replace(string(b), "bytes: 1Gi", fmt.Sprintf("bytes: \"%d\"", n), 1)
	if yaml == string(b) {
		return "", errors.New("bench: examples/pipeline/pipeline.yaml no longer sets bytes: 1Gi; update the benchmark")
	}
	return yaml, nil
}

// memoryYAML is the bounded-memory run: three stages on three node agents,
// every channel sized explicitly and crossing between two agents.
func memoryYAML(n int64) string {
	return fmt.Sprintf(`name: bench-memory
stages:
  - {name: gen, function: %s, params: {role: gen, bytes: "%d"}}
  - {name: pass, function: %s, params: {role: pass}}
  - {name: sink, function: %s, params: {role: discard}}
edges:
  - {from: gen, to: pass, mode: stream, buffers: {count: %d, size: %d}}
  - {from: pass, to: sink, mode: stream, buffers: {count: %d, size: %d}}
`, flowFn, n, flowFn, flowFn, memBufCount, memBufSize, memBufCount, memBufSize)
}

// measureMemory streams sz.memory bytes through three node agents and
// samples their RSS every 20 ms; each agent's VmHWM is reset before and
// read after, so a peak between samples is not missed.
func (e Env) measureMemory(ctx context.Context, p *pipelinePlatform, sz pipelineSizes) (MemoryResult, error) {
	res := MemoryResult{Bytes: sz.memory, BufferCount: memBufCount, BufferSize: memBufSize}
	nodes := make([]string, 0, len(p.agents))
	pids := make([]int, 0, len(p.agents))
	for id, pid := range p.agents {
		nodes = append(nodes, id)
		pids = append(pids, pid)
	}
	// A small run first: instances started once, placement checked.
	if _, _, err := runWorkflow(ctx, p.Client, memoryYAML(bench.MiB)); err != nil {
		return res, err
	}
	idle := map[int]int64{}
	hwm := true
	for _, pid := range pids {
		idle[pid], _ = procstat.RSS(pid)
		if err := procstat.ResetPeak(pid); err != nil {
			hwm = false
		}
	}
	fmt.Fprintf(e.Log, "measuring memory: %s through three node agents, channels of %d × %s\n", bench.FormatSize(sz.memory), memBufCount, bench.FormatSize(memBufSize))
	s := &procstat.Sampler{Watch: pids, Every: 20 * time.Millisecond}
	if err := s.Start(); err != nil {
		return res, err
	}
	r, took, err := runWorkflow(ctx, p.Client, memoryYAML(sz.memory))
	s.Stop()
	if err != nil {
		return res, err
	}
	t, err := tallyOf(r, "sink-0")
	if err != nil {
		return res, err
	}
	if t.Bytes != sz.memory {
		return res, fmt.Errorf("bench: the memory run delivered %d bytes of %d", t.Bytes, sz.memory)
	}
	res.Elapsed, res.Run, res.Placement = t.Elapsed(), took, placementOf(r)
	ends := map[string]int{}
	for _, edge := range r.Edges {
		if edge.CrossNode != edge.Channels {
			return res, fmt.Errorf("bench: edge %s→%s of the memory run stayed on one node (%s); every edge must cross", edge.From, edge.To, res.Placement)
		}
	}
	// Each stage's node hosts one end per edge it touches.
	for _, st := range r.Stages {
		k := 1
		if st.Name == "pass" {
			k = 2
		}
		for _, n := range st.Nodes {
			ends[n] += k
		}
	}
	peaks := s.PeakRSS()
	for i, id := range nodes {
		pid := pids[i]
		a := AgentMemory{Node: id, PID: pid, Ends: ends[id], Idle: idle[pid], Sampled: peaks[pid]}
		a.Buffers = int64(a.Ends) * memBufCount * memBufSize
		a.Allowed = a.Buffers + memSlack
		if hwm {
			a.HWM, _ = procstat.PeakRSS(pid)
		}
		res.Agents = append(res.Agents, a)
	}
	slices.SortFunc(res.Agents, func(a, b AgentMemory) int { return strings.Compare(a.Node, b.Node) })
	for _, smp := range s.Samples() {
		m := MemorySample{At: smp.At, RSS: map[string]int64{}}
		for i, pid := range pids {
			if v, ok := smp.RSS[pid]; ok {
				m.RSS[nodes[i]] = v
			}
		}
		res.Samples = append(res.Samples, m)
	}
	for _, a := range res.Agents {
		fmt.Fprintf(e.Log, "  %s (pid %d, %d ends): idle %s, peak %s sampled / %s VmHWM, allowed %s\n", a.Node, a.PID, a.Ends,
			bench.FormatSize(a.Idle), bench.FormatSize(a.Sampled), bench.FormatSize(a.HWM), bench.FormatSize(a.Allowed))
	}
	return res, nil
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// fsName says which file system dir is on: its type and device, from
// /proc/self/mounts (the longest mount point that holds dir).
func fsName(dir string) string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "unknown file system"
	}
	abs, _ := filepath.Abs(dir)
	best, desc := "", "unknown file system"
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, desc = mp, fmt.Sprintf("%s on %s, mounted at %s", f[2], f[0], mp)
		}
	}
	return desc
}
