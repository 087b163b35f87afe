//go:build e2e

package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
	"github.com/signet-operator/signet/internal/kyverno"
	"github.com/signet-operator/signet/internal/localstack"
	"github.com/signet-operator/signet/internal/ocitest"
	"github.com/signet-operator/signet/internal/operator"
	"github.com/signet-operator/signet/internal/testenv"
)

// trustNS is the trust namespace Signet reads key Secrets from (its default).
const trustNS = controllers.DefaultTrustNamespace

// backgroundScanInterval is the reports-controller's background scan period: short, so
// that Audit results reach status.reports within seconds.
const backgroundScanInterval = 10 * time.Second

// fixture is the one closed loop shared by every Signet scenario of the package: the
// local stack (kube-apiserver, etcd, kube-controller-manager for garbage collection,
// Kyverno's admission and reports controllers), Signet's manager running in-process as
// main.go runs it, and two in-process OCI registries. Scenarios isolate themselves by
// using their own TrustedRegistry, namespaces, Secrets and repositories.
type fixture struct {
	stack  *localstack.Stack
	reg    *ocitest.Registry // the trusted registry ("ghcr.io" of the scenarios)
	other  *ocitest.Registry // another registry: never trusted
	kube   kubernetes.Interface
	client client.Client
	logDir string // Signet's log (signet.log) lives here
	// operator is the identity Signet's manager runs with: the ServiceAccount of
	// config/default with a token, authorized only by the RBAC of config/.
	operator *localstack.OperatorIdentity
	// metricsURL is the manager's HTTPS metrics endpoint (authenticated and authorized
	// through the apiserver, as main.go serves it).
	metricsURL string
	stop       func() // stops the manager, the stack and the registries
}

var (
	fxOnce sync.Once
	fx     *fixture
	fxErr  error
	fxDone = make(chan struct{}) // closed when TestMain has stopped the fixture
)

func TestMain(m *testing.M) {
	flag.Parse()
	// The Signet scenarios spend their time waiting for Kyverno, background scans and
	// rotation overlaps, not computing: run more of them at once than there are cores
	// (the default), unless -parallel was given.
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "8")
	}
	code := m.Run()
	if fx != nil {
		// Least privilege, proven by running: any request of the operator that its RBAC
		// refused fails the run, even where the operator only retried and got by.
		if refused := fx.operator.Forbidden(); len(refused) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: the RBAC of config/ refused %d request(s) of the operator (%s):\n  %s\n",
				len(refused), fx.operator.Username(), strings.Join(refused, "\n  "))
			code = 1
		}
		fx.stop()
	}
	close(fxDone)
	os.Exit(code)
}

// sharedFixture starts the fixture on first use (so that `-run Harness` starts only the
// harness' own stack) and returns it; every later caller gets the same one.
func sharedFixture(t *testing.T) *fixture {
	t.Helper()
	fxOnce.Do(func() {
		begin := time.Now()
		fx, fxErr = startFixture()
		if fxErr == nil {
			t.Logf("shared stack and Signet manager started in %v (%v)", time.Since(begin).Round(time.Millisecond), fx.stack.Timings())
			t.Logf("kubectl: %s get trustedregistries", fx.stack.KubectlCommand())
		}
	})
	if fxErr != nil {
		t.Fatalf("starting the shared e2e fixture: %v", fxErr)
	}
	return fx
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(trustv1alpha1.AddToScheme(s))
	return s
}

