// Package crd embeds the TrustedRegistry CustomResourceDefinition, so that the signet
// binary can validate and default manifests offline exactly as the apiserver does.
//
// The YAML here is a copy of config/crd/bases/trust.signet.dev_trustedregistries.yaml
// (go:embed cannot reach outside the package directory). `make manifests` refreshes it; so
// does `go generate ./internal/cli/crd`. TestEmbeddedCRDIsCurrent fails when the two differ.
package crd

import _ "embed" // for go:embed

//go:generate cp ../../../config/crd/bases/trust.signet.dev_trustedregistries.yaml trust.signet.dev_trustedregistries.yaml

// TrustedRegistryYAML is the trust.signet.dev TrustedRegistry CRD manifest.
//
//go:embed trust.signet.dev_trustedregistries.yaml
var TrustedRegistryYAML []byte

// SourcePath is where the embedded YAML is copied from, relative to the repository root.
const SourcePath = "config/crd/bases/trust.signet.dev_trustedregistries.yaml"
