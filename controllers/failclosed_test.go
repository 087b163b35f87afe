package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
)

// foreignEdit is a hand edit of a generated policy (a JSON patch, as kubectl patch
// --type=json sends it) and the path of what it adds.
type foreignEdit struct {
	name  string
	patch func(p *unstructured.Unstructured) []map[string]any
	// field is where the edit lands, for the check that it did land and for the Event.
	field string
}

func add(path string, value any) []map[string]any {
	return []map[string]any{{"op": "add", "path": path, "value": value}}
}

// appendOrCreate adds an item to a list field, creating the list when it is absent.
func appendOrCreate(p *unstructured.Unstructured, item any, fields ...string) []map[string]any {
	path := "/" + strings.Join(fields, "/")
	if _, ok, _ := unstructured.NestedSlice(p.Object, fields...); ok {
		return add(path+"/-", item)
	}
	return add(path, []any{item})
}

var bypassSelector = map[string]any{"matchExpressions": []any{map[string]any{"key": "bypass", "operator": "DoesNotExist"}}}

var ivpEdits = []foreignEdit{
	{"objectSelector", func(*unstructured.Unstructured) []map[string]any {
		return add("/spec/matchConstraints/objectSelector", bypassSelector)
	}, "spec.matchConstraints.objectSelector"},
	{"excludeResourceRules", func(*unstructured.Unstructured) []map[string]any {
		return add("/spec/matchConstraints/excludeResourceRules", []any{map[string]any{
			"operations": []any{"CREATE"}, "apiGroups": []any{""}, "apiVersions": []any{"v1"}, "resources": []any{"pods"},
		}})
	}, "spec.matchConstraints.excludeResourceRules"},
	{"matchConditions", func(p *unstructured.Unstructured) []map[string]any {
		return appendOrCreate(p, map[string]any{"name": "bypass", "expression": "!('bypass' in object.metadata.?labels.orValue({}))"}, "spec", "matchConditions")
	}, "spec.matchConditions"},
	{"extra validation", func(p *unstructured.Unstructured) []map[string]any {
		return appendOrCreate(p, map[string]any{"expression": "true", "message": "foreign"}, "spec", "validations")
	}, "spec.validations"},
}

var cpolEdits = []foreignEdit{
	{"rule exclude", func(*unstructured.Unstructured) []map[string]any {
		return add("/spec/rules/0/exclude", map[string]any{"any": []any{map[string]any{"resources": map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"bypass": "yes"}}}}}})
	}, ".exclude"},
	{"rule celPreconditions", func(*unstructured.Unstructured) []map[string]any {
		return add("/spec/rules/0/celPreconditions", []any{map[string]any{"name": "bypass", "expression": "!('bypass' in object.metadata.?labels.orValue({}))"}})
	}, ".celPreconditions"},
	{"rule preconditions", func(*unstructured.Unstructured) []map[string]any {
		return add("/spec/rules/0/preconditions", map[string]any{"all": []any{map[string]any{"key": "{{ request.object.metadata.labels.bypass || '' }}", "operator": "NotEquals", "value": "yes"}}})
	}, ".preconditions"},
	{"extra rule", func(*unstructured.Unstructured) []map[string]any {
		return add("/spec/rules/-", map[string]any{
			"name":     "foreign",
			"match":    map[string]any{"any": []any{map[string]any{"resources": map[string]any{"kinds": []any{"Pod"}}}}},
			"validate": map[string]any{"message": "foreign", "pattern": map[string]any{"metadata": map[string]any{"name": "?*"}}},
		})
	}, "spec.rules[foreign]"},
}

// TestAdditiveDriftIsReverted: a field Signet does not render, added by hand to a
// generated policy (an opt-out such as an objectSelector, an exclusion, a precondition, or
// anything else), is removed within one reconcile, and an Event on the TrustedRegistry
// names it. Both engines, both layouts.
func TestAdditiveDriftIsReverted(t *testing.T) {
	for _, layout := range []controllers.Layout{controllers.LayoutPerRegistry, controllers.LayoutShared} {
		for _, engine := range []trustv1alpha1.Engine{trustv1alpha1.EngineImageValidatingPolicy, trustv1alpha1.EngineClusterPolicy} {
			t.Run(string(layout)+"/"+string(engine), func(t *testing.T) {
				testAdditiveDrift(t, layout, engine)
			})
		}
	}
}

