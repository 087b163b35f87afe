// Command demo shows Signet closing the supply-chain loop on one machine, with nothing
// but Go and the Go module proxy: a local kube-apiserver, the real Kyverno admission
// controller, an in-process OCI registry with images signed offline by a cosign key,
// and Signet's controller running in this process. It applies a TrustedRegistry, tries a
// few pods, and prints what was admitted, what was denied and why.
//
//	make demo                 # = go run ./hack/demo
//	go run ./hack/demo --keep # leave everything running until Ctrl-C, to poke at it
//	go run ./hack/demo --engine ClusterPolicy
//
// The first run builds the control plane and Kyverno from the Go module proxy (about
// 12 + 6 minutes on 2 cores); later runs start in about 20 seconds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
	"github.com/signet-operator/signet/internal/localstack"
	"github.com/signet-operator/signet/internal/ocitest"
	"github.com/signet-operator/signet/internal/operator"
	"github.com/signet-operator/signet/internal/testenv"
)

const (
	trustNS      = controllers.DefaultTrustNamespace
	registryName = "yourorg"
	keySecret    = "cosign-public-key"
	// The cosign key's password, as `cosign generate-key-pair` would have asked for it.
	keyPassword = "signet-demo"
)

func main() {
	keep := flag.Bool("keep", false, "leave the cluster, registry and Signet running until Ctrl-C, and print how to use them with kubectl")
	engine := flag.String("engine", string(trustv1alpha1.EngineAuto), "spec.policy.engine of the TrustedRegistry: Auto, ImageValidatingPolicy or ClusterPolicy")
	verbose := flag.Bool("v", false, "show Signet's log on stderr")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./hack/demo [--keep] [--engine Auto|ImageValidatingPolicy|ClusterPolicy] [-v]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	switch trustv1alpha1.Engine(*engine) {
	case trustv1alpha1.EngineAuto, trustv1alpha1.EngineImageValidatingPolicy, trustv1alpha1.EngineClusterPolicy:
	default:
		fmt.Fprintf(os.Stderr, "demo: --engine must be Auto, ImageValidatingPolicy or ClusterPolicy, not %q\n", *engine)
		os.Exit(2)
	}

	// Kyverno deprecates ClusterPolicy with an API warning on every write; the engine
	// choice is the user's, the demo need not repeat it.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		// A second Ctrl-C ends the program at once; the stack's processes die with it.
		stopSignals()
	}()
	d := &demo{out: newPrinter(os.Stdout), keep: *keep, engine: trustv1alpha1.Engine(*engine), verbose: *verbose, begin: time.Now()}
	err := d.run(ctx)
	d.checkForbidden()
	if (err != nil || d.unexpected > 0) && ctx.Err() == nil {
		d.keepDir = true
		if d.stack != nil {
			d.showLogs()
		}
	}
	d.cleanup()
	switch {
	case err != nil && ctx.Err() != nil:
		d.out.line("")
		d.out.line("Interrupted; everything the demo started has been stopped.")
		os.Exit(130)
	case err != nil:
		d.out.line("")
		d.out.fail("demo failed: %v", err)
		os.Exit(1)
	}
	d.out.section("Done")
	if *keep {
		d.out.line("The demo took %v before it waited for Ctrl-C: cluster start %v, TrustedRegistry created to enforced %v.",
			round(d.shown), round(d.stackStart), round(d.enforcedAfter))
	} else {
		d.out.line("Total %v: cluster start %v, TrustedRegistry created to enforced %v.",
			round(time.Since(d.begin)), round(d.stackStart), round(d.enforcedAfter))
	}
	if d.unexpected > 0 {
		os.Exit(1)
	}
}

type demo struct {
	out     *printer
	keep    bool
	engine  trustv1alpha1.Engine
	verbose bool
	begin   time.Time

	root       string
	stack      *localstack.Stack
	operator   *localstack.OperatorIdentity // Signet's ServiceAccount (config/default)
	reg, other *ocitest.Registry
	kube       kubernetes.Interface
	client     client.Client
	logPath    string
	unexpected int

	stackStart, enforcedAfter time.Duration
	shown                     time.Duration // until everything was shown (--keep waits after it)

	k8sDir, kyvernoDir string // control plane and Kyverno binaries

	dir     string // the demo's temporary directory
	keepDir bool   // keep it (something failed)

	cleanups []func()
}

