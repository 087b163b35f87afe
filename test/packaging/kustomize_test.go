package packaging

import (
	"github.com/signet-operator/signet/internal/operator"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// TestDefaultInstallation checks the objects of config/default: namespace and names, the
// hardened Deployment, and RBAC that can only reach Secrets in the operator's namespace.
func TestDefaultInstallation(t *testing.T) {
	objs := build(t, "config/default")

	ns := one(t, objs, "Namespace", operatorNamespace)
	if got := ns.GetLabels()["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("namespace %s enforces Pod Security %q, want restricted", operatorNamespace, got)
	}
	for _, o := range objs {
		if o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition" ||
			o.GetKind() == "ClusterRole" || o.GetKind() == "ClusterRoleBinding" {
			if o.GetNamespace() != "" {
				t.Errorf("cluster-scoped %s %s has namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
			}
			continue
		}
		if o.GetNamespace() != operatorNamespace {
			t.Errorf("%s %s is in namespace %q, want %s", o.GetKind(), o.GetName(), o.GetNamespace(), operatorNamespace)
		}
		if !strings.HasPrefix(o.GetName(), "signet-") {
			t.Errorf("%s %s lacks the signet- name prefix", o.GetKind(), o.GetName())
		}
	}
	one(t, objs, "CustomResourceDefinition", "trustedregistries.trust.signet.dev")
	one(t, objs, "ServiceAccount", serviceAccount)

	var d appsv1.Deployment
	convert(t, one(t, objs, "Deployment", deploymentName), &d)
	checkDeployment(t, &d)
	checkRBACShape(t, objs, operatorNamespace)
}

func checkDeployment(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != serviceAccount {
		t.Errorf("serviceAccountName %q, want %s", pod.ServiceAccountName, serviceAccount)
	}
	sel, err := labels.ValidatedSelectorFromSet(d.Spec.Selector.MatchLabels)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("selector %v does not match the pod labels %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod securityContext.runAsNonRoot must be true")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod seccompProfile must be RuntimeDefault")
	}
	if len(pod.Containers) != 1 || pod.Containers[0].Name != managerContainer {
		t.Fatalf("want one container %q, got %d", managerContainer, len(pod.Containers))
	}
	c := pod.Containers[0]
	if !strings.HasPrefix(c.Image, "ghcr.io/signet-operator/signet:") && !strings.HasPrefix(c.Image, "ghcr.io/signet-operator/signet@") {
		t.Errorf("image %q is not the Signet image", c.Image)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("container securityContext missing")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation must be false")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem must be true")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities must drop ALL and add none, got %+v", sc.Capabilities)
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("privileged container")
	}
	if !slices.Contains(c.Args, "--leader-elect") && !slices.Contains(c.Args, "--leader-elect=true") {
		t.Errorf("args %v lack --leader-elect", c.Args)
	}
	// The binary runs the operator only when told to (internal/cli).
	if len(c.Command) != 0 || len(c.Args) == 0 || c.Args[0] != "manager" {
		t.Errorf("command %v args %v: the container must run `signet manager` (args start with manager)", c.Command, c.Args)
	}
	// The trust namespace is the operator's own namespace, from the downward API.
	found := false
	for _, e := range c.Env {
		if e.Name == "POD_NAMESPACE" {
			found = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
		}
	}
	if !found {
		t.Error("env POD_NAMESPACE must come from fieldRef metadata.namespace")
	}
	for _, slice := range [][]string{c.Args} {
		for _, a := range slice {
			if strings.HasPrefix(a, "--trust-namespace") {
				t.Errorf("%s pins the trust namespace; it must follow the operator's namespace", a)
			}
		}
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe missing", name)
			continue
		}
		port := p.HTTPGet.Port.IntValue()
		if p.HTTPGet.Port.String() != "" && port == 0 {
			for _, cp := range c.Ports {
				if cp.Name == p.HTTPGet.Port.String() {
					port = int(cp.ContainerPort)
				}
			}
		}
		want := map[string]string{"liveness": "/healthz", "readiness": "/readyz"}[name]
		if port != 8081 || p.HTTPGet.Path != want {
			t.Errorf("%s probe is %s on port %d, want %s on 8081", name, p.HTTPGet.Path, port, want)
		}
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("no %s limit", r)
		}
	}
}

