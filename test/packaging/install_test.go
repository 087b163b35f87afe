package packaging

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/internal/testenv"
)

// TestInstall applies config/default against a real kube-apiserver (kubectl server-side dry
// run, then hack/deploy.sh and hack/build-installer.sh as `make deploy` and
// `make build-installer` run them), then asks the apiserver with SubjectAccessReviews what the
// operator's ServiceAccount may do, once for the kustomize installation and once for the RBAC
// that OLM would create from the bundle's CSV.
func TestInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane (bin/k8s)")
	}
	cfg, c := testenv.Start(t, testenv.WithKyvernoCRDs())
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	root := repoRoot(t)
	kubeconfig := writeKubeconfig(t, cfg)
	kubectl := func(t *testing.T, stdin []byte, args ...string) (stdout, stderr string) {
		t.Helper()
		o, e := run(t, root, stdin, filepath.Join(assets, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
		return string(o), string(e)
	}
	ctx := context.Background()

	if !t.Run("server-side dry run", func(t *testing.T) {
		// Namespaced objects cannot be dry-run into a namespace that does not exist yet.
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}
		if err := c.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
		out, _ := kubectl(t, nil, "apply", "--dry-run=server", "-k", "config/default")
		for _, want := range []string{
			"customresourcedefinition.apiextensions.k8s.io/trustedregistries.trust.signet.dev",
			"deployment.apps/" + deploymentName,
			"role.rbac.authorization.k8s.io/signet-manager-role",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("dry run output lacks %q:\n%s", want, out)
			}
		}
		var d appsv1.Deployment
		if err := c.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: deploymentName}, &d); err == nil {
			t.Error("a dry run created the Deployment")
		}
	}) {
		t.FailNow()
	}

	// hack/deploy.sh is what `make deploy` runs: server-side apply of config/default with the
	// image replaced in a temporary copy.
	const img = "registry.example.com/signet:test"
	script := func(t *testing.T, env []string, name string, args ...string) (stdout, stderr string) {
		t.Helper()
		env = append(env, "KUBECONFIG="+kubeconfig, "KUBECTL="+filepath.Join(assets, "kubectl"), "KUSTOMIZE="+kustomize(t))
		o, e, err := runEnv(root, env, filepath.Join(root, "hack", name), args...)
		if err != nil {
			t.Fatalf("hack/%s %v: %v\n%s", name, args, err, e)
		}
		return string(o), string(e)
	}
	if !t.Run("apply (hack/deploy.sh deploy)", func(t *testing.T) {
		for i := range 2 { // the second apply must be a clean no-op
			_, stderr := script(t, []string{"IMG=" + img}, "deploy.sh", "deploy")
			if strings.Contains(stderr, "Warning") {
				t.Errorf("apply %d warned:\n%s", i+1, stderr)
			}
		}
		var d appsv1.Deployment
		if err := c.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: deploymentName}, &d); err != nil {
			t.Fatal(err)
		}
		if got := d.Spec.Template.Spec.Containers[0].Image; got != img {
			t.Errorf("deployed image %q, want IMG=%s", got, img)
		}
		// Kubernetes ≥ 1.36 serves MutatingAdmissionPolicy: deploy applies config/admission.
		for _, o := range build(t, "config/admission") {
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), o.DeepCopy()); err != nil {
				t.Errorf("hack/deploy.sh deploy did not apply %s %s of config/admission: %v", o.GetKind(), o.GetName(), err)
			}
		}
		if out, err := exec.Command("git", "-C", root, "status", "--porcelain", "--", "config").Output(); err == nil && strings.Contains(string(out), "config/manager/kustomization.yaml") {
			t.Error("hack/deploy.sh modified config/manager/kustomization.yaml")
		}
		// The namespace enforces Pod Security "restricted" and warns about templates that
		// break it: the operator's Deployment must pass (no warning above), and a
		// non-compliant one must be warned about, proving the check is live.
		bad := fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"psa-probe","namespace":%q},
