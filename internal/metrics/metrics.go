// Package metrics exports Signet's own Prometheus metrics on controller-runtime's registry
// (served, with the controller-runtime ones, on the manager's authenticated HTTPS metrics
// endpoint). Everything except the write counter is read from the manager's cache when
// Prometheus scrapes: the TrustedRegistry statuses are the source of truth, so a metric can
// never disagree with `kubectl get trustedregistries`. config/prometheus/prometheus_rule.yaml
// alerts on them; README.md ("Metrics") lists them.
package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/kyverno"
	"github.com/signet-operator/signet/internal/render"
)

// Metric names (part of the interface: the PrometheusRule and dashboards use them).
const (
	Registries        = "signet_trustedregistries"
	RegistryReady     = "signet_trustedregistry_ready"
	Keys              = "signet_keys"
	KeyRetirement     = "signet_key_retirement_seconds"
	BlockedAdmissions = "signet_blocked_admissions"
	ReportResults     = "signet_report_results"
	RotationAtRisk    = "signet_rotation_at_risk_images"
	SharedPolicyBytes = "signet_shared_policy_bytes"
	PolicyWrites      = "signet_policy_writes_total"
)

var (
	descRegistries = prometheus.NewDesc(Registries,
		"TrustedRegistries by the status and reason of their Ready condition (Unknown/NotObserved before the first status).",
		[]string{"ready", "reason"}, nil)
	// No reason label: an alert's `for` must survive a change of reason (the reasons are in
	// signet_trustedregistries).
	descReady = prometheus.NewDesc(RegistryReady,
		"1 when the TrustedRegistry's Ready condition is True for its current generation, else 0.",
		[]string{"registry"}, nil)
	descKeys = prometheus.NewDesc(Keys,
		"Keys of each TrustedRegistry's key ring by state (Active, Retiring).",
		[]string{"registry", "state"}, nil)
	descRetirement = prometheus.NewDesc(KeyRetirement,
		"Seconds until a Retiring key stops being accepted (negative once past due).",
		[]string{"registry", "key", "fingerprint"}, nil)
	descBlocked = prometheus.NewDesc(BlockedAdmissions,
		"Admission requests Kyverno denied because of the registry's policy within the counted window (status.reports.blocked).",
		[]string{"registry", "window"}, nil)
	descResults = prometheus.NewDesc(ReportResults,
		"Kyverno PolicyReport results of the registry's policy by result (status.reports).",
		[]string{"registry", "result"}, nil)
	descAtRisk = prometheus.NewDesc(RotationAtRisk,
		"Running images the keys that remain after the retiring ones do not verify (status.rotationPreview.atRisk).",
		[]string{"registry"}, nil)
	descPolicyBytes = prometheus.NewDesc(SharedPolicyBytes,
		"Size of each shared Kyverno policy as JSON without managedFields (etcd refuses objects above about 1.5 MiB).",
		[]string{"kind", "name"}, nil)

	policyWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: PolicyWrites,
		Help: "Writes of Kyverno policies by Signet (create, apply, update, patch, delete), dry runs excluded.",
	}, []string{"kind", "operation"})

	registerOnce sync.Once
	mu           sync.Mutex
	current      *collector
)

// Register makes the metrics of the manager whose cache is reader the ones served: the
// collector reads reader at scrape time. A later call (tests run several managers in one
// process) replaces the collector of an earlier one.
func Register(reader client.Reader, clk clock.PassiveClock) {
	registerOnce.Do(func() { ctrlmetrics.Registry.MustRegister(policyWrites) })
	mu.Lock()
	defer mu.Unlock()
	if current != nil {
		ctrlmetrics.Registry.Unregister(current)
	}
	current = &collector{reader: reader, clock: clk}
	ctrlmetrics.Registry.MustRegister(current)
}

// CountPolicyWrites wraps the client the reconciler writes through so that every write of a
// Kyverno policy counts in signet_policy_writes_total.
func CountPolicyWrites(c client.Client) client.Client { return countingClient{c} }

type countingClient struct{ client.Client }

func count(kind, op string, dryRun []string) {
	if len(dryRun) == 0 && (kind == kyverno.ImageValidatingPolicy.Kind || kind == kyverno.ClusterPolicy.Kind) {
		policyWrites.WithLabelValues(kind, op).Inc()
	}
}

func kindOf(obj runtime.Object) string { return obj.GetObjectKind().GroupVersionKind().Kind }

// applyKind is the kind of an apply configuration: typed ones have GetKind() *string, the
// unstructured one (client.ApplyConfigurationFromUnstructured) embeds the object.
func applyKind(obj runtime.ApplyConfiguration) string {
	switch ac := obj.(type) {
	case interface{ GetObjectKind() schema.ObjectKind }:
		return ac.GetObjectKind().GroupVersionKind().Kind
	case interface{ GetKind() *string }:
		if k := ac.GetKind(); k != nil {
			return *k
		}
	}
	return ""
}

func (c countingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	err := c.Client.Create(ctx, obj, opts...)
	if err == nil {
		o := &client.CreateOptions{}
		count(kindOf(obj), "create", o.ApplyOptions(opts).DryRun)
	}
	return err
}

func (c countingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	err := c.Client.Update(ctx, obj, opts...)
	if err == nil {
		o := &client.UpdateOptions{}
		count(kindOf(obj), "update", o.ApplyOptions(opts).DryRun)
	}
	return err
}

