package suite

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/baseline"
	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/internal/platform"
	"github.com/handoff-dev/handoff/node"
	"github.com/handoff-dev/handoff/pki"
	"github.com/handoff-dev/handoff/spec"
)

// The first-access series, after storefn's modes.
const (
	seriesMount  = "shared-node-mount"  // storefn mount
	seriesShared = "shared-node-client" // storefn shared
	seriesOwn    = "own-store-client"   // storefn own
	seriesMinIO1 = "fresh-minio-client" // storefn minio
	seriesRaw1   = "raw-loopback-tcp"   // storefn raw: the floor
	seriesFile1  = "local-tmpfs-file"   // storefn file: the mount's floor
)

// FirstSeries is one way for a fresh instance to reach the store, tried
// by many fresh instances.
type FirstSeries struct {
	Name string `json:"name"`
	What string `json:"what"`
	// First is the process's first read, client set-up included, in
	// instances started from the function's parked process (scale from
	// zero, the usual fresh instance); Warm a second read with the same
	// client right after.
	First bench.Point `json:"first"`
	// Setup is the part of First spent building the client (credentials
	// read and parsed), before its first request.
	Setup   bench.Point     `json:"setup"`
	Warm    bench.Point     `json:"warm"`
	Samples []time.Duration `json:"samples_ns"`
	// Nodes counts the parked-series instances by the node they ran on.
	Nodes map[string]int `json:"nodes"`
	// Afresh counts the parked-series starts that were a fork and exec
	// after all (no parked process where the instance was placed): they
	// are in Exec, not in First.
	Afresh int `json:"afresh"`
	// Exec is the same first read in processes forked and exec'd for it:
	// a new function's first start on a node, paying the page faults of
	// a new process.
	Exec        bench.Point     `json:"exec"`
	ExecSamples []time.Duration `json:"exec_samples_ns"`
}

// storeJob and storeAnswer are storefn's Job and Answer.
type storeJob struct {
	Mode   string            `json:"mode"`
	Bucket string            `json:"bucket"`
	Keys   map[string]string `json:"keys,omitempty"`
	Key    string            `json:"key,omitempty"`
	Size   int64             `json:"size"`
}

type storeAnswer struct {
	Node  string        `json:"node"`
	PID   int           `json:"pid"`
	Key   string        `json:"key"`
	First time.Duration `json:"first_ns"`
	Setup time.Duration `json:"setup_ns"`
	Warm  time.Duration `json:"warm_ns"`
	Fresh bool          `json:"fresh"`
}

const firstBucket = "bench-first"

// firstCopies is how many functions each first-access series has in the
// parked part: they take turns, so that each has scaled to zero by its
// next turn. The harness runs the platform with a park budget that holds
// them all on one node.
const firstCopies = 3

// FirstParkBudget is the park budget (`handoff up --park`) the store
// harness needs: every copy of every series may park on one node.
const FirstParkBudget = 6*firstCopies + 2

// firstRun is a series being measured.
type firstRun struct {
	FirstSeries
	job         storeJob
	env         map[string]string
	warm, setup []time.Duration
}

func (s *firstRun) add(a storeAnswer) {
	s.Samples = append(s.Samples, a.First)
	s.warm = append(s.warm, a.Warm)
	s.setup = append(s.setup, a.Setup)
	if s.Nodes == nil {
		s.Nodes = map[string]int{}
	}
	s.Nodes[a.Node]++
}