"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},
"spec":{"containers":[{"name":"c","image":"example.com/x:1"}]}}}}`, operatorNamespace)
		_, stderr := kubectl(t, []byte(bad), "apply", "--dry-run=server", "-f", "-")
		if !strings.Contains(stderr, "would violate PodSecurity") {
			t.Errorf("a non-compliant Deployment in %s was not warned about by Pod Security admission; stderr:\n%s", operatorNamespace, stderr)
		}
	}) {
		t.FailNow()
	}

	t.Run("dist/install.yaml (hack/build-installer.sh)", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "install.yaml")
		script(t, []string{"IMG=" + img}, "build-installer.sh", out)
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "image: "+img) {
			t.Errorf("install.yaml does not run %s", img)
		}
		_, stderr := kubectl(t, nil, "apply", "--server-side", "--dry-run=server", "--field-manager=signet-deploy", "-f", out)
		if strings.Contains(stderr, "Warning") {
			t.Errorf("applying install.yaml warned:\n%s", stderr)
		}
	})

	rules := generatedRules(t)

	t.Run("operator RBAC from config/default", func(t *testing.T) {
		checkAccess(t, c, operatorNamespace, rules)
	})

	t.Run("operator writes its own policies, never another's", func(t *testing.T) {
		checkPolicyWrites(t, cfg, c, operatorNamespace)
	})

	t.Run("operator RBAC from the OLM bundle (OwnNamespace install)", func(t *testing.T) {
		// What OLM creates for an OwnNamespace OperatorGroup in namespace signet-olm:
		// clusterPermissions as ClusterRole+ClusterRoleBinding, permissions as Role+RoleBinding
		// in the operator's namespace.
		const ns = "signet-olm"
		installCSVPermissions(t, c, ns)
		checkAccess(t, c, ns, rules)
	})

	t.Run("undeploy (hack/deploy.sh undeploy)", func(t *testing.T) {
		script(t, nil, "deploy.sh", "undeploy")
		var d appsv1.Deployment
		err := c.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: deploymentName}, &d)
		if err == nil && d.DeletionTimestamp.IsZero() {
			t.Error("the Deployment is still there after undeploy")
		}
		var crd apiextensionsv1.CustomResourceDefinition
		err = c.Get(ctx, client.ObjectKey{Name: "trustedregistries.trust.signet.dev"}, &crd)
		if err == nil && crd.DeletionTimestamp.IsZero() {
			t.Error("the CRD is still there after undeploy")
		}
		for _, o := range build(t, "config/admission") {
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), o.DeepCopy()); !apierrors.IsNotFound(err) {
				t.Errorf("%s %s of config/admission after undeploy: %v, want NotFound", o.GetKind(), o.GetName(), err)
			}
		}
	})
}

func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// generated holds the rules of config/rbac/role.yaml (controller-gen output of the markers).
type generated struct {
	cluster []rbacv1.PolicyRule // ClusterRole manager-role
	trust   []rbacv1.PolicyRule // Role manager-role (trust namespace)
}

func generatedRules(t *testing.T) generated {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decode(data)
	if err != nil {
		t.Fatal(err)
	}
	var g generated
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole":
			var r rbacv1.ClusterRole
			convert(t, o, &r)
			g.cluster = append(g.cluster, r.Rules...)
		case "Role":
			var r rbacv1.Role
			convert(t, o, &r)
			g.trust = append(g.trust, r.Rules...)
		}
	}
	if len(g.cluster) == 0 || len(g.trust) == 0 {
		t.Fatal("config/rbac/role.yaml lacks the ClusterRole or the Role manager-role")
	}
	return g
}

// installCSVPermissions creates the RBAC that OLM derives from the bundle's CSV for an
// OwnNamespace install into ns.
func installCSVPermissions(t *testing.T, c client.Client, ns string) {
	t.Helper()
	ctx := context.Background()
	files, _ := filepath.Glob(filepath.Join(repoRoot(t), "bundle", "manifests", "*.clusterserviceversion.yaml"))
	if len(files) != 1 {
		t.Fatalf("want one CSV in bundle/manifests, got %v", files)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	type perm struct {
		ServiceAccountName string              `json:"serviceAccountName"`
		Rules              []rbacv1.PolicyRule `json:"rules"`
	}
	var csv struct {
		Spec struct {
			Install struct {
				Spec struct {
					Permissions        []perm `json:"permissions"`
					ClusterPermissions []perm `json:"clusterPermissions"`
				} `json:"spec"`
			} `json:"install"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &csv); err != nil {
		t.Fatal(err)
	}
	create := func(o client.Object) {
		t.Helper()
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	spec := csv.Spec.Install.Spec
	if len(spec.Permissions) == 0 || len(spec.ClusterPermissions) == 0 {
		t.Fatal("the CSV has no permissions or no clusterPermissions")
	}
	for i, p := range spec.ClusterPermissions {
		if p.ServiceAccountName != serviceAccount {
			t.Errorf("clusterPermissions[%d] are for %q, not the Deployment's %s", i, p.ServiceAccountName, serviceAccount)
		}
		name := fmt.Sprintf("olm-cluster-%d", i)
		create(&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: p.Rules})
		create(&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: serviceAccount, Namespace: ns}},
		})
	}
	for i, p := range spec.Permissions {
		if p.ServiceAccountName != serviceAccount {
			t.Errorf("permissions[%d] are for %q, not the Deployment's %s", i, p.ServiceAccountName, serviceAccount)
		}
		name := fmt.Sprintf("olm-ns-%d", i)
		create(&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Rules: p.Rules})
		create(&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: serviceAccount, Namespace: ns}},
		})
	}
}

