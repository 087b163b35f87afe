package main

import (
	"context"
	"errors"
	"fmt"
	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/localstack"
	"github.com/signet-operator/signet/internal/ocitest"
	"github.com/signet-operator/signet/internal/operator"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/internal/testenv"
	"github.com/signet-operator/signet/test/bench/kit"
	"go.uber.org/zap/zapcore"
	"io"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"net/url"
	"os"
	"path/filepath"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	trustNS      = controllers.DefaultTrustNamespace
	guardedNS    = "production"
	sharedSecret = "bench-shared-key"
	keyPassword  = "bench-admission"

	// benchLabel marks everything the benchmark creates in the cluster.
	benchLabel = "bench.signet.dev/admission"
	// naiveLabel marks the hand-written (naive) policies.
	naiveLabel = "bench.signet.dev/naive"

	// main.go's client limits and workers.
	mainQPS     = 50
	mainBurst   = 100
	mainWorkers = 4
	// applyWorkers create TrustedRegistries or naive policies in parallel.
	applyWorkers = 4
	// requestTimeout bounds one Pod CREATE on the client side; Kyverno's webhooks time out
	// after webhookTimeout, the apiserver then fails the request (failurePolicy Fail).
	requestTimeout = 45 * time.Second
	webhookTimeout = 10 * time.Second
)

var (
	ivpGVR = schema.GroupVersionResource{Group: "policies.kyverno.io", Version: "v1", Resource: "imagevalidatingpolicies"}
	cpGVR  = schema.GroupVersionResource{Group: "kyverno.io", Version: "v1", Resource: "clusterpolicies"}
	ephGVR = schema.GroupVersionResource{Group: "reports.kyverno.io", Version: "v1", Resource: "ephemeralreports"}
)

func gvrFor(kind string) schema.GroupVersionResource {
	if kind == kindCP {
		return cpGVR
	}
	return ivpGVR
}

// env is the running stack, registry, keys and Signet.
type env struct {
	cfg   config
	logf  func(string, ...any)
	dir   string // Signet's log; the stack's own directory is inside
	stack *localstack.Stack
	reg   *ocitest.Registry
	kube  kubernetes.Interface // measurement client
	dyn   dynamic.Interface
	cl    client.Client

	shared      *ocitest.KeyPair
	ownPEM      map[int][]byte // public key of registry i, i odd
	signedImage string         // <reg>/team-0/app@sha256:…, signed with the shared key
	unsigned    map[int]string // unsigned probe images under team-<i>

	baseHooks []string // Kyverno's webhooks with no policy loaded
	// specs of Signet's live ImageValidatingPolicies by name, per N, to compare the naive
	// and shared ones with
	signetSpecs map[int]map[string]map[string]any

	signetStop func() // stops Signet's manager; nil when it is not running

	cleanups []func()
}

