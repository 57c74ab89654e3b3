package suite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/baseline"
	"github.com/handoff-dev/handoff/bench/procstat"
	"github.com/handoff-dev/handoff/bench/report"
	"github.com/handoff-dev/handoff/internal/platform"
	"github.com/handoff-dev/handoff/spec"
)

// PipelineResult is what `handoff bench pipeline` measures: issue 4's
// three bars, each against a baseline of the same run.
type PipelineResult struct {
	Started time.Time         `json:"started"`
	Host    map[string]string `json:"host"`
	Quick   bool              `json:"quick"`
	// Streams are the two-stage streams through Handoff and their raw
	// baselines between two processes.
	Streams []StreamSeries `json:"streams"`
	// Staged is the three-stage pipeline through Handoff's streams against
	// the same stages staging every edge through MinIO.
	Staged StagedResult `json:"staged"`
	// Example is examples/pipeline (pl-gen → pl-transform → pl-aggregate)
	// on a smaller input: why Staged uses stages of its own. Absent in a
	// quick run.
	Example *ExampleResult `json:"example,omitempty"`
	// Memory is a long stream through three node agents with the node
	// agents' resident memory sampled.
	Memory MemoryResult `json:"memory"`
	Bars   []report.Bar `json:"bars"`
	Notes  []string     `json:"notes"`
}

// StreamSeries is one way of moving a stream from a producer process to a
// consumer process, repeated.
type StreamSeries struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
	// Elapsed is, per repetition, the time from the producer's first write
	// to the consumer's end of input; Throughput is the median's bytes per
	// second.
	Elapsed    []time.Duration `json:"elapsed_ns"`
	Throughput float64         `json:"throughput"`
	// Runs is, for the workflows, each run's whole time, set-up included.
	Runs      []time.Duration `json:"runs_ns,omitempty"`
	Placement string          `json:"placement"`
}

// StagedResult compares a three-stage pipeline end to end.
type StagedResult struct {
	Bytes     int64  `json:"bytes"`
	Stages    string `json:"stages"`
	Placement string `json:"placement"`
	// Handoff and MinIO are the end-to-end times per repetition, as the
	// harness saw them (Handoff: from StartRun to the run's end, set-up
	// included; MinIO: from the first stage's call to the last one's
	// answer).
	Handoff []time.Duration `json:"handoff_ns"`
	MinIO   []time.Duration `json:"minio_ns"`
	// MinIOStages are the three stage calls of each MinIO repetition.
	MinIOStages [][]time.Duration `json:"minio_stages_ns"`
	Speedup     float64           `json:"speedup"` // median MinIO / median Handoff
	// Disk bytes written per repetition (the largest repetition), by the
	// platform's processes during the Handoff runs and by MinIO and the
	// platform during the MinIO runs, with the writers' names.
	HandoffDisk   int64            `json:"handoff_disk"`
	HandoffDiskBy map[string]int64 `json:"handoff_disk_by"`
	MinIODisk     int64            `json:"minio_disk"`
	MinIODiskBy   map[string]int64 `json:"minio_disk_by"`
	MinIODir      string           `json:"minio_dir"`
	MinIOFS       string           `json:"minio_fs"`
	CRC           uint32           `json:"crc32c"` // of the data, equal through both
}

