// Package operator assembles Signet's manager: scheme, cache restrictions, client, the
// TrustedRegistry controller and its options. main.go, the demo, the e2e tests, the
// benchmarks and the envtest suite all build the operator here, so they run the same thing.
package operator

import (
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
	"github.com/signet-operator/signet/internal/kyverno"
	signetmetrics "github.com/signet-operator/signet/internal/metrics"
)

// LeaderElectionID is the name of the leader-election Lease.
const LeaderElectionID = "signet.trust.signet.dev"

// Options configure the operator. The zero value runs with the defaults of main.go except
// that the metrics and probe endpoints are off and no leader election is used.
type Options struct {
	// TrustNamespace holds the key Secrets (default controllers.DefaultTrustNamespace).
	TrustNamespace string
	// KyvernoNamespace is where Kyverno reads registry credentials (default
	// controllers.DefaultKyvernoNamespace; controllers/credentials.go).
	KyvernoNamespace string
	// Clock is the time source of key rotation and blocked-count windows (default real).
	Clock clock.PassiveClock
	// Workers is the number of TrustedRegistries reconciled in parallel (default 4).
	Workers int
	// CountBlocked, PodInsights and Preview enable the status insights (see
	// controllers.TrustedRegistryReconciler).
	CountBlocked bool
	PodInsights  bool
	Preview      *controllers.RotationPreview
	// Layout of the generated policies: controllers.LayoutShared (default) or
	// controllers.LayoutPerRegistry.
	Layout controllers.Layout
	// PendingGrace: see controllers.TrustedRegistryReconciler.PendingGrace (default 3 s).
	PendingGrace time.Duration
	// DiscoveryMaxAge bounds how long served Kyverno kinds are trusted without a CRD event.
	DiscoveryMaxAge time.Duration
	// MetricsBindAddress and HealthProbeBindAddress ("" or "0": off).
	MetricsBindAddress     string
	HealthProbeBindAddress string
	// MetricsInsecure serves metrics over plain HTTP without authentication (local
	// debugging only). By default they are served over HTTPS and every scrape must carry a
	// bearer token that the apiserver authenticates (TokenReview) and authorizes for GET
	// /metrics (SubjectAccessReview; the metrics-reader ClusterRole of config/rbac).
	MetricsInsecure bool
	// MetricsCertDir holds tls.crt and tls.key for the metrics endpoint (default: a
	// self-signed certificate made at start).
	MetricsCertDir string
	// LeaderElection with the Lease LeaderElectionID in LeaderElectionNamespace (default:
	// the trust namespace). The Lease is released when the manager stops, so that a
	// standby replica takes over at once on a rollout or drain (README.md, "High
	// availability"); a crashed leader's Lease expires after LeaseDuration.
	LeaderElection          bool
	LeaderElectionNamespace string
	// LeaseDuration, RenewDeadline and RetryPeriod of the leader election (default
	// controller-runtime's: 15s, 10s, 2s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// GracefulShutdownTimeout for in-flight reconciles (default 30s).
	GracefulShutdownTimeout time.Duration
	// SyncPeriod of the informers (default controller-runtime's).
	SyncPeriod *time.Duration
	// KubeAPICompression lets the apiserver gzip its responses and watch streams to the
	// operator. Off by default, as kube-controller-manager and kube-scheduler have it: in
	// the cluster's network the bytes are cheap, and un-gzipping every watch event of every
	// cached kind costs the operator CPU (docs/performance.md, "Pod insights").
	KubeAPICompression bool
	// SkipControllerNameValidation lets several managers run in one process (tests).
	SkipControllerNameValidation bool
	// WrapClient, when set, wraps the client the reconciler reads and writes through (tests
	// inject API faults and check every policy write with it; see internal/faults).
	WrapClient func(client.Client) client.Client
}

// Scheme returns the scheme of Signet's manager.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(trustv1alpha1.AddToScheme(s))
	return s
}

