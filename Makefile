# The two commands a newcomer needs are `make run` and `make test` (both as root).
# Everything else is a building block of those two.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BIN       := bin/kubearmor
# `make run` uses the repo's audit-only example policies when the host has none.
RUN_ARGS  ?= $(if $(wildcard /etc/kubearmor/policies),,--policyDir examples/policies)

.PHONY: all build run test unit fuzz vmtest bench generate lint package deps-go clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kubearmor

run: deps-go build
	./$(BIN) $(RUN_ARGS)

# The whole suite: installs what a fresh Debian 12 machine lacks, then runs every layer.
test:
	bash scripts/test

# Unit and host-kernel tests only (no install step, no VM).
unit:
	$(GO) test ./...

fuzz:
	bash scripts/fuzz

vmtest: build
	bash scripts/vmtest-all

bench:
	bash scripts/bench

generate:
	$(GO) generate ./...

# dist/kubearmor_<ver>_amd64.deb and dist/kubearmor-<ver>.x86_64.rpm
package:
	bash scripts/package

lint:
	gofmt -l . | (! grep .)
	$(GO) vet ./...

deps-go:
	$(GO) mod download

clean:
	rm -rf bin dist
