package localstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Names the Kyverno processes run under; they mirror the Helm chart's defaults.
const (
	kyvernoNamespace    = "kyverno"
	kyvernoConfigMap    = "kyverno"
	kyvernoMetricsCM    = "kyverno-metrics"
	kyvernoService      = "kyverno-svc"
	admissionSA         = "kyverno-admission-controller"
	reportsSA           = "kyverno-reports-controller"
	admissionPod        = "kyverno-admission-controller-localstack"
	reportsPod          = "kyverno-reports-controller-localstack"
	reportsLease        = "kyverno-reports-controller"
	kyvernoCASecret     = kyvernoService + "." + kyvernoNamespace + ".svc.kyverno-tls-ca"
	kyvernoTLSSecret    = kyvernoService + "." + kyvernoNamespace + ".svc.kyverno-tls-pair"
	webhookManagedBySel = "webhook.kyverno.io/managed-by=kyverno"

	// PolicyValidatingWebhook and VerifyMutatingWebhook are the webhook configurations
	// Kyverno registers at start-up; their presence is part of its readiness.
	PolicyValidatingWebhook = "kyverno-policy-validating-webhook-cfg"
	VerifyMutatingWebhook   = "kyverno-verify-mutating-webhook-cfg"
)

// KyvernoNamespace is the namespace Kyverno runs in (excluded from its webhooks).
const KyvernoNamespace = kyvernoNamespace

// resourceFilters is the Helm chart's default `config.resourceFilters` with
// `excludeKyvernoNamespace: true`, which prepends [*/*,kyverno,*]; the chart's
// entries for objects inside the kyverno namespace are covered by that one and left out.
func resourceFilters() string {
	f := []string{
		"[*/*," + kyvernoNamespace + ",*]",
		"[Event,*,*]",
		"[*/*,kube-system,*]",
		"[*/*,kube-public,*]",
		"[*/*,kube-node-lease,*]",
		"[Node,*,*]", "[Node/?*,*,*]",
		"[APIService,*,*]", "[APIService/?*,*,*]",
		"[TokenReview,*,*]", "[SubjectAccessReview,*,*]", "[SelfSubjectAccessReview,*,*]",
		"[Binding,*,*]", "[Pod/binding,*,*]",
		"[ReplicaSet,*,*]", "[ReplicaSet/?*,*,*]",
		"[EphemeralReport,*,*]", "[ClusterEphemeralReport,*,*]",
	}
	for _, c := range []string{"admission-controller", "background-controller", "cleanup-controller", "reports-controller"} {
		role := "kyverno:" + c
		f = append(f,
			"[ClusterRole,*,"+role+"]",
			"[ClusterRole,*,"+role+":core]",
			"[ClusterRole,*,"+role+":additional]",
			"[ClusterRoleBinding,*,"+role+"]")
	}
	return strings.Join(f, " ")
}

// webhooksConfig excludes kube-system and kyverno from every resource webhook.
func webhooksConfig() string {
	b, _ := json.Marshal(map[string]any{
		"namespaceSelector": map[string]any{
			"matchExpressions": []map[string]any{{
				"key": "kubernetes.io/metadata.name", "operator": "NotIn",
				"values": []string{"kube-system", kyvernoNamespace},
			}},
		},
	})
	return string(b)
}

func (s *Stack) ensureKyvernoPrerequisites(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kyvernoNamespace}}
	if _, err := s.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("localstack: creating namespace %s: %w", kyvernoNamespace, err)
	}
	cms := []*corev1.ConfigMap{
		{
			ObjectMeta: metav1.ObjectMeta{Name: kyvernoConfigMap, Namespace: kyvernoNamespace},
			Data: map[string]string{
				"enableDefaultRegistryMutation": "true",
				"defaultRegistry":               "docker.io",
				"excludeGroups":                 "system:nodes",
				"generateSuccessEvents":         "false",
				"resourceFilters":               resourceFilters(),
				"webhooks":                      webhooksConfig(),
			},
		},
		{ObjectMeta: metav1.ObjectMeta{Name: kyvernoMetricsCM, Namespace: kyvernoNamespace}},
	}
	for _, cm := range cms {
		if _, err := s.kube.CoreV1().ConfigMaps(kyvernoNamespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("localstack: creating ConfigMap %s/%s: %w", kyvernoNamespace, cm.Name, err)
		}
	}
	return nil
}

