// Package localstack runs the closed loop of docs/architecture.md on one machine: etcd and
// kube-apiserver (optionally kube-controller-manager) built from the Go module proxy
// (bin/k8s), Kyverno's CRDs from the Kyverno module in the module cache, and the real
// Kyverno admission controller (and optionally its reports-controller) running
// out-of-cluster from bin/kyverno.
//
// It is a normal package so that the e2e tests, the demo program and the benchmarks
// share it. Every process runs in its own process group, is killed when the test
// binary dies (Pdeathsig), and logs to a file in the stack's directory.
//
//	s, err := localstack.Start(ctx, localstack.Options{ReportsController: true})
//	if err != nil { ... }
//	defer s.Stop()
//	cfg := s.RESTConfig()
//
// In tests, StartT does the same and dumps the logs when the test fails.
package localstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/signet-operator/signet/internal/testenv"
)

// Options configures a stack. The zero value starts etcd, kube-apiserver, Kyverno's CRDs
// and the Kyverno admission controller.
type Options struct {
	// AssetsDir holds etcd, kube-apiserver, kube-controller-manager and kubectl.
	// Default: $KUBEBUILDER_ASSETS, else <repo>/bin/k8s (hack/build-control-plane.sh).
	AssetsDir string
	// KyvernoBinDir holds kyverno, reports-controller and kyverno-cli.
	// Default: $KYVERNO_BIN_DIR, else <repo>/bin/kyverno (hack/build-kyverno.sh).
	KyvernoBinDir string
	// ParentDir is where the stack's temporary directory is created (default os.TempDir()).
	ParentDir string
	// KeepDir keeps the stack's directory (logs, kubeconfigs, etcd data) after Stop.
	KeepDir bool

	// ControllerManager also starts kube-controller-manager, so that owner-reference
	// garbage collection and namespace deletion work.
	ControllerManager bool
	// NoKyverno starts only the control plane (and CRDs), e.g. for benchmarks of the
	// apiserver alone. Kyverno's CRDs are still installed unless NoKyvernoCRDs is set.
	NoKyverno bool
	// NoKyvernoCRDs skips Kyverno's CRDs (implies NoKyverno).
	NoKyvernoCRDs bool
	// OpenReports installs the openreports.io CRDs and runs the reports-controller with
	// -openreportsEnabled.
	OpenReports bool
	// ExtraCRDDirs are further directories of CRD YAML to install (e.g. Signet's).
	ExtraCRDDirs []string

	// ReportsController also starts Kyverno's reports-controller.
	ReportsController bool
	// BackgroundScanInterval is the reports-controller's -backgroundScanInterval
	// (default: Kyverno's one hour; tests use a few seconds).
	BackgroundScanInterval time.Duration

	// KyvernoArgs and ReportsControllerArgs are appended to the generated flags
	// (later flags win), e.g. "-v=4" or "-webhookTimeout=5".
	KyvernoArgs           []string
	ReportsControllerArgs []string

	// StopTimeout is how long each process gets between SIGTERM and SIGKILL (default 10s).
	StopTimeout time.Duration
	// Logf receives progress messages (nil: silent).
	Logf func(format string, args ...any)
}

// Timings records how long each start-up phase took.
type Timings struct {
	ControlPlane      time.Duration // etcd + kube-apiserver (+ controller-manager) ready
	CRDs              time.Duration // Kyverno's (and extra) CRDs applied and Established
	Kyverno           time.Duration // admission controller ready and webhooks registered
	ReportsController time.Duration // reports-controller holds its lease
	Total             time.Duration
}

func (t Timings) String() string {
	return fmt.Sprintf("control plane %v, CRDs %v, kyverno %v, reports-controller %v, total %v",
		t.ControlPlane.Round(time.Millisecond), t.CRDs.Round(time.Millisecond),
		t.Kyverno.Round(time.Millisecond), t.ReportsController.Round(time.Millisecond),
		t.Total.Round(time.Millisecond))
}

// Stack is a running local cluster with Kyverno. Methods are safe for concurrent use.
type Stack struct {
	opts      Options
	dir       string
	assets    string
	kyvernoBD string
	spawner   *spawner
	pki       *pki

	apiserverPort int
	etcdPort      int
	etcdPeerPort  int
	webhookPort   int
	kyvernoMetr   int
	reportsMetr   int

	restConfig *rest.Config
	kubeconfig string
	kube       kubernetes.Interface
	dyn        dynamic.Interface

	mu       sync.Mutex
	procs    map[string]*process
	order    []string // start order, for logs and reverse stop
	timings  Timings
	stopped  bool
	stopErr  error
	stopOnce sync.Once
}

