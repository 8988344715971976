# make test-deploy: the tests of deploy/ (a Go module of its own, so that
# k8s.io/api and kustomize stay out of the main module). The manifests and
# Helm values decode strictly into the Kubernetes API types and keep the
# agent's least privilege; the collector configs pass otelcol-ebpf validate;
# the Dockerfile pins go.mod's Go and the Makefile's ocb; every dashboard
# query returns data from a real Prometheus scraping the distribution under
# loopback traffic. See docs/kubernetes.md.

# What the dashboard test runs besides the distribution: Debian's Prometheus,
# setpriv (util-linux) to drop to the DaemonSet's capabilities, ip and nft
# for a lossy network namespace.
DEPLOY_APT_PACKAGES := prometheus util-linux mount iproute2 nftables

.PHONY: deploy-deps test-deploy

## deploy-deps: install the apt packages that test-deploy needs, if missing
deploy-deps:
	@missing=; for p in $(DEPLOY_APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "deploy-deps: missing$$missing"; \
		if [ "$$(id -u)" -ne 0 ]; then echo "deploy-deps: need root to install$$missing" >&2; exit 1; fi; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

## test-deploy: manifest, Helm, Dockerfile and dashboard tests (as root)
test-deploy: build deploy-deps
	$(require_root)
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 -v ./...
