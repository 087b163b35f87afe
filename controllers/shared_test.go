package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
)

// sharedRegistries returns the registries a shared policy says it holds.
func sharedRegistries(t *testing.T, u *unstructured.Unstructured) []string {
	t.Helper()
	m := map[string]string{}
	if err := json.Unmarshal([]byte(u.GetAnnotations()["trust.signet.dev/registries"]), &m); err != nil {
		t.Fatalf("registries annotation of %s: %v", u.GetName(), err)
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// waitShared waits until the shared policy holds exactly the named registries among those
// whose names start with prefix (registries of other tests may share it); with none, until
// no such registry is left in it (or the policy is gone).
func waitShared(t *testing.T, gvk schema.GroupVersionKind, name, prefix string, want ...string) *unstructured.Unstructured {
	t.Helper()
	var got *unstructured.Unstructured
	eventually(t, 20*time.Second, fmt.Sprintf("%s holding %v", name, want), func() error {
		p, err := getPolicy(sharedClient, gvk, name)
		if isNotFound(err) && len(want) == 0 {
			return nil
		}
		if err != nil {
			return err
		}
		var have []string
		for _, n := range sharedRegistries(t, p) {
			if strings.HasPrefix(n, prefix) {
				have = append(have, n)
			}
		}
		if strings.Join(have, ",") != strings.Join(want, ",") {
			return fmt.Errorf("holds %v", have)
		}
		got = p
		return nil
	})
	return got
}

func deleteRegistry(t *testing.T, name string) {
	t.Helper()
	tr := &trustv1alpha1.TrustedRegistry{}
	tr.Name = name
	if err := sharedClient.Delete(context.Background(), tr); err != nil && !isNotFound(err) {
		t.Fatal(err)
	}
}

func keyCount(p *unstructured.Unstructured, pemKey string) int {
	n := 0
	for _, k := range policyKeys(p) {
		if k == strings.TrimSpace(pemKey) {
			n++
		}
	}
	return n
}

// TestSharedLayout: registries become branches of one shared policy; registries trusting
// the same key share a signer set and an attestor; a registry moving to Audit moves to the
// Audit policy (added there before it leaves Enforce); deleting registries updates the
// shared policy and deletes it when it is empty; each status names policy and branch.
func TestSharedLayout(t *testing.T) {
	startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: controllers.LayoutShared})
	keyA, keyB := newKeyPEM(t), newKeyPEM(t)
	create(t,
		keySecret("sh-a-key", map[string]string{"cosign.pub": keyA}),
		keySecret("sh-b-key", map[string]string{"cosign.pub": keyB}),
		registry("sh-a"),
		registry("sh-b", func(tr *trustv1alpha1.TrustedRegistry) { tr.Spec.Namespaces.Names = []string{"team-b"} }),
		// sh-c trusts sh-a's key (its Secret) for other images
		registry("sh-c", func(tr *trustv1alpha1.TrustedRegistry) { tr.Spec.Keys[0].SecretRef.Name = "sh-a-key" }),
	)
	t.Cleanup(func() {
		for _, n := range []string{"sh-a", "sh-b", "sh-c"} {
			deleteRegistry(t, n)
		}
	})
	for _, n := range []string{"sh-a", "sh-b", "sh-c"} {
		tr := waitCondition(t, n, trustv1alpha1.ConditionReady, "True/Ready")
		if tr.Status.Policy == nil || tr.Status.Policy.Name != "signet.ivp.enforce" || tr.Status.Policy.Kind != "ImageValidatingPolicy" || tr.Status.Policy.Branch == "" {
			t.Fatalf("%s: status.policy = %+v", n, tr.Status.Policy)
		}
		if c := metaCondition(tr, trustv1alpha1.ConditionPolicyApplied); !strings.Contains(c.Message, "signet.ivp.enforce") {
			t.Errorf("%s: PolicyApplied message %q", n, c.Message)
		}
	}
	set := func(name string) string {
		b := getRegistry(t, name).Status.Policy.Branch
		m := regexp.MustCompile(`signer set ([0-9a-f]+)\)$`).FindStringSubmatch(b)
		if m == nil {
			t.Fatalf("%s: branch %q names no signer set", name, b)
		}
		return m[1]
	}
	if a, b, c := set("sh-a"), set("sh-b"), set("sh-c"); a != c || a == b {
		t.Errorf("signer sets: sh-a %s, sh-b %s, sh-c %s; sh-c shares sh-a's, sh-b has its own", a, b, c)
	}
	p := waitShared(t, ivpGVK, "signet.ivp.enforce", "sh-", "sh-a", "sh-b", "sh-c")
	if n := keyCount(p, keyA); n != 1 {
		t.Errorf("sh-a's key is inlined %d times, want once (sh-a and sh-c share one attestor)", n)
	}
	if !hasKey(p, keyA) || !hasKey(p, keyB) {
		t.Errorf("shared policy lacks a key")
	}
	if len(p.GetOwnerReferences()) != 0 {
		t.Errorf("a shared policy must not be owned by one registry: %+v", p.GetOwnerReferences())
	}
	if _, err := getPolicy(sharedClient, ivpGVK, "signet-sh-a"); !isNotFound(err) {
		t.Errorf("a per-registry policy exists in the shared layout (%v)", err)
	}

	// sh-b moves to Audit.
	tr := getRegistry(t, "sh-b")
	tr.Spec.Action = trustv1alpha1.ActionAudit
	if err := sharedClient.Update(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	waitShared(t, ivpGVK, "signet.ivp.audit", "sh-", "sh-b")
	waitShared(t, ivpGVK, "signet.ivp.enforce", "sh-", "sh-a", "sh-c")
	if tr := waitCondition(t, "sh-b", trustv1alpha1.ConditionReady, "True/Ready"); tr.Status.Policy.Name != "signet.ivp.audit" {
		t.Errorf("sh-b status.policy = %+v", tr.Status.Policy)
	}

	// Deleting a registry updates the shared policy; deleting the last one deletes it.
	deleteRegistry(t, "sh-a")
	waitShared(t, ivpGVK, "signet.ivp.enforce", "sh-", "sh-c")
	waitCondition(t, "sh-c", trustv1alpha1.ConditionReady, "True/Ready")
	deleteRegistry(t, "sh-b")
	waitShared(t, ivpGVK, "signet.ivp.audit", "sh-")
	deleteRegistry(t, "sh-c")
	waitShared(t, ivpGVK, "signet.ivp.enforce", "sh-")
}

// TestSharedFailsClosed: a registry whose key Secret disappears, or whose spec becomes
// unrenderable, keeps its last good branch in the shared policy, and says so.
func TestSharedFailsClosed(t *testing.T) {
	startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: controllers.LayoutShared})
	key := newKeyPEM(t)
	create(t, keySecret("fc-key", map[string]string{"cosign.pub": key}), registry("fc"),
		keySecret("fc-other-key", map[string]string{"cosign.pub": newKeyPEM(t)}), registry("fc-other", func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Spec.Keys[0].SecretRef.Name = "fc-other-key"
		}))
	t.Cleanup(func() { deleteRegistry(t, "fc"); deleteRegistry(t, "fc-other") })
	waitCondition(t, "fc", trustv1alpha1.ConditionReady, "True/Ready")
	waitShared(t, ivpGVK, "signet.ivp.enforce", "fc", "fc", "fc-other")

	// The key Secret goes away: the branch stays, with the key.
	if err := sharedClient.Delete(context.Background(), keySecret("fc-key", nil)); err != nil {
		t.Fatal(err)
	}
	tr := waitCondition(t, "fc", trustv1alpha1.ConditionPolicyApplied, "False/KeptLastGoodPolicy")
	if !strings.Contains(metaCondition(tr, trustv1alpha1.ConditionPolicyApplied).Message, "signet.ivp.enforce") {
		t.Errorf("message %q does not name the shared policy in force", metaCondition(tr, trustv1alpha1.ConditionPolicyApplied).Message)
	}
	// another registry's change re-renders the shared policy: fc's branch must survive it
	other := getRegistry(t, "fc-other")
	other.Spec.Images = append(other.Spec.Images, "quay.io/fc-other/*")
	if err := sharedClient.Update(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, "fc-other", trustv1alpha1.ConditionReady, "True/Ready")
	p := waitShared(t, ivpGVK, "signet.ivp.enforce", "fc", "fc", "fc-other")
	if !hasKey(p, key) {
		t.Fatal("the shared policy lost the key of a registry whose Secret is unreadable")
	}

	// An unrenderable spec (two signatures required from two key names that are one key,
	// so one signer) keeps the last branch too.
	create(t, keySecret("fc-key", map[string]string{"cosign.pub": key}))
	waitCondition(t, "fc", trustv1alpha1.ConditionReady, "True/Ready")
	tr = getRegistry(t, "fc")
	tr.Spec.Keys = append(tr.Spec.Keys, trustv1alpha1.PublicKey{Name: "ci-copy", SecretRef: tr.Spec.Keys[0].SecretRef})
	tr.Spec.RequiredSignatures = 2
	tr.Spec.Action = trustv1alpha1.ActionAudit
	if err := sharedClient.Update(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	if c := metaCondition(waitCondition(t, "fc", trustv1alpha1.ConditionPolicyApplied, "False/KeptLastGoodPolicy"), trustv1alpha1.ConditionPolicyApplied); !strings.Contains(c.Message, "distinct signers") {
		t.Errorf("PolicyApplied message %q does not say why", c.Message)
	}
	time.Sleep(time.Second)
	waitShared(t, ivpGVK, "signet.ivp.enforce", "fc", "fc", "fc-other")
	if audit, err := getPolicy(sharedClient, ivpGVK, "signet.ivp.audit"); err == nil && slices.Contains(sharedRegistries(t, audit), "fc") {
		t.Error("an unrenderable spec moved the registry to Audit")
	}
}

