package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	policyreportv1alpha2 "github.com/kyverno/kyverno/api/policyreport/v1alpha2"
	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/kyverno"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/test/bench/kit"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"strings"
	"time"
)

// Labels the harness puts on what it creates.
const (
	labelBatch = "bench.signet.dev/batch"
	labelC0    = "bench.signet.dev/c0"
)

// newKeyPEM returns a fresh ECDSA P-256 public key as cosign writes it.
func newKeyPEM() (string, error) {
	b, err := keys.StandInPEM()
	return string(b), err
}

// keySecret is a key Secret as `cosign generate-key-pair k8s://…` leaves it, minus the
// private key: only cosign.pub.
func keySecret(name, pub string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: trustNS},
		Data:       map[string][]byte{"cosign.pub": []byte(pub)},
	}
}

// benchRegistry is a realistic TrustedRegistry: two image patterns, two namespaces,
// Enforce, one key, digests required, the default rotation overlap.
func benchRegistry(name, batch, secret string) *trustv1alpha1.TrustedRegistry {
	return &trustv1alpha1.TrustedRegistry{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{labelBatch: batch}},
		Spec: trustv1alpha1.TrustedRegistrySpec{
			Images: []trustv1alpha1.ImagePattern{
				trustv1alpha1.ImagePattern("ghcr.io/" + name + "/*"),
				trustv1alpha1.ImagePattern("registry.example.com/" + name + "/*"),
			},
			Namespaces: trustv1alpha1.NamespaceSelection{Names: []string{"production", "staging"}},
			Action:     trustv1alpha1.ActionEnforce,
			Keys: []trustv1alpha1.PublicKey{{
				Name: "ci", SecretRef: trustv1alpha1.SecretKeyReference{Name: secret, Key: "cosign.pub"},
			}},
		},
	}
}

// policyTemplate renders the ImageValidatingPolicy Signet generates for benchRegistry with
// one key, then relabels it so that the manager never takes it for its own.
func policyTemplate() (*unstructured.Unstructured, error) {
	pub, err := newKeyPEM()
	if err != nil {
		return nil, err
	}
	pk, err := keys.ParsePublicKey([]byte(pub))
	if err != nil {
		return nil, err
	}
	tr := benchRegistry("c0-template", "c0", "c0-key")
	tr.UID = types.UID("00000000-0000-4000-8000-000000000c00")
	u, err := render.Render(render.Input{
		Registry: tr,
		Keys:     []render.Key{{Name: "ci", Fingerprint: pk.Fingerprint, PEM: pk.PEM, State: trustv1alpha1.KeyActive}},
		Engine:   trustv1alpha1.EngineImageValidatingPolicy,
	})
	if err != nil {
		return nil, err
	}
	labels := u.GetLabels()
	labels[render.LabelManagedBy] = "signet-bench"
	u.SetLabels(labels)
	return u, nil
}

func ivpList() *unstructured.UnstructuredList {
	l := &unstructured.UnstructuredList{}
	l.SetGroupVersionKind(kyverno.ImageValidatingPolicy.GroupVersion().WithKind(kyverno.ImageValidatingPolicy.Kind + "List"))
	return l
}

// hasKey tells whether a generated policy inlines pemKey anywhere in its spec (compared
// in JSON, where both are escaped alike).
func hasKey(u *unstructured.Unstructured, pemKey string) bool {
	spec, err := json.Marshal(u.Object["spec"])
	if err != nil {
		return false
	}
	want, _ := json.Marshal(strings.TrimSpace(pemKey))
	return bytes.Contains(spec, want[1:len(want)-1])
}

