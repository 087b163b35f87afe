// Command signet is the Signet operator: it keeps Kyverno image-verification policies, key
// rotation state and report summaries in sync with TrustedRegistry resources.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/signet-operator/signet/controllers"
	"github.com/signet-operator/signet/internal/cli"
	"github.com/signet-operator/signet/internal/kyverno"
	"github.com/signet-operator/signet/internal/operator"
	"github.com/signet-operator/signet/internal/verify"
)

// defaultTrustNamespace is the operator's own namespace (downward API env POD_NAMESPACE),
// else signet-system.
func defaultTrustNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return controllers.DefaultTrustNamespace
}

func main() {
	// Every run names its command (internal/cli): `signet manager` (or `signet run`) is the
	// operator; render, verify and lint are offline checks. A typo or a stray argument is a
	// usage error, never an operator started against the current kubeconfig.
	cli.Manager = runManager
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks a command-line error (exit 2; flag has printed the usage).
var errUsage = errors.New("usage")

// runManager is `signet manager`: 0 after a clean stop (or -h), 2 for bad flags or stray
// arguments, 1 when the operator fails.
func runManager(ctx context.Context, args []string, s cli.Streams) int {
	err := run(ctx, args, s.Out, s.Err)
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return cli.ExitOK
	case errors.Is(err, errUsage):
		if err != errUsage {
			fmt.Fprintln(s.Err, "signet manager:", err)
		}
		return cli.ExitUsage
	}
	fmt.Fprintln(s.Err, "signet manager:", err)
	return cli.ExitFailed
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("signet manager", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" }) {
		fs.SetOutput(stdout)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: signet manager [flags]   (alias: signet run)\n\nRuns the operator against the cluster of the current kubeconfig (in a Pod: its\nServiceAccount). Takes flags only.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var (
		trustNamespace   = fs.String("trust-namespace", defaultTrustNamespace(), "namespace holding the key Secrets (and Signet's key-ring records); Secrets elsewhere are never read")
		kyvernoNamespace = fs.String("kyverno-namespace", controllers.DefaultKyvernoNamespace, "namespace Kyverno runs in, where Signet keeps the one Secret of registry credentials Kyverno reads (signet-registry-credentials)")
		metricsAddr      = fs.String("metrics-bind-address", ":8443", "address of the Prometheus metrics endpoint (0 disables it)")
		metricsSecure    = fs.Bool("metrics-secure", true, "serve metrics over HTTPS to clients whose bearer token the apiserver authenticates and authorizes for GET /metrics (false: plain HTTP, anyone; local debugging only)")
		metricsCertDir   = fs.String("metrics-cert-dir", "", "directory with tls.crt and tls.key for the metrics endpoint (default: a self-signed certificate made at start)")
		probeAddr        = fs.String("health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
		leaderElect      = fs.Bool("leader-elect", false, "use leader election so that only one replica reconciles")
		leaderNamespace  = fs.String("leader-election-namespace", "", "namespace of the leader-election Lease (default: the trust namespace)")
		leaseDuration    = fs.Duration("leader-elect-lease-duration", 15*time.Second, "how long standby replicas wait after the leader's last renewal before taking over (a crashed leader is replaced within about this time)")
		renewDeadline    = fs.Duration("leader-elect-renew-deadline", 10*time.Second, "how long the leader retries renewing its Lease before it steps down (and exits)")
		retryPeriod      = fs.Duration("leader-elect-retry-period", 2*time.Second, "how often replicas try to acquire or renew the Lease")
		workers          = fs.Int("workers", 4, "TrustedRegistries reconciled in parallel")
		discoveryMaxAge  = fs.Duration("kyverno-discovery-max-age", kyverno.DefaultMaxAge, "how long the list of served Kyverno kinds is trusted without a CRD event")
		kubeAPIQPS       = fs.Float64("kube-api-qps", 50, "client-side rate limit towards the apiserver, per resource kind; status writes have their own (requests/s)")
		kubeAPIBurst     = fs.Int("kube-api-burst", 100, "client-side burst towards the apiserver")
		kubeAPIGzip      = fs.Bool("kube-api-compression", false, "accept gzip-compressed responses and watch streams from the apiserver (fewer bytes on the network, more CPU to decode every watch event)")
		gracefulShutdown = fs.Duration("graceful-shutdown-timeout", 30*time.Second, "time to finish in-flight reconciles on shutdown")
		countBlocked     = fs.Bool("count-blocked", true, "count Kyverno's denials (PolicyViolation events in namespace default) into status.reports.blocked")
		podInsights      = fs.Bool("pod-insights", true, "watch Pods (images only) to report running images that no pattern matches in status.coverage")
		rotationPreview  = fs.Bool("rotation-preview", false, "while keys are retiring, verify running images against the keys that remain (contacts registries; needs --pod-insights)")
		policyLayout     = fs.String("policy-layout", string(controllers.LayoutShared), "how TrustedRegistries map to Kyverno policies: shared (a few shared policies, admission cost independent of the number of registries) or per-registry (one policy each)")
		previewCreds     = fs.String("rotation-preview-credentials", "", "name of a kubernetes.io/dockerconfigjson Secret in the trust namespace used to pull signatures for rotation preview (default: anonymous)")
	)
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "signet manager: unexpected argument %q: the operator takes flags only\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	setupLog := ctrl.Log.WithName("setup")

	layout := controllers.Layout(*policyLayout)
	if layout != controllers.LayoutShared && layout != controllers.LayoutPerRegistry {
		return fmt.Errorf("%w: --policy-layout must be %q or %q, not %q", errUsage, controllers.LayoutShared, controllers.LayoutPerRegistry, *policyLayout)
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(*kubeAPIQPS), *kubeAPIBurst
	if *leaderNamespace == "" {
		*leaderNamespace = *trustNamespace
	}

	opts := operator.Options{
		TrustNamespace:          *trustNamespace,
		KyvernoNamespace:        *kyvernoNamespace,
		Workers:                 *workers,
		KubeAPICompression:      *kubeAPIGzip,
		CountBlocked:            *countBlocked,
		PodInsights:             *podInsights,
		Layout:                  layout,
		DiscoveryMaxAge:         *discoveryMaxAge,
		MetricsBindAddress:      *metricsAddr,
		MetricsInsecure:         !*metricsSecure,
		MetricsCertDir:          *metricsCertDir,
		HealthProbeBindAddress:  *probeAddr,
		LeaderElection:          *leaderElect,
		LeaderElectionNamespace: *leaderNamespace,
		LeaseDuration:           *leaseDuration,
		RenewDeadline:           *renewDeadline,
		RetryPeriod:             *retryPeriod,
		GracefulShutdownTimeout: *gracefulShutdown,
	}
	if *rotationPreview {
		opts.Preview = &controllers.RotationPreview{
			Verifier:          verify.New(verify.Options{}),
			CredentialsSecret: *previewCreds,
		}
	}
	mgr, err := operator.New(cfg, opts)
	if err != nil {
		return err
	}
	setupLog.Info("starting Signet", "trustNamespace", *trustNamespace, "workers", *workers, "policyLayout", layout)
	return mgr.Start(ctx)
}
