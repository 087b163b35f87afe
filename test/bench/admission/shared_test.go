package main

import (
	"context"
	"strings"
	"testing"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/ocitest"
	"github.com/signet-operator/signet/internal/render"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// benchEnv is the part of env the rendering needs: the registry host and the keys.
func benchEnv(t *testing.T, n int) *env {
	t.Helper()
	e := &env{ownPEM: map[int][]byte{}, reg: ocitest.NewRegistryT(t)}
	var err error
	if e.shared, err = ocitest.GenerateKeyPair(keyPassword); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i += 2 {
		if e.ownPEM[i], err = keys.StandInPEM(); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// The shared variants apply RenderShared's policies for exactly the inputs the naive
// variant renders one by one, under shared.<group> and the bench's labels only.
func TestSharedPolicies(t *testing.T) {
	const n = 7
	e := benchEnv(t, n)
	for _, tc := range []struct {
		engine trustv1alpha1.Engine
		kind   string
		names  []string
	}{
		{trustv1alpha1.EngineImageValidatingPolicy, kindIVP, []string{"shared.ivp.enforce"}},
		{trustv1alpha1.EngineClusterPolicy, kindCP, []string{"shared.cpol.all"}},
	} {
		pols, err := e.sharedPolicies(n, tc.engine)
		if err != nil {
			t.Fatalf("%s: %v", tc.kind, err)
		}
		if len(pols) != len(tc.names) {
			t.Fatalf("%s: %d policies, want %v", tc.kind, len(pols), tc.names)
		}
		for j, p := range pols {
			meta, _ := p["metadata"].(map[string]any)
			if p["kind"] != tc.kind || meta["name"] != tc.names[j] {
				t.Errorf("%s: policy %v %v", tc.kind, p["kind"], meta["name"])
			}
			labels, _ := meta["labels"].(map[string]any)
			if len(labels) != 2 || labels[benchLabel] != "true" || labels[naiveLabel] != "true" {
				t.Errorf("%s: labels %v", tc.kind, labels)
			}
			annotations, _ := meta["annotations"].(map[string]any)
			for k := range annotations {
				if strings.HasPrefix(k, "trust.signet.dev/") {
					t.Errorf("%s: Signet's annotation %s kept", tc.kind, k)
				}
			}
			if tc.kind == kindCP && annotations["pod-policies.kyverno.io/autogen-controllers"] != "none" {
				t.Errorf("ClusterPolicy: Kyverno's autogen annotation dropped: %v", annotations)
			}
			if signetNameOfShared(tc.names[j]) != "signet."+strings.TrimPrefix(tc.names[j], "shared.") ||
				sharedBenchName(signetNameOfShared(tc.names[j])) != tc.names[j] {
				t.Errorf("name mapping of %s", tc.names[j])
			}
		}
		// same inputs as naivePolicy: every registry is in the shared policy
		ins := make([]render.Input, n)
		for i := range n {
			if ins[i], err = e.renderInput(i, tc.engine); err != nil {
				t.Fatal(err)
			}
			if _, err := render.Render(ins[i]); err != nil {
				t.Fatalf("registry %d: %v", i, err)
			}
		}
		sp, err := render.RenderShared(ins)
		if err != nil {
			t.Fatal(err)
		}
		if len(sp.Placements) != n {
			t.Errorf("%s: %d placements, want %d", tc.kind, len(sp.Placements), n)
		}
	}
	// naive policies keep their name and lose Signet's metadata
	p, err := e.naivePolicy(3, trustv1alpha1.EngineImageValidatingPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if meta, _ := p["metadata"].(map[string]any); meta["name"] != "naive-team-3" || meta["annotations"] != nil || meta["ownerReferences"] != nil {
		t.Errorf("naive policy metadata %v", meta)
	}
}

func TestNotInWebhooks(t *testing.T) {
	hook := func(name, url string, resources ...string) admissionregistrationv1.ValidatingWebhook {
		return admissionregistrationv1.ValidatingWebhook{
			Name:         name,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: ptr.To(url)},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Rule: admissionregistrationv1.Rule{Resources: resources},
			}},
		}
	}
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "kyverno-resource-validating-webhook-cfg", Labels: map[string]string{"webhook.kyverno.io/managed-by": "kyverno"}},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{
			hook("ivpol.validate.kyverno.svc-fail", "https://127.0.0.1:9443/ivpol/validate/naive-team-0/shared.ivp.enforce", "pods"),
			hook("ivpol.validate.kyverno.svc-fail-finegrained-x", "https://127.0.0.1:9443/ivpol/validate/x", "pods"),
		},
	}
	e := &env{kube: fake.NewClientset(cfg)}
	ctx := context.Background()
	missing, err := e.notInWebhooks(ctx, kindIVP, []string{"naive-team-0", "shared.ivp.enforce", "x", "naive-team-1", "naive-team"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(missing, ",") != "naive-team-1,naive-team" {
		t.Errorf("IVP missing %v", missing)
	}
	// no ClusterPolicy webhook yet
	if missing, _ := e.notInWebhooks(ctx, kindCP, []string{"shared.cpol.all"}); len(missing) != 1 {
		t.Errorf("ClusterPolicy without a webhook: missing %v", missing)
	}
	cfg.Webhooks = append(cfg.Webhooks, hook("validate.kyverno.svc-fail", "https://127.0.0.1:9443/validate/fail", "pods"))
	e.kube = fake.NewClientset(cfg)
	if missing, _ := e.notInWebhooks(ctx, kindCP, []string{"shared.cpol.all"}); len(missing) != 0 {
		t.Errorf("ClusterPolicy with a webhook: missing %v", missing)
	}
}
