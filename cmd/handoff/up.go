package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/control"
	"github.com/handoff-dev/handoff/node"
	"github.com/handoff-dev/handoff/pki"
	"github.com/handoff-dev/handoff/spec"
)

func cmdUp(args []string) error {
	fs := newFlags("up", "up [--dir D] [--listen ADDR] [--nodes N]")
	dir := fs.String("dir", defaultDir(), "state directory (functions, queued invocations, logs)")
	listen := fs.String("listen", "127.0.0.1:7070", "gateway address; 127.0.0.1:0 picks a free port")
	nodes := fs.Int("nodes", 2, "node agents to run, each its own process")
	inlineMax := fs.String("inline-max", "6Mi", "largest body carried inline; larger ones between functions go by reference")
	runSlots := fs.Int("run-slots", control.DefaultRunSlots, "workflow tasks one node agent hosts in one run")
	bufferMem := fs.String("buffer-memory", "", "memory budget of each node agent's payload buffers (default: a quarter of the machine's memory)")
	storeMem := fs.String("store-memory", "", "memory budget of each node agent's share of the store (default: an eighth of the machine's memory)")
	nodeHost := fs.String("node-host", "127.0.0.1", "address the node agents listen on (API, wire and peer ports)")
	csi := fs.Bool("csi", false, "every node agent serves the CSI driver over the cluster store at its DIR/nodes/ID/csi.sock")
	park := fs.Int("park", node.DefaultParkBudget, "parked processes each node agent keeps for the next instances of SDK functions (0: off, every instance is a fresh fork and exec)")
	verbose := fs.Bool("v", false, "debug logging")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *park < 0 {
		return fmt.Errorf("--park %d: give 0 (off) or how many parked processes a node agent keeps", *park)
	}
	if *nodes < 1 || *nodes > 64 {
		return fmt.Errorf("--nodes %d: give 1 to 64", *nodes)
	}
	max, err := spec.ParseBytes(*inlineMax)
	if err != nil || max <= 0 {
		return fmt.Errorf("--inline-max %q: give a size such as 6Mi", *inlineMax)
	}
	for name, v := range map[string]string{"buffer-memory": *bufferMem, "store-memory": *storeMem} {
		if v == "" {
			continue
		}
		if n, err := spec.ParseBytes(v); err != nil || n <= 0 {
			return fmt.Errorf("--%s %q: give a size such as 4Gi", name, v)
		}
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("state directory %s: %w", abs, err)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	servePprof(log, 0)
	tokenFile := filepath.Join(abs, "cluster.token")
	token, err := secret(tokenFile)
	if err != nil {
		return err
	}
	admin, err := secret(filepath.Join(abs, "admin.token"))
	if err != nil {
		return err
	}
	srv, err := control.New(control.Config{Dir: abs, Listen: *listen, Token: token, AdminToken: admin, InlineMax: int64(max), RunSlots: *runSlots, Logger: log})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(ctx) }()
	<-srv.Ready()

	self, err := os.Executable()
	if err != nil {
		return err
	}
	ca, err := pki.LoadOrCreateCA(filepath.Join(abs, "pki"))
	if err != nil {
		return err
	}
	nodeCtx, stopNodes := context.WithCancel(context.Background())
	extra := []string{"--inline-max", *inlineMax, "--admin-token-file", filepath.Join(abs, "admin.token")}
	if *bufferMem != "" {
		extra = append(extra, "--buffer-memory", *bufferMem)
	}
	if *storeMem != "" {
		extra = append(extra, "--store-memory", *storeMem)
	}
	if *csi {
		extra = append(extra, "--csi-endpoint", "default")
	}
	extra = append(extra, "--park", strconv.Itoa(*park))
	l := &control.Launcher{Binary: self, Dir: abs, ControlURL: srv.URL(), TokenFile: tokenFile, CA: ca, Host: *nodeHost, ExtraArgs: extra, Logger: log}
	l.Start(nodeCtx, *nodes)
	defer func() { stopNodes(); l.Wait() }()

	deadline := time.Now().Add(30 * time.Second)
	for srv.NodesUp() < *nodes {
		if time.Now().After(deadline) {
			stop()
			<-runErr
			return fmt.Errorf("only %d of %d node agents came up within 30s; see %s", srv.NodesUp(), *nodes, filepath.Join(abs, "nodes", "*", "agent.log"))
		}
		select {
		case err := <-runErr:
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
	if *dir == defaultDir() {
		_ = os.WriteFile(filepath.Join(abs, "gateway"), []byte(srv.URL()+"\n"), 0o600)
	}
	fmt.Printf("handoff ready gateway=%s nodes=%d dir=%s\n", srv.URL(), *nodes, abs)

	err = <-runErr
	// The control plane has drained and stopped every instance; now the
	// node agents.
	stopNodes()
	l.Wait()
	if *dir == defaultDir() {
		_ = os.Remove(filepath.Join(abs, "gateway"))
	}
	return err
}

// secret reads a 256-bit token from path, creating it (mode 0600) on first
// use: the cluster token that node agents and the control plane present to
// each other, and the admin token of the management API.
func secret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("token %s: %w", path, err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("token %s: %w", path, err)
	}
	return tok, nil
}

func cmdNode(args []string) error {
	fs := newFlags("node", "node --id ID --dir D --control URL --token-file F")
	id := fs.String("id", "", "node id")
	dir := fs.String("dir", "", "node state directory")
	ctl := fs.String("control", "", "control plane URL")
	tokenFile := fs.String("token-file", "", "file holding the cluster token")
	adminFile := fs.String("admin-token-file", "", "file holding the admin token, which lease requests carry (none: no leases on this node)")
	listen := fs.String("listen", "127.0.0.1:0", "node API address")
	peerListen := fs.String("peer-listen", "127.0.0.1:0", "mutual-TLS address where other members pull buffers")
	wireListen := fs.String("wire-listen", "127.0.0.1:0", "address of the framed invocation port the gateway uses")
	inlineMax := fs.String("inline-max", "6Mi", "largest body carried inline; larger ones between functions go by reference")
	bufferMem := fs.String("buffer-memory", "", "memory budget of payload buffers (default: a quarter of the machine's memory)")
	encrypt := fs.Bool("peer-encrypt", false, "keep payloads inside TLS between nodes (off: clear after mutual TLS authentication, for loopback and private networks)")
	spill := fs.String("spill-dir", "", `where buffers go when the memory budget is full (default DIR/spill; "-" to wait and then refuse instead)`)
	storeMem := fs.String("store-memory", "", "memory budget of the node's share of the store (default: an eighth of the machine's memory)")
	s3Listen := fs.String("s3-listen", "127.0.0.1:0", "address of the node's S3-compatible API")
	noMount := fs.Bool("no-store-mount", false, "do not mount the store (FUSE) into instances; the S3 API still serves it")
	park := fs.Int("park", node.DefaultParkBudget, "parked processes kept for the next instances of SDK functions (0: off)")
	csiEndpoint := fs.String("csi-endpoint", "", `serve the CSI driver over the cluster store on this socket (unix:///PATH; "default": DIR/csi.sock); see docs/csi.md`)
	var tlsFiles pki.Files
	fs.StringVar(&tlsFiles.CA, "tls-ca", "", "cluster CA certificate (PEM)")
	fs.StringVar(&tlsFiles.Cert, "tls-cert", "", "this node's certificate (PEM)")
	fs.StringVar(&tlsFiles.Key, "tls-key", "", "this node's private key (PEM)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *id == "" || *dir == "" || *ctl == "" || *tokenFile == "" {
		return errors.New("--id, --dir, --control and --token-file are required; `handoff up` starts node agents for you")
	}
	max, err := spec.ParseBytes(*inlineMax)
	if err != nil || max <= 0 {
		return fmt.Errorf("--inline-max %q: give a size such as 6Mi", *inlineMax)
	}
	var budget int64
	if *bufferMem != "" {
		n, err := spec.ParseBytes(*bufferMem)
		if err != nil || n <= 0 {
			return fmt.Errorf("--buffer-memory %q: give a size such as 4Gi", *bufferMem)
		}
		budget = int64(n)
	}
	var storeBudget int64
	if *storeMem != "" {
		n, err := spec.ParseBytes(*storeMem)
		if err != nil || n <= 0 {
			return fmt.Errorf("--store-memory %q: give a size such as 4Gi", *storeMem)
		}
		storeBudget = int64(n)
	}
	b, err := os.ReadFile(*tokenFile)
	if err != nil {
		return fmt.Errorf("cluster token: %w", err)
	}
	admin := ""
	if *adminFile != "" {
		b, err := os.ReadFile(*adminFile)
		if err != nil {
			return fmt.Errorf("admin token: %w", err)
		}
		admin = strings.TrimSpace(string(b))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if n, err := strconv.Atoi(strings.TrimPrefix(*id, "n")); err == nil {
		servePprof(log, n)
	}
	a, err := node.New(node.Config{AdminToken: admin, ID: *id, Listen: *listen, Dir: *dir, ControlURL: *ctl, Token: strings.TrimSpace(string(b)), Logger: log,
		InlineMax: int64(max), BufferMemory: budget, SpillDir: *spill, TLS: tlsFiles, PeerListen: *peerListen, PeerEncrypt: *encrypt, WireListen: *wireListen,
		StoreMemory: storeBudget, S3Listen: *s3Listen, NoStoreMount: *noMount, CSIEndpoint: *csiEndpoint, Version: versionString(),
		ParkBudget: *park, NoPark: *park <= 0})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return a.Run(ctx)
}
