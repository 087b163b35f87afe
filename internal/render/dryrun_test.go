package render

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/internal/testenv"
)

// TestGoldensAgainstKyvernoCRDs creates every golden policy in a real kube-apiserver that
// serves Kyverno's own CRDs (from the Kyverno module in the module cache): a schema
// rejection is a renderer bug. It then applies each one for real, checks that the
// apiserver's defaulting changed none of the rendered values (so server-side apply never
// fights Kyverno's defaults) and that re-applying the same content is a no-op.
//
// Needs the control-plane binaries (bin/k8s or $KUBEBUILDER_ASSETS); skipped with -short.
func TestGoldensAgainstKyvernoCRDs(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	if _, err := testenv.AssetsDir(); err != nil {
		t.Skipf("no control-plane binaries: %v", err)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files (%v)", err)
	}
	sort.Strings(files)
	_, c := testenv.Start(t, testenv.WithKyvernoCRDs())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(data, &want.Object); err != nil {
				t.Fatal(err)
			}
			apply := func(opts ...client.ApplyOption) error {
				u := want.DeepCopy()
				return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
					append([]client.ApplyOption{client.FieldOwner(FieldOwner), client.ForceOwnership}, opts...)...)
			}
			if err := apply(client.DryRunAll); err != nil {
				t.Fatalf("server-side dry-run apply rejected: %v", err)
			}
			if err := apply(); err != nil {
				t.Fatalf("server-side apply rejected: %v", err)
			}
			live := &unstructured.Unstructured{}
			live.SetGroupVersionKind(want.GroupVersionKind())
			if err := c.Get(ctx, client.ObjectKeyFromObject(want), live); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Delete(context.Background(), live) })
			for _, field := range []string{"spec", "metadata"} {
				if diffs := notContained(field, want.Object[field], live.Object[field]); len(diffs) > 0 {
					t.Errorf("the stored object differs from the rendered one (defaulting or pruning):\n%s", strings.Join(diffs, "\n"))
				}
			}
			rv, gen := live.GetResourceVersion(), live.GetGeneration()
			if err := apply(); err != nil {
				t.Fatalf("re-apply: %v", err)
			}
			again := &unstructured.Unstructured{}
			again.SetGroupVersionKind(want.GroupVersionKind())
			if err := c.Get(ctx, client.ObjectKeyFromObject(want), again); err != nil {
				t.Fatal(err)
			}
			if again.GetResourceVersion() != rv || again.GetGeneration() != gen {
				t.Errorf("re-applying identical content changed the object (resourceVersion %s -> %s, generation %d -> %d)",
					rv, again.GetResourceVersion(), gen, again.GetGeneration())
			}
		})
	}
}

// notContained lists the places where want is not reproduced exactly in got: every map
// key of want must be in got with a contained value; lists must have the same length and
// contained elements. got may have more map keys (server-set metadata, defaults of fields
// the renderer leaves out).
func notContained(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want an object, stored %T", path, got)}
		}
		var out []string
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, ok := g[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s.%s: dropped by the apiserver (pruned: not in Kyverno's schema?)", path, k))
				continue
			}
			out = append(out, notContained(path+"."+k, w[k], gv)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: want %d items, stored %v", path, len(w), got)}
		}
		var out []string
		for i := range w {
			out = append(out, notContained(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return out
	default:
		if !reflect.DeepEqual(normaliseNumber(want), normaliseNumber(got)) {
			return []string{fmt.Sprintf("%s: rendered %v, stored %v", path, want, got)}
		}
	}
	return nil
}

func normaliseNumber(v any) any {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int32:
		return int64(n)
	case float64:
		if n == float64(int64(n)) {
			return int64(n)
		}
	}
	return v
}