// kyvernoEnv is the environment Kyverno reads its identity and configuration from.
func (s *Stack) kyvernoEnv(component, sa, pod string) ([]string, error) {
	home := filepath.Join(s.dir, "home-"+component)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	return []string{
		"HOME=" + home, // sigstore/TUF caches land here, not in the user's home
		"KYVERNO_NAMESPACE=" + kyvernoNamespace,
		"KYVERNO_SERVICEACCOUNT_NAME=" + sa,
		"KYVERNO_ROLE_NAME=kyverno:" + component,
		"KYVERNO_DEPLOYMENT=" + sa,
		"KYVERNO_POD_NAME=" + pod,
		"KYVERNO_SVC=" + kyvernoService,
		"INIT_CONFIG=" + kyvernoConfigMap,
		"METRICS_CONFIG=" + kyvernoMetricsCM,
	}, nil
}

// StartKyverno starts the Kyverno admission controller and waits until its readiness
// endpoint answers and its webhook configurations exist. Start calls it; call it
// yourself after StopKyverno (e.g. to test a restart). The webhook port stays the same.
func (s *Stack) StartKyverno(ctx context.Context) error {
	if s.kyvernoBD == "" {
		return errors.New("localstack: stack started with NoKyverno")
	}
	env, err := s.kyvernoEnv("admission-controller", admissionSA, admissionPod)
	if err != nil {
		return err
	}
	args := append([]string{
		"-kubeconfig=" + filepath.Join(s.dir, ProcKyverno+".kubeconfig"),
		"-serverIP=127.0.0.1:" + strconv.Itoa(s.webhookPort),
		"-webhookServerHost=127.0.0.1",
		"-webhookServerPort=" + strconv.Itoa(s.webhookPort),
		"-caSecretName=" + kyvernoCASecret,
		"-tlsSecretName=" + kyvernoTLSSecret,
		"-allowInsecureRegistry",
		"-metricsHost=127.0.0.1",
		"-metricsPort=" + strconv.Itoa(s.kyvernoMetr),
		"-controllerRuntimeMetricsAddress=0",
		"-admissionReports=true",
		"-disableLogColor",
	}, s.opts.KyvernoArgs...)
	p, err := s.launch(ProcKyverno, filepath.Join(s.kyvernoBD, "kyverno"), args, env)
	if err != nil {
		return err
	}
	procs := append(s.controlPlaneProcs(), p)
	// Kyverno serves TLS with a certificate it creates at start-up; probing before its
	// Secret exists only fills its log with handshake errors.
	err = waitUntil(ctx, "kyverno TLS secret", pollInterval, procs, func(ctx context.Context) (bool, error) {
		_, err := s.kube.CoreV1().Secrets(kyvernoNamespace).Get(ctx, kyvernoTLSSecret, getOpts)
		return err == nil, err
	})
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, "kyverno readiness", s.WebhookURL()+"/health/readiness", nil, procs); err != nil {
		return err
	}
	return waitUntil(ctx, "kyverno webhook configurations", pollInterval, procs, func(ctx context.Context) (bool, error) {
		if _, err := s.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, PolicyValidatingWebhook, getOpts); err != nil {
			return false, err
		}
		if _, err := s.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, VerifyMutatingWebhook, getOpts); err != nil {
			return false, err
		}
		return true, nil
	})
}

// StopKyverno deletes Kyverno's webhook configurations (so that its fail-closed
// webhooks do not block the cluster while it is gone) and stops the admission controller.
func (s *Stack) StopKyverno() error {
	p := s.proc(ProcKyverno)
	if p == nil {
		return nil
	}
	err := s.deleteKyvernoWebhooks()
	p.stop(s.opts.StopTimeout)
	// Kyverno's webhook controller may have re-created them while shutting down.
	return errors.Join(err, s.deleteKyvernoWebhooks())
}

// CrashKyverno kills the admission controller (SIGKILL, as an OOM kill or a node loss
// would) and leaves its webhook configurations in place, so that the apiserver's calls to
// its fail-closed webhooks fail while it is down. StartKyverno starts it again.
func (s *Stack) CrashKyverno() {
	s.proc(ProcKyverno).kill()
}

// RestartKyverno stops and starts the admission controller, as a pod restart would.
func (s *Stack) RestartKyverno(ctx context.Context) error {
	if err := s.StopKyverno(); err != nil {
		return err
	}
	return s.StartKyverno(ctx)
}

