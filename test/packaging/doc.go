// Package packaging tests how Signet is installed: the kustomize configuration in config/
// (what `make deploy` and dist/install.yaml apply), the least-privilege RBAC it grants,
// checked with SubjectAccessReviews against a real kube-apiserver, the OLM bundle in bundle/
// (up to date, reproducible, valid), the Helm chart in charts/signet (rendered with the Helm Go
// SDK, identical to config/, lint-clean, server-side dry-run applied) and the Dockerfile.
//
//	go test ./test/packaging/...            # needs bin/k8s (make control-plane)
//	go test -short ./test/packaging/...     # skips the operator-framework bundle validators
package packaging
