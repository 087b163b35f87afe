package render

import (
	"fmt"
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

// TestSharedPlacementKeptAsAGroupGrows: as a group outgrows one policy, registries already
// in a policy stay there (RenderSharedKeeping with the live placements) and only new ones
// spread; by the hash alone about half of them would move to the new policy, and each
// move rewrites a status.
func TestSharedPlacementKeptAsAGroupGrows(t *testing.T) {
	defer func(n int) { maxSharedRegistries = n }(maxSharedRegistries)
	maxSharedRegistries = 6
	key := testKey(t, "ci", 1, v1alpha1.KeyActive)
	in := func(i int) Input {
		name := fmt.Sprintf("team-%02d", i)
		tr := registry(name, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Images = patterns("registry.example.com/" + name + "/*")
			s.Namespaces.Names = []string{"production"}
		})
		tr.UID = types.UID(name + "-uid")
		return Input{Registry: tr, Keys: []Key{key}, Engine: v1alpha1.EngineImageValidatingPolicy}
	}
	var ins []Input
	for i := range 5 {
		ins = append(ins, in(i))
	}
	before, err := RenderShared(ins)
	if err != nil {
		t.Fatal(err)
	}
	if len(before.Policies) != 1 {
		t.Fatalf("%d policies for 5 registries", len(before.Policies))
	}
	previous := map[string]string{}
	for name, p := range before.Placements {
		previous[name] = p.Policy
	}
	for i := 5; i < 11; i++ {
		ins = append(ins, in(i))
	}
	kept, err := RenderSharedKeeping(ins, previous)
	if err != nil {
		t.Fatal(err)
	}
	hashed, err := RenderShared(ins)
	if err != nil {
		t.Fatal(err)
	}
	if len(kept.Policies) != 2 || len(hashed.Policies) != 2 {
		t.Fatalf("%d and %d policies for 11 registries, want 2", len(kept.Policies), len(hashed.Policies))
	}
	movedByHash := 0
	for name, was := range previous {
		if p := kept.Placements[name]; p.Policy != was || p.Branch != before.Placements[name].Branch {
			t.Errorf("%s moved from %s to %s (%q)", name, was, p.Policy, p.Branch)
		}
		if hashed.Placements[name].Policy != was {
			movedByHash++
		}
	}
	if movedByHash == 0 {
		t.Error("by the hash alone no registry moved: the test shows nothing")
	}
	// every registry is in exactly one policy, none over the limit
	count := map[string]int{}
	for _, p := range kept.Placements {
		count[p.Policy]++
	}
	for policy, n := range count {
		if n > maxSharedRegistries {
			t.Errorf("%s holds %d registries, more than %d", policy, n, maxSharedRegistries)
		}
	}
	if len(kept.Placements) != len(ins) {
		t.Errorf("%d placements for %d registries", len(kept.Placements), len(ins))
	}
}
