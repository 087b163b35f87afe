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
	"k8s.io/utils/ptr"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
	"github.com/signet-operator/signet/internal/ocitest"
	"github.com/signet-operator/signet/internal/verify"
)

// TestRotationPreview runs real images, signed in-process with real cosign keys in a
// registry on 127.0.0.1, and rotates the key they were signed with.
func TestRotationPreview(t *testing.T) {
	needsControlPlane(t)
	ctx := context.Background()
	reg := ocitest.NewRegistryT(t)
	oldKey, newKey := ocitest.MustGenerateKeyPair(t), ocitest.MustGenerateKeyPair(t)
	push := func(repo string, signers ...*ocitest.KeyPair) string {
		d, err := reg.PushRandomImage(ctx, repo)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range signers {
			if err := ocitest.Sign(ctx, d, k.Signer); err != nil {
				t.Fatal(err)
			}
		}
		return d.String()
	}
	resigned := push("prev/resigned", oldKey, newKey) // re-signed with the new key: safe
	oldOnly := push("prev/old-only", oldKey)          // signed with the retiring key only
	unsigned := push("prev/unsigned")

	startManager(t, managerOpts{
		clock:    clocktesting.NewFakeClock(t0),
		insights: true,
		preview:  &controllers.RotationPreview{Verifier: verify.New(verify.Options{}), Timeout: 30 * time.Second},
	})
	if err := sharedClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "preview-ns"}}); err != nil {
		t.Fatal(err)
	}
	create(t, keySecret("preview-key", map[string]string{"cosign.pub": string(oldKey.PublicKeyPEM)}),
		registry("preview", func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Spec.Images = []trustv1alpha1.ImagePattern{trustv1alpha1.ImagePattern(reg.Host() + "/prev/*")}
			tr.Spec.Namespaces.Names = []string{"preview-ns"}
			tr.Spec.TransparencyLog.Ignore = ptr.To(true)
		}))
	waitCondition(t, "preview", trustv1alpha1.ConditionReady, "True/Ready")
	for i, image := range []string{resigned, oldOnly, oldOnly, unsigned, "nginx:1.27"} {
		create(t, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "preview-ns"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
		})
	}
	// No key is retiring: no preview, no condition.
	if tr := getRegistry(t, "preview"); tr.Status.RotationPreview != nil || condition(tr, trustv1alpha1.ConditionRotationSafe) != "" {
		t.Fatalf("preview without a retiring key: %+v", tr.Status.RotationPreview)
	}

	updateSecret(t, "preview-key", map[string]string{"cosign.pub": string(newKey.PublicKeyPEM)})
	tr := waitCondition(t, "preview", trustv1alpha1.ConditionRotationSafe, "False/ImagesAtRisk")
	p := tr.Status.RotationPreview
	if p == nil || p.Images != 3 || p.Safe != 1 || p.AtRisk != 2 || p.Inconclusive != 0 {
		t.Fatalf("rotationPreview = %+v", p)
	}
	if len(p.RetiringKeys) != 1 || !strings.HasPrefix(p.RetiringKeys[0], "ci (sha256:") {
		t.Errorf("retiringKeys = %v", p.RetiringKeys)
	}
	if len(p.AtRiskImages) != 2 || p.AtRiskImages[0].Image != oldOnly || p.AtRiskImages[0].Pods != 2 || p.AtRiskImages[1].Image != unsigned {
		t.Errorf("atRiskImages = %+v", p.AtRiskImages)
	}
	msg := metaCondition(tr, trustv1alpha1.ConditionRotationSafe).Message
	if !strings.Contains(msg, "2 of 3 running images") || !strings.Contains(msg, oldOnly) || strings.Contains(msg, resigned) {
		t.Errorf("RotationSafe message: %q", msg)
	}

	// The old-only and unsigned workloads go away: the rotation is now safe.
	for _, name := range []string{"p1", "p2", "p3"} {
		if err := sharedClient.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "preview-ns"}}); err != nil {
			t.Fatal(err)
		}
	}
	tr = waitCondition(t, "preview", trustv1alpha1.ConditionRotationSafe, "True/RemainingKeysCover")
	if p := tr.Status.RotationPreview; p.Images != 1 || p.Safe != 1 || p.AtRisk != 0 {
		t.Errorf("rotationPreview after cleanup = %+v", p)
	}
}
