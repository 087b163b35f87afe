package packaging

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/signet-operator/signet/internal/testenv"
)

const chartDir = "charts/signet"

// kubeVersion is the Kubernetes version the chart is rendered for: the test control plane's
// (bin/k8s, built from the k8s.io modules in go.mod).
const kubeVersion = "v1.37.2"

func kubeVersionT(t *testing.T, version string) *common.KubeVersion {
	t.Helper()
	v, err := common.ParseKubeVersion(version)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// renderChart renders charts/signet as `helm template signet charts/signet -n signet-system`
// would, with the Helm Go SDK (client-only install dry run), and decodes the objects.
func renderChart(t *testing.T, vals map[string]any) []*unstructured.Unstructured {
	t.Helper()
	return renderChartOn(t, kubeVersion, vals)
}

// renderChartOn renders the chart for a cluster of the given Kubernetes version.
func renderChartOn(t *testing.T, version string, vals map[string]any) []*unstructured.Unstructured {
	t.Helper()
	ch := loadChart(t)
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = "signet"
	install.Namespace = operatorNamespace
	install.Replace = true
	install.KubeVersion = kubeVersionT(t, version)
	if vals == nil {
		vals = map[string]any{}
	}
	rel, err := install.RunWithContext(context.Background(), ch, vals)
	if err != nil {
		t.Fatalf("rendering %s: %v", chartDir, err)
	}
	r, ok := rel.(*releasev1.Release)
	if !ok {
		t.Fatalf("release type %T", rel)
	}
	objs, err := decode([]byte(r.Manifest))
	if err != nil {
		t.Fatalf("rendered chart: %v\n%s", err, r.Manifest)
	}
	return objs
}

func loadChart(t *testing.T) *chartv2.Chart {
	t.Helper()
	ch, err := loader.Load(filepath.Join(repoRoot(t), chartDir))
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func objKey(o *unstructured.Unstructured) string {
	return o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
}

func objectKeys(objs []*unstructured.Unstructured) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, objKey(o))
	}
	sort.Strings(out)
	return out
}

// withoutLabels is the object without metadata.labels and metadata.annotations (the chart
// adds Helm's labels, and keeps the CRD on uninstall); everything else must be identical.
func withoutLabels(o *unstructured.Unstructured) map[string]any {
	c := o.DeepCopy()
	c.SetLabels(nil)
	c.SetAnnotations(nil)
	return c.Object
}

// TestChartMatchesConfig: the chart with default values installs what config/default
// installs (plus the metrics Service of config/prometheus and, on Kubernetes ≥ 1.36, the
// finalizer policy of config/admission), object for object: kinds, names,
// namespaces, CRD, RBAC rules, bindings and the whole Deployment spec (args, security
// contexts, probes, resources, image).
func TestChartMatchesConfig(t *testing.T) {
	chart := renderChart(t, nil)
	config := build(t, "config/default")
	prom := build(t, "config/prometheus")

	var want []*unstructured.Unstructured
	for _, o := range config {
		if o.GetKind() == "Namespace" {
			continue // createNamespace: false by default (helm install --create-namespace)
		}
		want = append(want, o)
	}
	// config/prometheus's Services that config/default lacks are on by default
	// (metrics.service.enabled); its ServiceMonitor and PrometheusRule are off.
	inDefault := map[string]bool{}
	for _, o := range config {
		inDefault[objKey(o)] = true
	}
	for _, o := range prom {
		if o.GetKind() == "Service" && !inDefault[objKey(o)] {
			want = append(want, o)
		}
	}
	want = append(want, build(t, "config/admission")...)
	if got, w := objectKeys(chart), objectKeys(want); !slices.Equal(got, w) {
		t.Fatalf("the chart's objects differ from config/default + the metrics Service + config/admission (run make chart?):\nchart:  %v\nconfig: %v", got, w)
	}
	byKey := map[string]*unstructured.Unstructured{}
	for _, o := range chart {
		byKey[objKey(o)] = o
	}
	for _, w := range want {
		got := byKey[objKey(w)]
		if !reflect.DeepEqual(withoutLabels(got), withoutLabels(w)) {
			t.Errorf("%s differs from config/:\nchart:  %v\nconfig: %v", objKey(w), withoutLabels(got), withoutLabels(w))
		}
		for k, v := range w.GetLabels() {
			if got.GetLabels()[k] != v {
				t.Errorf("%s: label %s=%q, config/ has %q", objKey(w), k, got.GetLabels()[k], v)
			}
		}
		if got.GetLabels()["app.kubernetes.io/managed-by"] != "Helm" {
			t.Errorf("%s lacks Helm's labels: %v", objKey(w), got.GetLabels())
		}
	}
	// Spelled out, the properties that matter most (the generic comparison above covers them,
	// these say why a difference fails).
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, w := range find(config, kind, "") {
			var a, b rbacv1.ClusterRole
			convert(t, byKey[objKey(w)], &a)
			convert(t, w, &b)
			if !reflect.DeepEqual(a.Rules, b.Rules) {
				t.Errorf("%s %s: rules differ from config/rbac", kind, w.GetName())
			}
		}
	}
	var d appsv1.Deployment
	convert(t, one(t, chart, "Deployment", deploymentName), &d)
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != "ghcr.io/signet-operator/signet:v0.1.0" || len(c.Args) == 0 || c.Args[0] != "manager" || *d.Spec.Replicas != 2 {
		t.Errorf("Deployment: image %s, args %v, replicas %d", c.Image, c.Args, *d.Spec.Replicas)
	}
	if crd := one(t, chart, "CustomResourceDefinition", "trustedregistries.trust.signet.dev"); crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
		t.Error("the CRD is deleted on uninstall, and every TrustedRegistry with it")
	}
}

