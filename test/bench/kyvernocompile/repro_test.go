package kyvernocompile

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	policiesv1beta1 "github.com/kyverno/api/api/policies.kyverno.io/v1beta1"
	imageverifycache "github.com/kyverno/kyverno/pkg/image/verification/cache"
	eval "github.com/kyverno/kyverno/pkg/image/verification/evaluator"
	"github.com/kyverno/sdk/extensions/imagedataloader"
	"github.com/sigstore/cosign/v3/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v3/pkg/oci/remote"
	"github.com/sigstore/cosign/v3/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"
)

const (
	namespace = "production"
	// policyHost is the registry host the policies in testdata/ were rendered for.
	policyHost = "localhost:5000"
)

// The policies in testdata/ (rendered by Signet's internal/render, see README.md):
// naive-1 is one registry's policy as a person would write it, shared-N Signet's one
// policy for N registries. All guard namespace production, restrict it to their image
// patterns, require digests and one signature.
var policyNames = []string{"naive-1", "shared-1", "shared-30", "shared-300"}

type fixture struct {
	host  string // localhost:<port> of the in-process registry
	image string // localhost:<port>/team-0/app@sha256:…, signed with the seed-1 key
}

var (
	fixOnce sync.Once
	fix     fixture
	fixErr  error
)

// seedKey is the signing key the policies trust under seed 1: the same derivation as
// the renderer's tests (internal/render/helpers_test.go, testKeyPEM).
func seedKey(seed byte) (*ecdsa.PrivateKey, error) {
	d := sha256.Sum256([]byte{'s', 'i', 'g', 'n', 'e', 't', seed})
	return ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
}

func getFixture(tb testing.TB) *fixture {
	fixOnce.Do(func() { fixErr = fix.start() })
	if fixErr != nil {
		tb.Fatal(fixErr)
	}
	return &fix
}

// start runs an in-process OCI registry (never stopped: it lives as long as the test
// binary), pushes a random image and signs it offline as `cosign sign --tlog-upload=false
// --key` would.
func (f *fixture) start() error {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	f.host = strings.Replace(strings.TrimPrefix(srv.URL, "http://"), "127.0.0.1", "localhost", 1)
	repo, err := name.NewRepository(f.host + "/team-0/app")
	if err != nil {
		return err
	}
	img, err := random.Image(256, 1)
	if err != nil {
		return err
	}
	if err := remote.Write(repo.Tag("v1"), img); err != nil {
		return err
	}
	h, err := img.Digest()
	if err != nil {
		return err
	}
	ref := repo.Digest(h.String())
	f.image = ref.String()
	// the same image, unsigned, under another registry's pattern
	if err := remote.Write(repo.Registry.Repo("team-2", "app").Tag("v1"), img); err != nil {
		return err
	}

	priv, err := seedKey(1)
	if err != nil {
		return err
	}
	signer, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		return err
	}
	pl, err := (payload.Cosign{Image: ref}).MarshalJSON()
	if err != nil {
		return err
	}
	raw, err := signer.SignMessage(bytes.NewReader(pl))
	if err != nil {
		return err
	}
	sig, err := static.NewSignature(pl, base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		return err
	}
	se, err := ociremote.SignedEntity(ref)
	if err != nil {
		return err
	}
	if se, err = mutate.AttachSignatureToEntity(se, sig); err != nil {
		return err
	}
	return ociremote.WriteSignatures(ref.Repository, se)
}

// policyDir holds the policies: testdata/, or $KYVERNO_REPRO_POLICIES (to compare other
// renderings of the same registries, e.g. an older release's).
func policyDir() string {
	if d := os.Getenv("KYVERNO_REPRO_POLICIES"); d != "" {
		return d
	}
	return "testdata"
}

// policy reads <policyDir>/<name>.yaml for the in-process registry's host.
func (f *fixture) policy(tb testing.TB, name string) *policiesv1beta1.ImageValidatingPolicy {
	raw, err := os.ReadFile(filepath.Join(policyDir(), name+".yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	var p policiesv1beta1.ImageValidatingPolicy
	if err := yaml.Unmarshal([]byte(strings.ReplaceAll(string(raw), policyHost, f.host)), &p); err != nil {
		tb.Fatal(err)
	}
	return &p
}

// request is a Pod CREATE in namespace production running the signed image, as
// Kyverno's webhook hands it to the ImageValidatingPolicy engine.
func (f *fixture) request() (admission.Attributes, *admissionv1.AdmissionRequest, runtime.Object) {
	pod := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "p", "namespace": namespace},
		"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": f.image}}},
	}}
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	attr := admission.NewAttributesRecord(pod, nil, schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, namespace, "p", gvr, "", admission.Create, nil, false, nil)
	req := &admissionv1.AdmissionRequest{Operation: admissionv1.Create, Namespace: namespace, Name: "p",
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: map[string]string{"kubernetes.io/metadata.name": namespace}}}
	return attr, req, ns
}

