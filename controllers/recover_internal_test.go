package controllers

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
)

func testPublicKey(t *testing.T) *keys.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := keys.ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// TestRecoverRing: the ring is rebuilt from status.keys with the material of the policy;
// a key whose material no policy holds is left out; merging puts back only keys in force.
func TestRecoverRing(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	active, retiring, gone, unknown := testPublicKey(t), testPublicKey(t), testPublicKey(t), testPublicKey(t)
	policy := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"attestors": []any{
			map[string]any{"cosign": map[string]any{"key": map[string]any{"data": active.PEM}}},
			// two keys in one string, as a ClusterPolicy's publicKeys may hold
			map[string]any{"keys": map[string]any{"publicKeys": retiring.PEM + gone.PEM}},
		},
	}}}
	later := metav1.NewTime(now.Add(time.Hour))
	earlier := metav1.NewTime(now.Add(-time.Second))
	status := []trustv1alpha1.KeyStatus{
		{Name: "ci", Fingerprint: active.Fingerprint, State: trustv1alpha1.KeyActive},
		{Name: "ci", Fingerprint: retiring.Fingerprint, State: trustv1alpha1.KeyRetiring, RetiresAt: &later},
		{Name: "old", Fingerprint: gone.Fingerprint, State: trustv1alpha1.KeyRetiring, RetiresAt: &earlier},
		{Name: "x", Fingerprint: unknown.Fingerprint, State: trustv1alpha1.KeyActive},
	}
	ring, err := recoverRing(status, policy)
	if err != nil {
		t.Fatal(err)
	}
	if len(ring.Entries) != 3 {
		t.Fatalf("recovered %+v, want the three keys the policy holds", ring.Entries)
	}
	for _, e := range ring.Entries {
		if e.Fingerprint == retiring.Fingerprint && (e.State != trustv1alpha1.KeyRetiring || !e.RetiresAt.Equal(later.Time)) {
			t.Errorf("retiring key recovered as %+v", e)
		}
	}

	// a stored ring that lost the retiring key gets it back; the expired one stays out
	stored := keys.Ring{Entries: []keys.Entry{{Name: "ci", Fingerprint: active.Fingerprint, PEM: active.PEM, Algorithm: active.Algorithm, State: trustv1alpha1.KeyActive}}}
	if !lacksKeysInForce(status, stored, now) {
		t.Fatal("the stored ring lacks a retiring key in force")
	}
	merged, added := mergeRing(stored, ring, now)
	if len(added) != 1 || len(merged.Entries) != 2 {
		t.Fatalf("merged %+v (added %v), want the retiring key back", merged.Entries, added)
	}
	if lacksKeysInForce(status[2:3], stored, now) {
		t.Error("an expired retiring key counts as in force")
	}
}
