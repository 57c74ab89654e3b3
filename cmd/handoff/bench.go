package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/handoff-dev/handoff/bench/suite"
)

func cmdBench(args []string) error {
	if len(args) == 0 || (args[0] != "invoke" && args[0] != "transfer" && args[0] != "pipeline" && args[0] != "store") {
		return errors.New("give a benchmark: `handoff bench invoke` (gateway against direct HTTP, cold starts, leased executors against raw rings and TCP), `handoff bench transfer` (payload hand-over against Redis, MinIO and raw limits), `handoff bench pipeline` (workflow streams against raw pipes and TCP, a pipeline against MinIO staging, node agent memory) or `handoff bench store` (a fresh instance's first store access against clients with their own connections, the S3 API against MinIO, the mounted volume against the direct API)")
	}
	which := args[0]
	fs := newFlags("bench", "bench "+which+" [--out DIR] [--quick]")
	out := fs.String("out", "bench-results", "report directory")
	repo := fs.String("repo", ".", "the repository root (examples and benchmark functions are built from it)")
	binDir := fs.String("bin-dir", "bin", "where baseline binaries (MinIO) are cached")
	quick := fs.Bool("quick", false, "few sizes and iterations (a smoke test, not a measurement)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	root, err := filepath.Abs(*repo)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "benchfn")); err != nil {
		return fmt.Errorf("%s is not the Handoff repository root: run `make bench` there or give --repo", root)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := suite.Env{Binary: self, Repo: root, BinDir: *binDir, Out: *out, Log: os.Stdout, Quick: *quick}
	switch which {
	case "invoke":
		_, err = suite.Invoke(ctx, env)
	case "transfer":
		_, err = suite.Transfer(ctx, env)
	case "pipeline":
		_, err = suite.Pipeline(ctx, env)
	case "store":
		_, err = suite.Store(ctx, env)
	}
	return err
}
