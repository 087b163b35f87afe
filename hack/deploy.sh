#!/usr/bin/env bash
# Installs Signet into the cluster of the current kubeconfig, or removes it.
#
#   hack/deploy.sh install     # the CRD only (config/crd)
#   hack/deploy.sh uninstall   # the CRD only; deletes every TrustedRegistry!
#   IMG=... hack/deploy.sh deploy     # everything in config/default, with image IMG, and
#                                     # config/admission where the cluster serves it (≥ 1.36)
#   hack/deploy.sh undeploy    # everything in config/default, CRD included, and config/admission
#
# uninstall and undeploy first delete every TrustedRegistry and wait (DELETE_TIMEOUT, default
# 120s) until the running operator has taken each out of Kyverno's policies (its finalizer),
# and only then remove the operator and the CRD: the safe order of README.md, "Uninstall".
# If the operator is not running, the wait times out and nothing else is removed (the
# policies keep enforcing); README.md says how to clean up by hand.
#
# KUBECTL defaults to kubectl on PATH, else bin/k8s/kubectl. Apply is server-side under the
# field manager signet-deploy; deletes ignore objects that are already gone unless
# IGNORE_NOT_FOUND=false.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/packaging-lib.sh"
root="$(repo_root)"
ensure_kustomize
if [[ -z "${KUBECTL:-}" ]]; then
	if command -v kubectl >/dev/null 2>&1; then KUBECTL=kubectl; else KUBECTL="$root/bin/k8s/kubectl"; fi
fi
ignore="${IGNORE_NOT_FOUND:-true}"
apply() { "$KUBECTL" apply --server-side --field-manager=signet-deploy -f -; }
delete() { "$KUBECTL" delete --ignore-not-found="$ignore" --wait=false -f -; }

delete_registries() {
	if ! "$KUBECTL" get crd trustedregistries.trust.signet.dev >/dev/null 2>&1; then
		return 0
	fi
	if ! "$KUBECTL" delete trustedregistries.trust.signet.dev --all --wait=true --timeout="${DELETE_TIMEOUT:-120s}"; then
		echo "TrustedRegistries are still being deleted: is the operator running? Nothing else was removed." >&2
		echo "See README.md, \"Uninstall\", to clean up without the operator." >&2
		exit 1
	fi
}

# config/admission needs admissionregistration.k8s.io/v1 MutatingAdmissionPolicy
# (Kubernetes ≥ 1.36); Signet works without it (it then adds its finalizer itself).
serves_admission() {
	"$KUBECTL" api-resources --api-group=admissionregistration.k8s.io -o name 2>/dev/null |
		grep -qx 'mutatingadmissionpolicies.admissionregistration.k8s.io'
}

case "${1:-}" in
install) "$KUSTOMIZE" build "$root/config/crd" | apply ;;
uninstall) delete_registries && "$KUSTOMIZE" build "$root/config/crd" | delete ;;
deploy)
	render_default "${IMG:-}" | apply
	if serves_admission; then "$KUSTOMIZE" build "$root/config/admission" | apply; fi
	;;
undeploy)
	delete_registries
	if serves_admission; then "$KUSTOMIZE" build "$root/config/admission" | delete; fi
	"$KUSTOMIZE" build "$root/config/default" | delete
	;;
*)
	echo "usage: $0 install|uninstall|deploy|undeploy" >&2
	exit 2
	;;
esac
