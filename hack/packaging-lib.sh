# Shared helpers of hack/build-installer.sh, hack/deploy.sh and hack/generate-bundle.sh.
# Source it; it defines functions only.

# repo_root: the repository root (where go.mod of github.com/signet-operator/signet is).
repo_root() {
	cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd
}

# ensure_kustomize: sets KUSTOMIZE to an absolute path of a kustomize binary, building the
# version pinned in hack/tools/codegen into bin/ when neither $KUSTOMIZE nor bin/kustomize
# exists.
ensure_kustomize() {
	local root
	root="$(repo_root)"
	KUSTOMIZE="${KUSTOMIZE:-$root/bin/kustomize}"
	if [[ ! -x "$KUSTOMIZE" ]]; then
		echo "building kustomize (pinned in hack/tools/codegen) into $KUSTOMIZE" >&2
		(cd "$root/hack/tools/codegen" && go build -o "$KUSTOMIZE" sigs.k8s.io/kustomize/kustomize/v5)
	fi
	case "$KUSTOMIZE" in /*) ;; *) KUSTOMIZE="$PWD/$KUSTOMIZE" ;; esac
}

# render_default IMG: prints the complete installation (config/default) with the operator
# image set to IMG, without touching the committed config/ (it edits a temporary copy).
render_default() (
	local img="$1" root tmp
	root="$(repo_root)"
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	cp -R "$root/config" "$tmp/config"
	if [[ -n "$img" ]]; then
		(cd "$tmp/config/manager" && "$KUSTOMIZE" edit set image "signet=$img")
	fi
	"$KUSTOMIZE" build "$tmp/config/default"
)