// Process names, also the base names of the log files in Dir().
const (
	ProcEtcd              = "etcd"
	ProcAPIServer         = "kube-apiserver"
	ProcControllerManager = "kube-controller-manager"
	ProcKyverno           = "kyverno"
	ProcReportsController = "reports-controller"
)

// Start starts the stack and waits until every component is ready. On error, everything
// already started is stopped again. ctx bounds the start-up only; the processes keep
// running until Stop.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	s, err := start(ctx, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// start returns the (stopped) stack also on error, so that StartT can show its logs.
func start(ctx context.Context, opts Options) (ret *Stack, err error) {
	begin := time.Now()
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 10 * time.Second
	}
	if opts.NoKyvernoCRDs {
		opts.NoKyverno = true
	}
	if opts.NoKyverno {
		opts.ReportsController = false
	}
	s := &Stack{opts: opts, procs: map[string]*process{}}
	if s.assets, err = assetsDir(opts.AssetsDir); err != nil {
		return nil, err
	}
	if !opts.NoKyverno {
		if s.kyvernoBD, err = kyvernoBinDir(opts.KyvernoBinDir, opts.ReportsController); err != nil {
			return nil, err
		}
	}
	if s.dir, err = os.MkdirTemp(opts.ParentDir, "signet-localstack-"); err != nil {
		return nil, fmt.Errorf("localstack: %w", err)
	}
	s.spawner = newSpawner()
	defer func() {
		if err != nil {
			// Keep the directory: its logs explain the failure.
			err = fmt.Errorf("%w\n(logs: %s)", err, s.dir)
			_ = s.stop(false)
			ret = s
		}
	}()
	s.logf("localstack: starting in %s", s.dir)

	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	s.apiserverPort, s.etcdPort, s.etcdPeerPort = ports[0], ports[1], ports[2]
	s.webhookPort, s.kyvernoMetr, s.reportsMetr = ports[3], ports[4], ports[5]

	t0 := time.Now()
	if err := s.startControlPlane(ctx); err != nil {
		return nil, err
	}
	s.timings.ControlPlane = time.Since(t0)
	s.logf("localstack: control plane ready in %v (https://127.0.0.1:%d)", s.timings.ControlPlane.Round(time.Millisecond), s.apiserverPort)

	t0 = time.Now()
	var crdDirs []string
	if !opts.NoKyvernoCRDs {
		dirs, err := testenv.KyvernoCRDDirs()
		if err != nil {
			return nil, fmt.Errorf("localstack: locating Kyverno's CRDs: %w", err)
		}
		crdDirs = append(crdDirs, dirs...)
		if opts.OpenReports {
			dir, err := testenv.OpenReportsCRDDir()
			if err != nil {
				return nil, fmt.Errorf("localstack: locating openreports CRDs: %w", err)
			}
			crdDirs = append(crdDirs, dir)
		}
	}
	crdDirs = append(crdDirs, opts.ExtraCRDDirs...)
	if len(crdDirs) > 0 {
		n, err := s.InstallCRDs(ctx, crdDirs...)
		if err != nil {
			return nil, err
		}
		s.timings.CRDs = time.Since(t0)
		s.logf("localstack: %d CRDs established in %v", n, s.timings.CRDs.Round(time.Millisecond))
	}

	if !opts.NoKyverno {
		t0 = time.Now()
		if err := s.ensureKyvernoPrerequisites(ctx); err != nil {
			return nil, err
		}
		if err := s.StartKyverno(ctx); err != nil {
			return nil, err
		}
		s.timings.Kyverno = time.Since(t0)
		s.logf("localstack: kyverno admission controller ready in %v (webhook https://127.0.0.1:%d)", s.timings.Kyverno.Round(time.Millisecond), s.webhookPort)
		if opts.ReportsController {
			t0 = time.Now()
			if err := s.StartReportsController(ctx); err != nil {
				return nil, err
			}
			s.timings.ReportsController = time.Since(t0)
			s.logf("localstack: reports-controller leading in %v", s.timings.ReportsController.Round(time.Millisecond))
		}
	}
	s.timings.Total = time.Since(begin)
	s.logf("localstack: ready in %v", s.timings.Total.Round(time.Millisecond))
	return s, nil
}

