package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/testenv"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestCreateAppliesImageValidatingPolicy(t *testing.T) {
	startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0)})
	pub := newKeyPEM(t)
	create(t, keySecret("seed-key", map[string]string{"cosign.pub": pub}), registry("seed", func(tr *trustv1alpha1.TrustedRegistry) {
		tr.Spec.Digest = trustv1alpha1.DigestPolicy{} // the defaults: tags pinned
	}))

	tr := waitCondition(t, "seed", trustv1alpha1.ConditionReady, "True/Ready")
	if got := condition(tr, trustv1alpha1.ConditionKeysResolved); got != "True/KeysResolved" {
		t.Errorf("KeysResolved = %s", got)
	}
	if got := condition(tr, trustv1alpha1.ConditionPolicyApplied); got != "True/Applied" {
		t.Errorf("PolicyApplied = %s", got)
	}
	if tr.Status.Policy == nil || tr.Status.Policy.Kind != "ImageValidatingPolicy" || tr.Status.Policy.Name != "signet-seed" {
		t.Fatalf("status.policy = %+v", tr.Status.Policy)
	}
	if len(tr.Status.Keys) != 1 || tr.Status.Keys[0].State != trustv1alpha1.KeyActive || tr.Status.Keys[0].Algorithm != "ECDSA-P256" ||
		!strings.HasPrefix(tr.Status.Keys[0].Fingerprint, "sha256:") {
		t.Fatalf("status.keys = %+v", tr.Status.Keys)
	}
	if tr.Status.KeySummary != "1 active" {
		t.Errorf("keySummary = %q", tr.Status.KeySummary)
	}
	ready := metaCondition(tr, trustv1alpha1.ConditionReady)
	for _, want := range []string{"ImageValidatingPolicy signet-seed enforces", "ghcr.io/seed/*", "production, staging", "tags are pinned to the verified digest"} {
		if !strings.Contains(ready.Message, want) {
			t.Errorf("Ready message %q lacks %q", ready.Message, want)
		}
	}

	p, err := getPolicy(sharedClient, ivpGVK, "signet-seed")
	if err != nil {
		t.Fatal(err)
	}
	if !hasKey(p, pub) {
		t.Errorf("policy does not inline the key; keys: %v", policyKeys(p))
	}
	if p.GetLabels()["app.kubernetes.io/managed-by"] != "signet" || p.GetLabels()["trust.signet.dev/registry"] != "seed" {
		t.Errorf("labels = %v", p.GetLabels())
	}
	refs := p.GetOwnerReferences()
	if len(refs) != 1 || refs[0].UID != tr.UID || refs[0].Controller == nil || !*refs[0].Controller {
		t.Errorf("ownerReferences = %+v", refs)
	}
	actions, _, _ := unstructured.NestedStringSlice(p.Object, "spec", "validationActions")
	if strings.Join(actions, ",") != "Deny" {
		t.Errorf("validationActions = %v, want [Deny]", actions)
	}
	// The key ring is persisted in the trust namespace, public keys only.
	cm := &corev1.ConfigMap{}
	if err := sharedClient.Get(context.Background(), client.ObjectKey{Namespace: trustNS, Name: "signet-keyring-seed"}, cm); err != nil {
		t.Fatalf("key ring record: %v", err)
	}
	if strings.Contains(cm.Data["ring.json"], "PRIVATE") || !strings.Contains(cm.Data["ring.json"], tr.Status.Keys[0].Fingerprint) {
		t.Errorf("unexpected ring record: %s", cm.Data["ring.json"])
	}
}

