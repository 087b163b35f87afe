//go:build e2e

package e2e

import (
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestSignetLeastPrivilege: the identity every scenario's operator runs with (the
// ServiceAccount of config/default, see fixture.startSignet) cannot read Secrets outside the
// trust namespace, asked both ways: the apiserver refuses the request itself, and a
// SubjectAccessReview for the ServiceAccount says no. The positive controls (what the
// operator needs) make sure the reviews can say yes.
func TestSignetLeastPrivilege(t *testing.T) {
	t.Parallel()
	s := newScenario(t, 2*time.Minute)

	op, err := kubernetes.NewForConfig(s.operator.UnrecordedRESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	_, err = op.CoreV1().Secrets(metav1.NamespaceAll).List(s.ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("the operator listed Secrets cluster-wide: err=%v, want Forbidden", err)
	}
	_, err = op.CoreV1().Secrets("default").List(s.ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("the operator listed Secrets in namespace default: err=%v, want Forbidden", err)
	}
	if _, err := op.CoreV1().Secrets(trustNS).List(s.ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the operator cannot list the key Secrets in the trust namespace: %v", err)
	}

	for _, c := range []struct {
		ra    authorizationv1.ResourceAttributes
		allow bool
	}{
		{authorizationv1.ResourceAttributes{Resource: "secrets", Verb: "list"}, false},
		{authorizationv1.ResourceAttributes{Resource: "secrets", Verb: "watch"}, false},
		{authorizationv1.ResourceAttributes{Resource: "secrets", Verb: "get", Namespace: "kube-system"}, false},
		{authorizationv1.ResourceAttributes{Resource: "secrets", Verb: "create", Namespace: trustNS}, false},
		{authorizationv1.ResourceAttributes{Resource: "configmaps", Verb: "list"}, false},
		{authorizationv1.ResourceAttributes{Group: "kyverno.io", Resource: "clusterpolicies", Verb: "delete", Name: "not-signets"}, false},
		{authorizationv1.ResourceAttributes{Group: "trust.signet.dev", Resource: "trustedregistries", Verb: "create"}, false},
		{authorizationv1.ResourceAttributes{Resource: "secrets", Verb: "list", Namespace: trustNS}, true},
		{authorizationv1.ResourceAttributes{Group: "trust.signet.dev", Resource: "trustedregistries", Verb: "watch"}, true},
	} {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: s.operator.Username(), ResourceAttributes: &c.ra}}
		if err := s.client.Create(s.ctx, sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed != c.allow {
			t.Errorf("SubjectAccessReview %s %s/%s in %q (name %q) for %s: allowed=%v, want %v (%s)",
				c.ra.Verb, c.ra.Group, c.ra.Resource, c.ra.Namespace, c.ra.Name, s.operator.Username(), sar.Status.Allowed, c.allow, sar.Status.Reason)
		}
	}
}
