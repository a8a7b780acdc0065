# deliver: build, test, demo. Run `make help` for the targets.
SHELL := /usr/bin/env bash
GO ?= go
# The Kubernetes test binaries live outside the clone so every clone (and CI) reuses them.
K8S_BINS ?= $(or $(DELIVER_K8S_BINS),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/deliver/k8s-bins)
export DELIVER_K8S_BINS := $(K8S_BINS)
# The benchmark baseline's kustomize CLI, cached outside the clone the same way.
BENCH_BINS ?= $(or $(DELIVER_BENCH_BINS),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/deliver/bench-bins)
export DELIVER_BENCH_BINS := $(BENCH_BINS)
# The real Flux controllers (source-controller, kustomize-controller) and their CRDs, which the
# engine tests run as local processes, cached the same way.
FLUX_BINS ?= $(or $(DELIVER_FLUX_BINS),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/deliver/flux-bins)
export DELIVER_FLUX_BINS := $(FLUX_BINS)
# The pinned linters (staticcheck), cached the same way.
LINT_BINS ?= $(or $(DELIVER_LINT_BINS),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/deliver/lint-bins)
BENCH_FLAGS ?=
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/deliverhq/deliver/step.version=$(VERSION)
TEST_FLAGS ?= -race -shuffle=on -count=1 -timeout=40m

.PHONY: help build test lint lint-bins k8s-bins flux-bins flux-bins-start demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/deliver (static)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/deliver .

test: flux-bins-start k8s-bins bench-bins lint ## run every test (-race) against real git, registry and Kubernetes servers and the Flux controllers (includes bench-smoke)
	$(GO) test $(TEST_FLAGS) ./...

lint: lint-bins ## gofmt, go vet, go mod tidy (nothing to change) and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './hack/k8stools/*')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@$(GO) mod tidy -diff >/dev/null 2>&1 || { echo "go mod tidy would change go.mod/go.sum:"; $(GO) mod tidy -diff; exit 1; }
	$(LINT_BINS)/staticcheck ./...

lint-bins: ## build the pinned staticcheck (hack/linttools) into the cache outside the clone
	hack/lint-bins.sh "$(LINT_BINS)"

flux-bins: ## build the Flux source-controller and kustomize-controller v1.9.6 and their CRDs (cached; about 20 minutes cold)
	hack/flux-bins.sh "$(FLUX_BINS)"

flux-bins-start: ## start flux-bins in the background unless up to date; the tests that need the controllers wait for it
	hack/flux-bins.sh --background "$(FLUX_BINS)"

k8s-bins: ## build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok (cached)
	hack/k8s-bins.sh "$(K8S_BINS)"

demo: k8s-bins build ## run deliver against a local git server, registry and control plane, and tell the story
	$(GO) run ./hack/demo --deliver bin/deliver

clean: ## remove build output
	rm -rf bin

.PHONY: image citest-tools

IMAGE_DIR ?= bin/image
IMAGE_PUSH ?=

image: build ## build the container image without Docker: OCI layout in bin/image (IMAGE_PUSH=REF also pushes)
	$(GO) run ./hack/image --deliver bin/deliver --out $(IMAGE_DIR) --version $(VERSION) $(if $(IMAGE_PUSH),--push $(IMAGE_PUSH))

citest-tools: ## install the pinned CI validators (action-validator, gitlab-ci-local) from hack/citest/package-lock.json
	npm ci --prefix hack/citest --no-audit --no-fund

.PHONY: bench bench-bins bench-smoke stress

bench-bins: ## build the kustomize CLI for the benchmark baseline (cached, like k8s-bins)
	hack/bench-bins.sh "$(BENCH_BINS)"

bench: k8s-bins bench-bins build ## benchmark deliver against the scripted baseline (P1-P5) and write BENCHMARKS.md; BENCH_FLAGS=--latency=20ms
	$(GO) run ./bench --deliver bin/deliver --write BENCHMARKS.md $(BENCH_FLAGS)

bench-smoke: k8s-bins bench-bins ## every benchmark scenario at tiny sizes, checking correctness only (go test ./bench; part of make test)
	$(GO) test -count=1 -run 'TestSmoke|TestWriteSection|TestParsePhases' ./bench

stress: k8s-bins bench-bins build ## contention at 32 pipelines x 20 trials: zero lost, linear history, every commit renders; into BENCHMARKS.md
	$(GO) run ./bench --deliver bin/deliver --stress --write BENCHMARKS.md $(BENCH_FLAGS)

.PHONY: fuzz

FUZZTIME ?= 20s

fuzz: ## run every fuzz target in the module for FUZZTIME each (default 20s), one after another
	@set -e; for file in $$(grep -rlE '^func Fuzz[A-Za-z0-9_]*\(' --include='*_test.go' . | sort); do \
	  dir=$$(dirname "$$file"); \
	  for target in $$(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' "$$file"); do \
	    echo "fuzz: $$target in $$dir for $(FUZZTIME)"; \
	    $(GO) test -run='^$$' -fuzz="^$$target$$" -fuzztime=$(FUZZTIME) "$$dir"; \
	  done; \
	done