// access is one request the ServiceAccount might make.
type access struct {
	verb, group, resource, sub, ns, name string
}

func (a access) String() string {
	r := a.resource
	if a.group != "" {
		r += "." + a.group
	}
	if a.sub != "" {
		r += "/" + a.sub
	}
	if a.name != "" {
		r += " " + a.name
	}
	where := "cluster-wide"
	if a.ns != "" {
		where = "in " + a.ns
	}
	return fmt.Sprintf("%s %s %s", a.verb, r, where)
}

func accesses(verbs []string, group, resource string, nss ...string) []access {
	if len(nss) == 0 {
		nss = []string{""}
	}
	sub := ""
	if i := strings.Index(resource, "/"); i >= 0 {
		resource, sub = resource[:i], resource[i+1:]
	}
	var out []access
	for _, ns := range nss {
		for _, v := range verbs {
			out = append(out, access{verb: v, group: group, resource: resource, sub: sub, ns: ns})
		}
	}
	return out
}

// named lists verbs on the named objects of a cluster-scoped resource.
func named(verbs []string, group, resource string, names []string) []access {
	var out []access
	for _, n := range names {
		for _, v := range verbs {
			out = append(out, access{verb: v, group: group, resource: resource, name: n})
		}
	}
	return out
}

var (
	read  = []string{"get", "list", "watch"}
	write = []string{"create", "update", "patch", "delete", "deletecollection"}
	all   = append(slices.Clone(read), write...)
)

