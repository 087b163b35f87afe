package controllers

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
)

func TestMergeCredentials(t *testing.T) {
	reg := func(name, secret string) *trustv1alpha1.TrustedRegistry {
		return &trustv1alpha1.TrustedRegistry{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: trustv1alpha1.TrustedRegistrySpec{Credentials: &trustv1alpha1.RegistryCredentials{SecretName: secret}}}
	}
	docker := func(name string, auths map[string]string) *corev1.Secret {
		m := map[string]any{}
		for h, a := range auths {
			m[h] = map[string]string{"auth": a}
		}
		b, _ := json.Marshal(map[string]any{"auths": m})
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: b}}
	}
	secrets := map[string]*corev1.Secret{
		"a":       docker("a", map[string]string{"ghcr.io": "QUFB", "quay.io": "UVVB"}),
		"b":       docker("b", map[string]string{"registry.internal:5000": "QkJC"}),
		"clash":   docker("clash", map[string]string{"ghcr.io": "WFhY"}),
		"same":    docker("same", map[string]string{"ghcr.io": "QUFB"}),
		"missing": nil,
		"opaque":  {ObjectMeta: metav1.ObjectMeta{Name: "opaque"}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"x": []byte("y")}},
		"garbage": {ObjectMeta: metav1.ObjectMeta{Name: "garbage"}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths": "p4ssw0rd-in-a-broken-doc`)}},
	}
	regs := []*trustv1alpha1.TrustedRegistry{
		reg("r1", "a"), reg("r2", "b"), reg("r3", "clash"), reg("r4", "same"), reg("r5", "missing"), reg("r6", "opaque"), reg("r7", "garbage"),
	}
	data, out := mergeCredentials(regs, secrets, "signet-system")
	var merged struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	if err := json.Unmarshal(data, &merged); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"ghcr.io": "QUFB", "quay.io": "UVVB", "registry.internal:5000": "QkJC"}
	if len(merged.Auths) != len(want) {
		t.Errorf("merged hosts %v, want %v", merged.Auths, want)
	}
	for h, a := range want {
		if merged.Auths[h].Auth != a {
			t.Errorf("host %s: auth %q, want %q (the first registry by name wins)", h, merged.Auths[h].Auth, a)
		}
	}
	for name, reason := range map[string]string{
		"r1": trustv1alpha1.ReasonCredentialsCopied, "r2": trustv1alpha1.ReasonCredentialsCopied,
		"r3": trustv1alpha1.ReasonCredentialsConflict, "r4": trustv1alpha1.ReasonCredentialsCopied,
		"r5": trustv1alpha1.ReasonCredentialsSecretNotFound, "r6": trustv1alpha1.ReasonCredentialsInvalid,
		"r7": trustv1alpha1.ReasonCredentialsInvalid,
	} {
		if out[name].reason != reason {
			t.Errorf("%s: %s (%s), want %s", name, out[name].reason, out[name].msg, reason)
		}
		if strings.Contains(out[name].msg, "p4ssw0rd") || strings.Contains(out[name].msg, "QUFB") {
			t.Errorf("%s: the message repeats credentials: %s", name, out[name].msg)
		}
	}
	if !strings.Contains(out["r3"].msg, "ghcr.io (TrustedRegistry r1's are used)") {
		t.Errorf("conflict message: %s", out["r3"].msg)
	}
	// no registry with usable credentials: no copy
	if data, _ := mergeCredentials([]*trustv1alpha1.TrustedRegistry{reg("r5", "missing")}, secrets, "ns"); data != nil {
		t.Errorf("a copy without credentials: %s", data)
	}
}