func startEnv(ctx context.Context, cfg config, logf func(string, ...any)) (_ *env, err error) {
	e := &env{cfg: cfg, logf: logf, ownPEM: map[int][]byte{}, unsigned: map[int]string{}, signetSpecs: map[int]map[string]map[string]any{}}
	defer func() {
		if err != nil {
			e.stop()
		}
	}()
	if e.dir, err = os.MkdirTemp("", "signet-bench-admission-"); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(e.dir, "signet.log"))
	if err != nil {
		return nil, err
	}
	var logOut io.Writer = logFile
	if cfg.Verbose {
		logOut = io.MultiWriter(logFile, os.Stderr)
	}
	logger := zap.New(zap.WriteTo(logOut), zap.Level(zapcore.InfoLevel))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)
	// Kyverno deprecates ClusterPolicy with a warning on every write.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	e.cleanups = append(e.cleanups, func() {
		_ = logFile.Close()
		if !cfg.Keep {
			_ = os.RemoveAll(e.dir)
		}
	})

	// Registry, keys, the measured image.
	e.reg = ocitest.NewRegistry()
	e.cleanups = append(e.cleanups, e.reg.Close)
	if e.shared, err = ocitest.GenerateKeyPair(keyPassword); err != nil {
		return nil, err
	}
	for i := 1; i < cfg.Ns[len(cfg.Ns)-1]; i += 2 {
		if e.ownPEM[i], err = keys.StandInPEM(); err != nil {
			return nil, err
		}
	}
	ref, err := e.reg.PushRandomImage(ctx, "team-0/app")
	if err != nil {
		return nil, err
	}
	if err := ocitest.Sign(ctx, ref, e.shared.Signer); err != nil {
		return nil, err
	}
	e.signedImage = ref.String()

	// The stack.
	crdDir, err := testenv.SignetCRDDir()
	if err != nil {
		return nil, err
	}
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	logf("starting etcd, kube-apiserver, kube-controller-manager and Kyverno (registry %s)", e.reg.Host())
	var kyvernoArgs []string
	if cfg.KyvernoProfilePort != 0 {
		kyvernoArgs = []string{"-profile=true", "-profileAddress=127.0.0.1", "-profilePort=" + strconv.Itoa(cfg.KyvernoProfilePort)}
		logf("Kyverno serves pprof on http://127.0.0.1:%d/debug/pprof/", cfg.KyvernoProfilePort)
	}
	e.stack, err = localstack.Start(startCtx, localstack.Options{
		ExtraCRDDirs:      []string{crdDir},
		ParentDir:         e.dir,
		KeepDir:           cfg.Keep,
		ControllerManager: true, // garbage collection of Signet's key rings and policies
		KyvernoArgs:       kyvernoArgs,
	})
	if err != nil {
		return nil, err
	}
	e.cleanups = append(e.cleanups, func() {
		if err := e.stack.Stop(); err != nil {
			logf("stopping the stack: %v", err)
		}
	})
	logf("stack ready in %v", e.stack.Timings().Total.Round(time.Millisecond))

	mcfg := e.stack.RESTConfig()
	mcfg.Timeout = requestTimeout
	if e.kube, err = kubernetes.NewForConfig(mcfg); err != nil {
		return nil, err
	}
	e.dyn = e.stack.Dynamic()
	if e.cl, err = client.New(e.stack.RESTConfig(), client.Options{Scheme: operator.Scheme()}); err != nil {
		return nil, err
	}
	for _, ns := range []string{trustNS, guardedNS} {
		if err := e.cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, fmt.Errorf("creating namespace %s: %w", ns, err)
		}
	}
	secrets := []*corev1.Secret{{
		ObjectMeta: metav1.ObjectMeta{Name: sharedSecret, Namespace: trustNS},
		Data:       e.shared.SecretData(), Immutable: ptr.To(true),
	}}
	for i := 1; i < cfg.Ns[len(cfg.Ns)-1]; i += 2 {
		secrets = append(secrets, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: ownSecret(i), Namespace: trustNS},
			Data:       map[string][]byte{"cosign.pub": e.ownPEM[i]}, Immutable: ptr.To(true),
		})
	}
	if err := kit.Parallel(ctx, len(secrets), applyWorkers, func(ctx context.Context, i int) error { return e.cl.Create(ctx, secrets[i]) }); err != nil {
		return nil, fmt.Errorf("creating key Secrets: %w", err)
	}

	if cfg.SignetDuringMeasure {
		if err := e.startSignet(); err != nil {
			return nil, err
		}
	}
	e.cleanups = append(e.cleanups, e.stopSignet)
	if e.baseHooks, err = e.kyvernoWebhooks(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) stop() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
}

// startSignet runs Signet's manager in this process, configured as main.go configures it
// by default (QPS 50, burst 100, 4 workers, blocked counting and Pod insights on), unless
// it runs already.
func (e *env) startSignet() error {
	if e.signetStop != nil {
		return nil
	}
	cfg := e.stack.RESTConfig()
	cfg.QPS, cfg.Burst = mainQPS, mainBurst
	mgr, err := operator.New(cfg, operator.Options{
		TrustNamespace:          trustNS,
		Workers:                 mainWorkers,
		CountBlocked:            true,
		PodInsights:             true,
		GracefulShutdownTimeout: 10 * time.Second,
		// one manager after the other in this process
		SkipControllerNameValidation: true,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	select {
	case err := <-done:
		cancel()
		return fmt.Errorf("signet's manager exited at start: %w", err)
	case <-time.After(200 * time.Millisecond):
	}
	e.signetStop = func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			e.logf("signet: %v", err)
		}
	}
	return nil
}

// stopSignet stops Signet's manager if it runs.
func (e *env) stopSignet() {
	if e.signetStop != nil {
		e.signetStop()
		e.signetStop = nil
	}
}

func ownSecret(i int) string { return fmt.Sprintf("bench-key-%d", i) }

// registryName is the name of TrustedRegistry i (the same in every step, so that the
// naive policies render to exactly the specs Signet generates).
func registryName(i int) string { return fmt.Sprintf("team-%d", i) }

