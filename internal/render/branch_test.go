package render

import (
	"regexp"
	"strings"
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
	if b, a := after.Placements["team-c"].Branch, after.Placements["team-a"].Branch; !regexp.MustCompile(`^registries entry team-c \(signer set [0-9a-f]{8}\)$`).MatchString(b) ||
		strings.TrimPrefix(b, "registries entry team-c") != strings.TrimPrefix(a, "registries entry team-a") {
		t.Errorf("team-c: branch %q (team-a, same signers: %q)", b, a)
	}

	// A registry with other signers that sorts first leaves the others' branches too.
	other := in("team-00")
	other.Keys = []Key{testKey(t, "ci", 2, v1alpha1.KeyActive)}
	again, err := RenderShared([]Input{other, in("team-0"), in("team-a"), in("team-b"), in("team-c")})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"team-0", "team-a", "team-b", "team-c"} {
		if b, a := after.Placements[name].Branch, again.Placements[name].Branch; a != b {
			t.Errorf("%s: branch %q, then %q after a registry with other signers joined", name, b, a)
		}
	}
	if again.Placements["team-00"].Branch == "" || strings.TrimPrefix(again.Placements["team-00"].Branch, "registries entry team-00") == strings.TrimPrefix(again.Placements["team-0"].Branch, "registries entry team-0") {
		t.Errorf("team-00 has other signers: %q, team-0 %q", again.Placements["team-00"].Branch, again.Placements["team-0"].Branch)
	}
}
