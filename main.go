// Command signet is the Signet operator: it keeps Kyverno image-verification policies, key
// rotation state and report summaries in sync with TrustedRegistry resources.
package main

import (
	"flag"
	"fmt"
	"os"
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
	// signet render | verify | lint | help | version: offline checks for GitOps pipelines.
	// Without a subcommand the binary is the operator.
	if cli.IsSubcommand(os.Args[1:]) {
		os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "signet:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("signet", flag.ContinueOnError)
	var (
		trustNamespace   = fs.String("trust-namespace", defaultTrustNamespace(), "namespace holding the key Secrets (and Signet's key-ring records); Secrets elsewhere are never read")
		kyvernoNamespace = fs.String("kyverno-namespace", controllers.DefaultKyvernoNamespace, "namespace Kyverno runs in, where Signet keeps the one Secret of registry credentials Kyverno reads (signet-registry-credentials)")
		metricsAddr      = fs.String("metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
		probeAddr        = fs.String("health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
		leaderElect      = fs.Bool("leader-elect", false, "use leader election so that only one replica reconciles")
		leaderNamespace  = fs.String("leader-election-namespace", "", "namespace of the leader-election Lease (default: the trust namespace)")
		leaseDuration    = fs.Duration("leader-elect-lease-duration", 15*time.Second, "how long standby replicas wait after the leader's last renewal before taking over (a crashed leader is replaced within about this time)")
		renewDeadline    = fs.Duration("leader-elect-renew-deadline", 10*time.Second, "how long the leader retries renewing its Lease before it steps down (and exits)")
		retryPeriod      = fs.Duration("leader-elect-retry-period", 2*time.Second, "how often replicas try to acquire or renew the Lease")
		workers          = fs.Int("workers", 4, "TrustedRegistries reconciled in parallel")
		discoveryMaxAge  = fs.Duration("kyverno-discovery-max-age", kyverno.DefaultMaxAge, "how long the list of served Kyverno kinds is trusted without a CRD event")
		kubeAPIQPS       = fs.Float64("kube-api-qps", 50, "client-side rate limit towards the apiserver, per resource kind (requests/s)")
		kubeAPIBurst     = fs.Int("kube-api-burst", 100, "client-side burst towards the apiserver")
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
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	setupLog := ctrl.Log.WithName("setup")

	layout := controllers.Layout(*policyLayout)
	if layout != controllers.LayoutShared && layout != controllers.LayoutPerRegistry {
		return fmt.Errorf("--policy-layout must be %q or %q, not %q", controllers.LayoutShared, controllers.LayoutPerRegistry, *policyLayout)
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
		CountBlocked:            *countBlocked,
		PodInsights:             *podInsights,
		Layout:                  layout,
		DiscoveryMaxAge:         *discoveryMaxAge,
		MetricsBindAddress:      *metricsAddr,
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
	return mgr.Start(ctrl.SetupSignalHandler())
}