// checkRBACShape checks the RBAC objects statically: no wildcards, no Secrets or ConfigMaps
// in any ClusterRole bound to the operator, the namespaced Role and every binding in the
// operator's namespace, every subject the operator's ServiceAccount.
func checkRBACShape(t *testing.T, objs []*unstructured.Unstructured, namespace string) {
	t.Helper()
	for _, u := range find(objs, "ClusterRole", "") {
		var r rbacv1.ClusterRole
		convert(t, u, &r)
		checkRules(t, "ClusterRole "+r.Name, r.Rules)
		if r.Name == "signet-manager-role" {
			for _, rule := range r.Rules {
				if slices.Contains(rule.APIGroups, "") && (slices.Contains(rule.Resources, "secrets") || slices.Contains(rule.Resources, "configmaps")) {
					t.Errorf("ClusterRole %s grants %v cluster-wide", r.Name, rule.Resources)
				}
			}
		}
	}
	roles := find(objs, "Role", "")
	if len(roles) == 0 {
		t.Fatal("no Role")
	}
	secretsRole := false
	for _, u := range roles {
		var r rbacv1.Role
		convert(t, u, &r)
		checkRules(t, "Role "+r.Name, r.Rules)
		if r.Namespace != namespace {
			t.Errorf("Role %s is in namespace %q, want the operator's namespace %s", r.Name, r.Namespace, namespace)
		}
		for _, rule := range r.Rules {
			if slices.Contains(rule.Resources, "secrets") {
				secretsRole = true
				for _, v := range rule.Verbs {
					if v != "get" && v != "list" && v != "watch" {
						t.Errorf("Role %s grants %q on Secrets", r.Name, v)
					}
				}
			}
		}
	}
	if !secretsRole {
		t.Error("no Role grants read access to Secrets in the trust namespace")
	}
	for _, kind := range []string{"RoleBinding", "ClusterRoleBinding"} {
		for _, u := range find(objs, kind, "") {
			var b rbacv1.ClusterRoleBinding // same subjects/roleRef shape
			convert(t, u, &b)
			if kind == "RoleBinding" && u.GetNamespace() != namespace {
				t.Errorf("%s %s is in namespace %q, want %s", kind, b.Name, u.GetNamespace(), namespace)
			}
			for _, s := range b.Subjects {
				if s.Kind != rbacv1.ServiceAccountKind || s.Name != serviceAccount || s.Namespace != namespace {
					t.Errorf("%s %s binds %s %s/%s, want ServiceAccount %s/%s", kind, b.Name, s.Kind, s.Namespace, s.Name, namespace, serviceAccount)
				}
			}
		}
	}
}

func checkRules(t *testing.T, what string, rules []rbacv1.PolicyRule) {
	t.Helper()
	for _, r := range rules {
		for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
			if slices.Contains(list, "*") {
				t.Errorf("%s uses a wildcard: %+v", what, r)
			}
		}
		for _, v := range []string{"escalate", "bind", "impersonate"} {
			if slices.Contains(r.Verbs, v) {
				t.Errorf("%s grants %q", what, v)
			}
		}
		// Only the scrapers' role reads a non-resource URL: the operator's /metrics. It is
		// bound to nobody here (users bind it to Prometheus).
		metricsReader := what == "ClusterRole signet-metrics-reader" &&
			slices.Equal(r.NonResourceURLs, []string{"/metrics"}) && slices.Equal(r.Verbs, []string{"get"})
		if len(r.NonResourceURLs) > 0 && !metricsReader {
			t.Errorf("%s grants non-resource URLs %v", what, r.NonResourceURLs)
		}
	}
}

// TestNamespaceOverride installs into another namespace with an overlay: everything
// namespaced, including the generated Role (whose marker says signet-system) and the
// bindings' subjects, must follow.
func TestNamespaceOverride(t *testing.T) {
	tmp := t.TempDir()
	copyTree(t, filepath.Join(repoRoot(t), "config"), filepath.Join(tmp, "config"))
	overlay := filepath.Join(tmp, "overlay")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	const ns = "image-trust"
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: " + ns + "\nresources:\n  - ../config/default\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	objs := build(t, overlay)
	one(t, objs, "Namespace", ns)
	if len(find(objs, "Namespace", operatorNamespace)) != 0 {
		t.Errorf("namespace %s still created", operatorNamespace)
	}
	checkRBACShape(t, objs, ns)
	var d appsv1.Deployment
	convert(t, one(t, objs, "Deployment", deploymentName), &d)
	if d.Namespace != ns {
		t.Errorf("Deployment in %q, want %s", d.Namespace, ns)
	}
}

// TestPrometheus builds the optional ServiceMonitor and checks it reaches the metrics port.
func TestPrometheus(t *testing.T) {
	objs := build(t, "config/prometheus")
	svc := &corev1.Service{}
	convert(t, one(t, objs, "Service", "signet-controller-manager-metrics"), svc)
	if svc.Namespace != operatorNamespace {
		t.Errorf("Service in %q", svc.Namespace)
	}
	var d appsv1.Deployment
	convert(t, one(t, build(t, "config/default"), "Deployment", deploymentName), &d)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("Service selector %v does not select the operator pods %v", svc.Spec.Selector, d.Spec.Template.Labels)
	}
	portNames := map[string]int32{}
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		portNames[p.Name] = p.ContainerPort
	}
	if len(svc.Spec.Ports) != 1 || portNames[svc.Spec.Ports[0].TargetPort.String()] != 8443 {
		t.Errorf("Service ports %+v do not target the metrics port 8443", svc.Spec.Ports)
	}
	sm := one(t, objs, "ServiceMonitor", "signet-controller-manager-metrics")
	match, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	if !labels.SelectorFromSet(match).Matches(labels.Set(svc.Labels)) {
		t.Errorf("ServiceMonitor selector %v does not select the Service labels %v", match, svc.Labels)
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["port"] != svc.Spec.Ports[0].Name {
		t.Errorf("ServiceMonitor endpoints %v do not use the Service port %q", eps, svc.Spec.Ports[0].Name)
	}
}

// TestLeaderElectionLease keeps the leader-election Role, which is limited to one Lease by
// name, in step with the Lease the operator elects with.
func TestLeaderElectionLease(t *testing.T) {
	id := operator.LeaderElectionID
	var r rbacv1.Role
	convert(t, one(t, build(t, "config/default"), "Role", "signet-leader-election-role"), &r)
	for _, rule := range r.Rules {
		if slices.Contains(rule.Verbs, "update") && !slices.Contains(rule.ResourceNames, id) {
			t.Errorf("the leader-election Role lets the operator update Leases %v, but the operator elects with Lease %q", rule.ResourceNames, id)
		}
	}
}
