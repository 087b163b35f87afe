//go:build e2e

package localstack_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/internal/localstack"
)

var (
	cpolGVR   = schema.GroupVersionResource{Group: "kyverno.io", Version: "v1", Resource: "clusterpolicies"}
	polrepGVR = schema.GroupVersionResource{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "policyreports"}
)

// requireLabel denies (Enforce) or reports (Audit) pods in ns without label "app".
func requireLabel(t *testing.T, name, action, ns string) *unstructured.Unstructured {
	t.Helper()
	doc := `
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: ` + name + `
spec:
  background: true
  rules:
  - name: require-app-label
    match:
      any:
      - resources:
          kinds: [Pod]
          namespaces: [` + ns + `]
    validate:
      failureAction: ` + action + `
      message: pods need an app label
      pattern:
        metadata:
          labels:
            app: "?*"
`
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

func createNS(t *testing.T, ctx context.Context, s *localstack.Stack, name string) {
	t.Helper()
	_, err := s.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func unlabelledPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
}

func poll(t *testing.T, ctx context.Context, what string, f func() (bool, error)) {
	t.Helper()
	var last error
	for {
		ok, err := f()
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last error: %v)", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestStackFull exercises the optional parts: kube-controller-manager (garbage
// collection, namespace deletion), the reports-controller with a short background
// scan, a Kyverno restart, and a clean Stop.
func TestStackFull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := localstack.StartT(t, localstack.Options{
		ControllerManager:      true,
		ReportsController:      true,
		BackgroundScanInterval: 5 * time.Second,
	})
	t.Logf("timings: %v", s.Timings())
	kube := s.Kube()

	t.Run("garbage collection", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		cms := kube.CoreV1().ConfigMaps("default")
		owner, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name: "dependent",
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID,
			}},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := cms.Delete(ctx, owner.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		poll(t, ctx, "dependent ConfigMap garbage-collected", func() (bool, error) {
			_, err := cms.Get(ctx, "dependent", metav1.GetOptions{})
			return apierrors.IsNotFound(err), err
		})
		createNS(t, ctx, s, "doomed")
		if err := kube.CoreV1().Namespaces().Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		poll(t, ctx, "namespace deletion", func() (bool, error) {
			_, err := kube.CoreV1().Namespaces().Get(ctx, "doomed", metav1.GetOptions{})
			return apierrors.IsNotFound(err), err
		})
	})

	t.Run("audit policy reports", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		createNS(t, ctx, s, "audited")
		if _, err := s.Dynamic().Resource(cpolGVR).Create(ctx, requireLabel(t, "audit-app-label", "Audit", "audited"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitForPolicyReady(ctx, "ClusterPolicy", "audit-app-label"); err != nil {
			t.Fatal(err)
		}
		if _, err := kube.CoreV1().Pods("audited").Create(ctx, unlabelledPod("audited", "unlabelled"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("Audit policy denied: %v", err)
		}
		t0 := time.Now()
		poll(t, ctx, "a failing PolicyReport result", func() (bool, error) {
			list, err := s.Dynamic().Resource(polrepGVR).Namespace("audited").List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			for _, r := range list.Items {
				results, _, _ := unstructured.NestedSlice(r.Object, "results")
				for _, res := range results {
					m, _ := res.(map[string]any)
					if m["policy"] == "audit-app-label" && m["result"] == "fail" {
						return true, nil
					}
				}
			}
			return false, nil
		})
		t.Logf("PolicyReport with the failure appeared %v after the pod", time.Since(t0).Round(time.Millisecond))
	})

	t.Run("kyverno restart", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		createNS(t, ctx, s, "enforced")
		if _, err := s.Dynamic().Resource(cpolGVR).Create(ctx, requireLabel(t, "enforce-app-label", "Enforce", "enforced"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitForPolicyReady(ctx, "ClusterPolicy", "enforce-app-label"); err != nil {
			t.Fatal(err)
		}
		denied := func() (bool, error) {
			_, err := kube.CoreV1().Pods("enforced").Create(ctx, unlabelledPod("enforced", "x"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err == nil {
				return false, nil
			}
			return strings.Contains(err.Error(), "pods need an app label"), err
		}
		poll(t, ctx, "denial before restart", denied)

		if err := s.StopKyverno(); err != nil {
			t.Fatal(err)
		}
		// With Kyverno gone and its webhooks removed, the cluster stays usable.
		if _, err := kube.CoreV1().Pods("enforced").Create(ctx, unlabelledPod("enforced", "while-down"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("pod creation with Kyverno stopped: %v", err)
		}
		t0 := time.Now()
		if err := s.StartKyverno(ctx); err != nil {
			t.Fatal(err)
		}
		ready := time.Since(t0)
		poll(t, ctx, "denial after restart", denied)
		t.Logf("restart: ready after %v, enforcing %v after readiness",
			ready.Round(time.Millisecond), (time.Since(t0) - ready).Round(time.Millisecond))
	})
}

// TestStackNoKyverno starts only the control plane and CRDs.
func TestStackNoKyverno(t *testing.T) {
	s := localstack.StartT(t, localstack.Options{NoKyverno: true})
	t.Logf("timings: %v", s.Timings())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Dynamic().Resource(cpolGVR).List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("Kyverno CRDs not served: %v", err)
	}
	hooks, err := s.Kube().AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil || len(hooks.Items) != 0 {
		t.Fatalf("webhooks = %v, %v; want none", hooks, err)
	}
}
