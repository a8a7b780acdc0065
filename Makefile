# deliver: build, test, demo. Run `make help` for the targets.
SHELL := /usr/bin/env bash
GO ?= go
# The Kubernetes test binaries live outside the clone so every clone (and CI) reuses them.
K8S_BINS ?= $(or $(DELIVER_K8S_BINS),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/deliver/k8s-bins)
export DELIVER_K8S_BINS := $(K8S_BINS)
# The benchmark baseline's kustomize CLI, cached outside the clone the same way.
BENCH_BINS ?= $(or $(DELIVER_BENCH_BINS),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/deliver/bench-bins)
export DELIVER_BENCH_BINS := $(BENCH_BINS)
# The Gitea server the pull-request tests run against, cached the same way.
GITEA_BINS ?= $(or $(DELIVER_GITEA_BINS),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/deliver/gitea-bins)
export DELIVER_GITEA_BINS := $(GITEA_BINS)
# The real Flux controllers (source-controller, kustomize-controller) and their CRDs, which the
# engine tests run as local processes, cached the same way.
FLUX_BINS ?= $(or $(DELIVER_FLUX_BINS),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/deliver/flux-bins)
export DELIVER_FLUX_BINS := $(FLUX_BINS)
# The pinned linters (staticcheck), cached the same way.
LINT_BINS ?= $(or $(DELIVER_LINT_BINS),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/deliver/lint-bins)
BENCH_FLAGS ?=
# Downloaded test and image inputs (busybox-static, the citest npm tools), outside the clone too.
DELIVER_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/deliver
export DELIVER_CACHE
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/deliverhq/deliver/step.version=$(VERSION)
TEST_FLAGS ?= -race -shuffle=on -count=1 -timeout=40m

.PHONY: help build test lint lint-bins k8s-bins gitea-bins flux-bins demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/deliver (static)
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags "$(LDFLAGS)" -o bin/deliver .

test: k8s-bins gitea-bins flux-bins bench-bins test-deps lint ## run every test (-race) against real git, registry, Gitea and Kubernetes servers and the Flux controllers (includes bench-smoke)
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


k8s-bins: ## build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok (cached)
	hack/k8s-bins.sh "$(K8S_BINS)"

gitea-bins: ## build the Gitea server of the pull-request tests from the Go module proxy (cached)
	hack/gitea-bins.sh "$(GITEA_BINS)"

demo: k8s-bins gitea-bins flux-bins build ## run deliver against a local git server, registry, control plane, Gitea forge and Flux controllers, and tell the story
	$(GO) run ./hack/demo --deliver bin/deliver

clean: ## remove build output
	rm -rf bin

.PHONY: image cross test-deps citest-tools image-deps release

IMAGE_DIR ?= bin/image
IMAGE_PUSH ?=
# The image's platforms: the static binary cross-compiles, busybox-static comes per architecture.
# Builds are reproducible: -trimpath, no VCS stamp (the version is stamped with -X), so the same
# commit gives the same binary and image digest whatever the state of the work tree.
IMAGE_ARCHES ?= amd64 arm64

cross: ## build bin/linux-<arch>/deliver (static) for each of IMAGE_ARCHES
	@set -e; for arch in $(IMAGE_ARCHES); do \
	  echo "build linux/$$arch"; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -buildvcs=false -ldflags "$(LDFLAGS)" -o bin/linux-$$arch/deliver . ; \
	done

image: cross image-deps ## build the multi-platform image without Docker: an OCI index in the OCI layout bin/image (IMAGE_PUSH="REF..." also pushes it); prints its digest
	$(GO) run ./hack/image $(foreach arch,$(IMAGE_ARCHES),--deliver bin/linux-$(arch)/deliver) --out $(IMAGE_DIR) --version $(VERSION) $(foreach ref,$(IMAGE_PUSH),--push $(ref))

test-deps: ## install what the tests need beyond Go and git (Debian packages, busybox-static, the citest npm tools; cached)
	hack/test-deps.sh packages busybox citest

citest-tools: ## install the pinned CI validators (action-validator, gitlab-ci-local) from hack/citest/package-lock.json (cached)
	hack/test-deps.sh packages citest

image-deps: ## fetch Debian's busybox-static for each image platform (cached)
	hack/test-deps.sh packages busybox

RELEASE_IMAGE ?= ghcr.io/deliverhq/deliver
RELEASE_REMOTE ?=

release: ## release the tag VERSION=vX.Y.Z checked out: push the image to RELEASE_IMAGE, pin action.yml and the GitLab files to its digest, commit, move the tags (RELEASE_REMOTE=origin pushes them)
	hack/release.sh "$(VERSION)" "$(RELEASE_IMAGE)" "$(RELEASE_REMOTE)"

.PHONY: bench bench-bins bench-smoke stress

bench-bins: ## build the kustomize CLI for the benchmark baseline (cached, like k8s-bins)
	hack/bench-bins.sh "$(BENCH_BINS)"

bench: k8s-bins flux-bins bench-bins build ## benchmark deliver against the scripted baseline (P1-P5) and through Flux (P6), and write BENCHMARKS.md; BENCH_FLAGS=--latency=20ms or --only=p6
	$(GO) run ./bench --deliver bin/deliver --write BENCHMARKS.md $(BENCH_FLAGS)

bench-smoke: k8s-bins flux-bins bench-bins ## every benchmark scenario at tiny sizes, checking correctness only (go test ./bench; part of make test)
	$(GO) test -count=1 -run 'TestSmoke|TestWriteSection|TestParsePhases' ./bench

stress: k8s-bins bench-bins build ## contention at 32 pipelines x 20 trials: zero lost, linear history, every commit renders; into BENCHMARKS.md
	$(GO) run ./bench --deliver bin/deliver --stress --write BENCHMARKS.md $(BENCH_FLAGS)

.PHONY: fuzz

FUZZTIME ?= 20s

fuzz: ## run every fuzz target in the module for FUZZTIME each (default 20s, or a count like 5000x), one after another (hack/fuzz.sh)
	@GO="$(GO)" hack/fuzz.sh "$(FUZZTIME)"
