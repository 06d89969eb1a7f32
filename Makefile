# pwmesh: `make run` starts a one-node mesh, `make test` runs every test.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
DATA_DIR ?= ./pwmesh-data
HTTP     ?= 127.0.0.1:8080
# Benchmarks: a pattern and how long each runs.
BENCH     ?= .
BENCHTIME ?= 1s

.PHONY: all build run test test-short bench vet fmt clean

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
