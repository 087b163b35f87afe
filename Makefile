# Signet: build, generate, test. Every tool is pinned in a nested module under hack/tools
# and built from the Go module proxy into bin/ (git-ignored); nothing is downloaded elsewhere.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

ROOT        := $(shell pwd)
BIN         := $(ROOT)/bin
K8S_BIN     := $(BIN)/k8s
KYVERNO_BIN := $(BIN)/kyverno
CONTROLLER_GEN := $(BIN)/controller-gen
KUSTOMIZE   := $(BIN)/kustomize
GOLANGCI_LINT := $(BIN)/golangci-lint
IMG         ?= ghcr.io/signet-operator/signet:dev
VERSION     ?= 0.1.0
BUNDLE_IMG  ?= ghcr.io/signet-operator/signet-bundle:v$(VERSION)

export KUBEBUILDER_ASSETS := $(K8S_BIN)

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Regenerate the CRD and RBAC manifests from the Go markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/...;./controllers/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	cp config/crd/bases/trust.signet.dev_trustedregistries.yaml internal/cli/crd/

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Regenerate deepcopy code.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: chart
chart: manifests $(KUSTOMIZE) ## Regenerate the Helm chart's templates (charts/signet/templates/generated-*.yaml) from config/.
	KUSTOMIZE=$(KUSTOMIZE) go run ./hack/chart

.PHONY: verify
verify: manifests generate bundle chart ## Fail if generated files are stale (run `make manifests generate bundle chart` and commit).
	@if [ -n "$$(git status --porcelain -- api config bundle charts internal/cli/crd)" ]; then \
		echo "generated files are stale; run 'make manifests generate bundle chart' and commit:"; \
		git status --porcelain -- api config bundle charts internal/cli/crd; git --no-pager diff --stat -- api config bundle charts internal/cli/crd; exit 1; fi
	@echo "generated files are up to date"

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (v2, pinned).
	$(GOLANGCI_LINT) run ./...

##@ Demo

.PHONY: demo
demo: control-plane kyverno-bins ## The closed loop on this machine: control plane, real Kyverno, registry, signed images, Signet (first run builds tools, ~12 + ~6 min on 2 cores).
	go run ./hack/demo $(DEMO_FLAGS)

##@ Test

.PHONY: test
test: control-plane kyverno-bins cosign-cli verify vet ## Every test: unit, envtest and the closed loop with the real Kyverno (first run builds them, ~20 min).
	go test -count=1 -timeout 20m ./...
	go test -tags e2e -count=1 -timeout 25m ./test/e2e/ ./internal/localstack/ ./test/kyvernocli/

.PHONY: test-e2e
test-e2e: control-plane kyverno-bins cosign-cli ## Only the closed-loop e2e (real Kyverno out-of-cluster, in-process OCI registry).
	go test -tags e2e -count=1 -timeout 25m -v ./test/e2e/ ./internal/localstack/ ./test/kyvernocli/

.PHONY: test-unit
test-unit: ## Only the pure unit tests (no control plane).
	go test -count=1 -short ./internal/... ./controllers/...

##@ Build

COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null)
PLATFORMS   ?= linux/amd64,linux/arm64
STAMP       := -X github.com/signet-operator/signet/internal/cli.Version=v$(VERSION) -X github.com/signet-operator/signet/internal/cli.Commit=$(COMMIT)

.PHONY: build
build: ## Build the operator binary into bin/signet (`signet version` shows v$(VERSION) and the commit).
	CGO_ENABLED=0 go build -trimpath -ldflags "$(STAMP)" -o $(BIN)/signet .

.PHONY: release
release: manifests $(KUSTOMIZE) ## Without Docker: the operator image as an OCI layout in dist/oci, dist/install.yaml pinned by digest; REGISTRY=ghcr.io/yourorg also pushes REGISTRY/signet:v$(VERSION).
	KUSTOMIZE=$(KUSTOMIZE) go run ./hack/release -version v$(VERSION) -commit "$(COMMIT)" -platforms $(PLATFORMS) $(if $(REGISTRY),-registry $(REGISTRY))