func startFixture() (_ *fixture, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	crdDir, err := testenv.SignetCRDDir()
	if err != nil {
		return nil, err
	}
	f := &fixture{}
	var stops []func()
	f.stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			f.stop()
		}
	}()

	// Signet's log (and client-go's) go to signet.log in a directory of their own, set up
	// before any client exists.
	keep := os.Getenv("SIGNET_KEEP_STACK") != ""
	if f.logDir, err = os.MkdirTemp("", "signet-e2e-"); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(f.logDir, "signet.log"))
	if err != nil {
		return nil, err
	}
	logger := zap.New(zap.WriteTo(logFile), zap.Level(zapcore.Level(-1)))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger) // client-go's own messages (API warnings, cancelled watches)
	stops = append(stops, func() {
		logFile.Close()
		if keep {
			fmt.Fprintln(os.Stderr, "e2e: kept Signet's log in", f.logDir)
			return
		}
		_ = os.RemoveAll(f.logDir)
	})

	f.reg = ocitest.NewRegistry()
	stops = append(stops, f.reg.Close)
	f.other = ocitest.NewRegistry()
	stops = append(stops, f.other.Close)

	stack, err := localstack.Start(ctx, localstack.Options{
		ControllerManager:      true,
		ReportsController:      true,
		BackgroundScanInterval: backgroundScanInterval,
		ExtraCRDDirs:           []string{crdDir},
		KeepDir:                keep,
	})
	if err != nil {
		return nil, err
	}
	f.stack, f.kube = stack, stack.Kube()
	stops = append(stops, func() {
		if err := stack.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stopping the stack:", err)
		}
		if keep {
			fmt.Fprintln(os.Stderr, "e2e: kept the stack's directory", stack.Dir())
		}
	})
	if f.client, err = client.New(stack.RESTConfig(), client.Options{Scheme: newScheme()}); err != nil {
		return nil, err
	}
	if err := f.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: trustNS}}); err != nil {
		return nil, err
	}
	// The operator's ServiceAccount and RBAC as config/default installs them.
	if f.operator, err = stack.InstallOperator(ctx, 2*time.Hour); err != nil {
		return nil, err
	}
	if f.operator.Namespace != trustNS {
		return nil, fmt.Errorf("config/default installs the operator in %s, the tests expect %s", f.operator.Namespace, trustNS)
	}
	// config/admission, as on any Kubernetes ≥ 1.36: new TrustedRegistries are stored with
	// Signet's finalizer (the controllers' envtest suite runs without it).
	if err := testenv.InstallAdmission(ctx, stack.RESTConfig(), controllers.Finalizer); err != nil {
		return nil, err
	}
	stopMgr, err := f.startSignet()
	if err != nil {
		return nil, err
	}
	stops = append(stops, stopMgr)
	return f, nil
}

// startSignet runs Signet's manager in-process exactly as main.go configures it (real
// clock, cache options, unstructured client cache), as its own ServiceAccount.
func (f *fixture) startSignet() (func(), error) {
	cfg := f.operator.RESTConfig()
	cfg.QPS, cfg.Burst = 50, 100 // main.go's defaults
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	f.metricsURL = fmt.Sprintf("https://127.0.0.1:%d/metrics", port)
	mgr, err := operator.New(cfg, operator.Options{
		MetricsBindAddress:      fmt.Sprintf("127.0.0.1:%d", port),
		TrustNamespace:          trustNS,
		Workers:                 4,
		CountBlocked:            true,
		PodInsights:             true,
		GracefulShutdownTimeout: 10 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	select {
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("signet manager exited at start: %w", err)
	case <-time.After(200 * time.Millisecond):
	}
	return func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "e2e: signet manager:", err)
		}
	}, nil
}

// freePort returns a TCP port that was free a moment ago on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// --- scenario helpers -------------------------------------------------------------------

// scenario is one subtest's view of the fixture, with its own deadline.
type scenario struct {
	*fixture
	t   *testing.T
	ctx context.Context
	// registries created by the scenario, dumped with their policies on failure
	registries []string
}

// newScenario bounds the subtest by timeout and, when it fails, logs the TrustedRegistries
// it created, their generated policies, Signet's log and the stack's log tails.
func newScenario(t *testing.T, timeout time.Duration) *scenario {
	t.Helper()
	f := sharedFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	s := &scenario{fixture: f, t: t, ctx: ctx}
	t.Cleanup(func() {
		cancel()
		if t.Failed() {
			s.dumpDiagnostics()
		}
	})
	return s
}

func (s *scenario) dumpDiagnostics() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var b strings.Builder
	for _, name := range s.registries {
		tr := &trustv1alpha1.TrustedRegistry{}
		if err := s.client.Get(ctx, client.ObjectKey{Name: name}, tr); err != nil {
			fmt.Fprintf(&b, "TrustedRegistry %s: %v\n", name, err)
			continue
		}
		tr.ManagedFields = nil
		y, _ := yaml.Marshal(tr)
		fmt.Fprintf(&b, "----- TrustedRegistry %s -----\n%s", name, y)
		if p := tr.Status.Policy; p != nil {
			gvk := kyverno.ImageValidatingPolicy
			if p.Kind == kyverno.ClusterPolicy.Kind {
				gvk = kyverno.ClusterPolicy
			}
			fmt.Fprintf(&b, "----- %s %s (%s) -----\n%s", p.Kind, p.Name, p.Branch, s.policyYAML(ctx, gvk, p.Name))
		}
	}
	fmt.Fprintf(&b, "----- signet manager (%s) -----\n%s\n", filepath.Join(s.logDir, "signet.log"), tail(filepath.Join(s.logDir, "signet.log"), 60))
	fmt.Fprintf(&b, "%s", s.stack.LogTails(40))
	s.t.Logf("diagnostics:\n%s", b.String())
}

