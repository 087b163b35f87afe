package render

import (
	"fmt"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// TestPlacementsOfReadsBackRenderShared: what PlacementsOf reads from each shared policy is
// exactly the placements RenderShared returned for the registries in that policy.
func TestPlacementsOfReadsBackRenderShared(t *testing.T) {
	key := testKey(t, "ci", 1, v1alpha1.KeyActive)
	var ins []Input
	for i, engine := range []v1alpha1.Engine{v1alpha1.EngineImageValidatingPolicy, v1alpha1.EngineClusterPolicy, v1alpha1.EngineImageValidatingPolicy} {
		tr := registry(fmt.Sprintf("team-%d", i), func(s *v1alpha1.TrustedRegistrySpec) {
			s.Images = patterns(fmt.Sprintf("ghcr.io/team-%d/*", i))
		})
		tr.UID = types.UID(fmt.Sprintf("uid-%d", i))
		ins = append(ins, Input{Registry: tr, Keys: []Key{key}, Engine: engine})
	}
	res, err := RenderShared(ins)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Placement{}
	for _, p := range res.Policies {
		for name, pl := range PlacementsOf(p) {
			got[name] = pl
		}
	}
	if !reflect.DeepEqual(got, res.Placements) {
		t.Errorf("PlacementsOf read\n%v\nRenderShared placed\n%v", got, res.Placements)
	}
	hashes := InputHashesOf(res.Policies[0])
	if len(hashes) == 0 {
		t.Fatal("InputHashesOf found no registry")
	}
	for name, h := range hashes {
		if h != res.Placements[name].Hash {
			t.Errorf("InputHashesOf(%s)[%s] = %q, want %q", res.Policies[0].GetName(), name, h, res.Placements[name].Hash)
		}
	}
	for _, bad := range []map[string]string{nil, {AnnotationRegistries: "not json"}} {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		u.SetAnnotations(bad)
		if PlacementsOf(u) != nil || InputHashesOf(u) != nil {
			t.Errorf("annotations %v: want nil placements", bad)
		}
	}
}