func testAdditiveDrift(t *testing.T, layout controllers.Layout, engine trustv1alpha1.Engine) {
	startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: layout})
	name := "ad-" + map[controllers.Layout]string{controllers.LayoutShared: "sh", controllers.LayoutPerRegistry: "pr"}[layout] +
		"-" + map[trustv1alpha1.Engine]string{trustv1alpha1.EngineImageValidatingPolicy: "ivp", trustv1alpha1.EngineClusterPolicy: "cp"}[engine]
	create(t, keySecret(name+"-key", map[string]string{"cosign.pub": newKeyPEM(t)}),
		registry(name, func(tr *trustv1alpha1.TrustedRegistry) { tr.Spec.Policy.Engine = engine }))
	t.Cleanup(func() { deleteRegistry(t, name) })
	waitCondition(t, name, trustv1alpha1.ConditionReady, "True/Ready")

	gvk, edits := ivpGVK, ivpEdits
	if engine == trustv1alpha1.EngineClusterPolicy {
		gvk, edits = cpGVK, cpolEdits
	}
	policy := "signet-" + name
	if layout == controllers.LayoutShared {
		policy = "signet.ivp.enforce"
		if engine == trustv1alpha1.EngineClusterPolicy {
			policy = "signet.cpol.all"
		}
		waitShared(t, gvk, policy, name, name)
	}
	good, err := getPolicy(sharedClient, gvk, policy)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			// the policy as Signet wants it (other tests' registries may change a shared one)
			before := waitExact(t, gvk, policy, good)
			patch, _ := json.Marshal(e.patch(before))
			edited := before.DeepCopy()
			start := time.Now()
			if err := sharedClient.Patch(context.Background(), edited, client.RawPatch(types.JSONPatchType, patch), client.FieldOwner("kubectl-patch")); err != nil {
				t.Fatalf("patch %s: %v", patch, err)
			}
			if jsonString(edited.Object["spec"]) == jsonString(before.Object["spec"]) {
				t.Fatalf("the edit %s did not land (pruned by the CRD schema?)", patch)
			}
			waitExact(t, gvk, policy, before)
			t.Logf("%s: reverted in %s", e.name, time.Since(start).Round(time.Millisecond))
			waitEvent(t, name, "DriftReverted", e.field)
		})
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// waitExact waits until the policy's spec is exactly want's (the same defaulted JSON).
func waitExact(t *testing.T, gvk schema.GroupVersionKind, name string, want *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	var got *unstructured.Unstructured
	eventually(t, 10*time.Second, name+" exactly as rendered", func() error {
		p, err := getPolicy(sharedClient, gvk, name)
		if err != nil {
			return err
		}
		if p.GetAnnotations()["trust.signet.dev/content-hash"] != want.GetAnnotations()["trust.signet.dev/content-hash"] {
			want = p // Signet rendered something new meanwhile (another test's registry)
		}
		if a, b := jsonString(p.Object["spec"]), jsonString(want.Object["spec"]); a != b {
			return fmt.Errorf("spec differs:\n%s\nwant\n%s", a, b)
		}
		got = p
		return nil
	})
	return got
}

// waitEvent waits for an Event on the TrustedRegistry with the reason and a note
// containing want.
func waitEvent(t *testing.T, registryName, reason, want string) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("a %s event on %s naming %s", reason, registryName, want), func() error {
		list := &eventsv1.EventList{}
		if err := sharedClient.List(context.Background(), list); err != nil {
			return err
		}
		var seen []string
		for _, ev := range list.Items {
			if ev.Regarding.Name != registryName || ev.Reason != reason {
				continue
			}
			if strings.Contains(ev.Note, want) {
				return nil
			}
			seen = append(seen, ev.Note)
		}
		return fmt.Errorf("events: %q", seen)
	})
}