// checkForbidden counts every request of Signet that the RBAC of config/ refused as an
// unexpected result: the demo proves the operator needs nothing more than config/ grants.
func (d *demo) checkForbidden() {
	if d.operator == nil {
		return
	}
	for _, req := range d.operator.Forbidden() {
		d.out.fail("the RBAC of config/ refused Signet's request %s", req)
		d.unexpected++
	}
}

// showLogs prints the last lines of Kyverno's and Signet's logs, to explain a failure.
func (d *demo) showLogs() {
	for _, f := range d.stack.LogFiles() {
		if f.Process == localstack.ProcKyverno {
			d.out.line("")
			d.out.dim("last lines of %s:", f.Path)
			d.out.code(tailFile(f.Path, 15))
		}
	}
	if d.logPath != "" {
		d.out.line("")
		d.out.dim("last lines of %s:", d.logPath)
		d.out.code(tailFile(d.logPath, 15))
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (d *demo) cleanup() {
	if len(d.cleanups) == 0 {
		return
	}
	t0 := time.Now()
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
	d.cleanups = nil
	d.out.dim("  (stopped Signet, Kyverno, kube-apiserver, etcd and the registries in %v)", round(time.Since(t0)))
}

func (d *demo) run(ctx context.Context) error {
	o := d.out
	o.title("Signet demo: only signed images from your registry may run")
	o.line("A local kube-apiserver with the real Kyverno admission controller, an in-process OCI")
	o.line("registry, a cosign key, and Signet's controller, all on this machine and offline.")

	var err error
	if d.root, err = testenv.RepoRoot(); err != nil {
		return err
	}
	if err := d.setupDir(); err != nil {
		return err
	}
	// Where the build scripts put the binaries (they honour the same variables).
	d.k8sDir = envOr("K8S_BIN_DIR", filepath.Join(d.root, "bin", "k8s"))
	d.kyvernoDir = envOr("KYVERNO_BIN_DIR", filepath.Join(d.root, "bin", "kyverno"))
	if err := d.buildTools(ctx); err != nil {
		return err
	}

	// --- registry, key, images
	o.section("1. A registry, a cosign key and three images")
	d.reg, d.other = ocitest.NewRegistry(), ocitest.NewRegistry()
	d.cleanups = append(d.cleanups, d.reg.Close, d.other.Close)
	o.ok("registry %s (in-process; plays ghcr.io), and %s (someone else's)", d.reg.Host(), d.other.Host())
	key, err := ocitest.GenerateKeyPair(keyPassword)
	if err != nil {
		return err
	}
	o.ok("cosign key pair generated (ECDSA P-256, password-protected private key)")
	signed, err := d.pushImage(ctx, d.reg, "yourorg/app", key)
	if err != nil {
		return err
	}
	o.ok("pushed and signed   %s", short(signed))
	unsigned, err := d.pushImage(ctx, d.reg, "yourorg/app", nil)
	if err != nil {
		return err
	}
	o.ok("pushed, not signed  %s", short(unsigned))
	foreign, err := d.pushImage(ctx, d.other, "yourorg/app", key)
	if err != nil {
		return err
	}
	o.ok("pushed and signed   %s  (same key, other registry)", short(foreign))
	o.dim("  signatures are stored next to the images as cosign does it (sign --tlog-upload=false)")

	// --- cluster
	o.section("2. A local cluster with Kyverno")
	if err := d.startStack(ctx); err != nil {
		return err
	}
	for _, ns := range []string{trustNS, "production", "staging", "sandbox"} {
		if err := d.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return fmt.Errorf("creating namespace %s: %w", ns, err)
		}
	}
	o.ok("namespaces %s (Signet's trust namespace), production, staging, sandbox", trustNS)
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: keySecret, Namespace: trustNS},
		Data:       key.SecretData(),
		Immutable:  ptr.To(true),
	}
	if err := d.client.Create(ctx, sec); err != nil {
		return fmt.Errorf("creating the key Secret: %w", err)
	}
	o.ok("Secret %s/%s holding cosign.pub, cosign.key and cosign.password", trustNS, keySecret)
	o.dim("  as `cosign generate-key-pair k8s://%s/%s` writes it; Signet reads only cosign.pub", trustNS, keySecret)

	// --- Signet
	o.section("3. Signet and a TrustedRegistry")
	if err := d.startSignet(ctx); err != nil {
		return err
	}
	o.ok("Signet's controller running in this process (trust namespace %s)", trustNS)
	o.dim("  as %s, with only the RBAC of config/default (a ServiceAccount token, not the admin)", d.operator.Username())
	manifest := d.manifest()
	tr, err := d.showManifest(manifest)
	if err != nil {
		return fmt.Errorf("the sample TrustedRegistry: %w", err)
	}
	applied := time.Now()
	if err := d.client.Create(ctx, tr); err != nil {
		return fmt.Errorf("creating the TrustedRegistry: %w", err)
	}
	ready, err := d.waitReady(ctx, 2*time.Minute)
	if err != nil {
		return err
	}
	o.ok("Ready %v after it was created:", round(time.Since(applied)))
	o.wrap("    ", meta.FindStatusCondition(ready.Status.Conditions, trustv1alpha1.ConditionReady).Message)
	policy := ready.Status.Policy
	if err := d.waitEnforced(ctx, unsigned); err != nil {
		return err
	}
	d.enforcedAfter = time.Since(applied)
	o.ok("Kyverno enforces %s %s, %v after the TrustedRegistry was created", policy.Kind, policy.Name, round(d.enforcedAfter))

	// --- pods
	o.section("4. Trying pods")
	o.line("Each pod is created for real; the kube-apiserver asks Kyverno, which applies Signet's policy.")
	type attempt struct {
		ns, name, image, why string
		admit                bool
	}
	attempts := []attempt{
		{"production", "signed", signed, "signed by the CI key, from our registry", true},
		{"production", "unsigned", unsigned, "from our registry, but nobody signed it", false},
		{"production", "other-registry", foreign, "signed by our key, but from another registry", false},
		{"production", "nginx", "nginx:1.27", "from Docker Hub", false},
		{"sandbox", "unsigned", unsigned, "the unsigned image in a namespace the TrustedRegistry does not guard", true},
	}
	for _, a := range attempts {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: a.name, Namespace: a.ns},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: a.image}}},
		}
		_, err := d.kube.CoreV1().Pods(a.ns).Create(ctx, pod, metav1.CreateOptions{})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		o.line("")
		o.line("  %s/%s  %s", a.ns, a.name, o.faint(short(a.image)))
		o.line("  %s", o.faint(a.why))
		d.showAdmission(err, a.admit)
	}
	o.line("")
	if d.unexpected == 0 {
		o.ok("%d of %d answers as promised: only signed images from %s/yourorg run in production", len(attempts), len(attempts), d.reg.Host())
	} else {
		o.fail("%d of %d answers were not what Signet promises (Signet's log: %s)", d.unexpected, len(attempts), d.logPath)
	}

	if err := d.secondRegistry(ctx, signed, key); err != nil {
		return err
	}
	if err := d.tagPinned(ctx, key); err != nil {
		return err
	}

	// --- kubectl
	o.section("5. What kubectl tells you")
	// Let the status settle (the policy watch and Kyverno's readiness update it), and let
	// Signet count Kyverno's denials: reports never show them, its events do.
	if _, err := d.waitReady(ctx, 30*time.Second); err != nil {
		return err
	}
	denied := 0
	for _, a := range attempts {
		if !a.admit {
			denied++
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		tr := &trustv1alpha1.TrustedRegistry{}
		if err := d.client.Get(ctx, client.ObjectKey{Name: registryName}, tr); err == nil &&
			tr.Status.Reports != nil && tr.Status.Reports.Blocked != nil && int(tr.Status.Reports.Blocked.Count) >= denied {
			o.ok("Signet counted the %d denials from Kyverno's events (status.reports.blocked)", tr.Status.Reports.Blocked.Count)
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	for _, args := range [][]string{{"describe", "trustedregistry", registryName}, {"get", "trustedregistry", "-o", "wide"}} {
		o.line("")
		o.cmd("$ kubectl %s", strings.Join(args, " "))
		out, err := d.kubectl(ctx, args...)
		if err != nil {
			return err
		}
		o.code(out)
	}

	d.shown = time.Since(d.begin)
	if !d.keep {
		return nil
	}
	o.section("Still running (--keep)")
	o.line("In another terminal:")
	o.cmd("  alias kubectl='%s'", d.stack.KubectlCommand())
	o.cmd("  kubectl describe trustedregistry %s", registryName)
	o.cmd("  kubectl get %s %s -o yaml", strings.ToLower(policy.Kind), policy.Name)
	o.cmd("  kubectl run try-unsigned -n production --image=%s   # denied", unsigned)
	o.cmd("  kubectl run try-signed -n production --image=%s   # admitted", signed)
	o.dim("  logs: %s (Kyverno, kube-apiserver, etcd) and %s (Signet)", d.stack.Dir(), d.logPath)
	o.line("Press Ctrl-C to stop.")
	<-ctx.Done()
	o.line("")
	return nil
}

// --- building the tools -----------------------------------------------------------------

// buildTools builds bin/k8s and bin/kyverno with the repository's scripts (they do
// nothing when the binaries are present).
func (d *demo) buildTools(ctx context.Context) error {
	type tool struct {
		what, script, dir string
		bins              []string
		minutes           int
	}
	tools := []tool{
		{"the control plane (kube-apiserver, etcd, kubectl, kube-controller-manager)", "hack/build-control-plane.sh", d.k8sDir,
			[]string{"kube-apiserver", "etcd", "kubectl", "kube-controller-manager"}, 12},
		{"Kyverno v1.19.1 (admission controller, reports-controller, CLI)", "hack/build-kyverno.sh", d.kyvernoDir,
			[]string{"kyverno", "reports-controller", "kyverno-cli"}, 6},
	}
	var missing []tool
	for _, t := range tools {
		for _, b := range t.bins {
			if _, err := os.Stat(filepath.Join(t.dir, b)); err != nil {
				missing = append(missing, t)
				break
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	o := d.out
	o.section("0. Building the tools (first run only)")
	var parts []string
	for _, t := range missing {
		parts = append(parts, fmt.Sprintf("%s ~%d min", filepath.Base(t.script), t.minutes))
	}
	o.line("The local cluster's binaries are not all built yet. They are built once, from the Go")
	o.line("module proxy, and reused by every later run. A first build on 2 cores takes about")
	o.line("%s; the build cache makes rebuilds take seconds.", strings.Join(parts, " + "))
	for _, t := range missing {
		o.line("")
		o.line("  building %s (~%d min) with %s", t.what, t.minutes, t.script)
		t0 := time.Now()
		if err := d.runScript(ctx, t.script); err != nil {
			return fmt.Errorf("%s: %w", t.script, err)
		}
		o.ok("built %s in %v", t.dir, round(time.Since(t0)))
	}
	return nil
}

// runScript runs a build script in its own process group (killed with everything it
// started on Ctrl-C), streaming its output and printing a heartbeat every 30 seconds.
func (d *demo) runScript(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(d.root, script))
	cmd.Dir = d.root
	cmd.Stdout = &indentWriter{w: os.Stdout, prefix: "    "}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t0 := time.Now()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			d.out.dim("    … still building (%v so far)", time.Since(t0).Round(time.Second))
		}
	}
}

// --- the stack and Signet ---------------------------------------------------------------

func (d *demo) startStack(ctx context.Context) error {
	crdDir, err := testenv.SignetCRDDir()
	if err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	d.out.dim("  starting etcd, kube-apiserver, Kyverno's CRDs and its admission controller (~20 s)")
	stack, err := localstack.Start(startCtx, localstack.Options{
		ExtraCRDDirs:      []string{crdDir},
		ParentDir:         d.dir,
		AssetsDir:         d.k8sDir,
		KyvernoBinDir:     d.kyvernoDir,
		ControllerManager: true, // garbage collection of the generated policy
		Logf: func(format string, args ...any) {
			msg := strings.TrimPrefix(fmt.Sprintf(format, args...), "localstack: ")
			if strings.HasPrefix(msg, "starting in ") || strings.HasPrefix(msg, "ready in ") {
				return
			}
			d.out.dim("  · %s", msg)
		},
	})
	if err != nil {
		return fmt.Errorf("starting the local cluster: %w", err)
	}
	d.stack, d.kube = stack, stack.Kube()
	d.stackStart = stack.Timings().Total
	d.cleanups = append(d.cleanups, func() {
		if err := stack.Stop(); err != nil {
			d.out.warn("stopping the cluster: %v", err)
		}
	})
	d.out.ok("cluster ready in %v: kube-apiserver %s, Kyverno webhook %s", round(stack.Timings().Total), stack.APIServerURL(), stack.WebhookURL())
	d.client, err = client.New(stack.RESTConfig(), client.Options{Scheme: operator.Scheme()})
	return err
}

// setupDir creates the demo's directory (the stack's directory and Signet's log go in it;
// it is removed at the end unless something failed) and sends every log there: Signet's
// (controller-runtime) and client-go's (klog).
func (d *demo) setupDir() error {
	dir, err := os.MkdirTemp("", "signet-demo-")
	if err != nil {
		return err
	}
	d.dir = dir
	d.logPath = filepath.Join(dir, "signet.log")
	logFile, err := os.Create(d.logPath)
	if err != nil {
		return err
	}
	var logOut io.Writer = logFile
	if d.verbose {
		logOut = io.MultiWriter(logFile, os.Stderr)
	}
	logger := zap.New(zap.WriteTo(logOut))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)
	d.cleanups = append(d.cleanups, func() {
		logFile.Close()
		if d.keepDir {
			d.out.dim("  (kept %s: logs of Signet, Kyverno, kube-apiserver and etcd)", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	return nil
}

// startSignet installs the operator's ServiceAccount and RBAC from config/default (and
// config/admission) and runs Signet's manager in this process as that ServiceAccount,
// configured as main.go configures it. A permission config/ lacks fails the demo (see checkForbidden), it is never papered
// over with the admin's.
func (d *demo) startSignet(ctx context.Context) error {
	var err error
	if d.operator, err = d.stack.InstallOperator(ctx, 2*time.Hour); err != nil {
		return err
	}
	// config/admission too, as on any Kubernetes ≥ 1.36 (the Helm chart does it there): new
	// TrustedRegistries are stored with Signet's finalizer.
	if err := testenv.InstallAdmission(ctx, d.stack.RESTConfig(), controllers.Finalizer); err != nil {
		return err
	}
	cfg := d.operator.RESTConfig()
	cfg.QPS, cfg.Burst = 50, 100
	mgr, err := operator.New(cfg, operator.Options{
		TrustNamespace:          trustNS,
		Workers:                 4,
		CountBlocked:            true,
		PodInsights:             true,
		GracefulShutdownTimeout: 10 * time.Second,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	d.cleanups = append(d.cleanups, func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				d.out.warn("Signet: %v", err)
			}
		})
	})
	return nil
}

// manifest is config/samples/trust_v1alpha1_trustedregistry.yaml for the local registry,
// with the transparency log ignored (signed offline).
func (d *demo) manifest() string {
	return fmt.Sprintf(`apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata:
  name: %s
spec:
  images:
    - %s/yourorg/*
  namespaces:
    names: [production, staging]
  restrictRegistries: true      # nothing else may run there
  action: Enforce
  keys:
    - name: ci-2026
      secretRef:
        name: %s
        key: cosign.pub
  requiredSignatures: 1
  transparencyLog:
    ignore: true                # signed offline: cosign sign --tlog-upload=false
  rotation:
    overlap: 168h
  policy:
    engine: %s`, registryName, d.reg.Host(), keySecret, d.engine)
}

// tagPinned is the seed walkthrough's step: a Pod that references a signed image by tag is
// admitted, and Kyverno stores it pinned to the digest it verified (the default of an
// Enforce TrustedRegistry), so a tag moved later cannot change what runs.
func (d *demo) tagPinned(ctx context.Context, key *ocitest.KeyPair) error {
	o := d.out
	o.section("Pinning: a signed image referenced by tag")
	tag := d.reg.Ref("yourorg/nginx-signed:v1.0.0")
	dig, err := ocitest.PushRandomImage(ctx, tag)
	if err != nil {
		return err
	}
	if err := ocitest.Sign(ctx, dig, key.Signer); err != nil {
		return err
	}
	o.ok("pushed and signed   %s  (cosign signs the digest the tag points to)", tag)
	o.line("")
	o.cmd("$ kubectl run nginx-signed -n production --image=%s", tag)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nginx-signed", Namespace: "production"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: tag}}},
	}
	if _, err := d.kube.CoreV1().Pods("production").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.unexpected++
		o.fail("denied")
		o.wrap("      ", "Kyverno: "+kyvernoMessage(err))
		o.warn("unexpected: a signed image referenced by tag should be admitted and pinned")
		return nil
	}
	o.ok("admitted")
	o.cmd("$ kubectl get pod nginx-signed -n production -o jsonpath='{.spec.containers[0].image}'")
	stored, err := d.kubectl(ctx, "get", "pod", "nginx-signed", "-n", "production", "-o", "jsonpath={.spec.containers[0].image}")
	if err != nil {
		return err
	}
	o.line("  %s", stored)
	if want := tag + "@" + dig.DigestStr(); stored != want {
		d.unexpected++
		o.warn("unexpected: the stored image should be pinned: %s", want)
		return nil
	}
	o.ok("pinned to the digest Kyverno verified: the Pod runs exactly the signed image, even if the tag moves")
	return nil
}

func (d *demo) pushImage(ctx context.Context, reg *ocitest.Registry, repo string, signer *ocitest.KeyPair) (string, error) {
	ref, err := reg.PushRandomImage(ctx, repo)
	if err != nil {
		return "", err
	}
	if signer != nil {
		if err := ocitest.Sign(ctx, ref, signer.Signer); err != nil {
			return "", err
		}
	}
	return ref.String(), nil
}

// waitReady polls until the TrustedRegistry is Ready for its current generation.
func (d *demo) waitReady(ctx context.Context, timeout time.Duration) (*trustv1alpha1.TrustedRegistry, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		tr := &trustv1alpha1.TrustedRegistry{}
		if err := d.client.Get(ctx, client.ObjectKey{Name: registryName}, tr); err == nil {
			c := meta.FindStatusCondition(tr.Status.Conditions, trustv1alpha1.ConditionReady)
			if c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == tr.Generation && tr.Status.Policy != nil {
				if err := d.stack.WaitForPolicyReady(ctx, tr.Status.Policy.Kind, tr.Status.Policy.Name); err != nil {
					return nil, err
				}
				return tr, nil
			}
			if c != nil {
				last = fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
			}
		}
		select {
		case <-ctx.Done():
			if last == "" {
				last = "no status yet"
			}
			return nil, fmt.Errorf("TrustedRegistry %s did not become Ready (%s); Signet's log: %s", registryName, last, d.logPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitEnforced polls a dry-run pod with the unsigned image until Kyverno denies it: the
// policy is then live in admission, not only marked ready.
func (d *demo) waitEnforced(ctx context.Context, image string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "production"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
	for {
		_, err := d.kube.CoreV1().Pods("production").Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && ctx.Err() == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kyverno did not start enforcing the policy within a minute")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (d *demo) kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.stack.KubectlPath(), append([]string{"--kubeconfig", d.stack.KubeconfigPath()}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimRight(string(out), "\n"), nil
}

// --- presentation -----------------------------------------------------------------------

var (
	digestRE = regexp.MustCompile(`@sha256:([a-f0-9]{12})[a-f0-9]{52}`)
	// ClusterPolicy denials start with "resource Pod/ns/name was blocked due to the
	// following policies"; the pod is shown already.
	blockedRE = regexp.MustCompile(`^(resource )?\S+ was blocked due to the following policies `)
)

// short abbreviates digests: @sha256:0123456789ab….
func short(s string) string { return digestRE.ReplaceAllString(s, "@sha256:$1…") }

// kyvernoMessage is the reason in a denial, without the webhook's preamble.
func kyvernoMessage(err error) string {
	msg := err.Error()
	if _, after, ok := strings.Cut(msg, "denied the request:"); ok {
		msg = after
	}
	msg = strings.Join(strings.Fields(msg), " ")
	msg = blockedRE.ReplaceAllString(msg, "")
	return short(msg)
}

func round(d time.Duration) time.Duration {
	if d > 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}

type printer struct {
	mu    sync.Mutex
	w     io.Writer
	color bool
}

func newPrinter(f *os.File) *printer {
	color := false
	if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb" {
		color = true
	}
	return &printer{w: f, color: color}
}

func (p *printer) style(code, s string) string {
	if !p.color {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (p *printer) faint(s string) string { return p.style("2", s) }

func (p *printer) line(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *printer) title(s string) {
	p.line("")
	p.line("%s", p.style("1", s))
	p.line("%s", strings.Repeat("═", len([]rune(s))))
}

func (p *printer) section(s string) {
	p.line("")
	p.line("%s", p.style("1;36", "▸ "+s))
}

func (p *printer) ok(format string, args ...any) {
	p.line("  %s %s", p.style("32", "✓"), fmt.Sprintf(format, args...))
}

func (p *printer) fail(format string, args ...any) {
	p.line("  %s %s", p.style("31", "✗"), fmt.Sprintf(format, args...))
}

func (p *printer) warn(format string, args ...any) {
	p.line("  %s %s", p.style("33", "!"), fmt.Sprintf(format, args...))
}

func (p *printer) dim(format string, args ...any) {
	p.line("%s", p.faint(fmt.Sprintf(format, args...)))
}

func (p *printer) cmd(format string, args ...any) {
	p.line("%s", p.style("1", fmt.Sprintf(format, args...)))
}

// code prints a block indented by four spaces.
func (p *printer) code(s string) {
	for _, l := range strings.Split(s, "\n") {
		p.line("    %s", l)
	}
}

// wrap prints s word-wrapped to about 100 columns after prefix.
func (p *printer) wrap(prefix, s string) {
	const width = 100
	var cur strings.Builder
	for _, w := range strings.Fields(s) {
		if cur.Len() > 0 && len(prefix)+cur.Len()+1+len(w) > width {
			p.line("%s%s", prefix, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(w)
	}
	if cur.Len() > 0 {
		p.line("%s%s", prefix, cur.String())
	}
}

// indentWriter prefixes every line written to w.
type indentWriter struct {
	w      io.Writer
	prefix string
	mid    bool
}

func (iw *indentWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		if !iw.mid {
			if _, err := io.WriteString(iw.w, iw.prefix); err != nil {
				return 0, err
			}
			iw.mid = true
		}
		i := strings.IndexByte(string(b), '\n')
		if i < 0 {
			_, err := iw.w.Write(b)
			return n, err
		}
		if _, err := iw.w.Write(b[:i+1]); err != nil {
			return 0, err
		}
		iw.mid = false
		b = b[i+1:]
	}
	return n, nil
}

// --- a second TrustedRegistry on the same namespace ----------------------------------------

// platformRegistry is the second TrustedRegistry of the demo: a platform team's sidecars.
const platformRegistry = "platform"

// secondRegistry adds a platform team's TrustedRegistry, with its own key and pattern, to
// the namespace yourorg already guards, and shows that the restrictions compose (README.md,
// "Composition"): each registry's signed images run there, anything else is still denied.
func (d *demo) secondRegistry(ctx context.Context, yourorgSigned string, yourorgKey *ocitest.KeyPair) error {
	o := d.out
	o.section("4b. A second TrustedRegistry on the same namespace")
	key, err := ocitest.GenerateKeyPair(keyPassword)
	if err != nil {
		return err
	}
	const secret = "platform-cosign"
	if err := d.client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secret, Namespace: trustNS}, Data: key.SecretData(), Immutable: ptr.To(true),
	}); err != nil {
		return fmt.Errorf("creating the platform key Secret: %w", err)
	}
	proxy, err := d.pushImage(ctx, d.reg, "platform/proxy", key)
	if err != nil {
		return err
	}
	o.ok("platform key in Secret %s/%s; pushed and signed %s", trustNS, secret, short(proxy))
	manifest := fmt.Sprintf(`apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata:
  name: %s
spec:
  images:
    - %s/platform/*
  namespaces:
    names: [production]
  restrictRegistries: true
  action: Enforce
  keys:
    - name: platform
      secretRef:
        name: %s
        key: cosign.pub
  transparencyLog:
    ignore: true
  policy:
    engine: %s`, platformRegistry, d.reg.Host(), secret, d.engine)
	tr, err := d.showManifest(manifest)
	if err != nil {
		return fmt.Errorf("the platform TrustedRegistry: %w", err)
	}
	if err := d.client.Create(ctx, tr); err != nil {
		return fmt.Errorf("creating the platform TrustedRegistry: %w", err)
	}
	// Ready, and the union live in admission: the platform image passes a dry run
	wait, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "production"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "proxy", Image: proxy}}},
	}
	for {
		cur := &trustv1alpha1.TrustedRegistry{}
		if err := d.client.Get(wait, client.ObjectKey{Name: platformRegistry}, cur); err == nil {
			if c := meta.FindStatusCondition(cur.Status.Conditions, trustv1alpha1.ConditionReady); c != nil && c.Status == metav1.ConditionTrue {
				if _, err := d.kube.CoreV1().Pods("production").Create(wait, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil {
					o.ok("Ready; both registries guard production:")
					o.wrap("    ", c.Message)
					break
				}
			}
		}
		select {
		case <-wait.Done():
			return fmt.Errorf("the platform TrustedRegistry was not enforced within 2 minutes; Signet's log: %s", d.logPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
	attempts := []struct {
		name   string
		images []string
		why    string
		admit  bool
	}{
		{"platform-proxy", []string{proxy}, "signed by the platform key, under platform/*", true},
		{"app-with-proxy", []string{yourorgSigned, proxy}, "one container of each team, each signed by its own key", true},
		{"proxy-wrong-key", []string{d.mustPush(ctx, "platform/proxy", yourorgKey)}, "under platform/*, but signed by yourorg's key", false},
		{"nginx-again", []string{"nginx:1.27"}, "from Docker Hub: allowed by neither", false},
	}
	for _, a := range attempts {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: a.name, Namespace: "production"}}
		for i, img := range a.images {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: img})
		}
		_, err := d.kube.CoreV1().Pods("production").Create(ctx, pod, metav1.CreateOptions{})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var shown []string
		for _, img := range a.images {
			shown = append(shown, short(img))
		}
		o.line("")
		o.line("  production/%s  %s", a.name, o.faint(strings.Join(shown, ", ")))
		o.line("  %s", o.faint(a.why))
		d.showAdmission(err, a.admit)
	}
	o.line("")
	o.ok("the allowed images are the union of both registries' patterns; each image needs its own registry's signature")
	return nil
}

