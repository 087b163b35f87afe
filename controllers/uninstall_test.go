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
	"k8s.io/apimachinery/pkg/runtime/schema"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/internal/testenv"
)

// TestUninstallLeavesNothing: the uninstall order of README.md ("Uninstall"). On a control
// plane of its own (so that "nothing" means nothing, not "nothing of this test's"):
// registries of both engines, Enforce and Audit, in the shared layout. While the operator
// is stopped, a deleted registry stays (Terminating, held by the finalizer) and its branch
// keeps enforcing: fail closed. Once the operator runs again and every TrustedRegistry is
// deleted, the moment the last one is gone there is no Signet policy of either engine and no
// Signet ConfigMap left: no garbage collector is needed (envtest runs none).
func TestUninstallLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	cfg, c := testenv.Start(t, testenv.WithKyvernoCRDs())
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: trustNS}}); err != nil {
		t.Fatal(err)
	}
	clock := clocktesting.NewFakeClock(t0)
	m := startManager(t, managerOpts{cfg: cfg, clock: clock, layout: controllers.LayoutShared})

	engine := func(e trustv1alpha1.Engine, a trustv1alpha1.Action) func(*trustv1alpha1.TrustedRegistry) {
		return func(tr *trustv1alpha1.TrustedRegistry) { tr.Spec.Policy.Engine, tr.Spec.Action = e, a }
	}
	regs := map[string]func(*trustv1alpha1.TrustedRegistry){
		"un-ivp":       engine(trustv1alpha1.EngineImageValidatingPolicy, trustv1alpha1.ActionEnforce),
		"un-ivp-audit": engine(trustv1alpha1.EngineImageValidatingPolicy, trustv1alpha1.ActionAudit),
		"un-cpol":      engine(trustv1alpha1.EngineClusterPolicy, trustv1alpha1.ActionEnforce),
		"un-cpol-2":    engine(trustv1alpha1.EngineClusterPolicy, trustv1alpha1.ActionEnforce),
	}
	for name, mut := range regs {
		for _, o := range []client.Object{keySecret(name+"-key", map[string]string{"cosign.pub": newKeyPEM(t)}), registry(name, mut)} {
			if err := c.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	ready := func(name string) *trustv1alpha1.TrustedRegistry {
		t.Helper()
		tr := &trustv1alpha1.TrustedRegistry{}
		eventually(t, 30*time.Second, name+" Ready", func() error {
			if err := c.Get(ctx, client.ObjectKey{Name: name}, tr); err != nil {
				return err
			}
			if got := condition(tr, trustv1alpha1.ConditionReady); got != "True/Ready" {
				return fmt.Errorf("Ready is %q", got)
			}
			return nil
		})
		return tr
	}
	for name := range regs {
		tr := ready(name)
		if !containsStr(tr.Finalizers, controllers.Finalizer) {
			t.Errorf("%s has no finalizer %s: %v", name, controllers.Finalizer, tr.Finalizers)
		}
	}
	if got := signetPolicies(t, c); len(got) < 3 {
		t.Fatalf("want the shared ImageValidatingPolicies (Enforce, Audit) and the ClusterPolicy, have %v", got)
	}
	if got := signetConfigMaps(t, c); len(got) != len(regs) {
		t.Fatalf("want a key ring per registry, have %v", got)
	}

	// The operator goes away first: a deleted registry stays Terminating, enforced.
	m.stop()
	del := func(name string) {
		t.Helper()
		tr := &trustv1alpha1.TrustedRegistry{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := c.Delete(ctx, tr); err != nil && !isNotFound(err) {
			t.Fatal(err)
		}
	}
	del("un-cpol")
	time.Sleep(2 * time.Second)
	tr := &trustv1alpha1.TrustedRegistry{}
	if err := c.Get(ctx, client.ObjectKey{Name: "un-cpol"}, tr); err != nil || tr.DeletionTimestamp.IsZero() {
		t.Fatalf("without the operator a deleted registry must wait, Terminating (err %v, deletionTimestamp %v)", err, tr.DeletionTimestamp)
	}
	if p, err := getPolicy(c, cpGVK, "signet.cpol.all"); err != nil || !strings.Contains(p.GetAnnotations()[render.AnnotationRegistries], `"un-cpol"`) {
		t.Fatalf("without the operator the deleted registry's branch must keep enforcing (err %v)", err)
	}

	// The operator is back: the deletion completes; then every other registry is deleted.
	startManager(t, managerOpts{cfg: cfg, clock: clock, layout: controllers.LayoutShared})
	waitGone(t, c, "un-cpol")
	if p, err := getPolicy(c, cpGVK, "signet.cpol.all"); err != nil || strings.Contains(p.GetAnnotations()[render.AnnotationRegistries], `"un-cpol"`) {
		t.Fatalf("un-cpol is gone but its branch is still in the ClusterPolicy (err %v)", err)
	}
	for name := range regs {
		del(name)
	}
	for name := range regs {
		waitGone(t, c, name)
	}
	// No waiting here: once the registries are gone, so is everything of Signet.
	if got := signetPolicies(t, c); len(got) > 0 {
		t.Errorf("Signet policies left after every TrustedRegistry was deleted: %v", got)
	}
	if got := signetConfigMaps(t, c); len(got) > 0 {
		t.Errorf("Signet ConfigMaps left after every TrustedRegistry was deleted: %v", got)
	}
}

func containsStr(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func waitGone(t *testing.T, c client.Client, name string) {
	t.Helper()
	eventually(t, 30*time.Second, name+" deleted", func() error {
		tr := &trustv1alpha1.TrustedRegistry{}
		err := c.Get(context.Background(), client.ObjectKey{Name: name}, tr)
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (err %v, finalizers %v)", err, tr.Finalizers)
	})
}

// signetPolicies lists every ImageValidatingPolicy and ClusterPolicy that Signet made (its
// managed-by label) or that is named like one of its policies.
func signetPolicies(t *testing.T, c client.Client) []string {
	t.Helper()
	var out []string
	for _, gvk := range []schema.GroupVersionKind{ivpGVK, cpGVK} {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := c.List(context.Background(), list); err != nil {
			t.Fatal(err)
		}
		for _, p := range list.Items {
			if p.GetLabels()["app.kubernetes.io/managed-by"] == "signet" || strings.HasPrefix(p.GetName(), "signet") {
				out = append(out, gvk.Kind+" "+p.GetName())
			}
		}
	}
	return out
}

// signetConfigMaps lists Signet's ConfigMaps (key rings and recorded inputs), by label or
// by name, in every namespace.
func signetConfigMaps(t *testing.T, c client.Client) []string {
	t.Helper()
	list := &corev1.ConfigMapList{}
	if err := c.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, cm := range list.Items {
		if cm.Labels["app.kubernetes.io/managed-by"] == "signet" || strings.HasPrefix(cm.Name, "signet") {
			out = append(out, cm.Namespace+"/"+cm.Name)
		}
	}
	return out
}