// TestKeyRingLossMidRotation: the key-ring ConfigMap is deleted while a key retires; the
// retiring key stays accepted until its retiresAt (not one second less), the ConfigMap is
// rebuilt, and the key is refused at retiresAt. Both layouts.
func TestKeyRingLossMidRotation(t *testing.T) {
	for _, layout := range []controllers.Layout{controllers.LayoutPerRegistry, controllers.LayoutShared} {
		t.Run(string(layout), func(t *testing.T) {
			clk := clocktesting.NewFakeClock(t0)
			startManager(t, managerOpts{clock: clk, layout: layout})
			name := "kl-" + string(layout)
			oldPub, newPub := newKeyPEM(t), newKeyPEM(t)
			create(t, keySecret(name+"-key", map[string]string{"cosign.pub": oldPub}),
				registry(name, func(tr *trustv1alpha1.TrustedRegistry) {
					tr.Spec.Rotation.Overlap = &metav1.Duration{Duration: time.Hour}
				}))
			t.Cleanup(func() { deleteRegistry(t, name) })
			waitCondition(t, name, trustv1alpha1.ConditionReady, "True/Ready")
			policy := func() (*unstructured.Unstructured, error) {
				if layout == controllers.LayoutShared {
					return getPolicy(sharedClient, ivpGVK, "signet.ivp.enforce")
				}
				return getPolicy(sharedClient, ivpGVK, "signet-"+name)
			}
			updateSecret(t, name+"-key", map[string]string{"cosign.pub": newPub})
			eventually(t, 20*time.Second, "both keys in force", func() error {
				if s := getRegistry(t, name).Status.KeySummary; s != "1 active, 1 retiring" {
					return fmt.Errorf("keySummary %q", s)
				}
				p, err := policy()
				if err != nil {
					return err
				}
				if !hasKey(p, oldPub) || !hasKey(p, newPub) {
					return fmt.Errorf("policy has %d keys", len(policyKeys(p)))
				}
				return nil
			})

			if layout == controllers.LayoutShared {
				// The pass forgets a proposed record once the cache shows the shard holding
				// it (records.go, at most ~2 s later); a shard deleted before then is written
				// again from the proposal, with no Event (nothing was lost). Here the record
				// is lost for real.
				time.Sleep(3 * time.Second)
			}
			rec := recordOf(layout, name)
			old, oldData, err := rec.get()
			if err != nil {
				t.Fatal(err)
			}
			rec.delete(t)
			// rebuilt, with both keys; the policy never loses the old key meanwhile
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				if p, err := policy(); err != nil || !hasKey(p, oldPub) || !hasKey(p, newPub) {
					t.Fatalf("the policy lost a key after the key ring was deleted (err %v)", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			eventually(t, 10*time.Second, "the key ring rebuilt", func() error {
				cm, data, err := rec.get()
				if err != nil {
					return err
				}
				if cm.UID == old.UID {
					return fmt.Errorf("not deleted yet")
				}
				if data["ring.json"] != oldData["ring.json"] {
					return fmt.Errorf("ring %s, was %s", data["ring.json"], oldData["ring.json"])
				}
				return nil
			})
			waitEvent(t, name, "KeyRingRecovered", "rebuilt from status.keys")

			// edited: the retiring key removed from the record, then the labels removed
			edit := func(what string, mutate func(cm *corev1.ConfigMap, data map[string]string)) {
				t.Helper()
				rec.update(t, mutate)
				deadline := time.Now().Add(2 * time.Second)
				for time.Now().Before(deadline) {
					if p, err := policy(); err != nil || !hasKey(p, oldPub) || !hasKey(p, newPub) {
						t.Fatalf("%s: the policy lost a key (err %v)", what, err)
					}
					time.Sleep(50 * time.Millisecond)
				}
				eventually(t, 10*time.Second, what+": the key ring restored", func() error {
					cm, data, err := rec.get()
					if err != nil {
						return err
					}
					if data["ring.json"] != oldData["ring.json"] || cm.Labels["app.kubernetes.io/managed-by"] != "signet" {
						return fmt.Errorf("ring %s, labels %v", data["ring.json"], cm.Labels)
					}
					return nil
				})
			}
			edit("retiring key removed from the record", func(_ *corev1.ConfigMap, data map[string]string) {
				rec := map[string]any{}
				if err := json.Unmarshal([]byte(data["ring.json"]), &rec); err != nil {
					t.Fatal(err)
				}
				var kept []any
				for _, e := range rec["entries"].([]any) {
					if e.(map[string]any)["state"] != "Retiring" {
						kept = append(kept, e)
					}
				}
				rec["entries"] = kept
				b, _ := json.Marshal(rec)
				data["ring.json"] = string(b)
			})
			waitEvent(t, name, "KeyRingRecovered", "lacked keys still in force")
			edit("labels removed", func(cm *corev1.ConfigMap, _ map[string]string) { cm.Labels = nil })
			edit("record garbled", func(_ *corev1.ConfigMap, data map[string]string) { data["ring.json"] = "{garbage" })

			// one second before retiresAt the old key is still accepted; at retiresAt it goes
			clk.SetTime(t0.Add(time.Hour - time.Second))
			nudge(t, name+"-key")
			time.Sleep(time.Second)
			if p, err := policy(); err != nil || !hasKey(p, oldPub) {
				t.Fatalf("old key dropped before retiresAt (err %v)", err)
			}
			clk.SetTime(t0.Add(time.Hour))
			nudge(t, name+"-key")
			eventually(t, 20*time.Second, "old key retired", func() error {
				p, err := policy()
				if err != nil {
					return err
				}
				if hasKey(p, oldPub) || !hasKey(p, newPub) {
					return fmt.Errorf("old key still there (or new key gone)")
				}
				return nil
			})
		})
	}
}

// TestKeyRingLossWithBrokenSecret: the key Secret holds garbage (the registry keeps its
// policy), then its key-ring ConfigMap is deleted, also across a restart of Signet: the
// registry stays enforced with its last key, and the ConfigMap comes back.
func TestKeyRingLossWithBrokenSecret(t *testing.T) {
	for _, layout := range []controllers.Layout{controllers.LayoutPerRegistry, controllers.LayoutShared} {
		t.Run(string(layout), func(t *testing.T) {
			m := startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: layout})
			name := "kb-" + string(layout)
			pub := newKeyPEM(t)
			create(t, keySecret(name+"-key", map[string]string{"cosign.pub": pub}), registry(name),
				keySecret(name+"-o-key", map[string]string{"cosign.pub": newKeyPEM(t)}), registry(name+"-o", func(tr *trustv1alpha1.TrustedRegistry) {
					tr.Spec.Keys[0].SecretRef.Name = name + "-o-key"
				}))
			t.Cleanup(func() { deleteRegistry(t, name); deleteRegistry(t, name+"-o") })
			waitCondition(t, name, trustv1alpha1.ConditionReady, "True/Ready")
			enforced := func() error {
				var p *unstructured.Unstructured
				var err error
				if layout == controllers.LayoutShared {
					p, err = getPolicy(sharedClient, ivpGVK, "signet.ivp.enforce")
					if err == nil && !strings.Contains(p.GetAnnotations()["trust.signet.dev/registries"], `"`+name+`"`) {
						return fmt.Errorf("%s's branch is not in the shared policy", name)
					}
				} else {
					p, err = getPolicy(sharedClient, ivpGVK, "signet-"+name)
				}
				if err != nil {
					return err
				}
				if !hasKey(p, pub) {
					return fmt.Errorf("the policy lost the key")
				}
				return nil
			}
			if err := enforced(); err != nil {
				t.Fatal(err)
			}
			updateSecret(t, name+"-key", map[string]string{"cosign.pub": "-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n"})
			waitCondition(t, name, trustv1alpha1.ConditionKeysResolved, "False/InvalidPublicKey")

			deleteRing := func() {
				t.Helper()
				recordOf(layout, name).delete(t)
			}
			// another registry changes meanwhile, so the shared policy is rewritten
			touchOther := func() {
				t.Helper()
				o := getRegistry(t, name+"-o")
				o.Spec.Images = append(o.Spec.Images, trustv1alpha1.ImagePattern(fmt.Sprintf("quay.io/%s/%d/*", name, len(o.Spec.Images))))
				if err := sharedClient.Update(context.Background(), o); err != nil {
					t.Fatal(err)
				}
			}
			stillEnforced := func(what string) {
				t.Helper()
				deadline := time.Now().Add(3 * time.Second)
				for time.Now().Before(deadline) {
					if err := enforced(); err != nil {
						t.Fatalf("%s: %v", what, err)
					}
					time.Sleep(50 * time.Millisecond)
				}
				eventually(t, 10*time.Second, "the key ring rebuilt", func() error {
					_, data, err := recordOf(layout, name).get()
					if err != nil {
						return err
					}
					if !strings.Contains(data["ring.json"], getRegistry(t, name).Status.Keys[0].Fingerprint) {
						return fmt.Errorf("ring %s", data["ring.json"])
					}
					if layout == controllers.LayoutShared && data["policy-input.json"] == "" {
						return fmt.Errorf("no recorded input")
					}
					return nil
				})
			}
			deleteRing()
			touchOther()
			stillEnforced("deleted key ring")

			// the same after a restart (nothing in memory): deleted while Signet is down
			m.stop()
			deleteRing()
			startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: layout})
			touchOther()
			stillEnforced("deleted key ring, restarted")
			if err := enforced(); err != nil {
				t.Fatal(err)
			}
			if got := condition(getRegistry(t, name), trustv1alpha1.ConditionKeysResolved); got != "False/InvalidPublicKey" {
				t.Errorf("KeysResolved = %s", got)
			}
		})
	}
}

// TestRevocationWhileAnotherRegistryIsBroken: one registry cannot render (its record is
// garbage, its spec invalid and its key Secret broken) while another revokes a leaked key
// (overlap lowered to 0s): the revocation reaches the shared policy within seconds, and the
// broken registry keeps its branch. Both engines.
func TestRevocationWhileAnotherRegistryIsBroken(t *testing.T) {
	for _, engine := range []trustv1alpha1.Engine{trustv1alpha1.EngineImageValidatingPolicy, trustv1alpha1.EngineClusterPolicy} {
		t.Run(string(engine), func(t *testing.T) {
			gvk, policyName, tag := ivpGVK, "signet.ivp.enforce", "ivp"
			if engine == trustv1alpha1.EngineClusterPolicy {
				gvk, policyName, tag = cpGVK, "signet.cpol.all", "cp"
			}
			startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: controllers.LayoutShared})
			broken, rev := "rv-"+tag+"-broken", "rv-"+tag+"-rev"
			brokenKey, leaked, fresh := newKeyPEM(t), newKeyPEM(t), newKeyPEM(t)
			eng := func(tr *trustv1alpha1.TrustedRegistry) { tr.Spec.Policy.Engine = engine }
			create(t, keySecret(broken+"-key", map[string]string{"cosign.pub": brokenKey}), registry(broken, eng),
				keySecret(rev+"-key", map[string]string{"cosign.pub": leaked}), registry(rev, eng, func(tr *trustv1alpha1.TrustedRegistry) {
					tr.Spec.Rotation.Overlap = &metav1.Duration{Duration: time.Hour}
				}))
			t.Cleanup(func() { deleteRegistry(t, broken); deleteRegistry(t, rev) })
			waitCondition(t, broken, trustv1alpha1.ConditionReady, "True/Ready")
			waitCondition(t, rev, trustv1alpha1.ConditionReady, "True/Ready")
			waitShared(t, gvk, policyName, "rv-"+tag, broken, rev)

			// rev rotates away from the leaked key: it retires in an hour
			updateSecret(t, rev+"-key", map[string]string{"cosign.pub": fresh})
			eventually(t, 20*time.Second, "the leaked key retiring", func() error {
				p, err := getPolicy(sharedClient, gvk, policyName)
				if err != nil {
					return err
				}
				if !hasKey(p, leaked) || !hasKey(p, fresh) {
					return fmt.Errorf("keys: %d", len(policyKeys(p)))
				}
				return nil
			})

			// broken: invalid spec, garbage key Secret, garbage record
			tr := getRegistry(t, broken)
			tr.Spec.Keys = append(tr.Spec.Keys, trustv1alpha1.PublicKey{Name: "ci-copy", SecretRef: tr.Spec.Keys[0].SecretRef})
			tr.Spec.RequiredSignatures = 2
			if err := sharedClient.Update(context.Background(), tr); err != nil {
				t.Fatal(err)
			}
			waitCondition(t, broken, trustv1alpha1.ConditionPolicyApplied, "False/KeptLastGoodPolicy")
			updateSecret(t, broken+"-key", map[string]string{"cosign.pub": "garbage"})
			waitCondition(t, broken, trustv1alpha1.ConditionKeysResolved, "False/InvalidPublicKey")
			recordOf(controllers.LayoutShared, broken).update(t, func(_ *corev1.ConfigMap, data map[string]string) {
				data["policy-input.json"] = "{garbage"
			})
			time.Sleep(500 * time.Millisecond)

			// revoke the leaked key now
			start := time.Now()
			rtr := getRegistry(t, rev)
			rtr.Spec.Rotation.Overlap = &metav1.Duration{}
			if err := sharedClient.Update(context.Background(), rtr); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "the leaked key revoked", func() error {
				p, err := getPolicy(sharedClient, gvk, policyName)
				if err != nil {
					return err
				}
				if hasKey(p, leaked) {
					return fmt.Errorf("the leaked key is still accepted")
				}
				if !hasKey(p, fresh) || !hasKey(p, brokenKey) {
					return fmt.Errorf("a key went missing")
				}
				return nil
			})
			t.Logf("revocation reached %s in %s while %s cannot render", policyName, time.Since(start).Round(time.Millisecond), broken)
			waitShared(t, gvk, policyName, "rv-"+tag, broken, rev)
		})
	}
}
