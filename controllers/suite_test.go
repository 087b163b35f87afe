package controllers_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
	"github.com/signet-operator/signet/internal/operator"
	"github.com/signet-operator/signet/internal/testenv"
)

const trustNS = "signet-system"

var (
	sharedCfg    *rest.Config
	sharedClient client.Client
)

func TestMain(m *testing.M) {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapLevel())))
	flag.Parse()
	if testing.Short() {
		// only the pure tests (make test-unit): those needing a control plane skip
		os.Exit(m.Run())
	}
	env, err := testenv.New(testenv.WithKyvernoCRDs())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		os.Exit(1)
	}
	sharedCfg = cfg
	sharedClient, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err == nil {
		err = sharedClient.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: trustNS}})
	}
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	os.Exit(code)
}

func zapLevel() zapcore.Level {
	if os.Getenv("SIGNET_TEST_LOG") != "" {
		return -2
	}
	return 2 // errors only
}

// writeCounter counts the manager's mutating requests to the apiserver, at the HTTP level.
type writeCounter struct {
	mu     sync.Mutex
	writes []string
	n      atomic.Int64
}

func (w *writeCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		// a dry run (how Signet learns a policy's defaulted form once after a start) stores
		// nothing: not a write
		if req.Method != http.MethodGet && req.Method != http.MethodHead && req.URL.Query().Get("dryRun") == "" {
			w.n.Add(1)
			w.mu.Lock()
			w.writes = append(w.writes, req.Method+" "+req.URL.Path)
			w.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

func (w *writeCounter) since(mark int64) (int64, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.n.Load() - mark
	return n, append([]string(nil), w.writes[len(w.writes)-int(n):]...)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type managerOpts struct {
	cfg        *rest.Config
	clock      *clocktesting.FakeClock
	syncPeriod *time.Duration
	insights   bool // blocked counts and Pod coverage
	preview    *controllers.RotationPreview
	// layout defaults to per-registry here: most tests look at one registry's own policy;
	// shared_test.go covers the shared layout (the operator's default).
	layout controllers.Layout
	// pendingGrace: see operator.Options.PendingGrace (0: the default)
	pendingGrace time.Duration
}

type runningManager struct {
	writes *writeCounter
	stop   func()
}

// startManager runs Signet's manager in-process against the test apiserver, as main.go
// configures it, with a fake clock and a write counter.
// needsControlPlane skips a test that needs a control plane in -short mode.
func needsControlPlane(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a control plane (skipped with -short)")
	}
}

func startManager(t *testing.T, o managerOpts) *runningManager {
	needsControlPlane(t)
	t.Helper()
	if o.cfg == nil {
		o.cfg = sharedCfg
	}
	cfg := rest.CopyConfig(o.cfg)
	wc := &writeCounter{}
	cfg.Wrap(wc.wrap)
	mgr, err := operator.New(cfg, operator.Options{
		TrustNamespace:               trustNS,
		Clock:                        o.clock,
		Workers:                      2,
		CountBlocked:                 o.insights,
		PodInsights:                  o.insights,
		Preview:                      o.preview,
		Layout:                       layoutOr(o.layout),
		SyncPeriod:                   o.syncPeriod,
		PendingGrace:                 o.pendingGrace,
		SkipControllerNameValidation: true, // several managers run in one test binary
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &runningManager{writes: wc, stop: stop}
}

func layoutOr(l controllers.Layout) controllers.Layout {
	if l == "" {
		return controllers.LayoutPerRegistry
	}
	return l
}

// --- fixtures -------------------------------------------------------------------------

func newKeyPEM(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func keySecret(name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: trustNS}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func registry(name string, mutate ...func(*trustv1alpha1.TrustedRegistry)) *trustv1alpha1.TrustedRegistry {
	tr := &trustv1alpha1.TrustedRegistry{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: trustv1alpha1.TrustedRegistrySpec{
			Images:     []trustv1alpha1.ImagePattern{trustv1alpha1.ImagePattern("ghcr.io/" + name + "/*")},
			Namespaces: trustv1alpha1.NamespaceSelection{Names: []string{"production", "staging"}},
			Keys: []trustv1alpha1.PublicKey{{
				Name: "ci", SecretRef: trustv1alpha1.SecretKeyReference{Name: name + "-key"},
			}},
			// tags denied, as registries created before digest defaults depended on the
			// action are stored (and the tests' shared policy names assume)
			Digest: trustv1alpha1.DigestPolicy{Mutate: ptr.To(false)},
		},
	}
	for _, m := range mutate {
		m(tr)
	}
	return tr
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := sharedClient.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

var (
	ivpGVK = schema.GroupVersionKind{Group: "policies.kyverno.io", Version: "v1", Kind: "ImageValidatingPolicy"}
	cpGVK  = schema.GroupVersionKind{Group: "kyverno.io", Version: "v1", Kind: "ClusterPolicy"}
)

func getPolicy(c client.Client, gvk schema.GroupVersionKind, name string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	err := c.Get(context.Background(), client.ObjectKey{Name: name}, u)
	return u, err
}

// eventually polls cond until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
}

func getRegistry(t *testing.T, name string) *trustv1alpha1.TrustedRegistry {
	t.Helper()
	tr := &trustv1alpha1.TrustedRegistry{}
	if err := sharedClient.Get(context.Background(), client.ObjectKey{Name: name}, tr); err != nil {
		t.Fatal(err)
	}
	return tr
}

// condition returns "Status/Reason" of a condition, or "" when absent.
func condition(tr *trustv1alpha1.TrustedRegistry, condType string) string {
	c := meta.FindStatusCondition(tr.Status.Conditions, condType)
	if c == nil {
		return ""
	}
	return string(c.Status) + "/" + c.Reason
}

func waitCondition(t *testing.T, name, condType, want string) *trustv1alpha1.TrustedRegistry {
	t.Helper()
	var tr *trustv1alpha1.TrustedRegistry
	eventually(t, 20*time.Second, fmt.Sprintf("%s %s=%s", name, condType, want), func() error {
		tr = getRegistry(t, name)
		if got := condition(tr, condType); got != want || tr.Status.ObservedGeneration != tr.Generation {
			return fmt.Errorf("%s is %q (observedGeneration %d of %d); conditions: %+v", condType, got,
				tr.Status.ObservedGeneration, tr.Generation, tr.Status.Conditions)
		}
		return nil
	})
	return tr
}

// policyKeys returns the PEM public keys inlined in a generated policy, whatever its kind.
func policyKeys(u *unstructured.Unstructured) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for _, x := range t {
				walk(x)
			}
		case []any:
			for _, x := range t {
				walk(x)
			}
		case string:
			for _, block := range strings.SplitAfter(t, "-----END PUBLIC KEY-----") {
				if i := strings.Index(block, "-----BEGIN PUBLIC KEY-----"); i >= 0 {
					out = append(out, strings.TrimSpace(block[i:]))
				}
			}
		}
	}
	walk(u.Object["spec"])
	return out
}

func hasKey(u *unstructured.Unstructured, pemKey string) bool {
	for _, k := range policyKeys(u) {
		if k == strings.TrimSpace(pemKey) {
			return true
		}
	}
	return false
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }
