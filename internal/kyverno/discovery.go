// Package kyverno finds out which Kyverno policy and report kinds the apiserver serves.
//
// Kyverno may be installed, upgraded or removed while Signet runs, so the answer is cached
// and invalidated when a Kyverno-related CustomResourceDefinition changes (the controller
// watches CRD metadata and calls Invalidate), and refreshed at most every MaxAge otherwise.
package kyverno

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/utils/clock"
)

// The kinds Signet can generate or read.
var (
	ImageValidatingPolicy = schema.GroupVersionKind{Group: "policies.kyverno.io", Version: "v1", Kind: "ImageValidatingPolicy"}
	ClusterPolicy         = schema.GroupVersionKind{Group: "kyverno.io", Version: "v1", Kind: "ClusterPolicy"}
	PolicyReport          = schema.GroupVersionKind{Group: "wgpolicyk8s.io", Version: "v1alpha2", Kind: "PolicyReport"}
	ClusterPolicyReport   = schema.GroupVersionKind{Group: "wgpolicyk8s.io", Version: "v1alpha2", Kind: "ClusterPolicyReport"}
	OpenReport            = schema.GroupVersionKind{Group: "openreports.io", Version: "v1alpha1", Kind: "Report"}
	OpenClusterReport     = schema.GroupVersionKind{Group: "openreports.io", Version: "v1alpha1", Kind: "ClusterReport"}
)

var known = []schema.GroupVersionKind{
	ImageValidatingPolicy, ClusterPolicy, PolicyReport, ClusterPolicyReport, OpenReport, OpenClusterReport,
}

// IsRelevantCRD tells whether a CRD name belongs to one of the groups above, so that a
// change to it should invalidate the cached answer.
func IsRelevantCRD(name string) bool {
	for _, gvk := range known {
		if strings.HasSuffix(name, "."+gvk.Group) {
			return true
		}
	}
	return false
}

// Served is the set of kinds the apiserver serves.
type Served map[schema.GroupVersionKind]bool

// Has reports whether gvk is served.
func (s Served) Has(gvk schema.GroupVersionKind) bool { return s[gvk] }

// Discovery answers which kinds are served, caching the answer.
type Discovery struct {
	client discovery.DiscoveryInterface
	clock  clock.PassiveClock
	maxAge time.Duration

	mu      sync.Mutex
	served  Served
	fetched time.Time
	valid   bool
	// settleUntil: answers are not cached until then (wall clock). The apiserver publishes
	// a new CRD's kind in discovery a little after the CRD event that invalidated the
	// cache; an answer cached in between would hide the kind until MaxAge passes.
	settleUntil time.Time
	// settledFetch is when the last answer was fetched (wall clock), for settleMaxAge.
	settledFetch time.Time
}

// settle is how long after Invalidate answers are kept only for settleMaxAge.
const settle = 30 * time.Second

// settleMaxAge is how long an answer is kept while a CRD change settles: short enough that
// a kind published late shows within a second, long enough that a burst of reconciles
// costs one discovery per second rather than one per reconcile (docs/performance.md).
const settleMaxAge = time.Second

// DefaultMaxAge bounds how stale the cached answer can be when no CRD event arrives.
const DefaultMaxAge = 5 * time.Minute

// NewDiscovery returns a Discovery over the given client.
func NewDiscovery(c discovery.DiscoveryInterface, clk clock.PassiveClock, maxAge time.Duration) *Discovery {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	return &Discovery{client: c, clock: clk, maxAge: maxAge}
}

// Invalidate forgets the cached answer; the next Served call asks the apiserver.
func (d *Discovery) Invalidate() {
	d.mu.Lock()
	d.valid = false
	d.settleUntil = time.Now().Add(settle)
	d.settledFetch = time.Time{} // the next call asks the apiserver
	d.mu.Unlock()
}

// Served returns the kinds served, from cache when fresh.
func (d *Discovery) Served() (Served, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.valid && d.clock.Since(d.fetched) < d.maxAge {
		return d.served, nil
	}
	if d.served != nil && time.Now().Before(d.settleUntil) && time.Since(d.settledFetch) < settleMaxAge {
		return d.served, nil
	}
	served := Served{}
	groupVersions := map[schema.GroupVersion][]schema.GroupVersionKind{}
	for _, gvk := range known {
		groupVersions[gvk.GroupVersion()] = append(groupVersions[gvk.GroupVersion()], gvk)
	}
	var errs []error
	for gv, kinds := range groupVersions {
		list, err := d.client.ServerResourcesForGroupVersion(gv.String())
		if err != nil {
			if apierrors.IsNotFound(err) {
				continue // group/version not served: Kyverno (or that part of it) is absent
			}
			errs = append(errs, fmt.Errorf("discovering %s: %w", gv, err))
			continue
		}
		for _, r := range list.APIResources {
			if strings.Contains(r.Name, "/") {
				continue // subresource
			}
			for _, gvk := range kinds {
				if r.Kind == gvk.Kind {
					served[gvk] = true
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	d.served, d.fetched, d.valid = served, d.clock.Now(), time.Now().After(d.settleUntil)
	d.settledFetch = time.Now()
	return served, nil
}