// showManifest prints a TrustedRegistry manifest and decodes it strictly.
func (d *demo) showManifest(manifest string) (*trustv1alpha1.TrustedRegistry, error) {
	d.out.line("")
	d.out.code(manifest)
	d.out.line("")
	tr := &trustv1alpha1.TrustedRegistry{}
	if err := yaml.UnmarshalStrict([]byte(manifest), tr); err != nil {
		return nil, err
	}
	return tr, nil
}

// showAdmission prints whether a Pod was admitted (err nil) or denied with Kyverno's
// message, and counts an outcome other than the expected one (admit).
func (d *demo) showAdmission(err error, admit bool) {
	o := d.out
	if err == nil {
		o.ok("admitted")
	} else {
		o.fail("denied")
		o.wrap("      ", "Kyverno: "+kyvernoMessage(err))
	}
	if (err == nil) != admit {
		d.unexpected++
		o.warn("unexpected: this pod should have been %s", map[bool]string{true: "admitted", false: "denied"}[admit])
	}
}

// mustPush pushes an image signed by key; on failure it returns a reference that does not
// exist (the attempt is then denied, which is what it expects).
func (d *demo) mustPush(ctx context.Context, repo string, key *ocitest.KeyPair) string {
	ref, err := d.pushImage(ctx, d.reg, repo, key)
	if err != nil {
		return d.reg.Host() + "/" + repo + ":missing"
	}
	return ref
}
