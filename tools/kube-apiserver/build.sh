#!/bin/sh
# Builds kube-apiserver for the end-to-end tests once per machine into
# ~/.cache/otelcol-ebpf/kube-apiserver (or $1), outside any clone so that
# later clones and CI runs on the machine reuse it. Does nothing when that
# binary is already there at the version go.mod pins. A cold build takes
# about 20 minutes on 2 cores.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/otelcol-ebpf/kube-apiserver}

cd "$here"
version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
if [ -x "$out" ] && [ "$("$out" --version 2>/dev/null)" = "Kubernetes $version" ]; then
	exit 0
fi
major=$(echo "$version" | cut -d. -f1 | tr -d v)
minor=$(echo "$version" | cut -d. -f2)
mkdir -p "$(dirname "$out")"
echo "building kube-apiserver $version into $out (about 20 min cold)" >&2
CGO_ENABLED=0 go build -trimpath -o "$out.tmp" \
	-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor" \
	k8s.io/kubernetes/cmd/kube-apiserver
mv "$out.tmp" "$out"
