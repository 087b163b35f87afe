package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
)

// kyvernoDenial writes the event Kyverno's admission controller writes when it blocks a Pod.
func kyvernoDenial(t *testing.T, policy, ns, pod, image string, at time.Time) {
	t.Helper()
	e := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", policy, at.UnixNano()), Namespace: "default"},
		EventTime:           metav1.NewMicroTime(at),
		ReportingController: "kyverno-admission",
		ReportingInstance:   "kyverno-admission-test",
		Action:              "Resource Blocked",
		Reason:              "PolicyViolation",
		Type:                corev1.EventTypeWarning,
		Regarding:           corev1.ObjectReference{APIVersion: "policies.kyverno.io/v1", Kind: "ImageValidatingPolicy", Name: policy},
		Related:             &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pod},
		Note:                fmt.Sprintf("Pod %s/%s: [%s] fail (blocked); image %s failed signature or attestation verification", ns, pod, policy, image),
	}
	if err := sharedClient.Create(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

func TestBlockedCountsAndCoverage(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now().UTC().Truncate(time.Second))
	startManager(t, managerOpts{clock: clk, insights: true})
	ctx := context.Background()
	for _, ns := range []string{"insight-a", "insight-b"} {
		if err := sharedClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: ns, Labels: map[string]string{"team": "insight"},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	create(t, keySecret("insight-key", map[string]string{"cosign.pub": newKeyPEM(t)}),
		registry("insight", func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Spec.Namespaces = trustv1alpha1.NamespaceSelection{
				Names:    []string{"insight-a"},
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "insight"}},
			}
			tr.Spec.RestrictRegistries = new(bool) // coverage matters most without the restriction
		}))
	waitCondition(t, "insight", trustv1alpha1.ConditionReady, "True/Ready")

	// Pods as a kubelet-less cluster has them: one covered, two on a mirror nobody listed.
	pod := func(ns, name string, images ...string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		for i, img := range images {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: img})
		}
		return p
	}
	create(t,
		pod("insight-a", "ok", "ghcr.io/insight/app@sha256:"+fmt.Sprintf("%064d", 1)),
		pod("insight-a", "mirror", "ghcr.io/insight/app:1", "mirror.example.com/insight/app:1"),
		pod("insight-b", "mirror2", "mirror.example.com/insight/app:1"),
		pod("insight-b", "hub", "nginx:1.27"),
	)
	// Two denials in the last hour, one older (not counted), one about another policy.
	now := clk.Now()
	kyvernoDenial(t, "signet-insight", "insight-a", "bad-1", "ghcr.io/insight/app:2", now.Add(-10*time.Minute))
	kyvernoDenial(t, "signet-insight", "insight-b", "bad-2", "ghcr.io/insight/evil:1", now.Add(-2*time.Minute))
	kyvernoDenial(t, "signet-insight", "insight-a", "old", "ghcr.io/insight/app:0", now.Add(-2*time.Hour))
	kyvernoDenial(t, "signet-other", "insight-a", "x", "ghcr.io/other/app:1", now.Add(-time.Minute))

	var tr *trustv1alpha1.TrustedRegistry
	eventually(t, 30*time.Second, "blocked counts and coverage", func() error {
		tr = getRegistry(t, "insight")
		if tr.Status.Reports == nil || tr.Status.Reports.Blocked == nil || tr.Status.Reports.Blocked.Count != 2 {
			return fmt.Errorf("reports = %+v", tr.Status.Reports)
		}
		if c := tr.Status.Coverage; c == nil || c.Pods != 4 || c.UncoveredPods != 3 {
			return fmt.Errorf("coverage = %+v", tr.Status.Coverage)
		}
		return nil
	})
	recent := tr.Status.Reports.Blocked.Recent
	if len(recent) != 2 || recent[0].Name != "bad-2" || recent[0].Namespace != "insight-b" || recent[0].Image != "ghcr.io/insight/evil:1" {
		t.Errorf("recent denials = %+v", recent)
	}
	cov := tr.Status.Coverage.Uncovered
	if len(cov) != 2 || cov[0].Image != "mirror.example.com/insight/app:1" || cov[0].Pods != 2 || cov[0].Example != "insight-a/mirror" ||
		cov[1].Image != "nginx:1.27" {
		t.Errorf("uncovered images = %+v", cov)
	}

	// An hour later the denials have aged out of the window.
	clk.SetTime(now.Add(time.Hour))
	nudge(t, "insight-key")
	eventually(t, 20*time.Second, "denials age out", func() error {
		if b := getRegistry(t, "insight").Status.Reports.Blocked; b.Count != 0 || len(b.Recent) != 0 {
			return fmt.Errorf("blocked = %+v", b)
		}
		return nil
	})
}