// ExampleResult is one run of examples/pipeline.
type ExampleResult struct {
	Bytes     int64         `json:"bytes"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	Prepare   time.Duration `json:"prepare_ns"`
	Placement string        `json:"placement"`
}

// MemoryResult is the bounded-memory run.
type MemoryResult struct {
	Bytes       int64         `json:"bytes"`
	BufferCount int           `json:"buffer_count"`
	BufferSize  int64         `json:"buffer_size"`
	Elapsed     time.Duration `json:"elapsed_ns"` // producer's first write to consumer's end
	Run         time.Duration `json:"run_ns"`
	Placement   string        `json:"placement"`
	Agents      []AgentMemory `json:"agents"`
	// Samples are the node agents' RSS through the run, by node.
	Samples []MemorySample `json:"samples"`
}

// AgentMemory is one node agent's resident memory around the run.
type AgentMemory struct {
	Node string `json:"node"`
	PID  int    `json:"pid"`
	// Ends is how many channel ends the agent hosted; Buffers their
	// configured bytes, and Allowed the bar: Buffers + 64 MiB.
	Ends    int   `json:"ends"`
	Buffers int64 `json:"buffers"`
	Allowed int64 `json:"allowed"`
	Idle    int64 `json:"idle"`         // RSS before the run
	Sampled int64 `json:"peak_sampled"` // largest RSS sampled during it
	HWM     int64 `json:"peak_hwm"`     // VmHWM after it (reset before), 0 if unavailable
}

// Peak is the larger of the sampled and the kernel's peak.
func (a AgentMemory) Peak() int64 { return max(a.Sampled, a.HWM) }

// MemorySample is the agents' RSS at one moment.
type MemorySample struct {
	At  time.Duration    `json:"at_ns"`
	RSS map[string]int64 `json:"rss"` // by node
}

// pipelineSizes are the sizes and repetitions of a run.
type pipelineSizes struct {
	stream, staged, memory, example int64
	// reps repeats the pipeline against MinIO; streamReps the four
	// stream series, whose baselines swing by up to 2× between
	// repetitions on a small VM, so their medians need more.
	reps, streamReps int
}

func (e Env) pipelineSizes() pipelineSizes {
	if e.Quick {
		return pipelineSizes{stream: 32 * bench.MiB, staged: 32 * bench.MiB, memory: 64 * bench.MiB, reps: 1, streamReps: 1}
	}
	return pipelineSizes{stream: 4 * bench.GiB, staged: 4 * bench.GiB, memory: 16 * bench.GiB, example: 256 * bench.MiB, reps: 3, streamReps: 7}
}

// The channel buffers of the runs: the stream series use the default
// (8 × 128 KiB), which is also the raw pipe's capacity; the memory run
// sizes its channels explicitly.
const (
	streamBufCount = 8
	streamBufSize  = 128 * bench.KiB
	memBufCount    = 16
	memBufSize     = bench.MiB
	memSlack       = 64 * bench.MiB
)

// Pipeline measures issue 4's bars in one run, each beside its baseline:
//
//  1. A two-stage stream (a producer writing as fast as it can, a consumer
//     that discards) through Handoff on one node and across two node
//     agents, against a raw pipe and raw loopback TCP between two
//     processes, repetitions interleaved.
//  2. A three-stage pipeline (gen → pass → sum) through Handoff's streams
//     against the same stages staging each edge through MinIO, with the
//     disk bytes each wrote; and examples/pipeline on a smaller input.
//  3. A long stream through three node agents with sized channels, their
//     RSS sampled against the buffers plus 64 MiB.
func Pipeline(ctx context.Context, e Env) (PipelineResult, error) {
	res := PipelineResult{Started: time.Now().UTC(), Host: bench.HostInfo(), Quick: e.Quick}
	sz := e.pipelineSizes()
	minioBin, err := baseline.EnsureMinIO(ctx, e.BinDir, e.Log)
	if err != nil {
		return res, err
	}
	tmp, err := os.MkdirTemp("", "handoff-bench-pipeline-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	// MinIO on the disk the temporary directory is on (not tmpfs), as the
	// disk comparison needs.
	mdir := filepath.Join(tmp, "minio")
	mn, err := baseline.StartMinIO(ctx, minioBin, mdir)
	if err != nil {
		return res, err
	}
	defer mn.Close()
	res.Staged.MinIODir, res.Staged.MinIOFS = mdir, fsName(mdir)
	fmt.Fprintf(e.Log, "MinIO at %s, data in %s (%s)\n", mn.Endpoint(), mdir, res.Staged.MinIOFS)

	raws := filepath.Join(tmp, "rawflow")
	if err := goBuild(ctx, e.Repo, raws, "./bench/suite/internal/rawflow"); err != nil {
		return res, err
	}

	// Two platforms: one with the default run slots, where a workflow's
	// tasks share a node agent, and one with three node agents of one slot
	// each, where every channel crosses between two.
	near, err := e.startPipelinePlatform(ctx, tmp, "near", 2)
	if err != nil {
		return res, err
	}
	defer near.stop()
	far, err := e.startPipelinePlatform(ctx, tmp, "far", 3, "--run-slots", "1")
	if err != nil {
		return res, err
	}
	defer far.stop()
	s3env := map[string]string{
		"BENCH_S3_ENDPOINT":   mn.Endpoint(),
		"BENCH_S3_ACCESS_KEY": mn.AccessKey(),
		"BENCH_S3_SECRET_KEY": mn.SecretKey(),
		"BENCH_S3_BUCKET":     mn.Bucket(),
	}
	for _, p := range []*pipelinePlatform{near, far} {
		tweak := func(f *spec.Function) {
			f.Scale.Min, f.Scale.Max, f.Memory, f.Env = 1, 1, 0, s3env
			f.Timeout = spec.Duration(30 * time.Minute)
		}
		if err := e.deploy(ctx, p.Client, flowFn, "bench/suite/internal/flowfn", tweak); err != nil {
			return res, err
		}
	}

	if res.Streams, err = e.measureStreams(ctx, near, far, raws, sz); err != nil {
		return res, err
	}
	if res.Staged, err = e.measureStaged(ctx, near, mn, sz, res.Staged); err != nil {
		return res, err
	}
	if sz.example > 0 {
		ex, err := e.measureExample(ctx, near, sz.example)
		if err != nil {
			return res, err
		}
		res.Example = &ex
	}
	if res.Memory, err = e.measureMemory(ctx, far, sz); err != nil {
		return res, err
	}
	res.Bars = pipelineBars(res)
	res.Notes = pipelineNotes(res)
	return res, e.writePipelineReports(res)
}

// flowFn is the name bench/suite/internal/flowfn is deployed under.
const flowFn = "flow"

// pipelinePlatform is a running `handoff up` and the pids of its
// processes.
type pipelinePlatform struct {
	*platform.Platform
	name   string
	pid    int            // the control plane (handoff up)
	agents map[string]int // node id → node agent pid
	stop   func()
}

func (e Env) startPipelinePlatform(ctx context.Context, tmp, name string, nodes int, args ...string) (*pipelinePlatform, error) {
	dir := filepath.Join(tmp, "platform-"+name)
	p, err := platform.Start(ctx, platform.Options{Binary: e.Binary, Dir: dir, Nodes: nodes, Args: args})
	if err != nil {
		return nil, err
	}
	pp := &pipelinePlatform{Platform: p, name: name, agents: map[string]int{}}
	var once bool
	pp.stop = func() {
		if !once {
			once = true
			p.Stop()
		}
	}
	abs, _ := filepath.Abs(dir)
	ups, err := procstat.Find(func(a []string) bool { return len(a) > 1 && a[1] == "up" && slices.Contains(a, dir) })
	if err != nil || len(ups) != 1 {
		pp.stop()
		return nil, fmt.Errorf("bench: the control plane of platform %s: found %v (%v)", name, ups, err)
	}
	pp.pid = ups[0]
	nds, err := procstat.Find(func(a []string) bool {
		if len(a) < 2 || a[1] != "node" {
			return false
		}
		i := slices.Index(a, "--dir")
		return i >= 0 && i+1 < len(a) && (strings.HasPrefix(a[i+1], dir) || strings.HasPrefix(a[i+1], abs))
	})
	if err != nil {
		pp.stop()
		return nil, err
	}
	for _, pid := range nds {
		a, _ := procstat.Cmdline(pid)
		if i := slices.Index(a, "--id"); i >= 0 && i+1 < len(a) {
			pp.agents[a[i+1]] = pid
		}
	}
	if len(pp.agents) != nodes {
		pp.stop()
		return nil, fmt.Errorf("bench: platform %s: found node agents %v, want %d", name, pp.agents, nodes)
	}
	fmt.Fprintf(e.Log, "platform %s up at %s: control plane pid %d, node agents %v\n", name, p.URL, pp.pid, pp.agents)
	return pp, nil
}