func (s *scenario) policyYAML(ctx context.Context, gvk schema.GroupVersionKind, name string) string {
	u, err := s.stack.Dynamic().Resource(policyGVR(gvk)).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "(none)\n"
	}
	if err != nil {
		return err.Error() + "\n"
	}
	u.SetManagedFields(nil)
	y, _ := yaml.Marshal(u.Object)
	return string(y)
}

func policyGVR(gvk schema.GroupVersionKind) schema.GroupVersionResource {
	if gvk.Kind == "ClusterPolicy" {
		return schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: "clusterpolicies"}
	}
	return schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: "imagevalidatingpolicies"}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	fh, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(st.Size()-256<<10, 0)
	data, _ := io.ReadAll(io.NewSectionReader(fh, off, st.Size()-off))
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// namespaces creates namespaces for the scenario.
func (s *scenario) namespaces(names ...string) {
	s.t.Helper()
	for _, n := range names {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}
		if err := s.client.Create(s.ctx, ns); err != nil {
			s.t.Fatalf("creating namespace %s: %v", n, err)
		}
	}
}

// keySecret stores a key pair the way `cosign generate-key-pair k8s://signet-system/<name>`
// does: cosign.key, cosign.pub and cosign.password in an immutable Secret (cosign marks it
// immutable on every Kubernetes >= 1.21).
func (s *scenario) keySecret(name string, kp *ocitest.KeyPair) {
	s.t.Helper()
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: trustNS},
		Data:       kp.SecretData(),
		Immutable:  ptr.To(true),
	}
	if err := s.client.Create(s.ctx, sec); err != nil {
		s.t.Fatalf("creating key Secret %s: %v", name, err)
	}
}

// keyPair generates a cosign key pair with a password, as `cosign generate-key-pair` asks for.
func (s *scenario) keyPair() *ocitest.KeyPair {
	s.t.Helper()
	kp, err := ocitest.GenerateKeyPair("correct horse battery staple")
	if err != nil {
		s.t.Fatal(err)
	}
	return kp
}

// push pushes a random image to repo of reg, signs it with every signer and returns its
// digest reference.
func (s *scenario) push(reg *ocitest.Registry, repo string, signers ...*ocitest.KeyPair) string {
	s.t.Helper()
	d, err := reg.PushRandomImage(s.ctx, repo)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, k := range signers {
		if err := ocitest.Sign(s.ctx, d, k.Signer); err != nil {
			s.t.Fatal(err)
		}
	}
	return d.String()
}

// registry is a TrustedRegistry guarding namespaces, trusting the images under
// <trusted registry>/<org>/* signed by the given keys. It is offline (transparency log ignored) and requires digests.
func (s *scenario) registry(name, org string, engine trustv1alpha1.Engine, namespaces []string, keys ...trustv1alpha1.PublicKey) *trustv1alpha1.TrustedRegistry {
	tr := &trustv1alpha1.TrustedRegistry{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: trustv1alpha1.TrustedRegistrySpec{
			Images:             []trustv1alpha1.ImagePattern{trustv1alpha1.ImagePattern(s.reg.Host() + "/" + org + "/*")},
			Namespaces:         trustv1alpha1.NamespaceSelection{Names: namespaces},
			RestrictRegistries: ptr.To(true),
			Action:             trustv1alpha1.ActionEnforce,
			RequiredSignatures: 1,
			Digest:             trustv1alpha1.DigestPolicy{Require: ptr.To(true), Mutate: ptr.To(false)},
			TransparencyLog:    trustv1alpha1.TransparencyLog{Ignore: ptr.To(true)},
			Policy:             trustv1alpha1.PolicyOptions{Engine: engine},
		},
	}
	tr.Spec.Keys = keys
	return tr
}

