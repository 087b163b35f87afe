// Package deps pins the operator's planned dependencies while the packages that use them
// are being written in parallel. Removed once every import has a real user.
package deps

import (
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/random"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/kyverno/api/api/policies.kyverno.io/v1"
	_ "github.com/kyverno/kyverno/api/policyreport/v1alpha2"
	_ "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	_ "github.com/sigstore/cosign/v2/pkg/cosign"
	_ "github.com/sigstore/cosign/v2/pkg/oci/mutate"
	_ "github.com/sigstore/cosign/v2/pkg/oci/remote"
	_ "github.com/sigstore/cosign/v2/pkg/oci/static"
	_ "github.com/sigstore/sigstore/pkg/cryptoutils"
	_ "sigs.k8s.io/controller-runtime"
	_ "sigs.k8s.io/controller-runtime/pkg/envtest"
	_ "sigs.k8s.io/yaml"
)
