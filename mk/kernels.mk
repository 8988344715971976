# make test-kernels: the kernel tests on kernels other than the host's, each
# package's test binary run as root in a qemu guest booted on that kernel
# (tools/kernels/). make unit covers the host's kernel. See
# docs/kernels.md.

# Debian kernel packages to test. A metapackage resolves to the versioned
# package it depends on, so the matrix follows Debian's updates of 6.1 LTS.
KERNELS ?= linux-image-amd64
# Downloads and unpacked kernels, shared by every clone on this machine.
KERNELS_CACHE ?= $(HOME)/.cache/otelcol-ebpf/kernels
# Every package with a *_kernel_test.go file runs in the guest (found as
# go finds packages: directories named _* or .* are not searched).
KERNEL_TEST_PKGS ?= $(sort $(patsubst %/,%,$(dir $(shell find . -mindepth 1 -type d -name '[._]*' -prune -o -name '*_kernel_test.go' -print))))
# More go test flags, such as -v or -run.
KERNEL_TEST_FLAGS ?=
# 0: static test binaries, independent of the guest's userland. 1 also
# works (the guest sees the host's libc through 9p) and reuses make unit's
# build cache: with 0, everything that imports net is compiled again.
KERNEL_TEST_CGO ?= 0
# The receiver's scale tests are skipped in the guest, and only they: under
# TCG they take 3.5 min (TestShortLivedPodsAttribution, 200 containers in 20
# pods) and over 5 min (TestChurnReturnsToBaseline, 10,000 processes and
# 100,000 connections, which also failed there on a refused connect), which
# alone would blow the matrix's 10 minute budget. They measure the
# receiver's own bookkeeping at scale, with hooks that every other receiver
# test and the bpf/* packages already load and check on the guest kernel;
# make unit runs them on the host. No other package has tests of these names.
KERNEL_TEST_SKIP ?= ^(TestShortLivedPodsAttribution|TestChurnReturnsToBaseline)$$

.PHONY: test-kernels
## test-kernels: the kernel tests on Debian's 6.1 LTS kernel under qemu (as root)
# -p 2: at most two test binaries, so at most two guests, at once.
test-kernels:
	$(require_root)
	@for k in $(KERNELS); do \
		dir=$$(tools/kernels/prepare.sh '$(KERNELS_CACHE)' $$k) || exit 1; \
		echo "== kernel tests on $$(cat $$dir/ready) ($$(basename $$dir)) under qemu"; \
		KERNEL_DIR=$$dir CGO_ENABLED=$(KERNEL_TEST_CGO) $(GO) test -count=1 -p 2 -timeout 20m \
			-exec '$(CURDIR)/tools/kernels/exec.sh' -skip '$(KERNEL_TEST_SKIP)' $(KERNEL_TEST_FLAGS) \
			$(KERNEL_TEST_PKGS) || exit 1; \
	done