// keyRef is a spec.keys entry: the public key cosign.pub of a Secret in the trust namespace.
func keyRef(name, secret string) trustv1alpha1.PublicKey {
	return trustv1alpha1.PublicKey{Name: name, SecretRef: trustv1alpha1.SecretKeyReference{Name: secret, Key: "cosign.pub"}}
}

// create creates the TrustedRegistry and remembers it for diagnostics.
func (s *scenario) create(tr *trustv1alpha1.TrustedRegistry) {
	s.t.Helper()
	if err := s.client.Create(s.ctx, tr); err != nil {
		s.t.Fatalf("creating TrustedRegistry %s: %v", tr.Name, err)
	}
	s.registries = append(s.registries, tr.Name)
}

func (s *scenario) get(name string) *trustv1alpha1.TrustedRegistry {
	s.t.Helper()
	tr := &trustv1alpha1.TrustedRegistry{}
	if err := s.client.Get(s.ctx, client.ObjectKey{Name: name}, tr); err != nil {
		s.t.Fatalf("reading TrustedRegistry %s: %v", name, err)
	}
	return tr
}

// waitFor polls cond every 100ms until it returns true or the scenario's deadline passes.
func (s *scenario) waitFor(what string, cond func() (bool, error)) {
	s.t.Helper()
	s.waitWithin(s.ctx, what, cond)
}

// waitForWithin is waitFor with a tighter bound.
func (s *scenario) waitForWithin(d time.Duration, what string, cond func() (bool, error)) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, d)
	defer cancel()
	s.waitWithin(ctx, what, cond)
}

func (s *scenario) waitWithin(ctx context.Context, what string, cond func() (bool, error)) {
	s.t.Helper()
	begin := time.Now()
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			s.t.Fatalf("waiting for %s: gave up after %v (last: %v)", what, time.Since(begin).Round(time.Millisecond), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitReady waits until Signet reports the TrustedRegistry Ready for its current
// generation, with the policy of the expected kind, and Kyverno reports that policy ready.
func (s *scenario) waitReady(name, wantKind string) *trustv1alpha1.TrustedRegistry {
	s.t.Helper()
	t0 := time.Now()
	var tr *trustv1alpha1.TrustedRegistry
	s.waitFor("TrustedRegistry "+name+" Ready with a "+wantKind, func() (bool, error) {
		tr = &trustv1alpha1.TrustedRegistry{}
		if err := s.client.Get(s.ctx, client.ObjectKey{Name: name}, tr); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(tr.Status.Conditions, trustv1alpha1.ConditionReady)
		switch {
		case c == nil:
			return false, errors.New("no Ready condition yet")
		case tr.Status.ObservedGeneration != tr.Generation || c.ObservedGeneration != tr.Generation:
			return false, fmt.Errorf("status is for generation %d, spec is %d", tr.Status.ObservedGeneration, tr.Generation)
		case c.Status != metav1.ConditionTrue:
			return false, fmt.Errorf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
		case tr.Status.Policy == nil || tr.Status.Policy.Kind != wantKind:
			return false, fmt.Errorf("status.policy is %+v", tr.Status.Policy)
		}
		return true, nil
	})
	if err := s.stack.WaitForPolicyReady(s.ctx, tr.Status.Policy.Kind, tr.Status.Policy.Name); err != nil {
		s.t.Fatal(err)
	}
	s.t.Logf("TrustedRegistry %s Ready (%s %s) %v after the wait began: %s", name, tr.Status.Policy.Kind,
		tr.Status.Policy.Name, time.Since(t0).Round(time.Millisecond), meta.FindStatusCondition(tr.Status.Conditions, trustv1alpha1.ConditionReady).Message)
	return tr
}

// --- pods ---------------------------------------------------------------------------

type podOpt func(*corev1.Pod)

func withInit(image string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: fmt.Sprintf("init%d", len(p.Spec.InitContainers)), Image: image})
	}
}

