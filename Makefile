# argocd-agent-addon. `make help` lists the targets, from the `## ` comment after each name;
# test/README.md says what each test package runs and which target runs it.

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
                ./pkg/agentconfig:FuzzFromDeploymentConfig:10000x ./pkg/addon:FuzzManifests:1000x \
                ./pkg/customization:FuzzCustomization:10000x
FUZZ_BUDGET ?=
FUZZTIME    ?= 5m
# Minimising each new corpus entry defaults to 60s in Go, which would eat a
# short CI run; crashers are still saved, just less minimised.
FUZZMINIMIZETIME_CI ?= 1s
BENCH_ARGS ?=

# staticcheck from the Go module proxy, which serves explicit versions only (not @latest), built
# once into the tools cache of hack/test-tools.sh.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := $(or $(ARGOCD_AGENT_ADDON_TOOLS),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/argocd-agent-addon/tools)/staticcheck-$(STATICCHECK_VERSION)/staticcheck

# Every Go build of this module's code, tests included, uses the flags the shipped binary is built
# with (static, trimmed paths): go vet, staticcheck, the test binaries, and the manager the e2e
# tests and the bench build (test/proc.BuildAddon) then share one compiled copy of each
# dependency in the build cache. Mixed flags compiled everything twice: minutes on a cold CI run.
export CGO_ENABLED := 0
export GOFLAGS := -trimpath $(GOFLAGS)

.PHONY: all help build test unit integration e2e lint fuzz fuzz-ci bench chaos tools vet binaries image image-push release clean demo

all: build

help: ## this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## the binary, bin/argocd-agent-addon
	go build -ldflags "$(LDFLAGS)" -o bin/argocd-agent-addon ./cmd/argocd-agent-addon

tools: ## build or install the test tools once (hack/test-tools.sh; cached outside the repository)
	env -u CGO_ENABLED -u GOFLAGS hack/test-tools.sh all >/dev/null

vet: ## go vet, and gofmt on every Go file
	go vet ./...
	@test -z "$$(gofmt -l cmd pkg manifests test)" || { echo "gofmt needed:"; gofmt -l cmd pkg manifests test; exit 1; }

# staticcheck's default checks, SA1019 (use of a deprecated API) among them.
lint: $(STATICCHECK) ## staticcheck, deprecated APIs included; no tracked binary over 1 MiB
	$(STATICCHECK) ./...
	hack/check-tracked-files.sh

$(STATICCHECK):
	GOBIN=$(@D) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

unit: ## unit tests of pkg/ and cmd/: no tools, seconds
	go test -count=1 ./pkg/... ./cmd/...

# The e2e package runs several real OCM hubs and fleets, two at a time (about 20 minutes
# warm): past go test's default 10-minute timeout per package.
TEST_TIMEOUT ?= 45m

integration: tools ## the test/ packages but e2e: real kube-apiserver, chart, RBAC, argocd-agent, bench
	eval "$$(hack/test-tools.sh print-env)"; go test -count=1 -timeout $(TEST_TIMEOUT) $$(go list ./test/... | grep -v /test/e2e)

e2e: tools ## end to end on real OCM and real nodes, the chart and argocd-agent (test/e2e, about 20 minutes)
	eval "$$(hack/test-tools.sh print-env)"; go test -count=1 -timeout $(TEST_TIMEOUT) ./test/e2e/...

test: vet lint tools ## everything: vet, lint, every Go test (unit, integration, e2e), each fuzz target briefly
	eval "$$(hack/test-tools.sh print-env)"; go test -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) fuzz-ci

fuzz-ci: ## each fuzz target for its count of executions (FUZZ_TARGETS), as make test does
	FUZZ_BUDGET=$(FUZZ_BUDGET) FUZZMINIMIZETIME=$(FUZZMINIMIZETIME_CI) hack/fuzz.sh $(FUZZ_TARGETS)

fuzz: ## each fuzz target for longer (FUZZTIME=5m)
	$(MAKE) fuzz-ci FUZZ_BUDGET=$(FUZZTIME) FUZZMINIMIZETIME_CI=60s

