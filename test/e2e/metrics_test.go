//go:build e2e

package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	signetmetrics "github.com/signet-operator/signet/internal/metrics"
)

// TestSignetMetrics scrapes the operator's metrics endpoint as Prometheus would: over HTTPS,
// with a ServiceAccount token. Unauthenticated: 401. A token whose ServiceAccount is not
// bound to the metrics-reader ClusterRole of config/rbac: 403. Bound: 200, with Signet's
// metrics describing what the scenario did (a Ready registry, a denied Pod, a key retiring
// in an hour, the shared policy and its writes). The operator authenticates and authorizes
// each scrape with its own identity, so this also proves the TokenReview/SubjectAccessReview
// rights of config/rbac.
func TestSignetMetrics(t *testing.T) {
	t.Parallel()
	s := newScenario(t, 4*time.Minute)
	name, ns := "metrics-ivp", "metrics-ivp"
	s.namespaces(ns)
	oldKey, newKey := s.keyPair(), s.keyPair()
	s.keySecret(name+"-old", oldKey)
	s.keySecret(name+"-new", newKey)
	unsigned := s.push(s.reg, "yourorg/metrics")
	tr := s.registry(name, "yourorg", trustv1alpha1.EngineImageValidatingPolicy, []string{ns}, keyRef("old", name+"-old"))
	const overlap = time.Hour
	tr.Spec.Rotation.Overlap = &metav1.Duration{Duration: overlap}
	s.create(tr)
	s.waitReady(name, "ImageValidatingPolicy")
	s.waitEnforced(newPod(ns, "probe", unsigned))
	s.denied("unsigned", newPod(ns, "unsigned", unsigned))
	s.waitFor("the denial counted in status.reports.blocked", func() (bool, error) {
		r := s.get(name).Status.Reports
		if r == nil || r.Blocked == nil || r.Blocked.Count < 1 {
			return false, fmt.Errorf("status.reports: %+v", r)
		}
		return true, nil
	})
	// Rotate: the old key retires in an hour.
	cur := s.get(name)
	cur.Spec.Keys = []trustv1alpha1.PublicKey{keyRef("new", name+"-new")}
	if err := s.client.Update(s.ctx, cur); err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	s.waitFor("the old key Retiring", func() (bool, error) {
		for _, k := range s.get(name).Status.Keys {
			if k.Name == "old" && k.State == trustv1alpha1.KeyRetiring {
				return true, nil
			}
		}
		return false, fmt.Errorf("status.keys %+v", s.get(name).Status.Keys)
	})
	s.waitReady(name, "ImageValidatingPolicy")

	reader := s.serviceAccountToken("metrics-scraper", "signet-metrics-reader")
	nobody := s.serviceAccountToken("metrics-nobody", "")
	for _, c := range []struct {
		what, token string
		want        []int
	}{
		{"no token", "", []int{http.StatusUnauthorized}},
		{"a ServiceAccount without metrics-reader", nobody, []int{http.StatusForbidden}},
		// The apiserver's TokenReview answers with an error for a malformed token, which
		// controller-runtime's filter turns into 500: refused either way.
		{"a token that is no token", "not-a-token", []int{http.StatusUnauthorized, http.StatusInternalServerError}},
	} {
		code, body := s.scrape(c.token)
		if !slices.Contains(c.want, code) || strings.Contains(body, "signet_") {
			t.Errorf("scrape with %s: HTTP %d (%.100q), want %v and no metrics", c.what, code, body, c.want)
		}
	}

	var fams map[string]*dto.MetricFamily
	s.waitFor("Signet's metrics to show the scenario", func() (bool, error) {
		code, body := s.scrape(reader)
		if code != http.StatusOK {
			return false, fmt.Errorf("scrape with metrics-reader: HTTP %d: %.200s", code, body)
		}
		var err error
		if fams, err = parseMetrics(body); err != nil {
			return false, err
		}
		if v, ok := sample(fams, signetmetrics.KeyRetirement, map[string]string{"registry": name, "key": "old"}); !ok {
			return false, fmt.Errorf("no %s for the old key yet", signetmetrics.KeyRetirement)
		} else if elapsed := time.Since(rotated); v > overlap.Seconds() || v < (overlap-elapsed-time.Minute).Seconds() {
			return false, fmt.Errorf("%s = %v, want just under %v", signetmetrics.KeyRetirement, v, overlap.Seconds())
		}
		return true, nil
	})
	for _, c := range []struct {
		metric   string
		labels   map[string]string
		min, max float64
	}{
		{signetmetrics.RegistryReady, map[string]string{"registry": name}, 1, 1},
		{signetmetrics.Keys, map[string]string{"registry": name, "state": "Active"}, 1, 1},
		{signetmetrics.Keys, map[string]string{"registry": name, "state": "Retiring"}, 1, 1},
		{signetmetrics.BlockedAdmissions, map[string]string{"registry": name}, 1, 100},
		{signetmetrics.RotationAtRisk, map[string]string{"registry": name}, 0, 0}, // preview is off here
		{signetmetrics.Registries, map[string]string{"ready": "True", "reason": "Ready"}, 1, 1000},
		{signetmetrics.SharedPolicyBytes, map[string]string{"kind": "ImageValidatingPolicy", "name": "signet.ivp.enforce"}, 1000, 1.5 * 1024 * 1024},
		{signetmetrics.PolicyWrites, map[string]string{"kind": "ImageValidatingPolicy", "operation": "apply"}, 1, 1e6},
		{"controller_runtime_reconcile_total", map[string]string{"controller": "trustedregistry", "result": "success"}, 1, 1e9},
	} {
		v, ok := sample(fams, c.metric, c.labels)
		if !ok {
			t.Errorf("%s %v: missing", c.metric, c.labels)
			continue
		}
		if v < c.min || v > c.max {
			t.Errorf("%s %v = %v, want in [%v, %v]", c.metric, c.labels, v, c.min, c.max)
		}
		t.Logf("%s %v = %v", c.metric, c.labels, v)
	}
}

// serviceAccountToken creates a ServiceAccount (bound to clusterRole unless "") and
// returns a token for it, as Prometheus' pod would have one.
func (s *scenario) serviceAccountToken(name, clusterRole string) string {
	s.t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	if err := s.client.Create(s.ctx, sa); err != nil {
		s.t.Fatal(err)
	}
	if clusterRole != "" {
		b := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: "default"}},
		}
		if err := s.client.Create(s.ctx, b); err != nil {
			s.t.Fatal(err)
		}
	}
	tr, err := s.kube.CoreV1().ServiceAccounts("default").CreateToken(s.ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	return tr.Status.Token
}

// scrape GETs the metrics endpoint with the token ("" for none).
func (s *scenario) scrape(token string) (int, string) {
	s.t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		// The operator's certificate is self-signed (no --metrics-cert-dir), as with the
		// ServiceMonitor of config/prometheus: the token is what the endpoint checks.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
	}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(s.ctx, http.MethodGet, s.metricsURL, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		s.t.Fatalf("scraping %s: %v", s.metricsURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func parseMetrics(body string) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(body))
}

// sample returns the value of the first sample of metric whose labels include want.
func sample(fams map[string]*dto.MetricFamily, metric string, want map[string]string) (float64, bool) {
	f := fams[metric]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}
