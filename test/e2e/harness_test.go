//go:build e2e

// Smoke test of the closed-loop harness (internal/localstack + internal/ocitest) with
// hand-written Kyverno policies, independent of Signet's renderer and controller:
// it proves that the local control plane, the real Kyverno admission controller and the
// in-process registry close the loop, so that failures in Signet's own e2e tests point
// at Signet.
//
//	go test -tags e2e ./test/e2e/ -run Harness -v
package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/internal/localstack"
	"github.com/signet-operator/signet/internal/ocitest"
)

const harnessNamespace = "production"

// ivpYAML restricts pods in `production` to images of REGISTRY and requires a valid
// signature by KEY for them. Images outside REGISTRY match no matchImageReferences, so
// they are missing from images.containers: the registry validation is what denies them.
const ivpYAML = `
apiVersion: policies.kyverno.io/v1
kind: ImageValidatingPolicy
metadata:
  name: harness-ivp
spec:
  validationActions: [Deny]
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [pods]
    namespaceSelector:
      matchExpressions:
      - {key: kubernetes.io/metadata.name, operator: In, values: [production]}
  matchImageReferences:
  - glob: "REGISTRY/*"
  validationConfigurations:
    mutateDigest: false
    verifyDigest: true
    required: true
  attestors:
  - name: harness
    cosign:
      key:
        data: |
KEY
      ctlog:
        insecureIgnoreTlog: true
        insecureIgnoreSCT: true
  validations:
  - expression: >-
      object.spec.containers.all(c, c.image.startsWith('REGISTRY/')) &&
      object.spec.?initContainers.orValue([]).all(c, c.image.startsWith('REGISTRY/')) &&
      object.spec.?ephemeralContainers.orValue([]).all(c, c.image.startsWith('REGISTRY/'))
    message: harness-registry-not-allowed
  - expression: >-
      images.containers.map(i, verifyImageSignatures(i, [attestors.harness])).all(e, e > 0)
    message: harness-signature-invalid
`

// cpolYAML is the same contract as a ClusterPolicy (verifyImages + validate pattern).
const cpolYAML = `
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: harness-cpol
spec:
  background: false
  rules:
  - name: restrict-registry
    match:
      any:
      - resources:
          kinds: [Pod]
          namespaces: [production]
    validate:
      failureAction: Enforce
      message: harness-registry-not-allowed
      pattern:
        spec:
          containers:
          - image: "REGISTRY/*"
          =(initContainers):
          - image: "REGISTRY/*"
          =(ephemeralContainers):
          - image: "REGISTRY/*"
  - name: verify-signature
    match:
      any:
      - resources:
          kinds: [Pod]
          namespaces: [production]
    verifyImages:
    - imageReferences: ["REGISTRY/*"]
      failureAction: Enforce
      mutateDigest: false
      verifyDigest: true
      required: true
      attestors:
      - count: 1
        entries:
        - keys:
            publicKeys: |
KEY
            rekor:
              ignoreTlog: true
            ctlog:
              ignoreSCT: true
`

type engine struct {
	kind, name, yaml string
	gvr              schema.GroupVersionResource
	// messages a denial must contain, per reason
	registryMsg, signatureMsg []string
}

var engines = []engine{
	{
		kind: "ImageValidatingPolicy", name: "harness-ivp", yaml: ivpYAML,
		gvr:          schema.GroupVersionResource{Group: "policies.kyverno.io", Version: "v1", Resource: "imagevalidatingpolicies"},
		registryMsg:  []string{"Policy harness-ivp failed", "harness-registry-not-allowed"},
		signatureMsg: []string{"Policy harness-ivp failed", "harness-signature-invalid"},
	},
	{
		kind: "ClusterPolicy", name: "harness-cpol", yaml: cpolYAML,
		gvr:          schema.GroupVersionResource{Group: "kyverno.io", Version: "v1", Resource: "clusterpolicies"},
		registryMsg:  []string{"harness-cpol", "restrict-registry", "harness-registry-not-allowed"},
		signatureMsg: []string{"harness-cpol", "verify-signature", "failed to verify image"},
	},
}

type imageCase struct {
	name    string
	image   string
	allowed bool
	denial  func(engine) []string
}