bench: tools ## our manager side by side with OCM's template add-on on a real hub, and under SIGKILL (BENCH_ARGS=-h)
	eval "$$(hack/test-tools.sh print-env)"; go run ./test/bench $(BENCH_ARGS)

CHAOS_ARGS ?= -chaos-clusters 500 -kills 20
chaos: tools ## the leading manager SIGKILLed 20 times during a 500-cluster rollout, 1 and 2 replicas (CHAOS_ARGS)
	eval "$$(hack/test-tools.sh print-env)"; go run ./test/bench -clusters none $(CHAOS_ARGS)

# The manager image for every platform in IMAGE_PLATFORMS, from static binaries, with no Docker
# daemon (hack/image): an OCI image layout in $(IMAGE_OCI). The Dockerfile makes the same image
# from the same binaries (`make binaries`, then docker buildx or buildah; test/dockerfile). `docker load` or `ctr images import`
# take one platform from `go run ./hack/image build --archive`; a release pushes the layout.
IMAGE_PLATFORMS ?= linux/amd64 linux/arm64
IMAGE_OCI       ?= _output/image
BINARIES_DIR ?= bin
binaries: ## the manager binary for every platform in IMAGE_PLATFORMS, bin/<os>_<arch>/ (what the Dockerfile copies)
	@for p in $(IMAGE_PLATFORMS); do os=$${p%%/*}; arch=$${p#*/}; out=$(BINARIES_DIR)/$${os}_$${arch}/argocd-agent-addon; \
		echo "building $$out"; GOOS=$$os GOARCH=$$arch go build -ldflags "$(LDFLAGS)" -o $$out ./cmd/argocd-agent-addon; done

image: binaries ## the manager image, every platform, as an OCI layout in _output/image (IMAGE=, IMAGE_PLATFORMS=)
	@bins=(); for p in $(IMAGE_PLATFORMS); do os=$${p%%/*}; arch=$${p#*/}; bins+=(--binary "$$p=$(BINARIES_DIR)/$${os}_$${arch}/argocd-agent-addon"); done; \
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || echo 0)} \
		go run ./hack/image build --kind manager "$${bins[@]}" --tag $(IMAGE) --version $(VERSION) --revision $(COMMIT) --oci $(IMAGE_OCI)
	@echo "$(IMAGE) ($(IMAGE_PLATFORMS)) written to $(IMAGE_OCI)"

image-push: image ## push the manager image to its registry (IMAGE=registry/name:tag; credentials from docker login)
	go run ./hack/image push --oci $(IMAGE_OCI) --tag $(IMAGE)

# A release: VERSION (vX.Y.Z) is the binary's version, the image tag and the chart's version and
# appVersion; the chart pins the image by digest (hack/release.sh, docs in README.md#releases).
RELEASE_REGISTRY ?= quay.io/argocd-agent-addon
DRY_RUN ?=
release: ## the image (every platform) and the chart pinned to it, pushed to RELEASE_REGISTRY (VERSION=vX.Y.Z; DRY_RUN=1 only writes _output/release)
	$(if $(filter command line environment,$(origin VERSION)),,$(error make release needs VERSION=vX.Y.Z: a release is never named by git describe))
	VERSION=$(VERSION) REGISTRY=$(RELEASE_REGISTRY) DRY_RUN=$(DRY_RUN) IMAGE_PLATFORMS="$(IMAGE_PLATFORMS)" hack/release.sh

clean: ## remove bin/ and _output/
	rm -rf bin _output

# A local hub with simulated clusters, the principal and agents; Ctrl-C stops it (CLUSTERS=3 for more).
CLUSTERS ?= 2
demo: tools ## a local hub with clusters, the principal and agents (CLUSTERS=3); Ctrl-C stops it
	go build -o bin/demo ./test/e2e/demo
	eval "$$(hack/test-tools.sh print-env)"; exec bin/demo --clusters $(CLUSTERS)