// StartReportsController starts Kyverno's reports-controller and waits until it holds
// its leader lease (kyverno/kyverno-reports-controller).
func (s *Stack) StartReportsController(ctx context.Context) error {
	if s.kyvernoBD == "" {
		return errors.New("localstack: stack started with NoKyverno")
	}
	if _, err := os.Stat(filepath.Join(s.kyvernoBD, "reports-controller")); err != nil {
		return fmt.Errorf("localstack: no reports-controller in %s: run hack/build-kyverno.sh", s.kyvernoBD)
	}
	env, err := s.kyvernoEnv("reports-controller", reportsSA, reportsPod)
	if err != nil {
		return err
	}
	args := []string{
		"-kubeconfig=" + filepath.Join(s.dir, ProcReportsController+".kubeconfig"),
		"-allowInsecureRegistry",
		"-metricsHost=127.0.0.1",
		"-metricsPort=" + strconv.Itoa(s.reportsMetr),
		"-disableLogColor",
	}
	if s.opts.BackgroundScanInterval > 0 {
		args = append(args, "-backgroundScanInterval="+s.opts.BackgroundScanInterval.String())
	}
	if s.opts.OpenReports {
		args = append(args, "-openreportsEnabled=true")
	}
	args = append(args, s.opts.ReportsControllerArgs...)
	p, err := s.launch(ProcReportsController, filepath.Join(s.kyvernoBD, "reports-controller"), args, env)
	if err != nil {
		return err
	}
	procs := append(s.controlPlaneProcs(), p)
	return waitUntil(ctx, "reports-controller leader lease", pollInterval, procs, func(ctx context.Context) (bool, error) {
		l, err := s.kube.CoordinationV1().Leases(kyvernoNamespace).Get(ctx, reportsLease, getOpts)
		if err != nil {
			return false, err
		}
		return l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == reportsPod, nil
	})
}

// deleteKyvernoWebhooks deletes the webhook configurations Kyverno manages.
func (s *Stack) deleteKyvernoWebhooks() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sel := metav1.ListOptions{LabelSelector: webhookManagedBySel}
	ar := s.kube.AdmissionregistrationV1()
	errV := ar.ValidatingWebhookConfigurations().DeleteCollection(ctx, metav1.DeleteOptions{}, sel)
	errM := ar.MutatingWebhookConfigurations().DeleteCollection(ctx, metav1.DeleteOptions{}, sel)
	if err := errors.Join(errV, errM); err != nil {
		return fmt.Errorf("localstack: deleting Kyverno's webhook configurations: %w", err)
	}
	return nil
}

// Kyverno policy kinds WaitForPolicyReady knows.
var policyGVRs = map[string]schema.GroupVersionResource{
	"ClusterPolicy":         {Group: "kyverno.io", Version: "v1", Resource: "clusterpolicies"},
	"ImageValidatingPolicy": {Group: "policies.kyverno.io", Version: "v1", Resource: "imagevalidatingpolicies"},
	"ValidatingPolicy":      {Group: "policies.kyverno.io", Version: "v1", Resource: "validatingpolicies"},
	"MutatingPolicy":        {Group: "policies.kyverno.io", Version: "v1", Resource: "mutatingpolicies"},
}

// WaitForPolicyReady waits until Kyverno reports the cluster-scoped policy of kind
// (ClusterPolicy, ImageValidatingPolicy, ValidatingPolicy, MutatingPolicy) ready: for
// ClusterPolicy the Ready condition, for policies.kyverno.io kinds
// status.conditionStatus.ready (webhook configured and policy cached).
func (s *Stack) WaitForPolicyReady(ctx context.Context, kind, name string) error {
	gvr, ok := policyGVRs[kind]
	if !ok {
		return fmt.Errorf("localstack: WaitForPolicyReady: unknown kind %q", kind)
	}
	procs := s.controlPlaneProcs()
	if p := s.proc(ProcKyverno); p != nil {
		procs = append(procs, p)
	}
	return waitUntil(ctx, kind+" "+name+" ready", pollInterval, procs, func(ctx context.Context) (bool, error) {
		u, err := s.dyn.Resource(gvr).Get(ctx, name, getOpts)
		if err != nil {
			return false, err
		}
		if gvr.Group == "kyverno.io" {
			return conditionTrue(u, "Ready"), nil
		}
		ready, _, _ := unstructuredBool(u.Object, "status", "conditionStatus", "ready")
		return ready, nil
	})
}

func unstructuredBool(obj map[string]any, fields ...string) (bool, bool, error) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return false, false, nil
		}
		if cur, ok = m[f]; !ok {
			return false, false, nil
		}
	}
	b, ok := cur.(bool)
	return b, ok, nil
}
