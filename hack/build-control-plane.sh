#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl and etcd from the Go module
# proxy into bin/k8s (see hack/tools/envtest/go.mod). Does nothing when they are present.
# First run: about 12 minutes on 2 cores; afterwards seconds (Go build cache).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${K8S_BIN_DIR:-$root/bin/k8s}
k8s_version=v1.37.2
bins=(kube-apiserver kube-controller-manager kubectl etcd)
missing=()
for b in "${bins[@]}"; do [ -x "$out/$b" ] || missing+=("$b"); done
[ ${#missing[@]} -eq 0 ] && exit 0
mkdir -p "$out"
echo "building the local control plane (${missing[*]}) into $out; first time takes ~12 min on 2 cores" >&2
cd "$root/hack/tools/envtest"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version"
for b in "${missing[@]}"; do
  start=$(date +%s)
  case $b in
    etcd) CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3 ;;
    *) CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$b.tmp" "k8s.io/kubernetes/cmd/$b" ;;
  esac
  mv "$out/$b.tmp" "$out/$b"
  echo "  built $b in $(( $(date +%s) - start ))s" >&2
done
