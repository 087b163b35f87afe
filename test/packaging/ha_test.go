package packaging

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/internal/operator"
)

// TestHighAvailability checks the packaging of two replicas with one leader: the Deployment,
// the PodDisruptionBudget (in config/default and in the bundle, selecting the operator's
// pods) and a leader-election Role that allows no more than the election needs.
// test/ha runs the replicas themselves.
func TestHighAvailability(t *testing.T) {
	objs := build(t, "config/default")
	var d appsv1.Deployment
	convert(t, one(t, objs, "Deployment", deploymentName), &d)
	checkReplicas(t, "config/default", &d.Spec)

	var pdb policyv1.PodDisruptionBudget
	convert(t, one(t, objs, "PodDisruptionBudget", deploymentName), &pdb)
	if pdb.Namespace != operatorNamespace {
		t.Errorf("PodDisruptionBudget in %q, want %s", pdb.Namespace, operatorNamespace)
	}
	checkPDB(t, "config/default", &pdb, d.Spec.Template.Labels)

	t.Run("bundle", func(t *testing.T) {
		dir := filepath.Join(repoRoot(t), "bundle", "manifests")
		data, err := os.ReadFile(filepath.Join(dir, "signet-controller-manager_policy_v1_poddisruptionbudget.yaml"))
		if err != nil {
			t.Fatalf("the bundle has no PodDisruptionBudget: %v", err)
		}
		var pdb policyv1.PodDisruptionBudget
		if err := yaml.UnmarshalStrict(data, &pdb); err != nil {
			t.Fatal(err)
		}
		if pdb.Namespace != "" {
			t.Errorf("bundle PodDisruptionBudget has namespace %q: OLM creates it in the operator's namespace", pdb.Namespace)
		}
		data, err = os.ReadFile(filepath.Join(dir, "signet.clusterserviceversion.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var csv struct {
			Spec struct {
				Install struct {
					Spec struct {
						Deployments []struct {
							Name string                `json:"name"`
							Spec appsv1.DeploymentSpec `json:"spec"`
						} `json:"deployments"`
					} `json:"spec"`
				} `json:"install"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(data, &csv); err != nil {
			t.Fatal(err)
		}
		if n := len(csv.Spec.Install.Spec.Deployments); n != 1 {
			t.Fatalf("CSV has %d deployments, want 1", n)
		}
		spec := csv.Spec.Install.Spec.Deployments[0].Spec
		checkReplicas(t, "the CSV", &spec)
		checkPDB(t, "bundle", &pdb, spec.Template.Labels)
	})

	// The election gets, creates and updates one Lease (a release is an update): nothing
	// else, and only create without a name (RBAC cannot restrict create by name).
	var r rbacv1.Role
	convert(t, one(t, objs, "Role", "signet-leader-election-role"), &r)
	for _, rule := range r.Rules {
		if !slices.Equal(rule.APIGroups, []string{"coordination.k8s.io"}) || !slices.Equal(rule.Resources, []string{"leases"}) {
			t.Errorf("leader-election Role grants %v %v", rule.APIGroups, rule.Resources)
		}
		named := slices.Equal(rule.ResourceNames, []string{operator.LeaderElectionID})
		for _, v := range rule.Verbs {
			switch {
			case v == "create" && len(rule.ResourceNames) == 0:
			case (v == "get" || v == "update") && named:
			default:
				t.Errorf("leader-election Role grants %q on Leases %v; the election needs get and update on %q, and create", v, rule.ResourceNames, operator.LeaderElectionID)
			}
		}
	}
}

// checkReplicas: two replicas with leader election, rolled out one new pod before an old
// one goes, with time to release the Lease on shutdown.
func checkReplicas(t *testing.T, where string, spec *appsv1.DeploymentSpec) {
	t.Helper()
	if spec.Replicas == nil || *spec.Replicas < 2 {
		t.Errorf("%s: Deployment replicas %v, want 2", where, spec.Replicas)
	}
	c := spec.Template.Spec.Containers[0]
	if !slices.Contains(c.Args, "--leader-elect") && !slices.Contains(c.Args, "--leader-elect=true") {
		t.Errorf("%s: two replicas without --leader-elect (args %v)", where, c.Args)
	}
	if len(c.Command) != 0 || len(c.Args) == 0 || c.Args[0] != "manager" {
		t.Errorf("%s: command %v args %v do not run `signet manager`", where, c.Command, c.Args)
	}
	if ru := spec.Strategy.RollingUpdate; spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil ||
		ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("%s: the rollout may take a replica down before its successor is up: %+v", where, spec.Strategy)
	}
	// The Lease is released after in-flight reconciles end (--graceful-shutdown-timeout,
	// default 30s): the kubelet must not kill the pod before that.
	shutdown := 30 * time.Second
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--graceful-shutdown-timeout="); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("%s: %s: %v", where, a, err)
			}
			shutdown = d
		}
	}
	if g := spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= shutdown {
		t.Errorf("%s: terminationGracePeriodSeconds %v is not longer than the graceful shutdown %s", where, g, shutdown)
	}
}

// checkPDB: the budget selects the operator's pods and lets exactly one go at a time.
func checkPDB(t *testing.T, where string, pdb *policyv1.PodDisruptionBudget, podLabels map[string]string) {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || pdb.Spec.Selector == nil || sel.Empty() {
		t.Errorf("%s: PodDisruptionBudget selector %v (%v)", where, pdb.Spec.Selector, err)
	} else if !sel.Matches(labels.Set(podLabels)) {
		t.Errorf("%s: PodDisruptionBudget selector %v does not select the operator's pods %v", where, pdb.Spec.Selector, podLabels)
	}
	// maxUnavailable 1: a drain never takes both replicas, and (unlike minAvailable 1) it
	// is not blocked forever when someone scales to one replica. A budget that allows no
	// disruption would block drains and cluster upgrades (the OLM bundle validator rejects
	// maxUnavailable 0 and minAvailable 100%).
	if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.String() != "1" {
		t.Errorf("%s: PodDisruptionBudget minAvailable %v maxUnavailable %v, want maxUnavailable 1", where, pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
	}
	if p := pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
		t.Errorf("%s: unhealthyPodEvictionPolicy %v, want AlwaysAllow (a crash-looping replica must not block drains)", where, p)
	}
}
