#!/usr/bin/env bash
# Regenerates the OLM bundle (bundle/, bundle.Dockerfile) for VERSION from config/:
#
#   VERSION=0.1.0 hack/generate-bundle.sh
#
# Optional: OPERATOR_IMG (default ghcr.io/signet-operator/signet:v$VERSION; deliberately not
# IMG, the development image of `make deploy`), CHANNELS and
# DEFAULT_CHANNEL (default candidate), REPLACES (e.g. signet.v0.1.0), CREATED_AT (RFC 3339;
# omitted by default so that regenerating gives identical bytes). Validate with
# hack/validate-bundle.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/packaging-lib.sh"
root="$(repo_root)"
ensure_kustomize
: "${VERSION:?set VERSION, e.g. VERSION=0.1.0}"
version="${VERSION#v}"
args=(--version "$version" --output-dir "$root/bundle" --dockerfile "$root/bundle.Dockerfile"
	--icon "$root/config/manifests/bases/signet-icon.svg"
	--channels "${CHANNELS:-candidate}" --default-channel "${DEFAULT_CHANNEL:-candidate}")
[[ -n "${OPERATOR_IMG:-}" ]] && args+=(--image "$OPERATOR_IMG")
[[ -n "${REPLACES:-}" ]] && args+=(--replaces "$REPLACES")
[[ -n "${CREATED_AT:-}" ]] && args+=(--created-at "$CREATED_AT")
manifests="$(mktemp)"
trap 'rm -f "$manifests"' EXIT
"$KUSTOMIZE" build "$root/config/manifests" >"$manifests"
(cd "$root" && go run ./hack/generate-bundle "${args[@]}" --input "$manifests")
echo "bundle $version written to bundle/ and bundle.Dockerfile" >&2
