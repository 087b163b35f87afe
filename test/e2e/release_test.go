//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/ocitest"
	"github.com/signet-operator/signet/internal/release"
	"github.com/signet-operator/signet/internal/testenv"
)

// TestSignetVerifiesSignet: the release pipeline of `make release` (internal/release) builds
// the operator image without Docker and writes install.yaml pinned to its digest; the image
// is pushed to the in-process registry and signed with cosign; a TrustedRegistry guarding
// Signet's own namespace then admits the operator's Pod exactly as install.yaml defines it,
// and the real Kyverno denies the same image bytes pushed unsigned.
func TestSignetVerifiesSignet(t *testing.T) {
	t.Parallel()
	s := newScenario(t, 10*time.Minute)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	idx, err := release.Build(s.ctx, release.Options{
		Root: root, Version: "v0.0.0-e2e", Commit: "e2e", WorkDir: t.TempDir(),
		Platforms: []v1.Platform{{OS: "linux", Architecture: runtime.GOARCH}},
	})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := release.Push(s.ctx, idx, s.reg.Ref("signet-operator/signet:v0.0.0-e2e"))
	if err != nil {
		t.Fatal(err)
	}
	unsigned, err := release.Push(s.ctx, idx, s.reg.Ref("signet-operator/unsigned:v0.0.0-e2e"))
	if err != nil {
		t.Fatal(err)
	}
	key := s.keyPair()
	if err := ocitest.Sign(s.ctx, signed, key.Signer); err != nil {
		t.Fatal(err)
	}
	t.Logf("built, pushed and signed %s in %v", signed, time.Since(t0).Round(time.Millisecond))

	// install.yaml as `make release` writes it, naming the pushed digest.
	installYAML := filepath.Join(t.TempDir(), "install.yaml")
	if err := release.InstallYAML(s.ctx, root, filepath.Join(root, "bin", "kustomize"), signed.String(), installYAML); err != nil {
		t.Fatal(err)
	}
	dep := deploymentOf(t, installYAML)
	if got := dep.Spec.Template.Spec.Containers[0].Image; got != signed.String() {
		t.Fatalf("install.yaml runs %s, want the pushed digest %s", got, signed)
	}

	s.keySecret("signet-release-key", key)
	tr := s.registry("signet-release", "signet-operator", trustv1alpha1.EngineImageValidatingPolicy, []string{trustNS}, keyRef("release", "signet-release-key"))
	s.create(tr)
	s.waitReady(tr.Name, "ImageValidatingPolicy")
	// Pods as install.yaml runs the operator (the namespace enforces the restricted Pod
	// Security Standard), with the signed or the unsigned image
	podOf := func(name, image string) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: trustNS, Labels: dep.Spec.Template.Labels},
			Spec:       *dep.Spec.Template.Spec.DeepCopy(),
		}
		p.Spec.Containers[0].Image = image
		return p
	}
	s.waitEnforced(podOf("signet-probe", unsigned.String()))

	operator := podOf("signet-operator", signed.String())
	s.admitted("Signet's release image, signed, as install.yaml runs it", operator)
	t.Cleanup(func() {
		_ = s.kube.CoreV1().Pods(trustNS).Delete(s.ctx, operator.Name, metav1.DeleteOptions{})
	})
	s.denied("the same image bytes, unsigned", podOf("signet-unsigned", unsigned.String()), signatureDenial("ImageValidatingPolicy", tr.Name)...)
}

// deploymentOf returns the one Deployment of a manifest file.
func deploymentOf(t *testing.T, path string) *appsv1.Deployment {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var d appsv1.Deployment
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("no Deployment in %s: %v", path, err)
		}
		if d.Kind == "Deployment" {
			return &d
		}
	}
}