func TestClusterPolicyEngineAndSwitch(t *testing.T) {
	startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0)})
	pub := newKeyPEM(t)
	create(t, keySecret("switch-key", map[string]string{"cosign.pub": pub}),
		registry("switch", func(tr *trustv1alpha1.TrustedRegistry) { tr.Spec.Policy.Engine = trustv1alpha1.EngineClusterPolicy }))
	waitCondition(t, "switch", trustv1alpha1.ConditionReady, "True/Ready")
	cp, err := getPolicy(sharedClient, cpGVK, "signet-switch")
	if err != nil {
		t.Fatalf("ClusterPolicy: %v", err)
	}
	if !hasKey(cp, pub) {
		t.Errorf("ClusterPolicy lacks the key")
	}
	if _, err := getPolicy(sharedClient, ivpGVK, "signet-switch"); !isNotFound(err) {
		t.Fatalf("unexpected ImageValidatingPolicy: %v", err)
	}

	// Switch to ImageValidatingPolicy: the new kind is applied, then the old one deleted.
	tr := getRegistry(t, "switch")
	tr.Spec.Policy.Engine = trustv1alpha1.EngineImageValidatingPolicy
	if err := sharedClient.Update(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "engine switch", func() error {
		if _, err := getPolicy(sharedClient, ivpGVK, "signet-switch"); err != nil {
			return fmt.Errorf("ImageValidatingPolicy: %w", err)
		}
		if _, err := getPolicy(sharedClient, cpGVK, "signet-switch"); !isNotFound(err) {
			return fmt.Errorf("ClusterPolicy still there (%v)", err)
		}
		return nil
	})
	tr = waitCondition(t, "switch", trustv1alpha1.ConditionReady, "True/Ready")
	if tr.Status.Policy.Kind != "ImageValidatingPolicy" {
		t.Errorf("status.policy = %+v", tr.Status.Policy)
	}
}

func TestRotationOverlapWithFakeClock(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	startManager(t, managerOpts{clock: clk})
	oldPub, newPub := newKeyPEM(t), newKeyPEM(t)
	create(t, keySecret("rot-key", map[string]string{"cosign.pub": oldPub}),
		registry("rot", func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Spec.Rotation.Overlap = &metav1.Duration{Duration: time.Hour}
		}))
	waitCondition(t, "rot", trustv1alpha1.ConditionReady, "True/Ready")

	// CI rotates: the Secret now holds the new key.
	updateSecret(t, "rot-key", map[string]string{"cosign.pub": newPub})
	var tr *trustv1alpha1.TrustedRegistry
	eventually(t, 20*time.Second, "old key retiring", func() error {
		tr = getRegistry(t, "rot")
		if tr.Status.KeySummary != "1 active, 1 retiring" {
			return fmt.Errorf("keySummary %q", tr.Status.KeySummary)
		}
		return nil
	})
	var retiring trustv1alpha1.KeyStatus
	for _, k := range tr.Status.Keys {
		if k.State == trustv1alpha1.KeyRetiring {
			retiring = k
		}
	}
	if retiring.RetiresAt == nil || !retiring.RetiresAt.Time.Equal(t0.Add(time.Hour)) {
		t.Fatalf("retiring key %+v, want retiresAt %s", retiring, t0.Add(time.Hour))
	}
	eventually(t, 20*time.Second, "both keys in the policy", func() error {
		p, err := getPolicy(sharedClient, ivpGVK, "signet-rot")
		if err != nil {
			return err
		}
		if !hasKey(p, oldPub) || !hasKey(p, newPub) {
			return fmt.Errorf("policy keys: %d", len(policyKeys(p)))
		}
		return nil
	})

	// One second before the overlap ends the old key is still accepted.
	clk.SetTime(t0.Add(time.Hour - time.Second))
	nudge(t, "rot-key")
	time.Sleep(time.Second) // let a reconcile run at this time; nothing may change
	p, _ := getPolicy(sharedClient, ivpGVK, "signet-rot")
	if !hasKey(p, oldPub) {
		t.Fatal("old key dropped before retiresAt")
	}

	// At retiresAt it is gone.
	clk.SetTime(t0.Add(time.Hour))
	nudge(t, "rot-key")
	eventually(t, 20*time.Second, "old key retired", func() error {
		p, err := getPolicy(sharedClient, ivpGVK, "signet-rot")
		if err != nil {
			return err
		}
		if hasKey(p, oldPub) || !hasKey(p, newPub) {
			return fmt.Errorf("policy still has the old key (or lost the new one)")
		}
		if s := getRegistry(t, "rot").Status.KeySummary; s != "1 active" {
			return fmt.Errorf("keySummary %q", s)
		}
		return nil
	})
}