// trustedRegistry is registry i: <registry>/team-<i>/* in production, restrictRegistries
// true, Enforce, digests required, offline, the shared key (i even) or its own (i odd).
func (e *env) trustedRegistry(i int, engine trustv1alpha1.Engine) *trustv1alpha1.TrustedRegistry {
	key := trustv1alpha1.PublicKey{Name: "shared", SecretRef: trustv1alpha1.SecretKeyReference{Name: sharedSecret, Key: "cosign.pub"}}
	if i%2 == 1 {
		key = trustv1alpha1.PublicKey{Name: "own", SecretRef: trustv1alpha1.SecretKeyReference{Name: ownSecret(i), Key: "cosign.pub"}}
	}
	return &trustv1alpha1.TrustedRegistry{
		ObjectMeta: metav1.ObjectMeta{Name: registryName(i), Labels: map[string]string{benchLabel: "true"}},
		Spec: trustv1alpha1.TrustedRegistrySpec{
			Images:             []trustv1alpha1.ImagePattern{trustv1alpha1.ImagePattern(fmt.Sprintf("%s/team-%d/*", e.reg.Host(), i))},
			Namespaces:         trustv1alpha1.NamespaceSelection{Names: []string{guardedNS}},
			RestrictRegistries: ptr.To(true),
			Action:             trustv1alpha1.ActionEnforce,
			Keys:               []trustv1alpha1.PublicKey{key},
			RequiredSignatures: 1,
			Digest:             trustv1alpha1.DigestPolicy{Require: ptr.To(true), Mutate: ptr.To(false)},
			TransparencyLog:    trustv1alpha1.TransparencyLog{Ignore: ptr.To(true)},
			Rotation:           trustv1alpha1.Rotation{Overlap: &metav1.Duration{Duration: 168 * time.Hour}},
			Policy:             trustv1alpha1.PolicyOptions{Engine: engine},
		},
	}
}

// renderInput is registry i as internal/render takes it: the same spec Signet would get
// (trustedRegistry), a fixed UID, and the key Signet would resolve (the shared key for
// even i, registry i's own for odd i), active.
func (e *env) renderInput(i int, engine trustv1alpha1.Engine) (render.Input, error) {
	tr := e.trustedRegistry(i, engine)
	tr.UID = "00000000-0000-4000-8000-000000000000"
	pemData := e.shared.PublicKeyPEM
	if i%2 == 1 {
		pemData = e.ownPEM[i]
	}
	pk, err := keys.ParsePublicKey(pemData)
	if err != nil {
		return render.Input{}, err
	}
	return render.Input{Registry: tr, Engine: engine,
		Keys: []render.Key{{Name: tr.Spec.Keys[0].Name, Fingerprint: pk.Fingerprint, PEM: pk.PEM, State: trustv1alpha1.KeyActive}}}, nil
}

// naivePolicy is registry i's policy as a person would apply it without Signet: rendered
// by internal/render from the same spec, without Signet's metadata (owner reference,
// labels, content hash) and under its own name.
func (e *env) naivePolicy(i int, engine trustv1alpha1.Engine) (map[string]any, error) {
	in, err := e.renderInput(i, engine)
	if err != nil {
		return nil, err
	}
	u, err := render.Render(in)
	if err != nil {
		return nil, err
	}
	return benchPolicy(u, "naive-"+registryName(i)), nil
}

// sharedPolicies are the policies render.RenderShared renders for registries 0..n-1
// (each exactly as naivePolicy renders it alone), without Signet's metadata and renamed
// from signet.<rest> to shared.<rest>.
func (e *env) sharedPolicies(n int, engine trustv1alpha1.Engine) ([]map[string]any, error) {
	ins := make([]render.Input, n)
	for i := range n {
		var err error
		if ins[i], err = e.renderInput(i, engine); err != nil {
			return nil, err
		}
	}
	sp, err := render.RenderShared(ins)
	if err != nil {
		return nil, err
	}
	if len(sp.Policies) == 0 {
		return nil, fmt.Errorf("RenderShared rendered no policy for %d registries", n)
	}
	out := make([]map[string]any, 0, len(sp.Policies))
	for _, u := range sp.Policies {
		out = append(out, benchPolicy(u, sharedBenchName(u.GetName())))
	}
	return out, nil
}

// sharedBenchName is the name the benchmark gives the shared policy render names
// signet.<rest>: shared.<rest>, so that it is never taken for Signet's own.
func sharedBenchName(signetName string) string {
	return sharedBenchPrefix + strings.TrimPrefix(signetName, signetSharedPrefix)
}

// signetNameOfShared is the inverse of sharedBenchName.
func signetNameOfShared(benchName string) string {
	return signetSharedPrefix + strings.TrimPrefix(benchName, sharedBenchPrefix)
}

const (
	signetSharedPrefix = "signet."
	sharedBenchPrefix  = "shared."
)