// TestSharedLayoutMigratesPerRegistryPolicies: a registry enforced by a policy of its own
// (per-registry layout) is moved into the shared policy, and its own policy is deleted
// only once the shared one holds it.
func TestSharedLayoutMigratesPerRegistryPolicies(t *testing.T) {
	m := startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: controllers.LayoutPerRegistry})
	create(t, keySecret("mig-key", map[string]string{"cosign.pub": newKeyPEM(t)}), registry("mig"))
	t.Cleanup(func() { deleteRegistry(t, "mig") })
	waitCondition(t, "mig", trustv1alpha1.ConditionReady, "True/Ready")
	if _, err := getPolicy(sharedClient, ivpGVK, "signet-mig"); err != nil {
		t.Fatal(err)
	}
	m.stop()
	startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: controllers.LayoutShared})
	waitShared(t, ivpGVK, "signet.ivp.enforce", "mig", "mig")
	eventually(t, 20*time.Second, "the per-registry policy deleted", func() error {
		if _, err := getPolicy(sharedClient, ivpGVK, "signet-mig"); !isNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
	// (Ready was already True under the old layout: the status write that names the shared
	// policy follows the deletion, so wait for it rather than read once)
	eventually(t, 20*time.Second, "status.policy names the shared policy", func() error {
		tr := waitCondition(t, "mig", trustv1alpha1.ConditionReady, "True/Ready")
		if tr.Status.Policy == nil || tr.Status.Policy.Name != "signet.ivp.enforce" {
			return fmt.Errorf("status.policy = %+v", tr.Status.Policy)
		}
		return nil
	})
}

// TestSharedClusterPolicy: with engine ClusterPolicy every registry is a rule in one
// ClusterPolicy, named after it, next to the shared registry restriction.
func TestSharedClusterPolicy(t *testing.T) {
	resync := 2 * time.Second
	m := startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: controllers.LayoutShared, syncPeriod: &resync})
	cp := func(tr *trustv1alpha1.TrustedRegistry) { tr.Spec.Policy.Engine = trustv1alpha1.EngineClusterPolicy }
	create(t, keySecret("cps-a-key", map[string]string{"cosign.pub": newKeyPEM(t)}), registry("cps-a", cp),
		keySecret("cps-b-key", map[string]string{"cosign.pub": newKeyPEM(t)}), registry("cps-b", cp, func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Spec.Action = trustv1alpha1.ActionAudit
			tr.Spec.RestrictRegistries = ptr.To(false)
		}))
	t.Cleanup(func() { deleteRegistry(t, "cps-a"); deleteRegistry(t, "cps-b") })
	for _, n := range []string{"cps-a", "cps-b"} {
		waitCondition(t, n, trustv1alpha1.ConditionReady, "True/Ready")
	}
	p := waitShared(t, cpGVK, "signet.cpol.all", "cps-", "cps-a", "cps-b")
	rules, _, _ := unstructured.NestedSlice(p.Object, "spec", "rules")
	var names []string
	for _, r := range rules {
		names = append(names, r.(map[string]any)["name"].(string))
	}
	// the hosted restriction, the respelled-host denials of all Enforce and of all Audit
	// registries (present without restrictRegistries too), then per registry the
	// signature check
	if got := strings.Join(names, ","); got != "restrict-registries,deny-respelled-hosts,deny-respelled-hosts-audit,verify.cps-a,verify.cps-b" {
		t.Errorf("rules %s", got)
	}
	if b := getRegistry(t, "cps-a").Status.Policy.Branch; b != "rules deny-respelled-hosts, verify.cps-a" {
		t.Errorf("cps-a branch %q", b)
	}
	// converged: resyncs and a nudge write nothing
	time.Sleep(time.Second)
	mark := m.writes.n.Load()
	nudge(t, "cps-a-key")
	time.Sleep(2*resync + time.Second)
	if n, writes := m.writes.since(mark); n != 0 {
		t.Fatalf("%d write requests after convergence, want 0: %v", n, writes)
	}
}

