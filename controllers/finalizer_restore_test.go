package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
)

// TestFinalizerRestored: a finalizer removed by hand from a Ready registry (a metadata-only
// edit: its generation does not change) comes back within seconds, not at the next resync:
// until then a deletion of the registry would skip Signet's cleanup (README.md, "Uninstall").
// With the finalizer back, a deletion removes the key-ring record before the registry goes.
func TestFinalizerRestored(t *testing.T) {
	startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: controllers.LayoutShared})
	key := keySecret("fr-key", map[string]string{"cosign.pub": newKeyPEM(t)})
	create(t, key)
	t.Cleanup(func() { _ = sharedClient.Delete(context.Background(), key) })
	tr := registry("fr-a")
	tr.Spec.Keys[0].SecretRef.Name = "fr-key"
	create(t, tr)
	t.Cleanup(func() { deleteRegistry(t, "fr-a") })
	ready := waitCondition(t, "fr-a", trustv1alpha1.ConditionReady, "True/Ready")
	if !slices.Contains(ready.Finalizers, controllers.Finalizer) {
		t.Fatalf("fr-a is Ready without the finalizer: %v", ready.Finalizers)
	}

	// as `kubectl patch --type=json -p '[{"op":"remove","path":"/metadata/finalizers"}]'`
	edited := ready.DeepCopy()
	patch := client.RawPatch(types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`))
	if err := sharedClient.Patch(context.Background(), edited, patch); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(edited.Finalizers, controllers.Finalizer) {
		t.Fatalf("the patch left the finalizer: %v", edited.Finalizers)
	}
	if edited.Generation != ready.Generation {
		t.Fatalf("the metadata edit changed the generation (%d -> %d): the test would not show the bug", ready.Generation, edited.Generation)
	}
	eventually(t, 5*time.Second, "fr-a's finalizer restored", func() error {
		if got := getRegistry(t, "fr-a").Finalizers; !slices.Contains(got, controllers.Finalizer) {
			return fmt.Errorf("finalizers: %v", got)
		}
		return nil
	})

	// With it back, a deletion runs the cleanup: the key-ring record goes before the registry.
	deleteRegistry(t, "fr-a")
	eventually(t, 20*time.Second, "fr-a and its key-ring record gone", func() error {
		if _, _, err := recordOf(controllers.LayoutShared, "fr-a").get(); err == nil {
			return fmt.Errorf("its record is still in its shard")
		}
		if err := sharedClient.Get(context.Background(), client.ObjectKey{Name: "fr-a"}, &trustv1alpha1.TrustedRegistry{}); !isNotFound(err) {
			return fmt.Errorf("registry: %v", err)
		}
		return nil
	})
}