// New builds the manager with the TrustedRegistry controller registered and health checks
// added. Start it with mgr.Start(ctx).
func New(cfg *rest.Config, o Options) (ctrl.Manager, error) {
	if o.TrustNamespace == "" {
		o.TrustNamespace = controllers.DefaultTrustNamespace
	}
	if o.KyvernoNamespace == "" {
		o.KyvernoNamespace = controllers.DefaultKyvernoNamespace
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.MetricsBindAddress == "" {
		o.MetricsBindAddress = "0"
	}
	if o.HealthProbeBindAddress == "" {
		o.HealthProbeBindAddress = "0"
	}
	if o.LeaderElectionNamespace == "" {
		o.LeaderElectionNamespace = o.TrustNamespace
	}
	if o.GracefulShutdownTimeout <= 0 {
		o.GracefulShutdownTimeout = 30 * time.Second
	}
	if o.Preview != nil && !o.PodInsights {
		return nil, fmt.Errorf("rotation preview needs Pod insights: it checks the images of running Pods")
	}

	if !o.KubeAPICompression {
		cfg = rest.CopyConfig(cfg)
		cfg.DisableCompression = true
	}

	cacheOpts := controllers.CacheOptions(o.TrustNamespace)
	cacheOpts.SyncPeriod = o.SyncPeriod
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  Scheme(),
		Cache:                   cacheOpts,
		Client:                  client.Options{Cache: &client.CacheOptions{Unstructured: true}},
		Metrics:                 metricsOptions(o),
		HealthProbeBindAddress:  o.HealthProbeBindAddress,
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        LeaderElectionID,
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		// Safe because the manager stops the reconcilers (waiting up to
		// GracefulShutdownTimeout) before it releases the Lease, and main.go exits as soon
		// as Start returns.
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 positiveOrNil(o.LeaseDuration),
		RenewDeadline:                 positiveOrNil(o.RenewDeadline),
		RetryPeriod:                   positiveOrNil(o.RetryPeriod),
		GracefulShutdownTimeout:       &o.GracefulShutdownTimeout,
		Controller:                    config.Controller{SkipNameValidation: ptr.To(o.SkipControllerNameValidation)},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	signetmetrics.Register(mgr.GetCache(), o.Clock)
	mc, err := withOwnStatusLimit(mgr, cfg)
	if err != nil {
		return nil, err
	}
	c := signetmetrics.CountPolicyWrites(mc)
	if o.WrapClient != nil {
		c = o.WrapClient(c)
	}
	r := &controllers.TrustedRegistryReconciler{
		Client:         c,
		TrustNamespace: o.TrustNamespace,
		Clock:          o.Clock,
		Discovery:      kyverno.NewDiscovery(dc, o.Clock, o.DiscoveryMaxAge),
		Recorder:       mgr.GetEventRecorder("signet"),
		CountBlocked:   o.CountBlocked,
		PodInsights:    o.PodInsights,
		Preview:        o.Preview,
		Layout:         o.Layout,
		PendingGrace:   o.PendingGrace,
	}
	if err := r.SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: o.Workers}); err != nil {
		return nil, fmt.Errorf("setting up the controller: %w", err)
	}
	creds := &controllers.CredentialsReconciler{Client: c, APIReader: mgr.GetAPIReader(),
		TrustNamespace: o.TrustNamespace, KyvernoNamespace: o.KyvernoNamespace}
	if err := creds.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the credentials controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

// metricsOptions: HTTPS with authentication and authorization unless MetricsInsecure.
func metricsOptions(o Options) metricsserver.Options {
	if o.MetricsInsecure {
		return metricsserver.Options{BindAddress: o.MetricsBindAddress}
	}
	return metricsserver.Options{
		BindAddress:    o.MetricsBindAddress,
		SecureServing:  true,
		FilterProvider: filters.WithAuthenticationAndAuthorization,
		CertDir:        o.MetricsCertDir,
	}
}

// positiveOrNil leaves a zero duration to controller-runtime's default.
func positiveOrNil(d time.Duration) *time.Duration {
	if d <= 0 {
		return nil
	}
	return &d
}
