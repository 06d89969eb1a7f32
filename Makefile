# pwmesh: `make run` starts a one-node mesh, `make test` runs every test.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
DATA_DIR ?= ./pwmesh-data
HTTP     ?= 127.0.0.1:8080
# go-nvml's headers mark many calls deprecated; the warnings are noise.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
# Benchmarks: a pattern and how long each runs.
BENCH     ?= .
BENCHTIME ?= 1s

.PHONY: all build run test test-short bench vet fmt clean gpu-check

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/pwmesh ./cmd/pwmesh

# A one-node mesh with embedded defaults; Ctrl-C leaves cleanly.
run: build
	./bin/pwmesh agent --dev --data-dir $(DATA_DIR) --http $(HTTP)

vet:
	$(GO) vet ./...

# Every test, with the race detector and a shuffled order.
test: vet
	$(GO) test -race -shuffle=on -timeout 20m ./...

test-short:
	$(GO) test -short ./...

bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -benchmem ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin

# On a machine with an NVIDIA GPU: start a dev node with --gpus auto, show
# the inventory NVML gives (GET /nodes) and run a one-GPU job on it. It uses
# bin/pwmesh as built (the machine needs no Go toolchain).
GPU_CHECK_DIR ?= /tmp/pwmesh-gpu-check
gpu-check:
	@test -x bin/pwmesh || { echo "bin/pwmesh is missing: run make build first"; exit 1; }
	@bash -c 'set -u; d=$(GPU_CHECK_DIR); rm -rf $$d; mkdir -p $$d; \
	  (nvidia-smi -L || echo "nvidia-smi: not found"); \
	  ./bin/pwmesh agent --dev --gpus auto --data-dir $$d/data --http 127.0.0.1:18080 --p2p-port 0 --gossip-port 0 >$$d/out.log 2>$$d/agent.log & pid=$$!; \
	  trap "kill $$pid 2>/dev/null" EXIT; \
	  for i in $$(seq 1 60); do grep -q "Admin token" $$d/out.log && break; sleep 0.5; done; \
	  export PWMESH_ADDR=http://127.0.0.1:18080 PWMESH_TOKEN=$$(cat $$d/data/bootstrap-token); \
	  ./bin/pwmesh nodes --json; \
	  id=$$(./bin/pwmesh job submit --type generate_dataset --param size=32 --gpus 1); \
	  ./bin/pwmesh job wait $$id --timeout 60s; rc=$$?; ./bin/pwmesh job get $$id; \
	  grep -i "gpus\|nvml" $$d/agent.log | head -5; exit $$rc'
