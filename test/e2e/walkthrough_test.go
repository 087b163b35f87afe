//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	cosignk8s "github.com/sigstore/cosign/v2/pkg/cosign/kubernetes"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/internal/ocitest"
)

// walkthroughPassword is what the walkthrough types at cosign's password prompt.
const walkthroughPassword = "seed walkthrough: tr0ub4dor&3"

// TestSignetSeedWalkthrough is the README's walkthrough, step by step, with nothing but
// the defaults:
//
//	cosign generate-key-pair k8s://signet-system/cosign-keys
//	cosign sign --key k8s://signet-system/cosign-keys ghcr.io/yourorg/nginx-signed:v1.0.0
//	kubectl apply -f trustedregistry.yaml          # images, namespaces, keys: nothing else
//	kubectl run -n production … --image ghcr.io/yourorg/nginx-signed:v1.0.0   → admitted, pinned
//	kubectl run -n production … --image nginx:latest                           → denied
//	kubectl describe trustedregistry …                                          → Blocked count
//
// The key Secret is made by cosign's own code for k8s:// key references (the code the
// cosign CLI runs), so it holds the encrypted private key, its password and the public key
// in one immutable Secret; Signet must use only the public key and never leak the rest.
// The in-process registry stands in for ghcr.io and signing is offline, so the
// TrustedRegistry skips the transparency log; each engine gets its own TrustedRegistry
// and namespace (the seed's "production" is TestSignetSeed's).
func TestSignetSeedWalkthrough(t *testing.T) {
	s := newScenario(t, 6*time.Minute)
	secret := s.cosignGenerateKeyPair("k8s://" + trustNS + "/cosign-keys")

	// cosign sign by tag: resolve the tag, sign that digest with the key from the Secret
	signedTag := s.reg.Ref("yourorg/nginx-signed:v1.0.0")
	signed, err := ocitest.PushRandomImage(s.ctx, signedTag)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := cosign.LoadPrivateKey(secret.Data["cosign.key"], secret.Data["cosign.password"], nil)
	if err != nil {
		t.Fatalf("loading the private key from the Secret: %v", err)
	}
	ref, err := name.ParseReference(signedTag)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ocitest.Digest(s.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if h.String() != signed.DigestStr() {
		t.Fatalf("tag %s resolves to %s, pushed %s", signedTag, h, signed.DigestStr())
	}
	if err := ocitest.Sign(s.ctx, signed, sv); err != nil {
		t.Fatal(err)
	}
	unsignedTag := s.reg.Ref("yourorg/nginx-unsigned:v1.0.0")
	if _, err := ocitest.PushRandomImage(s.ctx, unsignedTag); err != nil {
		t.Fatal(err)
	}

	// Waiting for Kyverno is most of the time: the engines run at once.
	t.Parallel()
	for _, e := range signetEngines {
		t.Run(e.kind, func(t *testing.T) {
			t.Parallel()
			s := s.sub(t)
			name := "walkthrough-" + e.short
			ns := name
			s.namespaces(ns)
			s.applyYAML(fmt.Sprintf(`apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata:
  name: %s
spec:
  images: ["%s/yourorg/*"]
  namespaces:
    names: [%s]
  keys:
    - name: ci
      secretRef: {name: cosign-keys}   # key: cosign.pub, what cosign generate-key-pair wrote
  transparencyLog: {ignore: true}      # signed offline, as the in-process registry needs
  policy: {engine: %s}
`, name, s.reg.Host(), ns, e.engine))
			s.registries = append(s.registries, name)
			if d := s.get(name).Spec.Digest; d.Require != nil || d.Mutate != nil {
				t.Fatalf("the apiserver stored digest defaults %+v; the action decides them", d)
			}
			ready := s.waitReady(name, e.kind)
			if msg := meta.FindStatusCondition(ready.Status.Conditions, "Ready").Message; !strings.Contains(msg, "tags are pinned to the verified digest") {
				t.Errorf("the Ready message does not say that tags are pinned: %s", msg)
			}
			s.waitEnforced(newPod(ns, "probe", unsignedTag))

			// the signed image, by tag: admitted, and stored pinned to the digest Kyverno
			// verified (what kubectl get pod -o yaml shows)
			s.admitted("signed image by tag", newPod(ns, "nginx-signed", signedTag))
			pod, err := s.kube.CoreV1().Pods(ns).Get(s.ctx, "nginx-signed", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := signedTag + "@" + signed.DigestStr()
			if got := pod.Spec.Containers[0].Image; got != want {
				t.Errorf("stored image = %s, want it pinned: %s", got, want)
			} else {
				t.Logf("stored pinned: image: %s", got)
			}

			s.denied("unsigned image by tag", newPod(ns, "nginx-unsigned", unsignedTag), signatureDenial(e.kind, name)...)
			s.denied("nginx:latest", newPod(ns, "nginx", "nginx:latest"),
				append(registryDenial(e.kind, name), "only images matching "+s.reg.Host()+"/yourorg/*")...)

			// kubectl describe shows the denials Signet counted
			s.waitFor("the two denials in status.reports.blocked", func() (bool, error) {
				r := s.get(name).Status.Reports
				if r == nil || r.Blocked == nil {
					return false, nil
				}
				seen := map[string]bool{}
				for _, b := range r.Blocked.Recent {
					seen[b.Name] = true
				}
				return r.Blocked.Count >= 2 && seen["nginx-unsigned"] && seen["nginx"], nil
			})
			count := s.get(name).Status.Reports.Blocked.Count
			out, err := exec.CommandContext(s.ctx, s.stack.KubectlPath(), "--kubeconfig", s.stack.KubeconfigPath(),
				"describe", "trustedregistry", name).CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl describe: %v\n%s", err, out)
			}
			if !regexp.MustCompile(`(?m)^\s+Blocked:\s*\n\s+Count:\s+`+fmt.Sprint(count)+`\s*$`).Match(out) ||
				!strings.Contains(string(out), "nginx:latest") {
				t.Errorf("kubectl describe does not show the blocked count %d and the denied nginx:latest:\n%s", count, out)
			}

			s.noPrivateKeyMaterial(name, secret)
		})
	}
}

// cosignGenerateKeyPair runs what `cosign generate-key-pair k8s://<ns>/<name>` runs, with
// the password typed at its prompt, against the stack's apiserver, and returns the Secret
// it created. cosign finds the cluster through the kubeconfig and writes cosign.pub into
// the working directory: both are set for the call only, before any scenario runs in
// parallel (no other test is running yet).
func (s *scenario) cosignGenerateKeyPair(k8sRef string) *corev1.Secret {
	s.t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		s.t.Fatal(err)
	}
	dir := s.t.TempDir()
	prev, had := os.LookupEnv("KUBECONFIG")
	if err := os.Setenv("KUBECONFIG", s.stack.KubeconfigPath()); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		s.t.Fatal(err)
	}
	err = cosignk8s.KeyPairSecret(s.ctx, k8sRef, func(bool) ([]byte, error) { return []byte(walkthroughPassword), nil })
	if had {
		_ = os.Setenv("KUBECONFIG", prev)
	} else {
		_ = os.Unsetenv("KUBECONFIG")
	}
	if cerr := os.Chdir(wd); cerr != nil {
		s.t.Fatal(cerr)
	}
	if err != nil {
		s.t.Fatalf("cosign generate-key-pair %s: %v", k8sRef, err)
	}
	pub, err := os.ReadFile(filepath.Join(dir, "cosign.pub"))
	if err != nil {
		s.t.Fatal(err)
	}
	ns, secretName, _ := strings.Cut(strings.TrimPrefix(k8sRef, "k8s://"), "/")
	sec := &corev1.Secret{}
	if err := s.client.Get(s.ctx, client.ObjectKey{Namespace: ns, Name: secretName}, sec); err != nil {
		s.t.Fatal(err)
	}
	for _, k := range []string{"cosign.key", "cosign.password", "cosign.pub"} {
		if len(sec.Data[k]) == 0 {
			s.t.Fatalf("the Secret cosign made has no %s: %v", k, keysOf(sec.Data))
		}
	}
	if sec.Immutable == nil || !*sec.Immutable {
		s.t.Errorf("cosign made a mutable Secret; it marks its key Secrets immutable")
	}
	if string(sec.Data["cosign.pub"]) != string(pub) {
		s.t.Errorf("cosign.pub in the Secret differs from the file cosign wrote")
	}
	return sec
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// applyYAML creates the object a manifest describes, as kubectl apply would create it.
func (s *scenario) applyYAML(manifest string) {
	s.t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(manifest), &u.Object); err != nil {
		s.t.Fatal(err)
	}
	if err := s.client.Create(s.ctx, u); err != nil {
		s.t.Fatalf("creating %s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

// noPrivateKeyMaterial checks that nothing Signet wrote or logged holds the private key or
// its password from the key Secret: its log, the ConfigMaps of the trust namespace (the
// key ring), the TrustedRegistry and the policy it enforces.
func (s *scenario) noPrivateKeyMaterial(registry string, secret *corev1.Secret) {
	s.t.Helper()
	blk, _ := pem.Decode(secret.Data["cosign.key"])
	if blk == nil {
		s.t.Fatal("cosign.key is not PEM")
	}
	body := base64.StdEncoding.EncodeToString(blk.Bytes)
	secrets := map[string]string{
		"the password":                     string(secret.Data["cosign.password"]),
		"the private key (PEM body)":       body[:48],
		"the private key (encoded Secret)": base64.StdEncoding.EncodeToString(secret.Data["cosign.key"])[:48],
		"the password (encoded Secret)":    base64.StdEncoding.EncodeToString(secret.Data["cosign.password"]),
	}
	// the needles must find the material where it is: in the Secret itself
	raw, _ := yaml.Marshal(secret)
	for what, needle := range secrets {
		if !strings.Contains(string(raw)+string(secret.Data["cosign.key"])+string(secret.Data["cosign.password"]), needle) {
			s.t.Fatalf("the check for %s would not find it in the Secret itself", what)
		}
	}
	places := map[string]string{}
	logData, err := os.ReadFile(filepath.Join(s.logDir, "signet.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	places["Signet's log"] = string(logData)
	cms := &corev1.ConfigMapList{}
	if err := s.client.List(s.ctx, cms, client.InNamespace(trustNS)); err != nil {
		s.t.Fatal(err)
	}
	for _, cm := range cms.Items {
		y, _ := yaml.Marshal(cm)
		places["ConfigMap "+cm.Name] = string(y)
	}
	tr := s.get(registry)
	y, _ := yaml.Marshal(tr)
	places["TrustedRegistry "+registry] = string(y)
	if p := tr.Status.Policy; p != nil {
		ctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
		defer cancel()
		places[p.Kind+" "+p.Name] = s.policyYAML(ctx, policyGVK(p.Kind), p.Name)
	}
	for where, text := range places {
		for what, needle := range secrets {
			if strings.Contains(text, needle) {
				s.t.Errorf("%s holds %s of the key Secret", where, what)
			}
		}
	}
	s.t.Logf("no private key material in %d places Signet writes", len(places))
}