func (c countingClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	err := c.Client.Patch(ctx, obj, patch, opts...)
	if err == nil {
		o := &client.PatchOptions{}
		count(kindOf(obj), "patch", o.ApplyOptions(opts).DryRun)
	}
	return err
}

func (c countingClient) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	err := c.Client.Apply(ctx, obj, opts...)
	if err == nil {
		o := &client.ApplyOptions{}
		count(applyKind(obj), "apply", o.ApplyOptions(opts).DryRun)
	}
	return err
}

func (c countingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	err := c.Client.Delete(ctx, obj, opts...)
	if err == nil {
		o := &client.DeleteOptions{}
		count(kindOf(obj), "delete", o.ApplyOptions(opts).DryRun)
	}
	return err
}

// collector computes the gauges from the cached TrustedRegistries and shared policies.
type collector struct {
	reader client.Reader
	clock  clock.PassiveClock
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRegistries, descReady, descKeys, descRetirement, descBlocked, descResults, descAtRisk, descPolicyBytes} {
		ch <- d
	}
}

// scrapeTimeout bounds the cache reads of one scrape (they are in memory; this only
// matters before the cache has synced).
const scrapeTimeout = 5 * time.Second

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	list := &trustv1alpha1.TrustedRegistryList{}
	if err := c.reader.List(ctx, list); err != nil {
		// before the manager's cache has started there is nothing to report yet; a scrape
		// error would fail the whole scrape, controller-runtime's own metrics included
		if notStarted := (*cache.ErrCacheNotStarted)(nil); !errors.As(err, &notStarted) {
			ch <- prometheus.NewInvalidMetric(descRegistries, err)
		}
		return
	}
	for _, m := range registryMetrics(list.Items, c.clock.Now()) {
		ch <- m
	}
	for _, gvk := range []struct{ kind, list string }{
		{kyverno.ImageValidatingPolicy.Kind, "ImageValidatingPolicyList"},
		{kyverno.ClusterPolicy.Kind, "ClusterPolicyList"},
	} {
		gv := kyverno.ImageValidatingPolicy.GroupVersion()
		if gvk.kind == kyverno.ClusterPolicy.Kind {
			gv = kyverno.ClusterPolicy.GroupVersion()
		}
		pl := &unstructured.UnstructuredList{}
		pl.SetGroupVersionKind(gv.WithKind(gvk.list))
		if err := c.reader.List(ctx, pl, client.HasLabels{render.LabelShard}); err != nil {
			// Kyverno (or this engine) is not installed: no policy to measure.
			if !meta.IsNoMatchError(err) {
				ch <- prometheus.NewInvalidMetric(descPolicyBytes, err)
			}
			continue
		}
		for i := range pl.Items {
			p := &pl.Items[i]
			b, err := json.Marshal(p.Object)
			if err != nil {
				continue
			}
			ch <- prometheus.MustNewConstMetric(descPolicyBytes, prometheus.GaugeValue, float64(len(b)), gvk.kind, p.GetName())
		}
	}
}

// registryMetrics derives the per-registry gauges from statuses (pure; unit-tested).
func registryMetrics(items []trustv1alpha1.TrustedRegistry, now time.Time) []prometheus.Metric {
	var out []prometheus.Metric
	type rk struct{ ready, reason string }
	counts := map[rk]int{}
	for i := range items {
		tr := &items[i]
		st := &tr.Status
		ready, reason := "Unknown", "NotObserved"
		if c := meta.FindStatusCondition(st.Conditions, trustv1alpha1.ConditionReady); c != nil {
			ready, reason = string(c.Status), c.Reason
		}
		counts[rk{ready, reason}]++
		v := 0.0
		if ready == "True" && st.ObservedGeneration == tr.Generation {
			v = 1
		}
		out = append(out, prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, v, tr.Name))

		states := map[string]int{string(trustv1alpha1.KeyActive): 0, string(trustv1alpha1.KeyRetiring): 0}
		for _, k := range st.Keys {
			states[string(k.State)]++
			if k.State == trustv1alpha1.KeyRetiring && k.RetiresAt != nil {
				out = append(out, prometheus.MustNewConstMetric(descRetirement, prometheus.GaugeValue,
					k.RetiresAt.Sub(now).Seconds(), tr.Name, k.Name, k.Fingerprint))
			}
		}
		for s, n := range states {
			out = append(out, prometheus.MustNewConstMetric(descKeys, prometheus.GaugeValue, float64(n), tr.Name, s))
		}
		if r := st.Reports; r != nil {
			for res, n := range map[string]int32{"pass": r.Pass, "fail": r.Fail, "warn": r.Warn, "error": r.Error, "skip": r.Skip} {
				out = append(out, prometheus.MustNewConstMetric(descResults, prometheus.GaugeValue, float64(n), tr.Name, res))
			}
			if b := r.Blocked; b != nil {
				out = append(out, prometheus.MustNewConstMetric(descBlocked, prometheus.GaugeValue, float64(b.Count), tr.Name, b.Window))
			}
		}
		atRisk := 0.0
		if p := st.RotationPreview; p != nil {
			atRisk = float64(p.AtRisk)
		}
		out = append(out, prometheus.MustNewConstMetric(descAtRisk, prometheus.GaugeValue, atRisk, tr.Name))
	}
	for k, n := range counts {
		out = append(out, prometheus.MustNewConstMetric(descRegistries, prometheus.GaugeValue, float64(n), k.ready, k.reason))
	}
	return out
}
