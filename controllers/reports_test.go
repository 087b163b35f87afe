package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	policyreportv1alpha2 "github.com/kyverno/kyverno/api/policyreport/v1alpha2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
)

// podReport builds a PolicyReport the way Kyverno's reports-controller writes one: named by
// the Pod's UID, in its namespace, scoped to the Pod, one result per policy rule.
func podReport(ns, pod string, results ...policyreportv1alpha2.PolicyReportResult) *policyreportv1alpha2.PolicyReport {
	uid := types.UID(fmt.Sprintf("uid-%s-%s", ns, pod))
	return &policyreportv1alpha2.PolicyReport{
		ObjectMeta: metav1.ObjectMeta{
			Name: string(uid), Namespace: ns,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "kyverno"},
		},
		Scope:   &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pod, UID: uid},
		Results: results,
	}
}

func result(policy, outcome, msg string) policyreportv1alpha2.PolicyReportResult {
	return policyreportv1alpha2.PolicyReportResult{
		Policy: policy, Rule: policy, Result: policyreportv1alpha2.PolicyResult(outcome), Message: msg,
		Source: "KyvernoImageValidatingPolicy", Timestamp: metav1.Timestamp{Seconds: t0.Unix()},
	}
}

func reportClient(t *testing.T) client.Client {
	s := runtime.NewScheme()
	if err := policyreportv1alpha2.Install(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(sharedCfg, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReportSummaryInStatus(t *testing.T) {
	m := startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0)})
	create(t, keySecret("audited-key", map[string]string{"cosign.pub": newKeyPEM(t)}),
		registry("audited", func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Spec.Action = trustv1alpha1.ActionAudit
			tr.Spec.Namespaces.Names = []string{"audit-ns"}
		}))
	waitCondition(t, "audited", trustv1alpha1.ConditionReady, "True/Ready")
	waitCondition(t, "audited", trustv1alpha1.ConditionAuditViolations, "False/NoViolations")

	rc := reportClient(t)
	ctx := context.Background()
	if err := sharedClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "audit-ns"}}); err != nil {
		t.Fatal(err)
	}
	// 12 failing pods (more than the list holds), 3 passing, and results of someone else's
	// policy that must not be counted.
	for i := 0; i < 12; i++ {
		r := podReport("audit-ns", fmt.Sprintf("bad-%02d", i),
			result("signet-audited", "fail", fmt.Sprintf("image ghcr.io/audited/app%02d:1 failed signature or attestation verification", i)),
			result("require-labels", "fail", "someone else's policy"))
		if err := rc.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if err := rc.Create(ctx, podReport("audit-ns", fmt.Sprintf("good-%d", i), result("signet-audited", "pass", "verified"))); err != nil {
			t.Fatal(err)
		}
	}
	var tr *trustv1alpha1.TrustedRegistry
	eventually(t, 30*time.Second, "report summary", func() error {
		tr = getRegistry(t, "audited")
		r := tr.Status.Reports
		if r == nil || r.Fail != 12 || r.Pass != 3 {
			return fmt.Errorf("reports = %+v", r)
		}
		return nil
	})
	r := tr.Status.Reports
	if len(r.Failing) != 10 {
		t.Fatalf("failing list has %d entries, want 10", len(r.Failing))
	}
	if f := r.Failing[0]; f.Namespace != "audit-ns" || f.Kind != "Pod" || f.Name != "bad-00" ||
		f.Image != "ghcr.io/audited/app00:1" || !strings.Contains(f.Message, "failed signature") {
		t.Errorf("first failing entry = %+v", f)
	}
	if got := condition(tr, trustv1alpha1.ConditionAuditViolations); got != "True/ViolationsFound" {
		t.Errorf("AuditViolations = %s", got)
	}

	// Unchanged reports cause no write: touching a report without changing results.
	time.Sleep(6 * time.Second) // past the coalescing window, so a write would not be deferred
	mark := m.writes.n.Load()
	rep := &policyreportv1alpha2.PolicyReport{}
	if err := rc.Get(ctx, client.ObjectKey{Namespace: "audit-ns", Name: "uid-audit-ns-good-0"}, rep); err != nil {
		t.Fatal(err)
	}
	rep.Labels["touched"] = "yes"
	if err := rc.Update(ctx, rep); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if n, writes := m.writes.since(mark); n != 0 {
		t.Fatalf("%d writes after a report change that left results unchanged: %v", n, writes)
	}
}
