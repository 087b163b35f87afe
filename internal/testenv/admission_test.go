package testenv_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
	"github.com/signet-operator/signet/internal/testenv"
)

// TestAdmissionAddsFinalizer: with config/admission applied, the apiserver stores every new
// TrustedRegistry with Signet's finalizer (next to those the creator set), on CREATE only:
// a finalizer removed later stays removed until the operator puts it back, so that the
// escape hatch of README.md, "Uninstall", still works while the operator is gone.
func TestAdmissionAddsFinalizer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, c := testenv.Start(t)
	registry := func(name string, finalizers ...string) *trustv1alpha1.TrustedRegistry {
		return &trustv1alpha1.TrustedRegistry{
			ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: finalizers},
			Spec: trustv1alpha1.TrustedRegistrySpec{
				Images:     []trustv1alpha1.ImagePattern{"ghcr.io/yourorg/*"},
				Namespaces: trustv1alpha1.NamespaceSelection{Names: []string{"production"}},
				Keyless:    []trustv1alpha1.KeylessIdentity{{Name: "ci", Issuer: "https://token.actions.githubusercontent.com", Subject: "ci"}},
			},
		}
	}
	// Without the policy (older clusters, or not installed), nothing adds it: the operator does.
	bare := registry("before")
	if err := c.Create(ctx, bare); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(bare.Finalizers, controllers.Finalizer) {
		t.Fatalf("a registry created without config/admission has %v", bare.Finalizers)
	}

	if err := testenv.InstallAdmission(ctx, cfg, controllers.Finalizer); err != nil {
		t.Fatal(err)
	}
	tr := registry("team-a")
	if err := c.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tr.Finalizers, []string{controllers.Finalizer}) {
		t.Fatalf("created with finalizers %v, want [%s]", tr.Finalizers, controllers.Finalizer)
	}
	other := registry("team-b", "example.com/keep", controllers.Finalizer)
	if err := c.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(other.Finalizers, []string{"example.com/keep", controllers.Finalizer}) {
		t.Fatalf("created with finalizers %v, want the creator's two, once each", other.Finalizers)
	}

	// An update is not mutated: removing the finalizer by hand works.
	patch := client.MergeFrom(tr.DeepCopy())
	tr.Finalizers = nil
	if err := c.Patch(ctx, tr, patch); err != nil {
		t.Fatal(err)
	}
	if len(tr.Finalizers) != 0 {
		t.Fatalf("after removing it by hand: finalizers %v", tr.Finalizers)
	}
	// Nor is an existing registry touched by installing the policy.
	if err := c.Get(ctx, client.ObjectKeyFromObject(bare), bare); err != nil {
		t.Fatal(err)
	}
	if len(bare.Finalizers) != 0 {
		t.Fatalf("registry created before the policy: finalizers %v", bare.Finalizers)
	}

	// A broken policy never blocks a create (failurePolicy Ignore): the registry is created
	// without the finalizer, which the operator then adds itself.
	objs, err := testenv.AdmissionObjects()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "MutatingAdmissionPolicy" {
			continue
		}
		muts, _, _ := unstructured.NestedSlice(o.Object, "spec", "mutations")
		m := muts[0].(map[string]any)
		if err := unstructured.SetNestedField(m, "Object{metadata: Object.metadata{finalizers: object.noSuchField}}", "applyConfiguration", "expression"); err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedSlice(o.Object, muts, "spec", "mutations"); err != nil {
			t.Fatal(err)
		}
		if err := c.Patch(ctx, o, client.Apply, client.FieldOwner("signet-install"), client.ForceOwnership); err != nil {
			t.Fatal(err)
		}
	}
	created := 0
	for i := 0; ; i++ {
		probe := registry(fmt.Sprintf("broken-%d", i))
		if err := c.Create(ctx, probe); err != nil {
			t.Fatalf("with a broken policy, creating a TrustedRegistry failed: %v", err)
		}
		created++
		if !slices.Contains(probe.Finalizers, controllers.Finalizer) {
			break // the apiserver runs the broken policy now, and ignores its failure
		}
		if ctx.Err() != nil {
			t.Fatal("the broken policy never took effect")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the broken policy took effect after %d create(s)", created)
	l := &trustv1alpha1.TrustedRegistryList{}
	if err := c.List(ctx, l); err != nil {
		t.Fatal(err)
	}
	for i := range l.Items {
		o := &l.Items[i]
		o.SetFinalizers(nil)
		_ = c.Update(ctx, o)
	}
}
