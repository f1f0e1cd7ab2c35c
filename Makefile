# argocd-agent-addon
#
#   make test    unit, fuzz (short), integration, chart and RBAC tests on a real kube-apiserver
#   make build   the binary in bin/
#   make fuzz    the fuzz targets for longer (FUZZTIME=5m)
#   make bench   fleet delivery and CSR signing on a real kube-apiserver, with baselines (BENCH_ARGS=-h)

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/argocd-agent-addon/argocd-agent-addon/pkg/version.Version=$(VERSION) \
           -X github.com/argocd-agent-addon/argocd-agent-addon/pkg/version.GitCommit=$(COMMIT)
IMAGE   ?= quay.io/argocd-agent-addon/argocd-agent-addon:$(VERSION)

# Fuzz targets as package:Target:executions. `make test` runs each for its count of
# executions, about 10 s each on a 2-core machine; `make fuzz` runs each for FUZZTIME. CI counts
# executions because a -fuzztime duration races Go's fuzzing coordinator at the deadline (before
# Go 1.27, golang/go#75804): a run can fail with "context deadline exceeded" and no crasher.
FUZZ_TARGETS := ./pkg/certificates/policy:FuzzCheck:40000x ./pkg/certificates/authority:FuzzTrust:8000x \
                ./pkg/agentconfig:FuzzFromDeploymentConfig:10000x ./pkg/addon:FuzzManifests:1000x
FUZZ_BUDGET ?=
FUZZTIME    ?= 5m
# Minimising each new corpus entry defaults to 60s in Go, which would eat a
# short CI run; crashers are still saved, just less minimised.
FUZZMINIMIZETIME_CI ?= 1s
BENCH_ARGS ?=

.PHONY: all build test unit fuzz fuzz-ci bench tools vet image clean demo

all: build

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/argocd-agent-addon ./cmd/argocd-agent-addon

# Builds kube-apiserver, etcd and helm from Go modules once; cached outside the repository.
tools:
	hack/test-tools.sh all >/dev/null

vet:
	go vet ./...
	@test -z "$$(gofmt -l cmd pkg manifests test)" || { echo "gofmt needed:"; gofmt -l cmd pkg manifests test; exit 1; }

unit:
	go test -count=1 ./pkg/... ./cmd/...

# The e2e package runs several real OCM hubs and fleets one after another (about 11 minutes
# warm): past go test's default 10-minute timeout per package.
TEST_TIMEOUT ?= 30m

test: vet tools
	eval "$$(hack/test-tools.sh print-env)"; go test -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) fuzz-ci

fuzz-ci:
	@for t in $(FUZZ_TARGETS); do IFS=: read -r pkg fn execs <<< "$$t"; budget="$(FUZZ_BUDGET)"; budget=$${budget:-$$execs}; \
		echo "fuzz $$fn ($$pkg) for $$budget"; \
		go test -run '^$$' -fuzz "^$$fn$$" -fuzztime $$budget -fuzzminimizetime $(FUZZMINIMIZETIME_CI) $$pkg; done

fuzz:
	$(MAKE) fuzz-ci FUZZ_BUDGET=$(FUZZTIME) FUZZMINIMIZETIME_CI=60s

bench: tools
	eval "$$(hack/test-tools.sh print-env)"; go run ./test/bench $(BENCH_ARGS)

image:
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

clean:
	rm -rf bin

# A local hub with simulated clusters, the principal and agents; Ctrl-C stops it (CLUSTERS=3 for more).
CLUSTERS ?= 2
demo: tools
	go build -o bin/demo ./test/e2e/demo
	eval "$$(hack/test-tools.sh print-env)"; exec bin/demo --clusters $(CLUSTERS)
