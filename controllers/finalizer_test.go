package controllers_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
)

// holdFinalizerLabel marks the registries whose finalizer the test's admission policy
// refuses.
const holdFinalizerLabel = "test.signet.dev/hold-finalizer"

// refuseFinalizer makes the apiserver refuse Signet's finalizer on registries labelled
// holdFinalizerLabel (a ValidatingAdmissionPolicy: evaluated by the apiserver itself), and
// waits until it is in force. The returned func lifts it.
func refuseFinalizer(t *testing.T) func() {
	t.Helper()
	ctx := context.Background()
	policy := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "admissionregistration.k8s.io/v1",
		"kind":       "ValidatingAdmissionPolicy",
		"metadata":   map[string]any{"name": "test-refuse-signet-finalizer"},
		"spec": map[string]any{
			"failurePolicy": "Fail",
			"matchConstraints": map[string]any{
				"objectSelector": map[string]any{"matchLabels": map[string]any{holdFinalizerLabel: "true"}},
				"resourceRules": []any{map[string]any{
					"apiGroups": []any{trustv1alpha1.GroupVersion.Group}, "apiVersions": []any{"*"},
					"operations": []any{"CREATE", "UPDATE"}, "resources": []any{"trustedregistries"},
				}},
			},
			"validations": []any{map[string]any{
				"expression": "!has(object.metadata.finalizers) || !('" + controllers.Finalizer + "' in object.metadata.finalizers)",
				"message":    "the test holds the finalizer back",
			}},
		},
	}}
	binding := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "admissionregistration.k8s.io/v1",
		"kind":       "ValidatingAdmissionPolicyBinding",
		"metadata":   map[string]any{"name": "test-refuse-signet-finalizer"},
		"spec":       map[string]any{"policyName": "test-refuse-signet-finalizer", "validationActions": []any{"Deny"}},
	}}
	for _, o := range []*unstructured.Unstructured{policy, binding} {
		if err := sharedClient.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	lift := func() {
		for _, o := range []*unstructured.Unstructured{binding, policy} {
			if err := sharedClient.Delete(ctx, o.DeepCopy()); err != nil && !isNotFound(err) {
				t.Error(err)
			}
		}
	}
	t.Cleanup(lift)
	// in force once a dry-run create of such a registry with the finalizer is refused
	eventually(t, 20*time.Second, "the admission policy in force", func() error {
		probe := registry("fz-probe")
		probe.Labels = map[string]string{holdFinalizerLabel: "true"}
		probe.Finalizers = []string{controllers.Finalizer}
		if err := sharedClient.Create(ctx, probe, client.DryRunAll); err == nil {
			return errString("a registry with the finalizer was admitted")
		}
		return nil
	})
	return lift
}

type errString string

func (e errString) Error() string { return string(e) }

// inSharedPolicies tells whether any shared ImageValidatingPolicy holds the registry.
func inSharedPolicies(t *testing.T, name string) (bool, []string) {
	t.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(ivpGVK.GroupVersion().WithKind("ImageValidatingPolicyList"))
	if err := sharedClient.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range list.Items {
		p := &list.Items[i]
		names = append(names, p.GetName())
		if p.GetAnnotations()["trust.signet.dev/registries"] != "" && slices.Contains(sharedRegistries(t, p), name) {
			return true, names
		}
	}
	return false, names
}

// TestNoBranchBeforeFinalizer: a new registry's finalizer patch and its key-ring record are
// written at once, but no shared policy holds the registry before its finalizer is stored
// (finalizer.go: otherwise its branch could outlive it). Here the apiserver refuses the
// finalizer: the record is written, other registries' passes over the shared policies run,
// and the registry stays out; once the finalizer is allowed, its watch event brings the
// registry in without any other change.
func TestNoBranchBeforeFinalizer(t *testing.T) {
	needsControlPlane(t) // (refuseFinalizer runs before startManager)
	lift := refuseFinalizer(t)
	startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: controllers.LayoutShared})
	create(t, keySecret("fz-key", map[string]string{"cosign.pub": newKeyPEM(t)}))
	newRegistry := func(name string, held bool) {
		tr := registry(name)
		tr.Spec.Keys[0].SecretRef.Name = "fz-key"
		if held {
			tr.Labels = map[string]string{holdFinalizerLabel: "true"}
		}
		create(t, tr)
		t.Cleanup(func() { deleteRegistry(t, name) })
	}
	newRegistry("fz-held", true)
	newRegistry("fz-free", false)

	// The held registry's record is written (alongside the refused finalizer patch).
	eventually(t, 20*time.Second, "fz-held's recorded input", func() error {
		_, data, err := recordOf(controllers.LayoutShared, "fz-held").get()
		if err != nil {
			return err
		}
		if data["policy-input.json"] == "" {
			return errString("no recorded input yet")
		}
		return nil
	})
	if tr := getRegistry(t, "fz-held"); slices.Contains(tr.Finalizers, controllers.Finalizer) {
		t.Fatalf("fz-held has the finalizer the apiserver refuses: %v", tr.Finalizers)
	}
	// A pass over the shared policies after that record: another new registry's.
	newRegistry("fz-later", false)
	waitCondition(t, "fz-free", trustv1alpha1.ConditionReady, "True/Ready")
	waitCondition(t, "fz-later", trustv1alpha1.ConditionReady, "True/Ready")
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if in, policies := inSharedPolicies(t, "fz-held"); in {
			t.Fatalf("a shared policy (of %v) holds fz-held, whose finalizer is not stored", policies)
		}
	}
	if in, _ := inSharedPolicies(t, "fz-free"); !in {
		t.Fatal("fz-free is Ready but in no shared policy")
	}

	lift()
	waitCondition(t, "fz-held", trustv1alpha1.ConditionReady, "True/Ready")
	if tr := getRegistry(t, "fz-held"); !slices.Contains(tr.Finalizers, controllers.Finalizer) {
		t.Errorf("fz-held is Ready without the finalizer: %v", tr.Finalizers)
	}
	if in, _ := inSharedPolicies(t, "fz-held"); !in {
		t.Error("fz-held is Ready but in no shared policy")
	}
}
