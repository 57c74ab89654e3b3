# Handoff: `make demo` runs the main job, `make test` runs every test.
# Each target installs what it needs (Go modules, Debian packages, MinIO).

GO      ?= go
BIN     := bin/handoff
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
export PATH := $(CURDIR)/bin:$(PATH)

.PHONY: build test demo bench deps deps-bench fuzz clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/handoff

# deps installs the Debian packages the tests use (redis-server for the
# benchmark baselines); deps-bench also builds MinIO once into bin/.
deps:
	./scripts/install-deps.sh

deps-bench: deps
	./scripts/install-minio.sh

test: deps-bench build
	$(GO) vet ./...
	$(GO) test -timeout 14m ./...

demo: deps-bench build
	$(BIN) demo

bench: deps-bench build
	$(BIN) bench transfer --out bench-results
	$(BIN) bench invoke --out bench-results

# fuzz runs every fuzz target for a short while (FUZZTIME=1m for longer).
FUZZTIME ?= 20s
fuzz:
	$(GO) test ./spec -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)

clean:
	rm -rf bin bench-results