// TestChartValues: each value changes what it says and nothing else breaks.
func TestChartValues(t *testing.T) {
	container := func(t *testing.T, objs []*unstructured.Unstructured) (appsv1.Deployment, corev1.Container) {
		t.Helper()
		var d appsv1.Deployment
		convert(t, one(t, objs, "Deployment", deploymentName), &d)
		return d, d.Spec.Template.Spec.Containers[0]
	}
	digest := "sha256:" + strings.Repeat("ab", 32)
	t.Run("image", func(t *testing.T) {
		_, c := container(t, renderChart(t, map[string]any{"image": map[string]any{"repository": "registry.example/signet", "tag": "v9.9.9"}}))
		if c.Image != "registry.example/signet:v9.9.9" {
			t.Errorf("image %s", c.Image)
		}
		_, c = container(t, renderChart(t, map[string]any{"image": map[string]any{"tag": "v9.9.9", "digest": digest, "pullPolicy": "Always"}}))
		if c.Image != "ghcr.io/signet-operator/signet@"+digest || c.ImagePullPolicy != corev1.PullAlways {
			t.Errorf("image %s pull policy %s: the digest wins over the tag", c.Image, c.ImagePullPolicy)
		}
	})
	t.Run("replicas and leader election", func(t *testing.T) {
		d, c := container(t, renderChart(t, map[string]any{"replicas": 1, "leaderElection": map[string]any{"enabled": false}}))
		if *d.Spec.Replicas != 1 || slices.Contains(c.Args, "--leader-elect") {
			t.Errorf("replicas %d args %v", *d.Spec.Replicas, c.Args)
		}
	})
	t.Run("resources, log level, extra args", func(t *testing.T) {
		_, c := container(t, renderChart(t, map[string]any{
			"resources": map[string]any{"limits": map[string]any{"memory": "1Gi"}},
			"logLevel":  "debug",
			"extraArgs": []any{"--policy-layout=per-registry"},
		}))
		// Helm merges maps: the other defaults stay.
		if c.Resources.Limits.Memory().String() != "1Gi" || c.Resources.Limits.Cpu().String() != "500m" || c.Resources.Requests.Memory().String() != "64Mi" {
			t.Errorf("resources %v", c.Resources)
		}
		if !slices.Contains(c.Args, "--zap-log-level=debug") || c.Args[len(c.Args)-1] != "--policy-layout=per-registry" {
			t.Errorf("args %v", c.Args)
		}
	})
	t.Run("private registries", func(t *testing.T) {
		if objs := renderChart(t, nil); slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetName() == "signet-registry-credentials" }) {
			t.Error("the Role in Kyverno's namespace is installed without privateRegistries.enabled")
		}
		objs := renderChart(t, map[string]any{"privateRegistries": map[string]any{"enabled": true, "kyvernoNamespace": "kyverno-system"}})
		var got, want rbacv1.Role
		convert(t, one(t, objs, "Role", "signet-registry-credentials"), &got)
		b, err := os.ReadFile(filepath.Join(repoRoot(t), "config", "rbac", "kyverno-credentials", "role.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for want.Kind != "Role" {
			if err := dec.Decode(&want); err != nil {
				t.Fatalf("no Role in config/rbac/kyverno-credentials/role.yaml: %v", err)
			}
		}
		if got.Namespace != "kyverno-system" || !reflect.DeepEqual(got.Rules, want.Rules) {
			t.Errorf("chart Role in %s with rules %+v; config/rbac/kyverno-credentials has %+v", got.Namespace, got.Rules, want.Rules)
		}
	})
	t.Run("trust namespace", func(t *testing.T) {
		objs := renderChart(t, map[string]any{"trustNamespace": "keys"})
		_, c := container(t, objs)
		if !slices.Contains(c.Args, "--trust-namespace=keys") || !slices.Contains(c.Args, "--leader-election-namespace="+operatorNamespace) {
			t.Errorf("args %v", c.Args)
		}
		for _, kind := range []string{"Role", "RoleBinding"} {
			for _, o := range find(objs, kind, "") {
				want := operatorNamespace
				if strings.HasPrefix(o.GetName(), "signet-manager-role") {
					want = "keys" // the Role for key Secrets and its binding
				}
				if o.GetNamespace() != want {
					t.Errorf("%s %s in namespace %q, want %q", kind, o.GetName(), o.GetNamespace(), want)
				}
			}
		}
		var rb rbacv1.RoleBinding
		convert(t, one(t, objs, "RoleBinding", "signet-manager-rolebinding"), &rb)
		if rb.Subjects[0].Namespace != operatorNamespace || rb.Subjects[0].Name != serviceAccount {
			t.Errorf("the trust namespace's RoleBinding binds %+v", rb.Subjects)
		}
	})
	t.Run("namespace", func(t *testing.T) {
		objs := renderChart(t, map[string]any{"createNamespace": true, "namespaceOverride": "signet-ops"})
		ns := one(t, objs, "Namespace", "signet-ops")
		want := one(t, build(t, "config/default"), "Namespace", operatorNamespace)
		for k, v := range want.GetLabels() {
			if ns.GetLabels()[k] != v {
				t.Errorf("Namespace label %s=%q, config/default has %q", k, ns.GetLabels()[k], v)
			}
		}
		for _, o := range objs {
			if o.GetNamespace() != "" && o.GetNamespace() != "signet-ops" {
				t.Errorf("%s is not in namespaceOverride", objKey(o))
			}
		}
		var crb rbacv1.ClusterRoleBinding
		convert(t, one(t, objs, "ClusterRoleBinding", "signet-manager-rolebinding"), &crb)
		if crb.Subjects[0].Namespace != "signet-ops" {
			t.Errorf("ClusterRoleBinding subject %+v", crb.Subjects)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		objs := renderChart(t, map[string]any{"metrics": map[string]any{"service": map[string]any{"enabled": false},
			"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}}}})
		if len(find(objs, "Service", "")) != 0 {
			t.Error("metrics.service.enabled=false still renders a Service")
		}
		got := one(t, objs, "ServiceMonitor", "signet-controller-manager-metrics")
		want := one(t, build(t, "config/prometheus"), "ServiceMonitor", "signet-controller-manager-metrics")
		if !reflect.DeepEqual(withoutLabels(got), withoutLabels(want)) {
			t.Errorf("ServiceMonitor differs from config/prometheus:\n%v\n%v", got.Object, want.Object)
		}
		if got.GetLabels()["release"] != "prometheus" || got.GetLabels()["control-plane"] != "controller-manager" {
			t.Errorf("ServiceMonitor labels %v", got.GetLabels())
		}
	})
	t.Run("finalizer policy", func(t *testing.T) {
		admission := func(objs []*unstructured.Unstructured) []string {
			var out []string
			for _, o := range objs {
				if strings.HasPrefix(o.GetKind(), "MutatingAdmissionPolicy") {
					out = append(out, o.GetKind())
				}
			}
			return out
		}
		if got := admission(renderChart(t, nil)); len(got) != 2 {
			t.Errorf("Kubernetes %s, default values: %v, want the policy and its binding", kubeVersion, got)
		}
		if got := admission(renderChartOn(t, "v1.36.0", nil)); len(got) != 2 {
			t.Errorf("Kubernetes 1.36.0: %v, want the policy and its binding", got)
		}
		// Kubernetes 1.35 serves no admissionregistration.k8s.io/v1 MutatingAdmissionPolicy:
		// installing it there would fail the whole release.
		if got := admission(renderChartOn(t, "v1.35.4", nil)); len(got) != 0 {
			t.Errorf("Kubernetes 1.35: %v, want none", got)
		}
		if got := admission(renderChart(t, map[string]any{"finalizerPolicy": map[string]any{"enabled": false}})); len(got) != 0 {
			t.Errorf("finalizerPolicy.enabled=false: %v, want none", got)
		}
	})
	t.Run("crds", func(t *testing.T) {
		objs := renderChart(t, map[string]any{"crds": map[string]any{"install": false}})
		if len(find(objs, "CustomResourceDefinition", "")) != 0 {
			t.Error("crds.install=false still renders the CRD")
		}
	})
}

// TestChartRefusesTypos: values.schema.json makes a misspelt or mistyped value an error
// instead of a setting Helm silently ignores.
func TestChartRefusesTypos(t *testing.T) {
	for name, vals := range map[string]map[string]any{
		"misspelt key":          {"replica": 3},
		"wrong type":            {"replicas": "two"},
		"nested typo":           {"leaderElection": map[string]any{"enable": false}},
		"digest":                {"image": map[string]any{"digest": "latest"}},
		"metrics switch":        {"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": "yes"}}},
		"finalizer policy typo": {"finalizerPolicy": map[string]any{"enable": true}},
	} {
		install := action.NewInstall(action.NewConfiguration())
		install.DryRunStrategy = action.DryRunClient
		install.ReleaseName, install.Namespace, install.Replace = "signet", operatorNamespace, true
		install.KubeVersion = kubeVersionT(t, kubeVersion)
		_, err := install.RunWithContext(context.Background(), loadChart(t), vals)
		if err == nil || !strings.Contains(err.Error(), "values don't meet the specifications of the schema") {
			t.Errorf("%s: %v: want a schema error, got %v", name, vals, err)
		}
	}
}

// TestChartLint: Helm's chart linter (what `helm lint --strict` runs) finds nothing, with the
// default values and with every optional object turned on.
func TestChartLint(t *testing.T) {
	dir := filepath.Join(repoRoot(t), chartDir)
	for name, vals := range map[string]map[string]any{
		"defaults": {},
		"everything": {"createNamespace": true, "trustNamespace": "keys", "logLevel": "debug",
			"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}, "prometheusRule": map[string]any{"enabled": true}}},
	} {
		res := lint.RunAll(dir, vals, operatorNamespace, lint.WithKubeVersion(kubeVersionT(t, kubeVersion)))
		for _, m := range res.Messages {
			t.Errorf("%s: %v", name, m)
		}
	}
}

// TestChartServerSideDryRun applies the rendered chart to a real kube-apiserver with
// server-side apply in dry-run mode: every object passes the apiserver's validation and
// admission, the RBAC included (the apiserver refuses a binding that escalates).
func TestChartServerSideDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane (bin/k8s)")
	}
	objs := renderChart(t, map[string]any{"createNamespace": true})
	_, c := testenv.Start(t)
	ctx := context.Background()
	// Namespaced objects cannot be dry-run into a namespace that does not exist yet: create
	// the chart's Namespace for real first.
	ns := one(t, objs, "Namespace", operatorNamespace)
	if err := c.Patch(ctx, ns.DeepCopy(), client.Apply, client.FieldOwner("helm"), client.ForceOwnership); err != nil {
		t.Fatalf("%s: %v", objKey(ns), err)
	}
	applied := 0
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			continue
		}
		if err := c.Patch(ctx, o.DeepCopy(), client.Apply, client.FieldOwner("helm"), client.ForceOwnership, client.DryRunAll); err != nil {
			t.Errorf("server-side dry run of %s: %v", objKey(o), err)
			continue
		}
		applied++
	}
	if applied != len(objs)-1 {
		t.Fatalf("%d of %d objects applied", applied, len(objs)-1)
	}
	// Dry run stored nothing.
	var sas corev1.ServiceAccountList
	if err := c.List(ctx, &sas, client.InNamespace(operatorNamespace), client.MatchingLabels{"app.kubernetes.io/managed-by": "Helm"}); err != nil {
		t.Fatal(err)
	}
	if len(sas.Items) != 0 {
		t.Fatalf("dry run created %d ServiceAccounts", len(sas.Items))
	}
}
