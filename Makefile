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
# and node images built FROM scratch from the static binary.
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/pwmesh ./cmd/pwmesh
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS) -s -w" -o bin/pwmesh-static ./cmd/pwmesh
	@$(MAKE) --no-print-directory workload-image node-image

# The images FROM scratch with bin/pwmesh-static: the workload's (jobs
# that name no image) and the node's (workers of --scaler docker). Without
# Docker this says so and succeeds: nodes then run jobs as processes (or
# build the images themselves once an engine is there). The label lets a
# node see that an image matches its bin/pwmesh-static.
# $(call scratch-image,KIND,IMAGE,WHAT WITHOUT DOCKER)
define scratch-image
	@if ! docker info >/dev/null 2>&1; then \
	  echo "$(1) image: no Docker engine answers here; skipped ($(3))"; \
	else \
	  rm -rf bin/$(1)-image && mkdir -p bin/$(1)-image && \
	  cp bin/pwmesh-static bin/$(1)-image/pwmesh-static && \
	  docker build -q -f build/$(1)/Dockerfile -t $(2) \
	    --label pwmesh.image=$(1) \
	    --label pwmesh.workload.sha256=$$(sha256sum bin/pwmesh-static | cut -d' ' -f1) \
	    bin/$(1)-image >/dev/null && \
	  rm -rf bin/$(1)-image && \
	  { docker image prune -f --filter label=pwmesh.image=$(1) >/dev/null || true; } && \
	  echo "$(1) image: built $(2) FROM scratch from bin/pwmesh-static"; \
	fi
endef

workload-image:
	$(call scratch-image,workload,$(WORKLOAD_IMAGE),jobs will run as processes)

node-image:
	$(call scratch-image,node,$(NODE_IMAGE),--scaler docker builds it on first use)

# A one-node mesh with embedded defaults; Ctrl-C leaves cleanly.
run: build
	./bin/pwmesh agent --dev --data-dir $(DATA_DIR) --http $(HTTP)

vet:
	$(GO) vet ./...

# Every test, with the race detector and a shuffled order. It builds first:
# the docker executor's tests then find the static build cached. The
# packages that start whole meshes (node, node/faulttest, node/e2e) run one
# after another, after the rest: on two cores, two of them at once starve
# Raft's heartbeats into elections their tests do not expect.
CLUSTER_PKGS := ./node ./node/faulttest ./node/e2e
test: vet build
	$(GO) test -race -shuffle=on -timeout 20m $$($(GO) list ./... | grep -v -x -e '.*/pwmesh/node' -e '.*/pwmesh/node/faulttest' -e '.*/pwmesh/node/e2e')
	$(GO) test -race -shuffle=on -timeout 20m -p 1 $(CLUSTER_PKGS)

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