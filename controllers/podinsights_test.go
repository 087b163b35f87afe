package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
)

// registryReconciles reads controller-runtime's count of TrustedRegistry reconciles (all
// managers of this test binary).
func registryReconciles(t *testing.T) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "trustedregistry" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// TestPodBurstBoundedWork: Pods created one after another for longer than any coalescing
// window, in a namespace many TrustedRegistries guard, cost no TrustedRegistry reconcile
// and one coverage write per registry once the burst is over (docs/performance.md, "Pod
// insights"): the work per Pod does not grow with the registries guarding its namespace.
func TestPodBurstBoundedWork(t *testing.T) {
	m := startManager(t, managerOpts{clock: clocktesting.NewFakeClock(time.Now()), insights: true, layout: controllers.LayoutShared})
	const ns, registries, pods = "pod-burst", 12, 40
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		keySecret("pod-burst-key", map[string]string{"cosign.pub": newKeyPEM(t)}))
	names := make([]string, registries)
	for i := range names {
		names[i] = fmt.Sprintf("pod-burst-%02d", i)
		create(t, registry(names[i], func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Spec.Namespaces = trustv1alpha1.NamespaceSelection{Names: []string{ns}}
			tr.Spec.Keys[0].SecretRef.Name = "pod-burst-key"
		}))
	}
	t.Cleanup(func() { // (while the manager runs: their finalizers go)
		for _, n := range names {
			_ = sharedClient.Delete(context.Background(), &trustv1alpha1.TrustedRegistry{ObjectMeta: metav1.ObjectMeta{Name: n}})
		}
		eventually(t, 30*time.Second, "the burst's registries are gone", func() error {
			list := &trustv1alpha1.TrustedRegistryList{}
			if err := sharedClient.List(context.Background(), list); err != nil {
				return err
			}
			for _, tr := range list.Items {
				if strings.HasPrefix(tr.Name, "pod-burst-") {
					return fmt.Errorf("%s is still there", tr.Name)
				}
			}
			return nil
		})
	})
	for _, n := range names {
		waitCondition(t, n, trustv1alpha1.ConditionReady, "True/Ready")
	}
	eventually(t, 30*time.Second, "every registry's coverage (no Pods yet)", func() error {
		for _, n := range names {
			if c := getRegistry(t, n).Status.Coverage; c == nil || c.Pods != 0 {
				return fmt.Errorf("%s: coverage %+v", n, c)
			}
		}
		return nil
	})
	time.Sleep(6 * time.Second) // (delayed triggers of the setup have fired)

	reconciles := registryReconciles(t)
	mark := m.writes.n.Load()
	// 40 Pods over 10 s: twice the longest delay with which a Pod change may reach a
	// registry's status (podinsights.go's quiet delay, coalesce.go's trigger delay).
	for i := 0; i < pods; i++ {
		create(t, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%02d", i), Namespace: ns},
			Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "app", Image: fmt.Sprintf("registry.example.com/team-%d/app:v1", i%4)},
			}},
		})
		time.Sleep(250 * time.Millisecond)
	}
	eventually(t, 60*time.Second, "every registry's coverage counts every Pod", func() error {
		for _, n := range names {
			c := getRegistry(t, n).Status.Coverage
			if c == nil || c.Pods != pods || c.UncoveredPods != pods || len(c.Uncovered) != 4 || c.Uncovered[0].Pods != pods/4 {
				return fmt.Errorf("%s: coverage %+v", n, c)
			}
		}
		return nil
	})
	time.Sleep(6 * time.Second) // anything still pending would write now

	_, writes := m.writes.since(mark)
	perRegistry := map[string]int{}
	for _, w := range writes {
		for _, n := range names {
			if strings.HasSuffix(w, "/trustedregistries/"+n+"/status") {
				perRegistry[n]++
			}
		}
	}
	for _, n := range names {
		if perRegistry[n] != 1 {
			t.Errorf("%s: %d status writes for the burst, want 1", n, perRegistry[n])
		}
	}
	if len(writes) != registries {
		t.Errorf("%d writes for the burst, want %d (one per registry): %v", len(writes), registries, writes)
	}
	if got := registryReconciles(t) - reconciles; got > 0 {
		t.Errorf("%v TrustedRegistry reconciles for a burst of Pods, want none (coverage is aggregated per namespace)", got)
	}
}

// TestCoverageFollowsPodsAndPatterns: status.coverage, written by the podinsights
// controller for Pod changes and by the registry controller for a spec change, lists an
// image outside the patterns while a Pod runs it, and drops it once the patterns cover it
// or its last Pod is gone (the merge patch empties the list).
func TestCoverageFollowsPodsAndPatterns(t *testing.T) {
	startManager(t, managerOpts{clock: clocktesting.NewFakeClock(time.Now()), insights: true, layout: controllers.LayoutShared})
	const ns, name = "cov-follow", "cov-follow"
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		keySecret(name+"-key", map[string]string{"cosign.pub": newKeyPEM(t)}),
		registry(name, func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Spec.Namespaces = trustv1alpha1.NamespaceSelection{Names: []string{ns}}
		}))
	t.Cleanup(func() {
		_ = sharedClient.Delete(context.Background(), &trustv1alpha1.TrustedRegistry{ObjectMeta: metav1.ObjectMeta{Name: name}})
	})
	waitCondition(t, name, trustv1alpha1.ConditionReady, "True/Ready")
	pod := func(podName, image string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: ns},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}}}
	}
	const mirror, quay = "mirror.example.com/cov-follow/app:1", "quay.io/cov-follow/tool:2"
	// want: the Pods counted, and the uncovered images with their Pods, most used first
	expect := func(what string, pods int32, uncovered ...trustv1alpha1.UncoveredImage) {
		t.Helper()
		eventually(t, 30*time.Second, what, func() error {
			c := getRegistry(t, name).Status.Coverage
			if c == nil {
				return fmt.Errorf("no coverage")
			}
			var uncoveredPods int32
			for _, u := range uncovered {
				uncoveredPods += u.Pods
			}
			if c.Pods != pods || c.UncoveredPods != uncoveredPods || len(c.Uncovered) != len(uncovered) {
				return fmt.Errorf("coverage %+v", c)
			}
			for i, u := range uncovered {
				if c.Uncovered[i].Image != u.Image || c.Uncovered[i].Pods != u.Pods {
					return fmt.Errorf("coverage %+v", c)
				}
			}
			return nil
		})
	}
	create(t, pod("covered", "ghcr.io/cov-follow/app:1"), pod("mirrored", mirror))
	expect("the mirror's image uncovered", 2, trustv1alpha1.UncoveredImage{Image: mirror, Pods: 1})
	create(t, pod("tool-1", quay), pod("tool-2", quay))
	expect("a new image uncovered", 4,
		trustv1alpha1.UncoveredImage{Image: quay, Pods: 2}, trustv1alpha1.UncoveredImage{Image: mirror, Pods: 1})

	tr := getRegistry(t, name)
	tr.Spec.Images = append(tr.Spec.Images, "mirror.example.com/cov-follow/*")
	if err := sharedClient.Update(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	expect("the mirror covered by the new pattern", 4, trustv1alpha1.UncoveredImage{Image: quay, Pods: 2})

	for _, p := range []string{"tool-1", "tool-2"} {
		if err := sharedClient.Delete(context.Background(), pod(p, quay)); err != nil {
			t.Fatal(err)
		}
	}
	expect("the tool's Pods gone", 2)
}
