//go:build e2e

package e2e

import (
	"encoding/json"
	"slices"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
)

// finalizerOwners are the field managers that own metadata.finalizers of tr.
func finalizerOwners(tr *trustv1alpha1.TrustedRegistry) ([]string, error) {
	var owners []string
	for _, e := range tr.ManagedFields {
		if e.FieldsV1 == nil {
			continue
		}
		var fields struct {
			Metadata map[string]json.RawMessage `json:"f:metadata"`
		}
		if err := json.Unmarshal(e.FieldsV1.Raw, &fields); err != nil {
			return nil, err
		}
		if _, ok := fields.Metadata["f:finalizers"]; ok {
			owners = append(owners, e.Manager+"/"+string(e.Operation))
		}
	}
	slices.Sort(owners)
	return owners, nil
}

// finalizerFromAdmission checks, for a registry just created by the scenario (tr as the
// create returned it) and Ready since, that config/admission stored it with Signet's
// finalizer and that the operator never wrote the finalizer itself: the one write per new
// registry that config/admission saves (docs/architecture.md, "The finalizer").
func (s *scenario) finalizerFromAdmission(created, ready *trustv1alpha1.TrustedRegistry) {
	s.t.Helper()
	if !slices.Contains(created.Finalizers, controllers.Finalizer) {
		s.t.Fatalf("TrustedRegistry %s was created with finalizers %v, want %s (config/admission)", created.Name, created.Finalizers, controllers.Finalizer)
	}
	atCreate, err := finalizerOwners(created)
	if err != nil {
		s.t.Fatal(err)
	}
	now, err := finalizerOwners(ready)
	if err != nil {
		s.t.Fatal(err)
	}
	// A write of the finalizer by the operator (a patch, an Update) would own it now; the
	// admission policy's own mutation is not attributed to a manager.
	if !slices.Equal(atCreate, now) {
		s.t.Fatalf("metadata.finalizers of %s owned by %v at creation and by %v once Ready: the operator wrote the finalizer", created.Name, atCreate, now)
	}
}
