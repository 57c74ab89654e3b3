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
	@unformatted=$$(gofmt -l $$(find . -name '*.go' -not -path './bin/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt -w these files:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -timeout 14m ./...

demo: deps-bench build
	$(BIN) demo

bench: deps-bench build
	$(BIN) bench transfer --out bench-results
	$(BIN) bench invoke --out bench-results
	$(BIN) bench pipeline --out bench-results
	$(BIN) bench store --out bench-results

# fuzz runs every fuzz target of the module, one after the other, for a
# short while each (FUZZTIME=1m for longer).
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -h '^func Fuzz' $$pkg/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "$$pkg $$f"; \
			$(GO) test $$pkg -run '^$$' -fuzz '^'$$f'$$' -fuzztime $(FUZZTIME) || exit 1; \
		done; \
	done

clean:
	rm -rf bin bench-results