// benchPolicy is a rendered policy under the benchmark's name and labels, without
// Signet's metadata: no owner reference, no Signet labels, no trust.signet.dev/
// annotations (Kyverno's own annotations, e.g. autogen-controllers, are kept).
func benchPolicy(u *unstructured.Unstructured, name string) map[string]any {
	meta := map[string]any{
		"name":   name,
		"labels": map[string]any{benchLabel: "true", naiveLabel: "true"},
	}
	annotations := map[string]any{}
	for k, v := range u.GetAnnotations() {
		if !strings.HasPrefix(k, "trust.signet.dev/") {
			annotations[k] = v
		}
	}
	if len(annotations) > 0 {
		meta["annotations"] = annotations
	}
	return map[string]any{
		"apiVersion": u.GetAPIVersion(),
		"kind":       u.GetKind(),
		"metadata":   meta,
		"spec":       u.Object["spec"],
	}
}

// unsignedImage pushes (once) an unsigned image under team-<i>: a Pod with it must be
// denied by registry i's policy, which proves that policy is enforced.
func (e *env) unsignedImage(ctx context.Context, i int) (string, error) {
	if img, ok := e.unsigned[i]; ok {
		return img, nil
	}
	ref, err := e.reg.PushRandomImage(ctx, fmt.Sprintf("team-%d/unsigned", i))
	if err != nil {
		return "", err
	}
	e.unsigned[i] = ref.String()
	return e.unsigned[i], nil
}

// kyvernoWebhooks lists "<configuration>/<webhook>" of every webhook Kyverno manages.
func (e *env) kyvernoWebhooks(ctx context.Context) ([]string, error) {
	sel := metav1.ListOptions{LabelSelector: "webhook.kyverno.io/managed-by=kyverno"}
	ar := e.kube.AdmissionregistrationV1()
	var out []string
	vs, err := ar.ValidatingWebhookConfigurations().List(ctx, sel)
	if err != nil {
		return nil, err
	}
	for _, c := range vs.Items {
		for _, w := range c.Webhooks {
			out = append(out, c.Name+"/"+w.Name)
		}
	}
	ms, err := ar.MutatingWebhookConfigurations().List(ctx, sel)
	if err != nil {
		return nil, err
	}
	for _, c := range ms.Items {
		for _, w := range c.Webhooks {
			out = append(out, c.Name+"/"+w.Name)
		}
	}
	return out, nil
}

// notInWebhooks returns the policies of names (all of kind) that Kyverno's webhook
// configuration does not serve yet. Kyverno 1.19 serves ImageValidatingPolicies under
// /ivpol/validate/<policy>/<policy>/… (one path segment per policy), so each name must
// be a segment of a validating webhook's path; ClusterPolicies share the resource webhook
// /validate/{fail,ignore}, which must exist and cover Pods (the Ready condition of a
// ClusterPolicy is Kyverno's own record that its webhook includes it).
func (e *env) notInWebhooks(ctx context.Context, kind string, names []string) ([]string, error) {
	list, err := e.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx,
		metav1.ListOptions{LabelSelector: "webhook.kyverno.io/managed-by=kyverno"})
	if err != nil {
		return nil, err
	}
	segments := map[string]bool{}
	podHook := false
	for _, c := range list.Items {
		for _, w := range c.Webhooks {
			p := webhookPath(w.ClientConfig)
			switch {
			case strings.HasPrefix(p, "/ivpol/validate/"):
				for _, s := range strings.Split(strings.TrimPrefix(p, "/ivpol/validate/"), "/") {
					segments[s] = true
				}
			case strings.HasPrefix(p, "/validate/"):
				for _, r := range w.Rules {
					if slices.Contains(r.Resources, "pods") || slices.Contains(r.Resources, "*") {
						podHook = true
					}
				}
			}
		}
	}
	var missing []string
	for _, n := range names {
		if (kind == kindCP && !podHook) || (kind != kindCP && !segments[n]) {
			missing = append(missing, n)
		}
	}
	return missing, nil
}

// webhookPath is the path of a webhook's URL or service.
func webhookPath(c admissionregistrationv1.WebhookClientConfig) string {
	if c.URL != nil {
		if u, err := url.Parse(*c.URL); err == nil {
			return u.Path
		}
	}
	if c.Service != nil && c.Service.Path != nil {
		return *c.Service.Path
	}
	return ""
}

// poll calls cond every interval until it returns true, an error that is not transient
// (cond decides: return false and nil to go on), or ctx ends.
func poll(ctx context.Context, interval time.Duration, what string, cond func(context.Context) (bool, error)) error {
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

func isTimeout(err error) bool {
	if err == nil {
		return false
	}
	if apierrors.IsTimeout(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "deadline exceeded") || strings.Contains(msg, "timeout") || strings.Contains(msg, "Timeout")
}