// expectations lists what the operator must and must not be able to do when its trust
// namespace is trustNS.
func expectations(trustNS string, g generated) (allowed, denied []access) {
	const lease = "signet.trust.signet.dev"
	other := "default"
	// What the controller needs (independent of how the markers are written).
	allowed = slices.Concat(
		accesses(read, "", "secrets", trustNS),
		accesses(all[:7], "", "configmaps", trustNS), // get list watch create update patch delete
		accesses(read, "trust.signet.dev", "trustedregistries"),
		accesses([]string{"patch"}, "trust.signet.dev", "trustedregistries"), // the finalizer
		// The HTTPS metrics endpoint asks the apiserver who a scraper is and whether it may
		// GET /metrics; these reviews read nothing.
		accesses([]string{"create"}, "authentication.k8s.io", "tokenreviews"),
		accesses([]string{"create"}, "authorization.k8s.io", "subjectaccessreviews"),
		accesses([]string{"update", "patch"}, "trust.signet.dev", "trustedregistries/status"),
		accesses(read, "policies.kyverno.io", "imagevalidatingpolicies"),
		accesses(read, "kyverno.io", "clusterpolicies"),
		named(write[:4], "policies.kyverno.io", "imagevalidatingpolicies", render.SharedPolicyNames(v1alpha1.EngineImageValidatingPolicy)),
		named(write[:4], "kyverno.io", "clusterpolicies", render.SharedPolicyNames(v1alpha1.EngineClusterPolicy)),
		accesses(read, "apiextensions.k8s.io", "customresourcedefinitions"),
		accesses([]string{"create", "patch"}, "", "events", other, trustNS),
		accesses([]string{"create", "patch"}, "events.k8s.io", "events", other, trustNS),
		accesses([]string{"create"}, "coordination.k8s.io", "leases", trustNS),
		[]access{
			{verb: "get", group: "coordination.k8s.io", resource: "leases", ns: trustNS, name: lease},
			{verb: "update", group: "coordination.k8s.io", resource: "leases", ns: trustNS, name: lease},
		},
	)
	// Everything the generated rules grant must work once installed: the ClusterRole
	// everywhere, the Role in the trust namespace only.
	for _, r := range g.cluster {
		for _, grp := range r.APIGroups {
			for _, res := range r.Resources {
				if len(r.ResourceNames) > 0 {
					allowed = append(allowed, named(r.Verbs, grp, res, r.ResourceNames)...)
					continue
				}
				allowed = append(allowed, accesses(r.Verbs, grp, res)...)
			}
		}
	}
	for _, r := range g.trust {
		for _, grp := range r.APIGroups {
			for _, res := range r.Resources {
				allowed = append(allowed, accesses(r.Verbs, grp, res, trustNS)...)
				denied = append(denied, accesses(r.Verbs, grp, res, "", other, "kube-system")...)
			}
		}
	}

	denied = slices.Concat(denied,
		// Secrets: read only, in the trust namespace only.
		accesses(read, "", "secrets", "", other, "kube-system"),
		accesses(write, "", "secrets", trustNS, ""),
		accesses(read, "", "configmaps", "", other, "kube-system"),
		// TrustedRegistries are the user's intent: status yes, spec never. Patch only, for
		// the finalizer (controllers/finalizer.go patches metadata.finalizers and nothing
		// else); no create, update or delete.
		accesses([]string{"create", "update", "delete", "deletecollection"}, "trust.signet.dev", "trustedregistries"),
		accesses([]string{"update"}, "trust.signet.dev", "trustedregistries/finalizers"),
		// Workloads.
		accesses(write, "apps", "deployments", trustNS, other),
		accesses(write, "apps", "daemonsets", other),
		accesses(write, "", "pods", trustNS, other),
		accesses([]string{"create"}, "", "pods/exec", trustNS, other),
		accesses([]string{"get"}, "", "pods/log", other),
		accesses(write, "batch", "jobs", other),
		accesses(write, "", "serviceaccounts", trustNS),
		accesses([]string{"create"}, "", "serviceaccounts/token", trustNS, other),
		// Policies: written only under the shared policies' names. Not another's policy,
		// not a per-registry layout name (config/rbac/per-registry-layout grants those),
		// not a name past the last shard, and no unnamed create (a POST: Signet creates
		// with server-side apply, which the apiserver authorizes as create of the name).
		named(write[:4], "policies.kyverno.io", "imagevalidatingpolicies", []string{"someone-elses-policy", "signet-yourorg", "signet.ivp.enforce.9", "signet.cpol.all"}),
		named(write[:4], "kyverno.io", "clusterpolicies", []string{"someone-elses-policy", "signet-yourorg", "signet.cpol.all.9", "signet.ivp.enforce"}),
		accesses([]string{"create", "deletecollection"}, "policies.kyverno.io", "imagevalidatingpolicies"),
		accesses([]string{"create", "deletecollection"}, "kyverno.io", "clusterpolicies"),
		// Kyverno kinds Signet does not generate: no other policy, no exceptions.
		accesses(write, "policies.kyverno.io", "validatingpolicies"),
		accesses(write, "policies.kyverno.io", "namespacedvalidatingpolicies", other),
		accesses(write, "policies.kyverno.io", "namespacedimagevalidatingpolicies", other),
		accesses(write, "policies.kyverno.io", "mutatingpolicies"),
		accesses(write, "policies.kyverno.io", "generatingpolicies"),
		accesses(write, "policies.kyverno.io", "deletingpolicies"),
		accesses(write, "policies.kyverno.io", "policyexceptions", other),
		accesses(write, "kyverno.io", "policies", other),
		accesses(write, "kyverno.io", "policyexceptions", other),
		accesses(write, "kyverno.io", "clustercleanuppolicies"),
		accesses(write, "kyverno.io", "updaterequests", "kyverno"),
		accesses(write, "reports.kyverno.io", "ephemeralreports", other),
		// Reports are read, never written (reads are checked above when the markers ask).
		accesses(write, "wgpolicyk8s.io", "policyreports", other),
		accesses(write, "wgpolicyk8s.io", "clusterpolicyreports"),
		accesses(write, "openreports.io", "reports", other),
		accesses(write, "openreports.io", "clusterreports"),
		// Admission: nothing that could switch Kyverno (or anything else) off.
		accesses(write, "admissionregistration.k8s.io", "validatingwebhookconfigurations"),
		accesses(write, "admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
		accesses(write, "admissionregistration.k8s.io", "validatingadmissionpolicies"),
		accesses(write, "admissionregistration.k8s.io", "validatingadmissionpolicybindings"),
		// Cluster structure and RBAC.
		accesses(write, "", "namespaces"),
		accesses(write, "apiextensions.k8s.io", "customresourcedefinitions"),
		accesses(slices.Concat(write, []string{"escalate", "bind"}), "rbac.authorization.k8s.io", "clusterroles"),
		accesses(write, "rbac.authorization.k8s.io", "clusterrolebindings"),
		accesses(slices.Concat(write, []string{"escalate", "bind"}), "rbac.authorization.k8s.io", "roles", trustNS),
		accesses(write, "rbac.authorization.k8s.io", "rolebindings", trustNS),
		accesses([]string{"impersonate"}, "", "serviceaccounts", trustNS),
		accesses([]string{"impersonate"}, "", "users"),
		accesses([]string{"impersonate"}, "", "groups"),
		accesses([]string{"create"}, "certificates.k8s.io", "certificatesigningrequests"),
		accesses(read, "", "nodes"),
		accesses([]string{"delete"}, "", "events", other),
		// Leader election: only Signet's own Lease, only in its namespace.
		[]access{
			{verb: "update", group: "coordination.k8s.io", resource: "leases", ns: trustNS, name: "kube-scheduler"},
			{verb: "delete", group: "coordination.k8s.io", resource: "leases", ns: trustNS, name: lease},
			{verb: "create", group: "coordination.k8s.io", resource: "leases", ns: "kube-system"},
			{verb: "update", group: "coordination.k8s.io", resource: "leases", ns: "kube-system", name: lease},
		},
	)
	return allowed, denied
}

// checkAccess asks the apiserver, with one SubjectAccessReview per request, whether the
// operator's ServiceAccount in trustNS is allowed each expected request and denied each
// forbidden one.
func checkAccess(t *testing.T, c client.Client, trustNS string, g generated) {
	t.Helper()
	user := "system:serviceaccount:" + trustNS + ":" + serviceAccount
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + trustNS, "system:authenticated"}
	allowed, denied := expectations(trustNS, g)
	ask := func(a access) bool {
		t.Helper()
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   user,
			Groups: groups,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: a.ns, Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.sub, Name: a.name,
			},
		}}
		if err := c.Create(context.Background(), sar); err != nil {
			t.Fatalf("SubjectAccessReview %s: %v", a, err)
		}
		return sar.Status.Allowed
	}
	// The apiserver's RBAC authorizer reads Roles and bindings from an informer: bindings
	// created just before may take a moment to count. Wait for the first grant once.
	if len(allowed) > 0 {
		for deadline := time.Now().Add(10 * time.Second); !ask(allowed[0]) && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
		}
	}
	seen := map[access]bool{}
	for _, a := range allowed {
		if seen[a] {
			continue
		}
		seen[a] = true
		if !ask(a) {
			t.Errorf("the operator cannot %s", a)
		}
	}
	clear(seen)
	for _, a := range denied {
		if seen[a] {
			continue
		}
		seen[a] = true
		if ask(a) {
			t.Errorf("the operator CAN %s", a)
		}
	}
	t.Logf("%s: checked %d allowed and %d denied requests", user, len(allowed), len(denied))
}