.PHONY: run
run: manifests ## Run the operator against the cluster in the current kubeconfig.
	go run . manager --trust-namespace=$${TRUST_NAMESPACE:-signet-system}

##@ Benchmarks

.PHONY: bench
bench: control-plane ## Benchmarks: SSA ceiling, zero writes, convergence, rotation latency, memory (~7 min); JSON in bench/results/.
	go run ./test/bench/controller

.PHONY: bench-admission
bench-admission: control-plane kyverno-bins ## Pod admission latency with N = 1, 30, 100, 300 TrustedRegistries per engine, real Kyverno (~5 min); JSON in bench/results/.
	go run ./test/bench/admission $(BENCH_FLAGS)

.PHONY: bench-kyverno-compile
bench-kyverno-compile: ## Kyverno's per-request compile + evaluation of a hand-written vs Signet's shared ImageValidatingPolicy, in-process (~1 min; test/bench/kyvernocompile).
	cd test/bench/kyvernocompile && go test -count=1 -run TestPolicies . && go test -run XXX -bench . -benchtime 30x .

.PHONY: bench-quick
bench-quick: control-plane ## Benchmark smoke run (100 registries, short windows, ~2 min).
	go run ./test/bench/controller -quick

##@ Deployment

.PHONY: build-installer
build-installer: manifests $(KUSTOMIZE) ## Write dist/install.yaml for IMG.
	IMG=$(IMG) KUSTOMIZE=$(KUSTOMIZE) hack/build-installer.sh

.PHONY: install
install: manifests $(KUSTOMIZE) ## Install the CRD into the current cluster.
	KUSTOMIZE=$(KUSTOMIZE) hack/deploy.sh install

.PHONY: uninstall
uninstall: $(KUSTOMIZE) ## Remove the CRD (deletes every TrustedRegistry).
	KUSTOMIZE=$(KUSTOMIZE) hack/deploy.sh uninstall

.PHONY: deploy
deploy: manifests $(KUSTOMIZE) ## Deploy the operator with image IMG to the current cluster.
	IMG=$(IMG) KUSTOMIZE=$(KUSTOMIZE) hack/deploy.sh deploy

.PHONY: undeploy
undeploy: $(KUSTOMIZE) ## Remove operator, RBAC, namespace and CRD.
	KUSTOMIZE=$(KUSTOMIZE) hack/deploy.sh undeploy

.PHONY: docker-build
docker-build: ## Build the operator image IMG (needs Docker; without it: make release).
	docker build --build-arg VERSION=v$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMG) .

##@ OLM bundle

.PHONY: bundle
bundle: manifests $(KUSTOMIZE) ## Regenerate bundle/ and bundle.Dockerfile for VERSION.
	VERSION=$(VERSION) KUSTOMIZE=$(KUSTOMIZE) hack/generate-bundle.sh

.PHONY: bundle-validate
bundle-validate: ## Validate bundle/ with the operator-framework validators (suite=operatorframework); fails on warnings.
	hack/validate-bundle.sh

.PHONY: bundle-build
bundle-build: ## Build the bundle image.
	docker build -f bundle.Dockerfile -t $(BUNDLE_IMG) .

##@ Tools (built from the Go module proxy, cached in bin/)

.PHONY: kyverno-bins
kyverno-bins: ## Build Kyverno v1.19.1 (admission controller, reports-controller, CLI) into bin/kyverno (skipped when present).
	@hack/build-kyverno.sh

.PHONY: cosign-cli
cosign-cli: ## Build the cosign CLI v2.6.5 into bin/cosign-cli (skipped when present); the e2e signs and attests with it.
	@hack/build-cosign.sh

.PHONY: control-plane
control-plane: ## Build kube-apiserver, kube-controller-manager, kubectl and etcd into bin/k8s (skipped when present).
	@hack/build-control-plane.sh

$(CONTROLLER_GEN):
	cd hack/tools/codegen && go build -o $@ sigs.k8s.io/controller-tools/cmd/controller-gen

$(KUSTOMIZE):
	cd hack/tools/codegen && go build -o $@ sigs.k8s.io/kustomize/kustomize/v5

$(GOLANGCI_LINT):
	cd hack/tools/lint && go build -o $@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint
