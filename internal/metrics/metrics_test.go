package metrics

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/yaml"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/kyverno"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/internal/testenv"
)

var now = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func ready(status metav1.ConditionStatus, reason string) []metav1.Condition {
	return []metav1.Condition{{Type: trustv1alpha1.ConditionReady, Status: status, Reason: reason}}
}

func registry(name string, gen, observed int64, conds []metav1.Condition, mut ...func(*trustv1alpha1.TrustedRegistryStatus)) trustv1alpha1.TrustedRegistry {
	t := trustv1alpha1.TrustedRegistry{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: gen}}
	t.Status.ObservedGeneration, t.Status.Conditions = observed, conds
	for _, m := range mut {
		m(&t.Status)
	}
	return t
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// flat renders metrics as sorted `name{label=value,...} value` lines.
func flat(t *testing.T, ms []prometheus.Metric) []string {
	t.Helper()
	var out []string
	for _, m := range ms {
		pb := &dto.Metric{}
		if err := m.Write(pb); err != nil {
			t.Fatal(err)
		}
		var ls []string
		for _, l := range pb.GetLabel() {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		v := pb.GetGauge().GetValue()
		if pb.Counter != nil {
			v = pb.GetCounter().GetValue()
		}
		name := fqName.FindStringSubmatch(m.Desc().String())[1]
		out = append(out, name+"{"+strings.Join(ls, ",")+"} "+strconv.FormatFloat(v, 'g', -1, 64))
	}
	sort.Strings(out)
	return out
}

// TestRegistryMetrics: the gauges derived from statuses, one registry per case.
func TestRegistryMetrics(t *testing.T) {
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }
	cases := []struct {
		name string
		in   trustv1alpha1.TrustedRegistry
		want []string // exactly these lines
	}{
		{
			name: "ready, current generation",
			in:   registry("a", 2, 2, ready(metav1.ConditionTrue, trustv1alpha1.ReasonReady)),
			want: []string{
				"signet_keys{registry=a,state=Active} 0",
				"signet_keys{registry=a,state=Retiring} 0",
				"signet_rotation_at_risk_images{registry=a} 0",
				"signet_trustedregistries{ready=True,reason=Ready} 1",
				"signet_trustedregistry_ready{registry=a} 1",
			},
		},
		{
			name: "ready for an older generation is not ready",
			in:   registry("b", 3, 2, ready(metav1.ConditionTrue, trustv1alpha1.ReasonReady)),
			want: []string{
				"signet_keys{registry=b,state=Active} 0",
				"signet_keys{registry=b,state=Retiring} 0",
				"signet_rotation_at_risk_images{registry=b} 0",
				"signet_trustedregistries{ready=True,reason=Ready} 1",
				"signet_trustedregistry_ready{registry=b} 0",
			},
		},
		{
			name: "no status yet",
			in:   registry("c", 1, 0, nil),
			want: []string{
				"signet_keys{registry=c,state=Active} 0",
				"signet_keys{registry=c,state=Retiring} 0",
				"signet_rotation_at_risk_images{registry=c} 0",
				"signet_trustedregistries{ready=Unknown,reason=NotObserved} 1",
				"signet_trustedregistry_ready{registry=c} 0",
			},
		},
		{
			name: "rotation with images at risk, reports and denials",
			in: registry("e", 1, 1, ready(metav1.ConditionFalse, trustv1alpha1.ReasonKyvernoNotInstalled), func(s *trustv1alpha1.TrustedRegistryStatus) {
				s.Keys = []trustv1alpha1.KeyStatus{
					{Name: "new", Fingerprint: "sha256:n", State: trustv1alpha1.KeyActive},
					{Name: "old", Fingerprint: "sha256:o", State: trustv1alpha1.KeyRetiring, RetiresAt: at(90 * time.Minute)},
					{Name: "older", Fingerprint: "sha256:p", State: trustv1alpha1.KeyRetiring, RetiresAt: at(-30 * time.Second)},
				}
				s.Reports = &trustv1alpha1.ReportSummary{Pass: 4, Fail: 2, Blocked: &trustv1alpha1.BlockedSummary{Window: "1h0m0s", Count: 7}}
				s.RotationPreview = &trustv1alpha1.RotationPreview{Images: 5, Safe: 2, AtRisk: 3}
			}),
			want: []string{
				"signet_blocked_admissions{registry=e,window=1h0m0s} 7",
				"signet_key_retirement_seconds{fingerprint=sha256:o,key=old,registry=e} 5400",
				"signet_key_retirement_seconds{fingerprint=sha256:p,key=older,registry=e} -30",
				"signet_keys{registry=e,state=Active} 1",
				"signet_keys{registry=e,state=Retiring} 2",
				"signet_report_results{registry=e,result=error} 0",
				"signet_report_results{registry=e,result=fail} 2",
				"signet_report_results{registry=e,result=pass} 4",
				"signet_report_results{registry=e,result=skip} 0",
				"signet_report_results{registry=e,result=warn} 0",
				"signet_rotation_at_risk_images{registry=e} 3",
				"signet_trustedregistries{ready=False,reason=KyvernoNotInstalled} 1",
				"signet_trustedregistry_ready{registry=e} 0",
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := flat(t, registryMetrics([]trustv1alpha1.TrustedRegistry{c.in}, now))
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
	// Registries are counted per Ready status and reason.
	got := flat(t, registryMetrics([]trustv1alpha1.TrustedRegistry{
		registry("x", 1, 1, ready(metav1.ConditionTrue, trustv1alpha1.ReasonReady)),
		registry("y", 1, 1, ready(metav1.ConditionTrue, trustv1alpha1.ReasonReady)),
		registry("z", 1, 1, ready(metav1.ConditionFalse, trustv1alpha1.ReasonInvalidSpec)),
	}, now))
	for _, w := range []string{"signet_trustedregistries{ready=True,reason=Ready} 2", "signet_trustedregistries{ready=False,reason=InvalidSpec} 1"} {
		if !contains(got, w) {
			t.Errorf("missing %q in\n%s", w, strings.Join(got, "\n"))
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestCollectorShape gathers the collector over a narrow fake reader (statuses and one
// shared policy) and returns each metric's label names: TestPrometheusRule checks the alert
// expressions against them.
func gatherShape(t *testing.T) map[string]map[string]bool {
	t.Helper()
	p := &unstructured.Unstructured{}
	p.SetGroupVersionKind(kyverno.ImageValidatingPolicy)
	p.SetName("signet.ivp.enforce")
	p.SetLabels(map[string]string{render.LabelShard: "enforce"})
	_ = unstructured.SetNestedField(p.Object, strings.Repeat("x", 5000), "spec", "padding")
	tr := registry("e", 1, 1, ready(metav1.ConditionTrue, trustv1alpha1.ReasonReady), func(s *trustv1alpha1.TrustedRegistryStatus) {
		s.Keys = []trustv1alpha1.KeyStatus{{Name: "old", Fingerprint: "sha256:o", State: trustv1alpha1.KeyRetiring, RetiresAt: &metav1.Time{Time: now.Add(time.Hour)}}}
		s.Reports = &trustv1alpha1.ReportSummary{Blocked: &trustv1alpha1.BlockedSummary{Window: "1h0m0s", Count: 1}}
	})
	c := fake.NewClientBuilder().WithScheme(testenv.Scheme()).WithObjects(&tr, p).Build()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(&collector{reader: c, clock: clocktesting.NewFakePassiveClock(now)}, policyWrites)
	policyWrites.WithLabelValues("ImageValidatingPolicy", "apply").Add(0)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	shape := map[string]map[string]bool{}
	for _, f := range fams {
		ls := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = true
			}
			if f.GetName() == SharedPolicyBytes && m.GetGauge().GetValue() < 5000 {
				t.Errorf("%s = %v for a policy of more than 5000 bytes", SharedPolicyBytes, m.GetGauge().GetValue())
			}
		}
		shape[f.GetName()] = ls
	}
	return shape
}

func TestCollectorGathers(t *testing.T) {
	shape := gatherShape(t)
	for _, name := range []string{Registries, RegistryReady, Keys, KeyRetirement, BlockedAdmissions, ReportResults, RotationAtRisk, SharedPolicyBytes, PolicyWrites} {
		if _, ok := shape[name]; !ok {
			t.Errorf("%s not gathered (have %v)", name, shape)
		}
	}
}

type promRule struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// TestPrometheusRule: every alert of config/prometheus parses as PromQL (Prometheus' own
// parser), selects only metrics Signet exports with labels they have, matches only Ready
// reasons of the API, and has a severity, a summary and a valid `for`.
func TestPrometheusRule(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "prometheus", "prometheus_rule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rule promRule
	if err := yaml.UnmarshalStrict(data, &rule); err != nil {
		t.Fatal(err)
	}
	shape := gatherShape(t)
	reasons := map[string]bool{
		trustv1alpha1.ReasonKyvernoNotInstalled: true, trustv1alpha1.ReasonEngineNotServed: true,
		trustv1alpha1.ReasonInvalidSpec: true, trustv1alpha1.ReasonReady: true,
	}
	alerts := map[string]bool{}
	p := parser.NewParser(parser.Options{})
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || alerts[r.Alert] {
				t.Errorf("alert name %q empty or repeated", r.Alert)
			}
			alerts[r.Alert] = true
			expr, err := p.ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("%s: %q does not parse: %v", r.Alert, r.Expr, err)
				continue
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs labels.severity, annotations.summary and annotations.description", r.Alert)
			}
			var selected []string
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				switch n := n.(type) {
				case *parser.VectorSelector:
					labelsOf, ok := shape[n.Name]
					if !ok {
						t.Errorf("%s: selects %q, which Signet does not export", r.Alert, n.Name)
						return nil
					}
					selected = append(selected, n.Name)
					for _, m := range n.LabelMatchers {
						if m.Name == "__name__" {
							continue
						}
						if !labelsOf[m.Name] {
							t.Errorf("%s: %s has no label %q", r.Alert, n.Name, m.Name)
						}
						if m.Name == "reason" {
							for _, alt := range strings.Split(m.Value, "|") {
								if !reasons[alt] {
									t.Errorf("%s: %q is not a Ready reason of the API", r.Alert, alt)
								}
							}
						}
					}
				case *parser.AggregateExpr:
					for _, l := range n.Grouping {
						checkLabelOfAll(t, r.Alert, l, n.Expr, shape)
					}
				case *parser.BinaryExpr:
					if n.VectorMatching != nil {
						for _, l := range n.VectorMatching.MatchingLabels {
							checkLabelOfAll(t, r.Alert, l, n.LHS, shape)
							checkLabelOfAll(t, r.Alert, l, n.RHS, shape)
						}
					}
				}
				return nil
			})
			if len(selected) == 0 {
				t.Errorf("%s selects no metric", r.Alert)
			}
		}
	}
	for _, want := range []string{"SignetTrustedRegistryNotReady", "SignetKeyRetiringWithImagesAtRisk", "SignetKyvernoNotInstalled"} {
		if !alerts[want] {
			t.Errorf("alert %s missing", want)
		}
	}
}

// checkLabelOfAll: a grouping or matching label must exist on every metric under node
// (else the aggregation silently merges everything).
func checkLabelOfAll(t *testing.T, alert, label string, node parser.Node, shape map[string]map[string]bool) {
	t.Helper()
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if ls, ok := shape[vs.Name]; ok && !ls[label] {
				t.Errorf("%s: groups or matches %s by %q, a label it does not have", alert, vs.Name, label)
			}
		}
		return nil
	})
}

// TestCountPolicyWrites: writes of Kyverno policies count by kind and operation; dry runs
// and other kinds do not.
func TestCountPolicyWrites(t *testing.T) {
	ctx := t.Context()
	c := CountPolicyWrites(fake.NewClientBuilder().WithScheme(testenv.Scheme()).Build())
	value := func(kind, op string) float64 {
		pb := &dto.Metric{}
		if err := policyWrites.WithLabelValues(kind, op).Write(pb); err != nil {
			t.Fatal(err)
		}
		return pb.GetCounter().GetValue()
	}
	policy := func() *unstructured.Unstructured {
		p := &unstructured.Unstructured{}
		p.SetGroupVersionKind(kyverno.ClusterPolicy)
		p.SetName("signet.cpol.all")
		return p
	}
	before := map[string]float64{}
	for _, op := range []string{"create", "update", "apply", "delete"} {
		before[op] = value("ClusterPolicy", op)
	}
	if err := c.Create(ctx, policy()); err != nil {
		t.Fatal(err)
	}
	p := policy()
	if err := c.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
		t.Fatal(err)
	}
	if err := c.Update(ctx, p, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(policy()), client.FieldOwner("signet"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, policy()); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "y"}}
	if err := c.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	for op, want := range map[string]float64{"create": 1, "update": 0, "apply": 1, "delete": 1} {
		if got := value("ClusterPolicy", op) - before[op]; got != want {
			t.Errorf("ClusterPolicy %s counted %v times, want %v", op, got, want)
		}
	}
	if got := value("ConfigMap", "create"); got != 0 {
		t.Errorf("a ConfigMap write counted as a policy write")
	}
}
