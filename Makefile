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

# The docker executor's image for jobs that name none (docs/executors.md).
WORKLOAD_IMAGE ?= pwmesh-workload:latest
# The node image the docker scaler starts workers from (docs/scaling.md).
NODE_IMAGE ?= pwmesh-node:latest

.PHONY: all build workload-image node-image run test test-short bench vet fmt clean gpu-check

all: build

# bin/pwmesh (with cgo, for NVML), bin/pwmesh-static (CGO_ENABLED=0, what
# runs inside containers) and, when a Docker engine answers, the workload
# image built FROM scratch from the static binary.
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/pwmesh ./cmd/pwmesh
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS) -s -w" -o bin/pwmesh-static ./cmd/pwmesh
	@$(MAKE) --no-print-directory workload-image node-image

# Without Docker this says so and succeeds: nodes then run jobs as
# processes (or build the image themselves once an engine is there). The
# label lets a node see that the image matches its bin/pwmesh-static.
workload-image:
	@if ! docker info >/dev/null 2>&1; then \
	  echo "workload image: no Docker engine answers here; skipped (jobs will run as processes)"; \
	else \
	  rm -rf bin/workload-image && mkdir -p bin/workload-image && \
	  cp bin/pwmesh-static bin/workload-image/pwmesh-static && \
	  docker build -q -f build/workload/Dockerfile -t $(WORKLOAD_IMAGE) \
	    --label pwmesh.image=workload \
	    --label pwmesh.workload.sha256=$$(sha256sum bin/pwmesh-static | cut -d' ' -f1) \
	    bin/workload-image >/dev/null && \
	  rm -rf bin/workload-image && \
	  { docker image prune -f --filter label=pwmesh.image=workload >/dev/null || true; } && \
	  echo "workload image: built $(WORKLOAD_IMAGE) FROM scratch from bin/pwmesh-static"; \
	fi

# The node image (FROM scratch, the static binary), labelled like the
# workload image so a node sees that it matches bin/pwmesh-static.
node-image:
	@if ! docker info >/dev/null 2>&1; then \
	  echo "node image: no Docker engine answers here; skipped (--scaler docker needs it)"; \
	else \
	  rm -rf bin/node-image && mkdir -p bin/node-image && \
	  cp bin/pwmesh-static bin/node-image/pwmesh-static && \
	  docker build -q -f build/node/Dockerfile -t $(NODE_IMAGE) \
	    --label pwmesh.image=node \
	    --label pwmesh.workload.sha256=$$(sha256sum bin/pwmesh-static | cut -d' ' -f1) \
	    bin/node-image >/dev/null && \
	  rm -rf bin/node-image && \
	  { docker image prune -f --filter label=pwmesh.image=node >/dev/null || true; } && \
	  echo "node image: built $(NODE_IMAGE) FROM scratch from bin/pwmesh-static"; \
	fi

# A one-node mesh with embedded defaults; Ctrl-C leaves cleanly.
run: build
	./bin/pwmesh agent --dev --data-dir $(DATA_DIR) --http $(HTTP)

vet:
	$(GO) vet ./...

# Every test, with the race detector and a shuffled order. It builds first:
# the docker executor's tests then find the static build cached.
test: vet build
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
# On a machine with an NVIDIA GPU (docs/gpu.md): inventory, telemetry, a
# gpu_selftest job (PyTorch matrix product on the job's GPU), a workload job
# on a GPU, GPU-minutes in the usage.
gpu-check:
	@GPU_CHECK_DIR=$${GPU_CHECK_DIR:-/tmp/pwmesh-gpu-check} bash scripts/gpu-check.sh