// checkPolicyWrites does, as the operator's ServiceAccount (impersonated), the writes the
// controller does to its shared policies (server-side apply to create and change, update,
// delete) and the same to a policy someone else made: the first are allowed, the second
// forbidden, for both policy kinds.
func checkPolicyWrites(t *testing.T, cfg *rest.Config, admin client.Client, trustNS string) {
	ctx := context.Background()
	imp := rest.CopyConfig(cfg)
	imp.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + trustNS + ":" + serviceAccount,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + trustNS, "system:authenticated"},
	}
	sa, err := client.New(imp, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, engine := range []v1alpha1.Engine{v1alpha1.EngineImageValidatingPolicy, v1alpha1.EngineClusterPolicy} {
		t.Run(string(engine), func(t *testing.T) {
			own := renderedPolicy(t, engine)
			apply := func(c client.Client, u *unstructured.Unstructured) error {
				return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()), client.FieldOwner(render.FieldOwner), client.ForceOwnership)
			}
			// Signet's own policy: created by server-side apply, changed, replaced, deleted.
			if err := apply(sa, own); err != nil {
				t.Fatalf("creating %s with server-side apply: %v", own.GetName(), err)
			}
			own.SetAnnotations(map[string]string{"probe": "1"})
			if err := apply(sa, own); err != nil {
				t.Fatalf("changing %s with server-side apply: %v", own.GetName(), err)
			}
			live := own.DeepCopy()
			if err := sa.Get(ctx, client.ObjectKeyFromObject(own), live); err != nil {
				t.Fatal(err)
			}
			live.SetLabels(map[string]string{"probe": "2"})
			if err := sa.Update(ctx, live); err != nil {
				t.Fatalf("updating %s: %v", own.GetName(), err)
			}
			if err := sa.Delete(ctx, live); err != nil {
				t.Fatalf("deleting %s: %v", own.GetName(), err)
			}

			// Someone else's policy: readable, but not writable in any way.
			foreign := own.DeepCopy()
			foreign.SetName("someone-elses-policy")
			foreign.SetResourceVersion("")
			if err := admin.Create(ctx, foreign); err != nil {
				t.Fatal(err)
			}
			live = foreign.DeepCopy()
			if err := sa.Get(ctx, client.ObjectKeyFromObject(foreign), live); err != nil {
				t.Fatalf("reading %s: %v", foreign.GetName(), err)
			}
			forbidden := func(what string, err error) {
				t.Helper()
				if !apierrors.IsForbidden(err) {
					t.Errorf("%s %s: want Forbidden, got %v", what, foreign.GetName(), err)
				}
			}
			live.SetLabels(map[string]string{"probe": "3"})
			forbidden("updating", sa.Update(ctx, live))
			forbidden("applying to", apply(sa, foreign))
			forbidden("patching", sa.Patch(ctx, live, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`))))
			forbidden("deleting", sa.Delete(ctx, live))
			// a name of the per-registry layout, and a plain create (POST) of an own name
			perRegistry := own.DeepCopy()
			perRegistry.SetName("signet-yourorg")
			forbidden("creating (apply)", apply(sa, perRegistry))
			post := own.DeepCopy()
			post.SetAnnotations(nil)
			forbidden("creating (POST)", sa.Create(ctx, post))
			if err := admin.Get(ctx, client.ObjectKeyFromObject(foreign), live); err != nil || live.GetLabels()["probe"] != "" {
				t.Errorf("%s changed or gone: %v %v", foreign.GetName(), live.GetLabels(), err)
			}
			if err := admin.Delete(ctx, live); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// renderedPolicy is the shared policy Signet renders for one registry.
func renderedPolicy(t *testing.T, engine v1alpha1.Engine) *unstructured.Unstructured {
	t.Helper()
	pemKey, err := keys.StandInPEM()
	if err != nil {
		t.Fatal(err)
	}
	pk, err := keys.ParsePublicKey(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	tr := &v1alpha1.TrustedRegistry{
		ObjectMeta: metav1.ObjectMeta{Name: "yourorg", UID: "00000000-0000-4000-8000-000000000001"},
		Spec: v1alpha1.TrustedRegistrySpec{
			Images:             []v1alpha1.ImagePattern{"ghcr.io/yourorg/*"},
			Namespaces:         v1alpha1.NamespaceSelection{Names: []string{"production"}},
			Action:             v1alpha1.ActionEnforce,
			Keys:               []v1alpha1.PublicKey{{Name: "ci", SecretRef: v1alpha1.SecretKeyReference{Name: "cosign-public-key", Key: "cosign.pub"}}},
			RequiredSignatures: 1,
		},
	}
	res, err := render.RenderShared([]render.Input{{Registry: tr, Engine: engine, Keys: []render.Key{{
		Name: "ci", State: v1alpha1.KeyActive, Fingerprint: pk.Fingerprint, PEM: string(pemKey),
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Policies) != 1 {
		t.Fatalf("%d policies", len(res.Policies))
	}
	return res.Policies[0]
}

// TestPolicyWriteNames: the ClusterRole writes policies only under the names of the shared
// policies, exactly the list the renderer can produce (the markers are written by hand).
func TestPolicyWriteNames(t *testing.T) {
	g := generatedRules(t)
	want := map[string][]string{
		"imagevalidatingpolicies": render.SharedPolicyNames(v1alpha1.EngineImageValidatingPolicy),
		"clusterpolicies":         render.SharedPolicyNames(v1alpha1.EngineClusterPolicy),
	}
	for _, r := range g.cluster {
		for _, res := range r.Resources {
			names, ok := want[res]
			if !ok {
				continue
			}
			if slices.ContainsFunc(r.Verbs, func(v string) bool { return v != "get" && v != "list" && v != "watch" }) {
				got := slices.Sorted(slices.Values(r.ResourceNames))
				if !slices.Equal(got, slices.Sorted(slices.Values(names))) {
					t.Errorf("%s: written under %q, want the shared policy names %q", res, got, names)
				}
				delete(want, res)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("no write rule for %v", want)
	}
}