// StartT starts a stack for a test or benchmark: it fails tb on error, and on cleanup
// logs the tails of all logs if tb failed, then stops the stack. The start-up is bounded
// by 5 minutes and by the test's deadline (less 10 s for clean-up). The stack's directory
// is removed unless Options.KeepDir or $SIGNET_KEEP_STACK is set.
func StartT(tb testing.TB, opts Options) *Stack {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if d, ok := tb.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			var c2 context.CancelFunc
			ctx, c2 = context.WithDeadline(ctx, dl.Add(-10*time.Second))
			defer c2()
		}
	}
	if opts.Logf == nil {
		opts.Logf = tb.Logf
	}
	s, err := start(ctx, opts)
	if err != nil {
		if s != nil {
			tb.Logf("localstack logs (%s):\n%s", s.Dir(), s.LogTails(40))
			if !keepDir(opts) {
				_ = os.RemoveAll(s.Dir())
			}
		}
		tb.Fatalf("localstack: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("localstack logs (%s):\n%s", s.Dir(), s.LogTails(40))
		}
		s.opts.KeepDir = keepDir(s.opts)
		if err := s.Stop(); err != nil {
			tb.Logf("localstack: stop: %v", err)
		}
		if s.opts.KeepDir {
			tb.Logf("localstack: kept %s", s.Dir())
		}
	})
	return s
}

// keepDir: Options.KeepDir, or SIGNET_KEEP_STACK set in the environment (to inspect a
// failed test's stack directory).
func keepDir(opts Options) bool {
	return opts.KeepDir || os.Getenv("SIGNET_KEEP_STACK") != ""
}

func (s *Stack) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// RESTConfig returns a copy of the admin (system:masters) client configuration.
func (s *Stack) RESTConfig() *rest.Config { return rest.CopyConfig(s.restConfig) }

// KubeconfigPath is the admin kubeconfig file (self-contained, context "signet-local").
func (s *Stack) KubeconfigPath() string { return s.kubeconfig }

// Dir is the stack's temporary directory: logs (<process>.log), kubeconfigs, etcd data.
func (s *Stack) Dir() string { return s.dir }

// Kube returns a typed admin clientset.
func (s *Stack) Kube() kubernetes.Interface { return s.kube }

// Dynamic returns an admin dynamic client.
func (s *Stack) Dynamic() dynamic.Interface { return s.dyn }

// KubectlPath is the kubectl binary next to kube-apiserver.
func (s *Stack) KubectlPath() string { return filepath.Join(s.assets, "kubectl") }

// KubectlCommand returns a shell command prefix for the demo, e.g.
// "/repo/bin/k8s/kubectl --kubeconfig /tmp/signet-localstack-1/admin.kubeconfig".
func (s *Stack) KubectlCommand() string {
	return s.KubectlPath() + " --kubeconfig " + s.kubeconfig
}

// APIServerURL is https://127.0.0.1:<port>.
func (s *Stack) APIServerURL() string { return "https://127.0.0.1:" + strconv.Itoa(s.apiserverPort) }

// WebhookURL is the base URL of the Kyverno webhook server.
func (s *Stack) WebhookURL() string { return "https://127.0.0.1:" + strconv.Itoa(s.webhookPort) }

// KyvernoMetricsURL is Kyverno's Prometheus endpoint (admission latencies and so on).
func (s *Stack) KyvernoMetricsURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(s.kyvernoMetr) + "/metrics"
}

// Timings returns how long the start-up phases took.
func (s *Stack) Timings() Timings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.timings
}

// LogFile is the log of one process of the stack (stdout and stderr).
type LogFile struct {
	Process string // one of the Proc* constants
	Path    string
}

// LogFiles lists the log files of the processes started so far, in start order.
func (s *Stack) LogFiles() []LogFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]LogFile, 0, len(s.order))
	for _, name := range s.order {
		out = append(out, LogFile{Process: name, Path: filepath.Join(s.dir, name+".log")})
	}
	return out
}

// LogTails returns the last n lines of every process's log, in start order.
func (s *Stack) LogTails(n int) string {
	var b strings.Builder
	for _, f := range s.LogFiles() {
		fmt.Fprintf(&b, "----- %s (%s) -----\n%s\n", f.Process, f.Path, tailFile(f.Path, n))
	}
	return b.String()
}

// Stop deletes Kyverno's webhook configurations, stops Kyverno, the controller-manager,
// kube-apiserver and etcd (SIGTERM, SIGKILL after StopTimeout) and removes the stack's
// directory unless KeepDir. It is idempotent; later calls return the first result.
func (s *Stack) Stop() error {
	return s.stop(true)
}