// podReport is a PolicyReport as Kyverno's reports-controller writes one: one per Pod,
// named by the Pod's UID, in its namespace, owned by and scoped to the Pod, labelled only
// app.kubernetes.io/managed-by=kyverno, results of every policy that matched the Pod.
func podReport(ns string, i int, signetPolicies []string, fail bool) *policyreportv1alpha2.PolicyReport {
	uid := types.UID(fmt.Sprintf("%08x-b3c4-4d5e-8f60-%012x", i, i))
	pod := fmt.Sprintf("web-%d-7f9c4b6d8-%05d", i%37, i)
	ts := metav1.Timestamp{Seconds: 1_764_000_000 + int64(i%86400)}
	results := []policyreportv1alpha2.PolicyReportResult{
		{
			Policy: "require-labels", Rule: "check-for-labels", Result: policyreportv1alpha2.StatusPass,
			Message: "validation rule 'check-for-labels' passed.", Source: "kyverno", Category: "Best Practices",
			Severity: policyreportv1alpha2.SeverityMedium, Scored: true, Timestamp: ts,
		},
		{
			Policy: "disallow-latest-tag", Rule: "validate-image-tag", Result: policyreportv1alpha2.StatusPass,
			Message: "validation rule 'validate-image-tag' passed.", Source: "kyverno", Category: "Best Practices",
			Severity: policyreportv1alpha2.SeverityMedium, Scored: true, Timestamp: ts,
		},
	}
	summary := policyreportv1alpha2.PolicyReportSummary{Pass: 2}
	for j, policy := range signetPolicies {
		reg := strings.TrimPrefix(policy, "signet-")
		image := fmt.Sprintf("ghcr.io/%s/app-%d@sha256:%064x", reg, i%50, i)
		r := policyreportv1alpha2.PolicyReportResult{
			Policy: policy, Rule: policy, Result: policyreportv1alpha2.StatusPass,
			Message: "image " + image + " verified", Source: "KyvernoImageValidatingPolicy",
			Scored: true, Timestamp: ts, Properties: map[string]string{"process": "background scan"},
		}
		if fail && j == 0 {
			r.Result = policyreportv1alpha2.StatusFail
			r.Message = "failed to verify image " + image + ": .attestors[0].entries[0].keys: no matching signatures: invalid signature when validating ASN.1 encoded signature"
			summary.Fail++
		} else {
			summary.Pass++
		}
		results = append(results, r)
	}
	return &policyreportv1alpha2.PolicyReport{
		ObjectMeta: metav1.ObjectMeta{
			Name: string(uid), Namespace: ns,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "kyverno"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Pod", Name: pod, UID: uid,
			}},
		},
		Scope:   &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pod, UID: uid},
		Results: results,
		Summary: summary,
	}
}

// createAll creates objs with the harness client, 8 at a time.
func createAll(ctx context.Context, c client.Client, objs []client.Object) error {
	return kit.Parallel(ctx, len(objs), 8, func(ctx context.Context, i int) error {
		if err := c.Create(ctx, objs[i]); err != nil {
			return fmt.Errorf("creating %T %s: %w", objs[i], objs[i].GetName(), err)
		}
		return nil
	})
}

// --- watching -------------------------------------------------------------------------

// tracker lists and then watches one kind, handing every object seen (listed items first,
// then watch events, with the time they arrived) to a function that says when it has seen
// enough. It re-establishes the watch when the apiserver closes it.
type tracker struct {
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

// track starts a tracker; it returns once the watch is established, so that anything
// written afterwards is seen.
func track(ctx context.Context, c client.WithWatch, newList func() client.ObjectList, opts []client.ListOption,
	seen func(obj runtime.Object, at time.Time) bool) (*tracker, error) {
	ctx, cancel := context.WithCancel(ctx)
	t := &tracker{done: make(chan struct{}), cancel: cancel}
	list := newList()
	if err := c.List(ctx, list, opts...); err != nil {
		cancel()
		return nil, err
	}
	rv := list.GetResourceVersion()
	w, err := c.Watch(ctx, newList(), append(append([]client.ListOption{}, opts...),
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})...)
	if err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer close(t.done)
		defer func() { w.Stop() }()
		items, err := metaItems(list)
		if err != nil {
			t.err = err
			return
		}
		for _, o := range items {
			if seen(o, time.Now()) {
				return
			}
		}
		for {
			select {
			case <-ctx.Done():
				t.err = ctx.Err()
				return
			case ev, ok := <-w.ResultChan():
				now := time.Now()
				if !ok || ev.Type == watch.Error {
					if ev.Type == watch.Error {
						if st := apierrors.FromObject(ev.Object); apierrors.IsResourceExpired(st) || apierrors.IsGone(st) {
							t.err = fmt.Errorf("watch expired: %w", st)
							return
						}
					}
					w.Stop()
					if w, err = c.Watch(ctx, newList(), append(append([]client.ListOption{}, opts...),
						&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})...); err != nil {
						t.err = err
						return
					}
					continue
				}
				if o, ok := ev.Object.(metav1.Object); ok {
					rv = o.GetResourceVersion()
				}
				if ev.Type == watch.Bookmark || ev.Type == watch.Deleted {
					continue
				}
				if seen(ev.Object, now) {
					return
				}
			}
		}
	}()
	return t, nil
}

// wait waits for the tracker to be satisfied, at most timeout.
func (t *tracker) wait(timeout time.Duration) error {
	defer t.cancel()
	select {
	case <-t.done:
		return t.err
	case <-time.After(timeout):
		t.cancel()
		<-t.done
		return fmt.Errorf("timed out after %s", timeout)
	}
}

func metaItems(list client.ObjectList) ([]runtime.Object, error) {
	switch l := list.(type) {
	case *unstructured.UnstructuredList:
		out := make([]runtime.Object, 0, len(l.Items))
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
		return out, nil
	case *trustv1alpha1.TrustedRegistryList:
		out := make([]runtime.Object, 0, len(l.Items))
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
		return out, nil
	}
	return nil, errors.New("tracker: unsupported list type")
}
