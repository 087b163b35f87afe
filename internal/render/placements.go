package render

import (
	"encoding/json"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// PlacementsOf reads back the AnnotationRegistries of a shared policy (what RenderShared
// wrote): the placement of each registry it holds. It returns nil when the annotation is
// missing or not valid JSON.
func PlacementsOf(u *unstructured.Unstructured) map[string]Placement {
	raw := u.GetAnnotations()[AnnotationRegistries]
	m := map[string]string{}
	if raw == "" || json.Unmarshal([]byte(raw), &m) != nil {
		return nil
	}
	out := make(map[string]Placement, len(m))
	for name, v := range m {
		hash, branch, _ := strings.Cut(v, " ")
		out[name] = Placement{Kind: u.GetKind(), Policy: u.GetName(), Branch: branch, Hash: hash}
	}
	return out
}

// InputHashesOf is PlacementsOf reduced to the input hash of each registry.
func InputHashesOf(u *unstructured.Unstructured) map[string]string {
	pl := PlacementsOf(u)
	if pl == nil {
		return nil
	}
	out := make(map[string]string, len(pl))
	for name, p := range pl {
		out[name] = p.Hash
	}
	return out
}