func TestRestartMidRotationKeepsState(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	m := startManager(t, managerOpts{clock: clk})
	oldPub, newPub := newKeyPEM(t), newKeyPEM(t)
	create(t, keySecret("restart-key", map[string]string{"cosign.pub": oldPub}), registry("restart"))
	waitCondition(t, "restart", trustv1alpha1.ConditionReady, "True/Ready")
	updateSecret(t, "restart-key", map[string]string{"cosign.pub": newPub})
	eventually(t, 20*time.Second, "retiring", func() error {
		if s := getRegistry(t, "restart").Status.KeySummary; s != "1 active, 1 retiring" {
			return fmt.Errorf("keySummary %q", s)
		}
		return nil
	})
	before := getRegistry(t, "restart").Status.Keys
	m.stop()

	// Lose the status entirely, then start a new manager a day later (overlap is 168h).
	tr := getRegistry(t, "restart")
	tr.Status = trustv1alpha1.TrustedRegistryStatus{}
	if err := sharedClient.Status().Update(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	clk.SetTime(t0.Add(24 * time.Hour))
	startManager(t, managerOpts{clock: clk})
	eventually(t, 20*time.Second, "status rebuilt from the persisted ring", func() error {
		after := getRegistry(t, "restart").Status.Keys
		if fmt.Sprint(after) != fmt.Sprint(before) {
			return fmt.Errorf("keys after restart %+v, before %+v", after, before)
		}
		return nil
	})
	p, err := getPolicy(sharedClient, ivpGVK, "signet-restart")
	if err != nil || !hasKey(p, oldPub) || !hasKey(p, newPub) {
		t.Fatalf("policy after restart lost a key (err %v)", err)
	}
}

func TestKeyErrorsFailClosed(t *testing.T) {
	startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0)})

	t.Run("missing Secret on a new registry: no policy", func(t *testing.T) {
		create(t, registry("nokey"))
		tr := waitCondition(t, "nokey", trustv1alpha1.ConditionKeysResolved, "False/SecretNotFound")
		if got := condition(tr, trustv1alpha1.ConditionPolicyApplied); got != "False/NoUsableKeys" {
			t.Errorf("PolicyApplied = %s", got)
		}
		if got := condition(tr, trustv1alpha1.ConditionReady); got != "False/SecretNotFound" {
			t.Errorf("Ready = %s", got)
		}
		if got := condition(tr, trustv1alpha1.ConditionStalled); got != "True/SecretNotFound" {
			t.Errorf("Stalled = %s", got)
		}
		msg := metaCondition(tr, trustv1alpha1.ConditionKeysResolved).Message
		if !strings.Contains(msg, `key "ci"`) || !strings.Contains(msg, "signet-system/nokey-key") {
			t.Errorf("message %q should name the key and the Secret", msg)
		}
		if _, err := getPolicy(sharedClient, ivpGVK, "signet-nokey"); !isNotFound(err) {
			t.Fatalf("a policy was created without keys: %v", err)
		}
	})

	t.Run("private key only", func(t *testing.T) {
		create(t, keySecret("priv-key", map[string]string{
			"cosign.key":      "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
			"cosign.password": "hunter2",
		}), registry("priv"))
		tr := waitCondition(t, "priv", trustv1alpha1.ConditionKeysResolved, "False/SecretKeyNotFound")
		msg := metaCondition(tr, trustv1alpha1.ConditionKeysResolved).Message
		if strings.Contains(msg, "hunter2") || strings.Contains(msg, "AAAA") {
			t.Fatalf("condition leaks Secret data: %q", msg)
		}
	})

	t.Run("garbage key", func(t *testing.T) {
		create(t, keySecret("junk-key", map[string]string{"cosign.pub": "not a key"}), registry("junk"))
		waitCondition(t, "junk", trustv1alpha1.ConditionKeysResolved, "False/InvalidPublicKey")
	})

	t.Run("keyless regexp escaping its anchors", func(t *testing.T) {
		// "^(a)|(b)$" passes the CRD (CEL cannot judge groups) but its second alternative
		// matches any subject ending in b: the parsed check refuses it.
		create(t, keySecret("anchor-key", map[string]string{"cosign.pub": newKeyPEM(t)}), registry("anchor", func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Spec.Keyless = []trustv1alpha1.KeylessIdentity{{Name: "gh", Issuer: "https://token.actions.githubusercontent.com", SubjectRegExp: "^(a)|(b)$"}}
		}))
		tr := waitCondition(t, "anchor", trustv1alpha1.ConditionPolicyApplied, "False/InvalidSpec")
		if msg := metaCondition(tr, trustv1alpha1.ConditionPolicyApplied).Message; !strings.Contains(msg, "not anchored on every alternative") {
			t.Errorf("message %q", msg)
		}
		if _, err := getPolicy(sharedClient, ivpGVK, "signet-anchor"); !isNotFound(err) {
			t.Fatalf("a policy was created for an unanchored identity: %v", err)
		}
	})

	t.Run("existing policy is kept when its Secret breaks", func(t *testing.T) {
		pub := newKeyPEM(t)
		create(t, keySecret("keep-key", map[string]string{"cosign.pub": pub}), registry("keep"))
		waitCondition(t, "keep", trustv1alpha1.ConditionReady, "True/Ready")
		good, err := getPolicy(sharedClient, ivpGVK, "signet-keep")
		if err != nil {
			t.Fatal(err)
		}
		updateSecret(t, "keep-key", map[string]string{"cosign.pub": "-----BEGIN PUBLIC KEY-----\nbroken\n-----END PUBLIC KEY-----\n"})
		tr := waitCondition(t, "keep", trustv1alpha1.ConditionKeysResolved, "False/InvalidPublicKey")
		if got := condition(tr, trustv1alpha1.ConditionPolicyApplied); got != "False/KeptLastGoodPolicy" {
			t.Errorf("PolicyApplied = %s", got)
		}
		// Also ask for Audit while broken: that must not reach the policy either.
		tr.Spec.Action = trustv1alpha1.ActionAudit
		if err := sharedClient.Update(context.Background(), tr); err != nil {
			t.Fatal(err)
		}
		waitCondition(t, "keep", trustv1alpha1.ConditionKeysResolved, "False/InvalidPublicKey")
		now, err := getPolicy(sharedClient, ivpGVK, "signet-keep")
		if err != nil {
			t.Fatal(err)
		}
		if now.GetResourceVersion() != good.GetResourceVersion() || !hasKey(now, pub) {
			t.Fatalf("the last good policy was changed while keys were broken")
		}
		if s := getRegistry(t, "keep").Status.KeySummary; s != "1 active" {
			t.Errorf("the key started retiring because its Secret broke: %q", s)
		}
	})
}

func TestDriftIsReverted(t *testing.T) {
	m := startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0)})
	create(t, keySecret("drift-key", map[string]string{"cosign.pub": newKeyPEM(t)}), registry("drift"))
	waitCondition(t, "drift", trustv1alpha1.ConditionReady, "True/Ready")
	p, err := getPolicy(sharedClient, ivpGVK, "signet-drift")
	if err != nil {
		t.Fatal(err)
	}
	mark := m.writes.n.Load()
	// Someone weakens the generated policy by hand.
	if err := unstructured.SetNestedStringSlice(p.Object, []string{"Audit"}, "spec", "validationActions"); err != nil {
		t.Fatal(err)
	}
	if err := sharedClient.Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "drift reverted", func() error {
		p, err := getPolicy(sharedClient, ivpGVK, "signet-drift")
		if err != nil {
			return err
		}
		actions, _, _ := unstructured.NestedStringSlice(p.Object, "spec", "validationActions")
		if strings.Join(actions, ",") != "Deny" {
			return fmt.Errorf("validationActions %v", actions)
		}
		return nil
	})
	time.Sleep(time.Second)
	n, writes := m.writes.since(mark)
	policyWrites := 0
	for _, w := range writes {
		// (the other registries' policies may still take drift's patterns into their
		// registry restriction, per-registry layout: not part of the revert)
		if strings.HasSuffix(w, "imagevalidatingpolicies/signet-drift") {
			policyWrites++
		}
	}
	if policyWrites != 1 {
		t.Errorf("drift revert took %d policy writes (%d writes in all: %v), want 1", policyWrites, n, writes)
	}
}

func TestZeroWritesAfterConvergence(t *testing.T) {
	resync := 2 * time.Second
	m := startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), syncPeriod: &resync})
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("idle%d", i)
		create(t, keySecret(name+"-key", map[string]string{"cosign.pub": newKeyPEM(t)}), registry(name))
	}
	for i := 0; i < 3; i++ {
		waitCondition(t, fmt.Sprintf("idle%d", i), trustv1alpha1.ConditionReady, "True/Ready")
	}
	time.Sleep(time.Second) // let the last watch events of our own writes arrive
	mark := m.writes.n.Load()
	// A forced re-reconcile (a Secret touched without changing the key) and two resyncs.
	nudge(t, "idle0-key")
	time.Sleep(2*resync + time.Second)
	if n, writes := m.writes.since(mark); n != 0 {
		t.Fatalf("%d write requests after convergence, want 0: %v", n, writes)
	}
}

func TestKyvernoInstalledAfterStart(t *testing.T) {
	// A control plane of its own, with no Kyverno CRDs at first.
	needsControlPlane(t)
	cfg, c := testenv.Start(t)
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: trustNS}}); err != nil {
		t.Fatal(err)
	}
	startManager(t, managerOpts{cfg: cfg, clock: clocktesting.NewFakeClock(t0)})
	if err := c.Create(context.Background(), keySecret("late-key", map[string]string{"cosign.pub": newKeyPEM(t)})); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(context.Background(), registry("late")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "KyvernoNotInstalled", func() error {
		tr := &trustv1alpha1.TrustedRegistry{}
		if err := c.Get(context.Background(), client.ObjectKey{Name: "late"}, tr); err != nil {
			return err
		}
		if got := condition(tr, trustv1alpha1.ConditionReady); got != "False/KyvernoNotInstalled" {
			return fmt.Errorf("Ready = %s", got)
		}
		return nil
	})

	dirs, err := testenv.KyvernoCRDDirs()
	if err != nil {
		t.Fatal(err)
	}
	installed := time.Now()
	if err := testenv.InstallCRDs(cfg, dirs...); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "policy applied once Kyverno's CRDs appear", func() error {
		_, err := getPolicy(c, ivpGVK, "signet-late")
		return err
	})
	t.Logf("policy applied %s after Kyverno's CRDs were installed", time.Since(installed).Round(10*time.Millisecond))
}

// --- helpers --------------------------------------------------------------------------

func updateSecret(t *testing.T, name string, data map[string]string) {
	t.Helper()
	s := &corev1.Secret{}
	if err := sharedClient.Get(context.Background(), client.ObjectKey{Namespace: trustNS, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	s.Data = map[string][]byte{}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	if err := sharedClient.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

// nudge changes an annotation of a key Secret: it triggers a reconcile of the registries
// that use it without changing any key.
func nudge(t *testing.T, secret string) {
	t.Helper()
	s := &corev1.Secret{}
	if err := sharedClient.Get(context.Background(), client.ObjectKey{Namespace: trustNS, Name: secret}, s); err != nil {
		t.Fatal(err)
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations["test/nudge"] = time.Now().Format(time.RFC3339Nano)
	if err := sharedClient.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

func metaCondition(tr *trustv1alpha1.TrustedRegistry, condType string) metav1.Condition {
	for _, c := range tr.Status.Conditions {
		if c.Type == condType {
			return c
		}
	}
	return metav1.Condition{}
}
