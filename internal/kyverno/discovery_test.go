package kyverno

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fakediscovery "k8s.io/client-go/discovery/fake"
	k8stesting "k8s.io/client-go/testing"
)

// A burst of Served calls right after a CRD change must not ask the apiserver once per call
// (every reconcile of a burst calls Served), yet a kind published a moment after the change
// must show within settleMaxAge.
func TestServedWhileSettling(t *testing.T) {
	fake := &fakediscovery.FakeDiscovery{Fake: &k8stesting.Fake{}}
	d := NewDiscovery(fake, nil, time.Hour)
	d.Invalidate()
	for range 100 {
		served, err := d.Served()
		if err != nil {
			t.Fatal(err)
		}
		if served.Has(ImageValidatingPolicy) {
			t.Fatal("ImageValidatingPolicy served before it was published")
		}
	}
	// one discovery per group-version of the known kinds, for the whole burst
	if got, want := len(fake.Actions()), len(groupVersions()); got != want {
		t.Fatalf("100 Served calls while settling made %d discovery requests, want %d", got, want)
	}

	// The kind is published after the CRD event: seen within settleMaxAge.
	fake.Resources = []*metav1.APIResourceList{{
		GroupVersion: ImageValidatingPolicy.GroupVersion().String(),
		APIResources: []metav1.APIResource{{Name: "imagevalidatingpolicies", Kind: ImageValidatingPolicy.Kind}},
	}}
	deadline := time.Now().Add(settleMaxAge + 2*time.Second)
	for {
		served, err := d.Served()
		if err != nil {
			t.Fatal(err)
		}
		if served.Has(ImageValidatingPolicy) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a kind published while settling was not seen")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A new CRD change asks again at once.
	before := len(fake.Actions())
	d.Invalidate()
	if _, err := d.Served(); err != nil {
		t.Fatal(err)
	}
	if len(fake.Actions()) == before {
		t.Fatal("Served after Invalidate answered from the cache")
	}
}

func groupVersions() map[string]bool {
	gvs := map[string]bool{}
	for _, gvk := range known {
		gvs[gvk.GroupVersion().String()] = true
	}
	return gvs
}
