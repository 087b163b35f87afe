//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
)

// TestSignetForeignEditReverted is the attack of a hand edit that opts Pods out of the
// shared policy: an objectSelector on the ImageValidatingPolicy, an exclude on the
// ClusterPolicy rules of the registry. Signet removes it within a reconcile, and Kyverno
// denies the unsigned Pod labelled to bypass; Kyverno itself never changes the spec, so
// Signet does not fight it (no DriftReverted events after the one).
func TestSignetForeignEditReverted(t *testing.T) {
	t.Parallel()
	s := newScenario(t, 5*time.Minute)
	s.namespaces("tamper")
	key := s.keyPair()
	s.keySecret("tamper-key", key)
	unsigned := s.push(s.reg, "tamper/app")
	for _, e := range signetEngines {
		t.Run(e.kind, func(t *testing.T) {
			s := s.sub(t)
			name := "tamper-" + e.short
			s.create(s.registry(name, "tamper", e.engine, []string{"tamper"}, keyRef("ci", "tamper-key")))
			got := s.waitReady(name, e.kind)
			policy := got.Status.Policy.Name
			s.waitEnforced(newPod("tamper", "probe-"+e.short, unsigned))

			gvr := policyGVR(policyGVK(e.kind))
			live, err := s.stack.Dynamic().Resource(gvr).Get(s.ctx, policy, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var patch []map[string]any
			if e.kind == "ImageValidatingPolicy" {
				patch = []map[string]any{{"op": "add", "path": "/spec/matchConstraints/objectSelector", "value": map[string]any{
					"matchExpressions": []any{map[string]any{"key": "bypass", "operator": "DoesNotExist"}},
				}}}
			} else {
				rules, _, _ := unstructured.NestedSlice(live.Object, "spec", "rules")
				for i, r := range rules {
					if n := r.(map[string]any)["name"].(string); strings.HasSuffix(n, "."+name) {
						patch = append(patch, map[string]any{"op": "add", "path": fmt.Sprintf("/spec/rules/%d/exclude", i), "value": map[string]any{
							"any": []any{map[string]any{"resources": map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"bypass": "yes"}}}}},
						}})
					}
				}
			}
			raw, _ := json.Marshal(patch)
			start := time.Now()
			if _, err := s.stack.Dynamic().Resource(gvr).Patch(s.ctx, policy, types.JSONPatchType, raw, metav1.PatchOptions{FieldManager: "kubectl-patch"}); err != nil {
				t.Fatalf("patching %s: %v", policy, err)
			}
			bypass := newPod("tamper", "bypass-"+e.short, unsigned)
			bypass.Labels = map[string]string{"bypass": "yes"}
			s.waitForWithin(30*time.Second, "the opt-out removed from "+policy, func() (bool, error) {
				p, err := s.stack.Dynamic().Resource(gvr).Get(s.ctx, policy, metav1.GetOptions{})
				if err != nil {
					return false, err
				}
				b, _ := json.Marshal(p.Object["spec"])
				return !strings.Contains(string(b), "bypass"), nil
			})
			reverted := time.Since(start)
			s.waitForWithin(30*time.Second, "Kyverno denying the labelled unsigned Pod", func() (bool, error) {
				return s.createPod(bypass, true) != nil, nil
			})
			t.Logf("%s: opt-out removed after %v, labelled unsigned Pod denied after %v", policy, reverted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
			s.denied("unsigned image labelled bypass=yes", bypass, sharedPolicyPrefix(e.kind))
			if tr := s.get(name); condStatus(tr, trustv1alpha1.ConditionReady) != "True" {
				t.Errorf("%s is not Ready after the revert", name)
			}

			// Kyverno processes the policy (status, webhooks) without touching its spec:
			// nothing else is reverted.
			count := func() int {
				list := &eventsv1.EventList{}
				if err := s.client.List(s.ctx, list); err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, ev := range list.Items {
					if ev.Regarding.Name == name && ev.Reason == "DriftReverted" {
						n++
					}
				}
				return n
			}
			var n int
			s.waitForWithin(30*time.Second, "a DriftReverted event on "+name, func() (bool, error) { n = count(); return n > 0, nil })
			time.Sleep(5 * time.Second)
			if m := count(); m != n || n != 1 {
				t.Errorf("DriftReverted events on %s: %d, then %d five seconds later; want 1 (Signet fighting Kyverno?)", name, n, m)
			}
		})
		if t.Failed() {
			return
		}
	}
}

func condStatus(tr *trustv1alpha1.TrustedRegistry, condType string) string {
	for _, c := range tr.Status.Conditions {
		if c.Type == condType {
			return string(c.Status)
		}
	}
	return ""
}
