# otelcol-ebpf. `make test` is the test command; run it as root.

GO           ?= go
OCB_VERSION  := v0.165.0
OCB          := $(shell $(GO) env GOPATH)/bin/builder
DIST         := _build/otelcol-ebpf
APT_PACKAGES := clang-19 llvm-19 nftables iproute2 curl bpftool etcd-server python3
# The kube-apiserver of the Kubernetes end-to-end test is built once per
# machine, outside the clone, so that later clones and CI runs reuse it.
KUBE_APISERVER ?= $(HOME)/.cache/otelcol-ebpf/kube-apiserver
# How much each fuzz target runs in make test, in executions: a duration
# ends in a spurious "context deadline exceeded" when the workers are starved
# at the deadline (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 100000x

# What make generate writes (bpf2go and mdatagen output). make test fails
# when it differs from git.
GENERATED := ':(glob)bpf/**/*_bpfe[lb].go' ':(glob)bpf/**/*_bpfe[lb].o' \
	receiver/ebpfreceiver/internal/metadata receiver/ebpfreceiver/documentation.md \
	':(glob)receiver/ebpfreceiver/generated_*_test.go' receiver/ebpfreceiver/README.md

# Loading eBPF programs needs root (CAP_BPF and CAP_PERFMON).
require_root = @if [ "$$(id -u)" -ne 0 ]; then \
	echo "make $@: needs root (CAP_BPF and CAP_PERFMON to load eBPF programs); you are uid $$(id -u). Try: sudo make $@" >&2; \
	exit 1; fi

.NOTPARALLEL:
.PHONY: deps generate check-includes check-generated ocb build dist-mod run test vet unit fuzz e2e e2e-k8s kube-apiserver bench clean

## deps: install the apt packages that generate and test need, if missing
deps:
	@missing=; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "deps: missing$$missing"; \
		if [ "$$(id -u)" -ne 0 ]; then echo "deps: need root to install$$missing" >&2; exit 1; fi; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

## generate: regenerate the bpf2go bindings and the mdatagen output
generate: deps
	$(GO) generate ./bpf/... ./receiver/...

## check-includes: fail if an eBPF program includes a header that is not vendored
# The programs compile with -nostdinc (see bpf/*/gen.go), so make generate
# never picks up a system header. This check runs the preprocessor without
# -nostdinc, where a system libbpf or libc header would resolve, and fails
# on any dependency outside bpf/: a header that must be vendored first
# (bpf/include/update.sh).
check-includes: deps
	@bad=$$(for c in bpf/*/*.c; do \
		clang-19 -target bpf -D__TARGET_ARCH_x86 -Ibpf/include -M -MT x "$$c" || echo "$$c:preprocessing_failed"; \
	done | tr -d '\\' | tr ' ' '\n' | grep -v -e '^$$' -e '^x:$$' -e '^bpf/' | sort -u); \
	if [ -n "$$bad" ]; then echo "eBPF programs include headers that are not vendored under bpf/:" >&2; echo "$$bad" >&2; exit 1; fi

## check-generated: fail if make generate changes committed files
check-generated: generate
	@changed=$$(git status --porcelain --untracked-files=all -- $(GENERATED)); \
	if [ -n "$$changed" ]; then \
		echo "generated files differ from git after make generate:" >&2; echo "$$changed" >&2; \
		git --no-pager diff --stat -- $(GENERATED) >&2; exit 1; \
	fi

## ocb: install the pinned collector builder if missing
ocb:
	@$(OCB) version 2>&1 | grep -qx 'ocb version $(OCB_VERSION)' || { \
		echo "installing ocb $(OCB_VERSION)"; \
		GOBIN=$(dir $(OCB)) $(GO) install go.opentelemetry.io/collector/cmd/builder@$(OCB_VERSION); }

## build: build the distribution into _build/otelcol-ebpf
# dist/go.mod and go.sum are the resolved module set (see dist-mod); -mod=mod
# lets the build add what a newer go.mod of the receiver needs.
build: ocb
	@mkdir -p _build
	cp dist/go.mod dist/go.sum _build/
	GOFLAGS="$$($(GO) env GOFLAGS) -mod=mod -buildvcs=false" $(OCB) --config builder-config.yaml --skip-get-modules
	@cmp -s dist/go.mod _build/go.mod || echo "note: dist/go.mod is out of date; run make dist-mod and commit dist/"

## dist-mod: re-resolve dist/go.mod and go.sum after changing builder-config.yaml
# ocb's own go mod tidy fails on test-only modules that are not served, so it
# is expected to fail; go mod tidy -e then resolves the rest.
dist-mod: ocb
	-$(OCB) --config builder-config.yaml --skip-compilation
	cd _build && $(GO) mod tidy -e
	mkdir -p dist && cp _build/go.mod _build/go.sum dist/
	$(MAKE) build

## run: build and run the distribution with testdata/otelcol.yaml (as root)
run:
	$(require_root)
	$(MAKE) build
	@mkdir -p out
	./$(DIST) --config testdata/otelcol.yaml

## test: check generated files, vet, unit and kernel tests, fuzz, e2e (as root)
test: deps check-includes check-generated vet unit test-kernels fuzz e2e e2e-k8s test-deploy bench-smoke

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./receiver/ebpfreceiver/

## unit: go test ./..., kernel tests included (as root)
unit:
	$(require_root)
	$(GO) test -count=1 ./...

## e2e: build the distribution and run it against real traffic (as root)
e2e: build
	$(require_root)
	$(GO) test -count=1 -tags e2e -run E2E -v ./receiver/ebpfreceiver/

## fuzz: run every fuzz target for FUZZTIME executions on top of its committed corpus
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

## kube-apiserver: build the API server of the Kubernetes e2e test once
kube-apiserver:
	tools/kube-apiserver/build.sh $(KUBE_APISERVER)

## e2e-k8s: the distribution with k8s_attributes against real etcd and kube-apiserver
e2e-k8s: build kube-apiserver
	$(require_root)
	KUBE_APISERVER=$(KUBE_APISERVER) $(GO) test -count=1 -tags e2e -run 'K8s|Cluster' -v ./receiver/ebpfreceiver/ ./internal/k8stest/

## bench: the Go benchmarks of the hot paths, then the system benchmark
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(MAKE) bench-system

clean:
	rm -rf _build out

# Capability-specific targets live in mk/.
-include mk/*.mk