// measureFirst times a fresh instance's first read of a small object, one
// series per way of reaching the store, each read in two kinds of fresh
// instance: mostly instances started from the function's parked process
// (scale from zero, how the platform makes a fresh instance of a function
// that ran on the node before: First), and a smaller number of processes
// forked and exec'd for a new function (its first start on a node:
// Exec).
func (e Env) measureFirst(ctx context.Context, p *platform.Platform, nodes map[string]*storeNode, mn *baseline.MinIO, bin, shm string, sz storeSizes) ([]FirstSeries, error) {
	data := bytes.Repeat([]byte("handoff!"), int(sz.small/8)+1)[:sz.small]
	if err := nodes["n1"].C.MakeBucket(ctx, firstBucket, minio.MakeBucketOptions{}); err != nil {
		return nil, err
	}
	// One object held by each node agent (written through it); an
	// instance reads the one the other node holds.
	keys := map[string]string{"n1": "held-by-n2", "n2": "held-by-n1"}
	for id, n := range nodes {
		if _, err := n.C.PutObject(ctx, firstBucket, "held-by-"+id, bytes.NewReader(data), sz.small, minio.PutObjectOptions{}); err != nil {
			return nil, fmt.Errorf("put through %s: %w", id, err)
		}
	}
	mc, err := minioClient(mn)
	if err != nil {
		return nil, err
	}
	if _, err := mc.PutObject(ctx, mn.Bucket(), "first", bytes.NewReader(data), sz.small, minio.PutObjectOptions{}); err != nil {
		return nil, fmt.Errorf("put to MinIO: %w", err)
	}
	// Every node agent reads every object once, so that its connections
	// to the metadata service and to the other agent are open.
	for _, n := range nodes {
		for _, k := range keys {
			if got, err := getAll(ctx, n.C, firstBucket, k); err != nil || !bytes.Equal(got, data) {
				return nil, fmt.Errorf("warm-up read of %s through %s: %d bytes, %v", k, n.ID, len(got), err)
			}
		}
	}

	// The own client's identity: a member certificate of the cluster's
	// CA, as a function holding its own store credentials would have.
	ca, err := pki.LoadOrCreateCA(filepath.Join(p.Dir, "pki"))
	if err != nil {
		return nil, err
	}
	tlsf, err := pki.WriteMember(filepath.Join(p.Dir, "bench-own-tls"), "bench-own", []string{"127.0.0.1", "localhost"}, ca, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	raw, err := serveRaw(data)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	shmFile := filepath.Join(shm, "first")
	if err := os.WriteFile(shmFile, data, 0o644); err != nil {
		return nil, err
	}
	series := []*firstRun{
		{FirstSeries: FirstSeries{Name: seriesMount, What: "the file under the instance's $HANDOFF_STORE_DIR, its node agent's FUSE mount of the store narrowed to the function's granted buckets: open and read, no client to build; the node agent reads with the connections it holds"},
			job: storeJob{Mode: "mount", Bucket: firstBucket, Keys: keys, Size: sz.small}},
		{FirstSeries: FirstSeries{Name: seriesShared, What: "minio-go from the instance's environment to its node agent's S3 API on loopback; the node agent reads with the connections it holds"},
			job: storeJob{Mode: "shared", Bucket: firstBucket, Keys: keys, Size: sz.small}},
		{FirstSeries: FirstSeries{Name: seriesOwn, What: "the store's own client in the instance: member certificate loaded, HTTP to the metadata service, TCP + mutual TLS to the holder (peerlink)"},
			job: storeJob{Mode: "own", Bucket: firstBucket, Keys: keys, Size: sz.small},
			env: map[string]string{"BENCH_STORE_CONTROL": p.URL, "BENCH_STORE_TOKEN": filepath.Join(p.Dir, "cluster.token"),
				"BENCH_STORE_TLS": strings.Join([]string{tlsf.CA, tlsf.Cert, tlsf.Key}, ",")}},
		{FirstSeries: FirstSeries{Name: seriesMinIO1, What: "minio-go built from scratch to MinIO (data on /dev/shm): TCP connect, signature V4"},
			job: storeJob{Mode: "minio", Bucket: mn.Bucket(), Key: "first", Size: sz.small},
			env: map[string]string{"BENCH_MINIO": strings.Join([]string{mn.Endpoint(), mn.AccessKey(), mn.SecretKey()}, ",")}},
		{FirstSeries: FirstSeries{Name: seriesRaw1, What: "the floor of a fresh process's first access here: one loopback TCP connection to a server in the harness that answers a line with the bytes, no protocol, no store"},
			job: storeJob{Mode: "raw", Key: "first", Size: sz.small},
			env: map[string]string{"BENCH_RAW": raw.Addr().String()}},
		{FirstSeries: FirstSeries{Name: seriesFile1, What: "the floor of the mount's first read: the same open and read of the object as a file on tmpfs (/dev/shm), no FUSE, no store"},
			job: storeJob{Mode: "file", Key: "first", Size: sz.small},
			env: map[string]string{"BENCH_FILE": shmFile}},
	}
	for _, n := range nodes {
		if !filepath.IsAbs(n.Mount) {
			fmt.Fprintf(e.Log, "first access: node agent %s has no mount of the store (%s): no %s series\n", n.ID, n.Mount, seriesMount)
			series = series[1:]
			break
		}
	}
	var names []string
	for _, s := range series {
		names = append(names, s.Name)
	}
	parkedN, execN := e.firstCounts(sz)
	fmt.Fprintf(e.Log, "first access: %d fresh instances per series from parked processes and %d forked and exec'd (%s), a %s object held by the other node agent\n",
		parkedN, execN, strings.Join(names, ", "), bench.FormatSize(sz.small))
	if err := e.firstParked(ctx, p, bin, series, parkedN); err != nil {
		return nil, err
	}
	if err := e.firstExec(ctx, p, bin, series, execN); err != nil {
		return nil, err
	}
	out := make([]FirstSeries, len(series))
	for k, s := range series {
		s.First = bench.Summarize(s.Name, sz.small, s.Samples)
		s.Warm = bench.Summarize(s.Name+"-warm", sz.small, s.warm)
		s.Setup = bench.Summarize(s.Name+"-setup", sz.small, s.setup)
		s.Exec = bench.Summarize(s.Name+"-exec", sz.small, s.ExecSamples)
		out[k] = s.FirstSeries
		fmt.Fprintf(e.Log, "  %-20s first p50 %s p99 %s (client set-up p50 %s); warm p50 %s; nodes %v; fork and exec: first p50 %s (n=%d)\n", s.Name,
			bench.FormatDuration(s.First.P50), bench.FormatDuration(s.First.P99), bench.FormatDuration(s.Setup.P50), bench.FormatDuration(s.Warm.P50), s.Nodes,
			bench.FormatDuration(s.Exec.P50), s.Exec.N)
	}
	return out, nil
}

// firstCounts returns how many fresh instances each series has: started
// from parked processes (HANDOFF_BENCH_STORE_FRESH, else 60: each waits
// about a third of a second for its node agent to park the next process)
// and forked and exec'd (HANDOFF_BENCH_STORE_FRESH_EXEC, else 30, at
// least the first start of each parked-series function).
func (e Env) firstCounts(sz storeSizes) (parked, exec int) {
	parked = sz.fresh
	if os.Getenv("HANDOFF_BENCH_STORE_FRESH") == "" && !e.Quick {
		parked = 60
	}
	exec = 30
	if e.Quick {
		exec = 0
	}
	if n, err := strconv.Atoi(os.Getenv("HANDOFF_BENCH_STORE_FRESH_EXEC")); err == nil && n >= 0 {
		exec = n
	}
	return parked, exec
}

// firstSpec is storefn deployed as function name. Every series may read
// the bucket of the first-access objects, as its spec says: an
// instance's credential and mount reach only the buckets its function is
// granted. Its instances scale to zero a second after their last
// request.
func (e Env) firstSpec(bin, name string, env map[string]string) (spec.Function, error) {
	f := spec.Function{Name: name, Run: spec.Run{Command: bin, Dir: e.Repo}, Env: env,
		Store: spec.Store{Read: []string{firstBucket}}}
	f.Scale.StableWindow = spec.Duration(time.Second)
	f.Scale.PanicWindow = spec.Duration(time.Second)
	f.Scale.ScaleToZeroGrace = spec.Duration(time.Second)
	f.ApplyDefaults()
	return f, f.Validate()
}

// firstParked deploys firstCopies functions per series and invokes each
// once, so that its node agent parks a process of it. Then, function after
// function in turn, it waits until the function has no instance and a
// parked process, and no parked process is being started on any node,
// invokes it, and waits until its node agent has parked the next process
// of it: every sample is a new instance activated from a parked process
// that has never touched the store, and none shares the CPUs with the
// start of another parked process. A start that did not come from the
// parked process is counted in Afresh and its sample goes to the
// fork-and-exec figure instead.
func (e Env) firstParked(ctx context.Context, p *platform.Platform, bin string, series []*firstRun, n int) error {
	if n <= 0 {
		return nil
	}
	tok, err := os.ReadFile(filepath.Join(p.Dir, "cluster.token"))
	if err != nil {
		return fmt.Errorf("cluster token: %w", err)
	}
	token := string(bytes.TrimSpace(tok))
	type fn struct {
		s    *firstRun
		name string
	}
	copies := firstCopies
	if e.Quick {
		copies = 1
	}
	var fns []fn
	for c := range copies {
		// Placement alternates between the two node agents: every other
		// copy in reverse order, so each series runs on both.
		order := slices.Clone(series)
		if c%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			name := fmt.Sprintf("first-%s-%d", s.job.Mode, c)
			f, err := e.firstSpec(bin, name, s.env)
			if err != nil {
				return err
			}
			if _, err := p.Client.Deploy(ctx, f); err != nil {
				return fmt.Errorf("deploy %s: %w", name, err)
			}
			defer p.Client.Remove(context.WithoutCancel(ctx), name)
			fns = append(fns, fn{s, name})
		}
	}
	// The first start of each: a fork and exec, after which its node
	// agent parks a process of it.
	for _, f := range fns {
		a, err := e.invokeFirst(ctx, p, f.name, f.s.job)
		if err != nil {
			return fmt.Errorf("%s: %w", f.s.Name, err)
		}
		f.s.ExecSamples = append(f.s.ExecSamples, a.First)
	}
	start := time.Now()
	for done := 0; done < n; {
		for _, f := range fns {
			if len(f.s.Samples) >= n {
				continue
			}
			pids, err := waitParked(ctx, p, token, f.name, 0)
			if err != nil {
				return err
			}
			a, err := e.invokeFirst(ctx, p, f.name, f.s.job)
			if err != nil {
				return fmt.Errorf("%s: %w", f.s.Name, err)
			}
			if !slices.Contains(pids, a.PID) {
				f.s.Afresh++
				f.s.ExecSamples = append(f.s.ExecSamples, a.First)
				fmt.Fprintf(e.Log, "  %s started afresh (pid %d), not from its parked process %v\n", f.name, a.PID, pids)
			} else {
				f.s.add(a)
			}
			// Its node agent parks the next process of it now: let that
			// start be over before the next sample.
			if _, err := waitParked(ctx, p, token, f.name, a.PID); err != nil {
				return err
			}
		}
		done = len(series[0].Samples)
		for _, s := range series {
			done = min(done, len(s.Samples))
		}
		fmt.Fprintf(e.Log, "  %d of %d parked starts per series in %s\n", done, n, time.Since(start).Round(time.Second))
	}
	return nil
}

// waitParked waits until function fn has no instance (when busy is 0) or
// a parked process other than busy (its instance's), and no parked
// process of any function is starting on any node. It returns the pids
// of fn's parked processes.
func waitParked(ctx context.Context, p *platform.Platform, token, fn string, busy int) ([]int, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		slots, err := parkSlots(ctx, p.Client, token)
		if err != nil {
			return nil, err
		}
		var pids []int
		starting := false
		for _, s := range slots {
			starting = starting || !s.Parked
			if s.Function == fn && s.Parked && s.PID != busy {
				pids = append(pids, s.PID)
			}
		}
		if len(pids) > 0 && !starting && (busy != 0 || allIdle(ctx, p.Client, []string{fn})) {
			return pids, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("first access: %s did not scale to zero with a parked process within 60s (parked processes: %+v)", fn, slots)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parkSlots asks every node agent (with the cluster token) for its parked
// processes, those starting included.
func parkSlots(ctx context.Context, cl *api.Client, token string) ([]node.ParkedInfo, error) {
	st, err := cl.Status(ctx)
	if err != nil {
		return nil, err
	}
	var out []node.ParkedInfo
	for _, nd := range st.Nodes {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+nd.Addr+"/v1/parked", nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set(httpx.HeaderToken, token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("node %s: parked processes: %w", nd.ID, err)
		}
		var ps []node.ParkedInfo
		err = json.NewDecoder(resp.Body).Decode(&ps)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("node %s: parked processes: %w", nd.ID, err)
		}
		out = append(out, ps...)
	}
	return out, nil
}

// firstExec deploys a new function for every sample, invokes it once (the
// platform forks and execs a process for it) and removes it.
func (e Env) firstExec(ctx context.Context, p *platform.Platform, bin string, series []*firstRun, n int) error {
	for i := 0; i < n; i++ {
		for _, s := range series {
			if len(s.ExecSamples) >= n {
				continue
			}
			name := fmt.Sprintf("first-exec-%s-%d", s.job.Mode, i)
			f, err := e.firstSpec(bin, name, s.env)
			if err != nil {
				return err
			}
			if _, err := p.Client.Deploy(ctx, f); err != nil {
				return fmt.Errorf("deploy %s: %w", name, err)
			}
			a, err := e.invokeFirst(ctx, p, name, s.job)
			p.Client.Remove(context.WithoutCancel(ctx), name)
			if err != nil {
				return fmt.Errorf("%s: %w", s.Name, err)
			}
			s.ExecSamples = append(s.ExecSamples, a.First)
		}
	}
	return nil
}

// invokeFirst invokes function name once with job and checks that the
// instance that answered had read nothing before.
func (e Env) invokeFirst(ctx context.Context, p *platform.Platform, name string, job storeJob) (storeAnswer, error) {
	body, err := json.Marshal(job)
	if err != nil {
		return storeAnswer{}, err
	}
	out, err := p.Client.Invoke(ctx, name, body)
	if err != nil {
		return storeAnswer{}, fmt.Errorf("invoke %s: %w", name, err)
	}
	var a storeAnswer
	if err := json.Unmarshal(out, &a); err != nil {
		return a, fmt.Errorf("%s answered %q: %w", name, out, err)
	}
	if !a.Fresh {
		return a, fmt.Errorf("%s: the instance had served a read before", name)
	}
	return a, nil
}

func getAll(ctx context.Context, c *minio.Client, bucket, key string) ([]byte, error) {
	obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(obj)
}

// serveRaw answers every line on every connection with an 8-byte
// big-endian length and data: storefn's raw mode, the floor of a first
// access.
func serveRaw(data []byte) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	msg := binary.BigEndian.AppendUint64(nil, uint64(len(data)))
	msg = append(msg, data...)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if _, err := br.ReadSlice('\n'); err != nil {
						return
					}
					if _, err := c.Write(msg); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln, nil
}

// firstNotes says how the first-access series were measured.
func firstNotes(first []FirstSeries) []string {
	if len(first) == 0 {
		return nil
	}
	var afresh []string
	for _, s := range first {
		if s.Afresh > 0 {
			afresh = append(afresh, fmt.Sprintf("%s %d", s.Name, s.Afresh))
		}
	}
	moved := "every parked-series start came from a parked process"
	if len(afresh) > 0 {
		moved = "starts placed where no parked process waited were forks and execs, counted in that row instead: " + strings.Join(afresh, ", ")
	}
	notes := []string{fmt.Sprintf("First access: storefn (a prebuilt Go binary using the SDK) is deployed as %d functions per series, each scaling to zero a second after its last request. Every sample is a new instance of one of them, in turn: the harness waits until it has no instance and a parked process on its node (the node agent parks an initialised process per function once it has run there) and no parked process is starting anywhere, invokes it once, so the node agent activates the parked process, and waits until the node agent has parked the next one, as it does when a function scales from zero or up. That process has done its runtime and package start-up but never touched the store; every series, baselines included, is measured the same way (the series take turns). The instance times, from before it builds its client to the object's last byte, its first read of a %s object held by the other node agent, then a second read with the same client (warm). Process start is not in the figure. The bars are judged on these instances; the fork-and-exec row is a new function's first start on a node (deployed, invoked once, removed), whose process pays its page faults in the timed read (a fault costs 50-160 µs in this VM); %s.",
		firstCopies, bench.FormatSize(first[0].First.Size), moved)}
	for _, s := range first {
		notes = append(notes, fmt.Sprintf("%s: %s. Parked-series instances by node: %v.", s.Name, s.What, s.Nodes))
	}
	return notes
}

// writeFirstTable writes the first-access table.
func writeFirstTable(b *strings.Builder, first []FirstSeries) {
	if len(first) == 0 {
		return
	}
	fmt.Fprintf(b, "| fresh instance, first read of %s | n | p50 | p99 | mean | of which client set-up, p50 | warm read p50 | fork and exec: n | p50 | p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n", bench.FormatSize(first[0].First.Size))
	for _, s := range first {
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %d | %s | %s |\n", s.Name, s.First.N, bench.FormatDuration(s.First.P50),
			bench.FormatDuration(s.First.P99), bench.FormatDuration(s.First.Mean), bench.FormatDuration(s.Setup.P50), bench.FormatDuration(s.Warm.P50),
			s.Exec.N, bench.FormatDuration(s.Exec.P50), bench.FormatDuration(s.Exec.P99))
	}
	b.WriteString("\n")
}
