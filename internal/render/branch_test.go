package render

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// TestSharedBranchStableWhenASignerSetGrows: a registry that joins the signer set of
// others (same key), before or after them in the list, leaves their branches as they were.
// Each registry whose branch changes is reconciled and its status written again.
func TestSharedBranchStableWhenASignerSetGrows(t *testing.T) {
	key := testKey(t, "ci", 1, v1alpha1.KeyActive)
	in := func(name string) Input {
		tr := registry(name, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Images = patterns("registry.example.com/" + name + "/*")
			s.Namespaces.Names = []string{"production"}
		})
		tr.UID = types.UID(name + "-uid")
		return Input{Registry: tr, Keys: []Key{key}, Engine: v1alpha1.EngineImageValidatingPolicy}
	}
	before, err := RenderShared([]Input{in("team-a"), in("team-b")})
	if err != nil {
		t.Fatal(err)
	}
	after, err := RenderShared([]Input{in("team-0"), in("team-a"), in("team-b"), in("team-c")})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"team-a", "team-b"} {
		if b, a := before.Placements[name].Branch, after.Placements[name].Branch; a != b || b == "" {
			t.Errorf("%s: branch %q, then %q after team-c joined its signer set", name, b, a)
		}
	}
	if b := after.Placements["team-c"].Branch; b != "registries entry team-c (signer set 0)" {
		t.Errorf("team-c: branch %q", b)
	}
}