var podsGVR = &metav1.GroupVersionResource{Version: "v1", Resource: "pods"}

func verifyCache(tb testing.TB) imageverifycache.Client {
	// as Kyverno's admission controller builds it with its default flags
	c, err := imageverifycache.New(imageverifycache.WithLogger(logr.Discard()), imageverifycache.WithCacheEnableFlag(true),
		imageverifycache.WithMaxSize(1000), imageverifycache.WithTTLDuration(60*time.Minute))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// admit is what Kyverno 1.19's ImageValidatingPolicy engine does for one policy on one
// admission request (pkg/cel/policies/ivpol/engine, evaluatePolicies): a new image
// context and compiler, Compile, then Evaluate.
func admit(tb testing.TB, pol *policiesv1beta1.ImageValidatingPolicy, cache imageverifycache.Client, attr admission.Attributes, req *admissionv1.AdmissionRequest, ns runtime.Object) *eval.EvaluationResult {
	ictx, err := imagedataloader.NewImageContext(nil, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	compiled, errs := eval.NewCompiler(ictx, nil, podsGVR, cache).Compile(pol, nil, nil)
	if errs != nil {
		tb.Fatal(errs.ToAggregate())
	}
	res, err := compiled.Evaluate(context.Background(), ictx, attr, req, ns, true, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// TestPoliciesAdmitTheSignedPod: every policy admits the signed Pod and denies the same
// image unsigned (so the benchmarks measure policies that work).
func TestPoliciesAdmitTheSignedPod(t *testing.T) {
	f := getFixture(t)
	attr, req, ns := f.request()
	for _, n := range policyNames {
		t.Run(n, func(t *testing.T) {
			pol := f.policy(t, n)
			res := admit(t, pol, verifyCache(t), attr, req, ns)
			if res == nil || res.Error != nil || !res.Result {
				t.Fatalf("signed Pod not admitted: %+v", res)
			}
			other := *f
			other.image = strings.Replace(f.image, "/team-0/", "/team-2/", 1) // no signature there
			a2, r2, n2 := other.request()
			res = admit(t, pol, verifyCache(t), a2, r2, n2)
			if res == nil || res.Error != nil || res.Result {
				t.Fatalf("unsigned image admitted: %+v", res)
			}
			t.Logf("unsigned: %s", res.Message)
		})
	}
}

// BenchmarkCompile: the compile step alone (the CEL environment and every expression of
// the policy), which Kyverno 1.19 repeats for every policy on every admission request.
func BenchmarkCompile(b *testing.B) {
	f := getFixture(b)
	for _, n := range policyNames {
		b.Run(n, func(b *testing.B) {
			pol := f.policy(b, n)
			ictx, err := imagedataloader.NewImageContext(nil, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			comp := eval.NewCompiler(ictx, nil, podsGVR, imageverifycache.DisabledImageVerifyCache())
			b.ReportAllocs()
			for b.Loop() {
				if _, errs := comp.Compile(pol, nil, nil); errs != nil {
					b.Fatal(errs.ToAggregate())
				}
			}
		})
	}
}

// BenchmarkAdmission: compile and evaluate, one admission of the signed Pod (image data
// read from the in-process registry; the signature verified once, then served by
// Kyverno's verification cache, as after the admission benchmark's warm-ups).
func BenchmarkAdmission(b *testing.B) {
	f := getFixture(b)
	attr, req, ns := f.request()
	for _, n := range policyNames {
		b.Run(n, func(b *testing.B) {
			pol := f.policy(b, n)
			cache := verifyCache(b)
			admit(b, pol, cache, attr, req, ns)
			time.Sleep(50 * time.Millisecond) // the cache admits writes asynchronously
			b.ReportAllocs()
			for b.Loop() {
				if res := admit(b, pol, cache, attr, req, ns); res == nil || !res.Result {
					b.Fatalf("signed Pod not admitted: %+v", res)
				}
			}
		})
	}
}

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard()) // Kyverno's verifier names a logger per compile
	if _, err := os.Stat("testdata"); err != nil {
		fmt.Fprintln(os.Stderr, "run from test/bench/kyvernocompile")
		os.Exit(2)
	}
	os.Exit(m.Run())
}