func TestHarness(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	// Images: in the trusted registry signed, unsigned, carrying a signature replayed
	// from the signed image, signed by another key; and a signed image in another registry.
	reg := ocitest.NewRegistryT(t)
	otherReg := ocitest.NewRegistryT(t)
	key := ocitest.MustGenerateKeyPair(t)
	wrongKey := ocitest.MustGenerateKeyPair(t)
	push := func(r *ocitest.Registry, repo string, signer *ocitest.KeyPair) string {
		t.Helper()
		d, err := r.PushRandomImage(ctx, repo)
		if err != nil {
			t.Fatal(err)
		}
		if signer != nil {
			if err := ocitest.Sign(ctx, d, signer.Signer); err != nil {
				t.Fatal(err)
			}
		}
		return d.String()
	}
	signed := push(reg, "team/app", key)
	unsigned := push(reg, "team/app", nil)
	wrongKeyImg := push(reg, "team/app", wrongKey)
	replayedImg := push(reg, "team/replayed", nil)
	if err := ocitest.ReplaySignature(ctx, mustDigest(t, signed), mustDigest(t, replayedImg)); err != nil {
		t.Fatal(err)
	}
	foreign := push(otherReg, "team/app", key)

	start := time.Now()
	stack := localstack.StartT(t, localstack.Options{})
	t.Logf("stack started in %v (%v)", time.Since(start).Round(time.Millisecond), stack.Timings())
	t.Logf("kubectl: %s get pods -n %s", stack.KubectlCommand(), harnessNamespace)
	kube := stack.Kube()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: harnessNamespace}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	sig := func(e engine) []string { return e.signatureMsg }
	regMsg := func(e engine) []string { return e.registryMsg }
	cases := []imageCase{
		{name: "signed", image: signed, allowed: true},
		{name: "unsigned", image: unsigned, denial: sig},
		{name: "wrong-key", image: wrongKeyImg, denial: sig},
		{name: "replayed-signature", image: replayedImg, denial: sig},
		{name: "other-registry", image: foreign, denial: regMsg},
		{name: "docker-hub", image: "nginx:1.27", denial: regMsg},
	}

	for _, e := range engines {
		t.Run(e.kind, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			short := map[string]string{"ImageValidatingPolicy": "ivp", "ClusterPolicy": "cpol"}[e.kind]

			// Baseline: no policy, so an unsigned pod is admitted.
			baseline := latency(t, ctx, kube, pod("baseline", unsigned), 5)
			t.Logf("%s: no policy, dry-run admission median %v", e.kind, baseline)

			obj := renderPolicy(t, e.yaml, reg.Host(), key.PublicKeyPEM)
			if _, err := stack.Dynamic().Resource(e.gvr).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating %s: %v", e.kind, err)
			}
			policyStart := time.Now()
			if err := stack.WaitForPolicyReady(ctx, e.kind, e.name); err != nil {
				t.Fatal(err)
			}
			// Ready means webhook configured and policy cached; an unsigned pod being
			// denied proves the whole path is live.
			waitAdmission(t, ctx, kube, pod("probe", unsigned), false)
			t.Logf("%s: policy enforced %v after creation", e.kind, time.Since(policyStart).Round(time.Millisecond))

			for _, c := range cases {
				p := pod(short+"-"+c.name, c.image)
				t0 := time.Now()
				_, err := kube.CoreV1().Pods(harnessNamespace).Create(ctx, p, metav1.CreateOptions{})
				first := time.Since(t0)
				switch {
				case c.allowed && err != nil:
					t.Errorf("%s: pod with %s image denied: %v", e.kind, c.name, err)
				case !c.allowed && err == nil:
					t.Errorf("%s: pod with %s image admitted", e.kind, c.name)
				case !c.allowed:
					for _, want := range c.denial(e) {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("%s: %s denial %q does not contain %q", e.kind, c.name, err, want)
						}
					}
					t.Logf("%s: %s denied: %v", e.kind, c.name, err)
				}
				t.Logf("%s: %-18s first admission %v, dry-run median %v", e.kind, c.name,
					first.Round(time.Millisecond), latency(t, ctx, kube, pod("lat", c.image), 5))
			}

			// Remove the policy and wait until Kyverno no longer enforces it, so the next
			// engine starts from a clean slate.
			if err := stack.Dynamic().Resource(e.gvr).Delete(ctx, e.name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			waitAdmission(t, ctx, kube, pod("probe", unsigned), true)
		})
	}
}

func mustDigest(t *testing.T, ref string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(ref)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func pod(name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: harnessNamespace},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: image}},
		},
	}
}

func dryRunCreate(ctx context.Context, kube kubernetes.Interface, p *corev1.Pod) error {
	_, err := kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

// waitAdmission polls a dry-run create of p until it is admitted (want true) or denied.
func waitAdmission(t *testing.T, ctx context.Context, kube kubernetes.Interface, p *corev1.Pod, want bool) {
	t.Helper()
	var last error
	for {
		last = dryRunCreate(ctx, kube, p)
		if (last == nil) == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for pod %s admitted=%v: %v (last: %v)", p.Name, want, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// latency returns the median duration of n dry-run creates of p.
func latency(t *testing.T, ctx context.Context, kube kubernetes.Interface, p *corev1.Pod, n int) time.Duration {
	t.Helper()
	ds := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		_ = dryRunCreate(ctx, kube, p)
		ds = append(ds, time.Since(t0))
	}
	slices.Sort(ds)
	return ds[n/2].Round(100 * time.Microsecond)
}

// renderPolicy substitutes the registry host and the indented public key.
func renderPolicy(t *testing.T, tmpl, registry string, pubPEM []byte) *unstructured.Unstructured {
	t.Helper()
	indent := strings.Repeat(" ", 10)
	if strings.Contains(tmpl, "kind: ClusterPolicy") {
		indent = strings.Repeat(" ", 14)
	}
	var key strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(string(pubPEM)), "\n") {
		fmt.Fprintf(&key, "%s%s\n", indent, line)
	}
	doc := strings.ReplaceAll(tmpl, "REGISTRY", registry)
	doc = strings.ReplaceAll(doc, "KEY\n", key.String())
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
		t.Fatalf("policy YAML: %v\n%s", err, doc)
	}
	return obj
}
