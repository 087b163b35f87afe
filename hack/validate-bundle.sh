#!/usr/bin/env bash
# Validates bundle/ and bundle.Dockerfile with the operator-framework/api validators (what
# `operator-sdk bundle validate ./bundle --select-optional suite=operatorframework` runs) plus
# Signet's own checks, and fails on any error or warning. The validators live in the nested
# module hack/tools/validate-bundle so that operator-framework/api never enters the operator's go.mod.
#
#   hack/validate-bundle.sh            # validate the committed bundle
#   hack/validate-bundle.sh DIR [DOCKERFILE]
#
# Also runs that module's tests, which prove every validator still detects what it should.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/packaging-lib.sh"
root="$(repo_root)"
dir="$(cd "${1:-$root/bundle}" && pwd)"
dockerfile="${2:-$root/bundle.Dockerfile}"
case "$dockerfile" in /*) ;; *) dockerfile="$PWD/$dockerfile" ;; esac
cd "$root/hack/tools/validate-bundle"
go run . --dockerfile "$dockerfile" --k8s-version "${K8S_VERSION:-1.37}" "$dir"
if [[ -z "${1:-}" ]]; then
	go test -count=1 .
fi