func (s *Stack) stop(removeDirOK bool) error {
	s.stopOnce.Do(func() {
		var errs []error
		// Deleting Kyverno's webhooks only matters (and only works) while the apiserver runs.
		apiserverUp := func() bool {
			p := s.proc(ProcAPIServer)
			if p == nil || s.kube == nil {
				return false
			}
			exited, _ := p.exited()
			return !exited
		}
		if s.proc(ProcKyverno) != nil && apiserverUp() {
			if err := s.deleteKyvernoWebhooks(); err != nil {
				errs = append(errs, err)
			}
		}
		s.mu.Lock()
		order := append([]string(nil), s.order...)
		s.mu.Unlock()
		for i := len(order) - 1; i >= 0; i-- {
			p := s.proc(order[i])
			if p == nil {
				continue
			}
			p.stop(s.opts.StopTimeout)
			if order[i] == ProcKyverno && apiserverUp() {
				// Kyverno's webhook controller may have re-created them while it was
				// shutting down; nobody will do so now.
				if err := s.deleteKyvernoWebhooks(); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if s.spawner != nil {
			s.spawner.close()
		}
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		if removeDirOK && !s.opts.KeepDir && s.dir != "" {
			if err := os.RemoveAll(s.dir); err != nil {
				errs = append(errs, err)
			}
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}

func (s *Stack) proc(name string) *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[name]
}

// launch starts a process and records it under name (replacing an exited one).
func (s *Stack) launch(name, bin string, args, env []string) (*process, error) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil, errors.New("localstack: stack is stopped")
	}
	if old := s.procs[name]; old != nil {
		if ok, _ := old.exited(); !ok {
			s.mu.Unlock()
			return nil, fmt.Errorf("localstack: %s is already running", name)
		}
	}
	s.mu.Unlock()
	p, err := startProcess(s.spawner, s.dir, name, bin, args, env)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, seen := s.procs[name]; !seen {
		s.order = append(s.order, name)
	}
	s.procs[name] = p
	return p, nil
}

// --- control plane ---------------------------------------------------------------

func (s *Stack) startControlPlane(ctx context.Context) error {
	var err error
	if s.pki, err = newPKI(); err != nil {
		return err
	}
	serving, err := s.pki.serving("kube-apiserver")
	if err != nil {
		return err
	}
	saPriv, saPub, err := serviceAccountKey()
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"ca.crt":        s.pki.caPEM,
		"apiserver.crt": serving.certPEM,
		"apiserver.key": serving.keyPEM,
		"sa.key":        saPriv,
		"sa.pub":        saPub,
	}
	if err := writeFiles(s.dir, files); err != nil {
		return fmt.Errorf("localstack: writing certificates: %w", err)
	}
	// One client identity per component, all in system:masters; the Kyverno ones are
	// named like the in-cluster service accounts so Kyverno recognises its own requests.
	identities := []struct{ file, user string }{
		{"admin", "signet-local-admin"},
		{"kube-controller-manager", "system:kube-controller-manager"},
		{ProcKyverno, "system:serviceaccount:" + kyvernoNamespace + ":" + admissionSA},
		{ProcReportsController, "system:serviceaccount:" + kyvernoNamespace + ":" + reportsSA},
	}
	for _, id := range identities {
		kp, err := s.pki.client(id.user, "system:masters", "system:authenticated")
		if err != nil {
			return err
		}
		if err := s.writeKubeconfig(filepath.Join(s.dir, id.file+".kubeconfig"), id.user, kp); err != nil {
			return err
		}
		if id.file == "admin" {
			s.kubeconfig = filepath.Join(s.dir, "admin.kubeconfig")
			s.restConfig = &rest.Config{
				Host: s.APIServerURL(),
				TLSClientConfig: rest.TLSClientConfig{
					CAData: s.pki.caPEM, CertData: kp.certPEM, KeyData: kp.keyPEM,
				},
				QPS: 500, Burst: 1000,
			}
		}
	}
	if s.kube, err = kubernetes.NewForConfig(s.restConfig); err != nil {
		return err
	}
	if s.dyn, err = dynamic.NewForConfig(s.restConfig); err != nil {
		return err
	}

	// etcd
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", s.etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", s.etcdPeerPort)
	etcd, err := s.launch(ProcEtcd, filepath.Join(s.assets, "etcd"), []string{
		"--name=localstack",
		"--data-dir=" + filepath.Join(s.dir, "etcd"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=localstack=" + peerURL,
		"--unsafe-no-fsync",
		"--log-level=warn",
	}, nil)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, "etcd", etcdURL+"/health", nil, []*process{etcd}); err != nil {
		return err
	}

	// kube-apiserver
	apiserver, err := s.launch(ProcAPIServer, filepath.Join(s.assets, "kube-apiserver"), []string{
		"--advertise-address=127.0.0.1",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(s.apiserverPort),
		"--cert-dir=" + filepath.Join(s.dir, "apiserver-certs"),
		"--tls-cert-file=" + filepath.Join(s.dir, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(s.dir, "apiserver.key"),
		"--client-ca-file=" + filepath.Join(s.dir, "ca.crt"),
		"--etcd-servers=" + etcdURL,
		"--service-account-key-file=" + filepath.Join(s.dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(s.dir, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
	}, nil)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, "kube-apiserver", s.APIServerURL()+"/readyz", s.restConfig, []*process{etcd, apiserver}); err != nil {
		return err
	}

	if s.opts.ControllerManager {
		kcm, err := s.launch(ProcControllerManager, filepath.Join(s.assets, "kube-controller-manager"), []string{
			"--kubeconfig=" + filepath.Join(s.dir, "kube-controller-manager.kubeconfig"),
			"--leader-elect=false",
			"--secure-port=0",
			"--service-account-private-key-file=" + filepath.Join(s.dir, "sa.key"),
			"--root-ca-file=" + filepath.Join(s.dir, "ca.crt"),
			"--use-service-account-credentials=false",
			"--profiling=false",
		}, nil)
		if err != nil {
			return err
		}
		// The serviceaccount controller creating default/default shows the controllers
		// run; the garbage collector starts alongside.
		err = waitUntil(ctx, "kube-controller-manager", 100*time.Millisecond, []*process{apiserver, kcm}, func(ctx context.Context) (bool, error) {
			_, err := s.kube.CoreV1().ServiceAccounts("default").Get(ctx, "default", getOpts)
			return err == nil, err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Stack) writeKubeconfig(path, user string, kp keyPair) error {
	cfg := clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{
			"signet-local": {Server: s.APIServerURL(), CertificateAuthorityData: s.pki.caPEM},
		},
		AuthInfos: map[string]*clientcmdapi.AuthInfo{
			user: {ClientCertificateData: kp.certPEM, ClientKeyData: kp.keyPEM},
		},
		Contexts: map[string]*clientcmdapi.Context{
			"signet-local": {Cluster: "signet-local", AuthInfo: user, Namespace: "default"},
		},
		CurrentContext: "signet-local",
	}
	if err := clientcmd.WriteToFile(cfg, path); err != nil {
		return fmt.Errorf("localstack: writing %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}

// --- locating binaries -------------------------------------------------------------

func assetsDir(explicit string) (string, error) {
	dir := explicit
	if dir == "" {
		var err error
		if dir, err = testenv.AssetsDir(); err != nil {
			return "", fmt.Errorf("localstack: %w", err)
		}
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("localstack: no %s in %s: run hack/build-control-plane.sh first", b, dir)
		}
	}
	return dir, nil
}

func kyvernoBinDir(explicit string, reports bool) (string, error) {
	dir := explicit
	if dir == "" {
		dir = os.Getenv("KYVERNO_BIN_DIR")
	}
	if dir == "" {
		root, err := testenv.RepoRoot()
		if err != nil {
			return "", fmt.Errorf("localstack: %w", err)
		}
		dir = filepath.Join(root, "bin", "kyverno")
	}
	need := []string{"kyverno"}
	if reports {
		need = append(need, "reports-controller")
	}
	for _, b := range need {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("localstack: no %s in %s: run hack/build-kyverno.sh first (~7 min per binary on 2 cores)", b, dir)
		}
	}
	return dir, nil
}

// freePorts reserves n distinct free TCP ports on 127.0.0.1. The listeners are all
// open at the same time so the ports differ; they are closed before returning, so a
// small race with other programs remains.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close() // only reserving the port number
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("localstack: reserving a port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// KyvernoCLIPath is the Kyverno CLI (kubectl-kyverno) built next to the admission
// controller, e.g. for `kyverno-cli apply` in the demo. It may not exist.
func (s *Stack) KyvernoCLIPath() string { return filepath.Join(s.kyvernoBD, "kyverno-cli") }