func newPod(ns, name, image string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func (s *scenario) createPod(p *corev1.Pod, dryRun bool) error {
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err := s.kube.CoreV1().Pods(p.Namespace).Create(s.ctx, p, opts)
	return err
}

// admitted creates the pod for real and fails the test if the apiserver refuses it.
func (s *scenario) admitted(what string, p *corev1.Pod) {
	s.t.Helper()
	if err := s.createPod(p, false); err != nil {
		s.t.Errorf("%s: pod %s/%s (%s) was denied, want admitted: %v", what, p.Namespace, p.Name, images(p), err)
		return
	}
	s.t.Logf("%s: admitted %s/%s", what, p.Namespace, p.Name)
}

// denied creates the pod for real and fails the test unless the apiserver refuses it with
// a message containing every fragment.
func (s *scenario) denied(what string, p *corev1.Pod, fragments ...string) {
	s.t.Helper()
	err := s.createPod(p, false)
	s.checkDenied(what, fmt.Sprintf("pod %s/%s (%s)", p.Namespace, p.Name, images(p)), err, fragments...)
}

func (s *scenario) checkDenied(what, obj string, err error, fragments ...string) {
	s.t.Helper()
	if err == nil {
		s.t.Errorf("%s: %s was admitted, want denied", what, obj)
		return
	}
	if !apierrors.IsForbidden(err) && !apierrors.IsBadRequest(err) && !apierrors.IsInvalid(err) && !strings.Contains(err.Error(), "denied the request") {
		s.t.Errorf("%s: %s failed, but not with an admission denial: %v", what, obj, err)
		return
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			s.t.Errorf("%s: the denial of %s does not mention %q:\n%v", what, obj, f, err)
		}
	}
	s.t.Logf("%s: denied %s: %s", what, obj, oneLine(err.Error()))
}

// waitEnforced polls a dry-run create of p until it is denied: Ready conditions say the
// webhook is configured and the policy cached; a denial proves the whole path is live.
func (s *scenario) waitEnforced(p *corev1.Pod) {
	s.t.Helper()
	t0 := time.Now()
	s.waitFor("Kyverno denying "+images(p)+" in "+p.Namespace, func() (bool, error) {
		// only Kyverno's denial counts (Pod Security admission may refuse p first)
		err := s.createPod(p, true)
		return err != nil && strings.Contains(err.Error(), "kyverno"), nil
	})
	s.t.Logf("enforced in %s %v after readiness", p.Namespace, time.Since(t0).Round(time.Millisecond))
}

func images(p *corev1.Pod) string {
	var out []string
	for _, c := range p.Spec.InitContainers {
		out = append(out, "init "+c.Image)
	}
	for _, c := range p.Spec.Containers {
		out = append(out, c.Image)
	}
	for _, c := range p.Spec.EphemeralContainers {
		out = append(out, "ephemeral "+c.Image)
	}
	return strings.Join(out, ", ")
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 600 {
		s = s[:600] + "…"
	}
	return s
}

// signetEngines are the policy kinds every engine-dependent scenario runs with.
var signetEngines = []struct {
	engine trustv1alpha1.Engine
	kind   string
	short  string
}{
	{trustv1alpha1.EngineImageValidatingPolicy, "ImageValidatingPolicy", "ivp"},
	{trustv1alpha1.EngineClusterPolicy, "ClusterPolicy", "cpol"},
}

// denial fragments: what Kyverno's answer must say, per engine and reason. The shared
// policies (signet.ivp.enforce, signet.cpol.all) hold every registry: the message names
// the registry (ImageValidatingPolicy) or the rule does (ClusterPolicy verify.<name>).
func registryDenial(kind, registry string) []string {
	return []string{sharedPolicyPrefix(kind), "not allowed by TrustedRegistry " + registry}
}

func signatureDenial(kind, registry string) []string {
	if kind == "ClusterPolicy" {
		return []string{sharedPolicyPrefix(kind), "verify." + registry, "failed to verify image"}
	}
	return []string{sharedPolicyPrefix(kind), "not signed by", "TrustedRegistry " + registry}
}

func sharedPolicyPrefix(kind string) string {
	if kind == "ClusterPolicy" {
		return "signet.cpol."
	}
	return "signet.ivp."
}

// inSharedPolicy tells whether any shared policy of the kind still holds the registry.
func (s *scenario) inSharedPolicy(kind, registry string) (bool, error) {
	list, err := s.stack.Dynamic().Resource(policyGVR(policyGVK(kind))).List(s.ctx, metav1.ListOptions{LabelSelector: "trust.signet.dev/shard"})
	if err != nil {
		return false, err
	}
	for _, p := range list.Items {
		if strings.Contains(p.GetAnnotations()["trust.signet.dev/registries"], `"`+registry+`":`) {
			return true, nil
		}
	}
	return false, nil
}