// TestSharedDriftIsReverted: a hand edit that weakens a shared policy is reverted.
func TestSharedDriftIsReverted(t *testing.T) {
	startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: controllers.LayoutShared})
	create(t, keySecret("sd-key", map[string]string{"cosign.pub": newKeyPEM(t)}), registry("sd"))
	t.Cleanup(func() { deleteRegistry(t, "sd") })
	waitCondition(t, "sd", trustv1alpha1.ConditionReady, "True/Ready")
	p := waitShared(t, ivpGVK, "signet.ivp.enforce", "sd", "sd")
	if err := unstructured.SetNestedStringSlice(p.Object, []string{"Audit"}, "spec", "validationActions"); err != nil {
		t.Fatal(err)
	}
	if err := sharedClient.Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the shared policy restored", func() error {
		p, err := getPolicy(sharedClient, ivpGVK, "signet.ivp.enforce")
		if err != nil {
			return err
		}
		if actions, _, _ := unstructured.NestedStringSlice(p.Object, "spec", "validationActions"); strings.Join(actions, ",") != "Deny" {
			return fmt.Errorf("validationActions %v", actions)
		}
		return nil
	})
}

// TestSharedUnrenderableRecordIsIsolated: a recorded input that no longer renders (as
// after a hand edit, or an upgrade with stricter checks) keeps that registry's branch as
// it is in force, repairs the record from it, and never blocks another registry.
func TestSharedUnrenderableRecordIsIsolated(t *testing.T) {
	startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: controllers.LayoutShared})
	oldKey := newKeyPEM(t)
	create(t, keySecret("ur-old-key", map[string]string{"cosign.pub": oldKey}), registry("ur-old"))
	t.Cleanup(func() { deleteRegistry(t, "ur-old"); deleteRegistry(t, "ur-new") })
	waitCondition(t, "ur-old", trustv1alpha1.ConditionReady, "True/Ready")
	good := waitShared(t, ivpGVK, "signet.ivp.enforce", "ur-", "ur-old")
	goodEntry := registryEntry(t, good, "ur-old")

	// Corrupt ur-old's record the way a stricter renderer would see it: no image pattern.
	// Its own spec stays unrenderable too, so its reconcile cannot record a new input.
	old := getRegistry(t, "ur-old")
	old.Spec.Keys = append(old.Spec.Keys, trustv1alpha1.PublicKey{Name: "ci-copy", SecretRef: old.Spec.Keys[0].SecretRef})
	old.Spec.RequiredSignatures = 2
	if err := sharedClient.Update(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, "ur-old", trustv1alpha1.ConditionPolicyApplied, "False/KeptLastGoodPolicy")
	record := recordOf(controllers.LayoutShared, "ur-old")
	record.update(t, func(_ *corev1.ConfigMap, data map[string]string) {
		rec := map[string]any{}
		if err := json.Unmarshal([]byte(data["policy-input.json"]), &rec); err != nil {
			t.Fatal(err)
		}
		rec["spec"].(map[string]any)["images"] = []any{}
		b, _ := json.Marshal(rec)
		data["policy-input.json"] = string(b)
	})

	// another registry is not blocked
	create(t, keySecret("ur-new-key", map[string]string{"cosign.pub": newKeyPEM(t)}), registry("ur-new"))
	waitCondition(t, "ur-new", trustv1alpha1.ConditionReady, "True/Ready")
	p := waitShared(t, ivpGVK, "signet.ivp.enforce", "ur-", "ur-new", "ur-old")
	// ur-old's branch is the one in force before, with its key
	if e := registryEntry(t, p, "ur-old"); strings.Fields(e)[0] != strings.Fields(goodEntry)[0] || !hasKey(p, oldKey) {
		t.Errorf("ur-old's branch changed: %q, was %q (key kept: %v)", e, goodEntry, hasKey(p, oldKey))
	}
	// and its record is repaired from the branch in force
	eventually(t, 10*time.Second, "the record repaired", func() error {
		_, data, err := record.get()
		if err != nil {
			return err
		}
		if strings.Contains(data["policy-input.json"], `"images":[]`) {
			return fmt.Errorf("still the corrupt record")
		}
		return nil
	})

	deleteRegistry(t, "ur-old")
	waitShared(t, ivpGVK, "signet.ivp.enforce", "ur-", "ur-new")
}

// registryEntry returns "<input hash> <branch>" of a registry in a shared policy.
func registryEntry(t *testing.T, u *unstructured.Unstructured, name string) string {
	t.Helper()
	m := map[string]string{}
	if err := json.Unmarshal([]byte(u.GetAnnotations()["trust.signet.dev/registries"]), &m); err != nil {
		t.Fatal(err)
	}
	return m[name]
}
