package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
	"github.com/signet-operator/signet/internal/faults"
	"github.com/signet-operator/signet/internal/operator"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/internal/testenv"
)

// ownControlPlane starts a control plane of the test's own (with Kyverno's CRDs and the
// trust namespace): these tests own every shared policy and delete Kyverno's CRDs, which
// the package's shared apiserver must not see.
func ownControlPlane(t *testing.T) (*rest.Config, client.Client) {
	t.Helper()
	needsControlPlane(t)
	cfg, c := testenv.Start(t, testenv.WithKyvernoCRDs())
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: trustNS}}); err != nil {
		t.Fatal(err)
	}
	return cfg, c
}

// startWrapped runs the operator (shared layout, fake clock) with its reconciler's client
// wrapped.
func startWrapped(t *testing.T, cfg *rest.Config, wrap func(client.Client) client.Client) {
	t.Helper()
	mgr, err := operator.New(rest.CopyConfig(cfg), operator.Options{
		TrustNamespace:               trustNS,
		Clock:                        clocktesting.NewFakeClock(t0),
		Workers:                      2,
		Layout:                       controllers.LayoutShared,
		SkipControllerNameValidation: true,
		WrapClient:                   wrap,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}

// faultSeed is $SIGNET_FAULT_SEED (to replay a run) or a new seed.
func faultSeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv("SIGNET_FAULT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SIGNET_FAULT_SEED: %v", err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

// faultRegistry is one TrustedRegistry of the fault test and what the test did to it.
type faultRegistry struct {
	name    string
	engine  trustv1alpha1.Engine
	audit   bool
	keys    []string // every key put in its Secret, in order; the last is current
	images  []string
	deleted bool
}

func (r *faultRegistry) want() faults.Want {
	return faults.Want{Enforce: !r.audit, Restrict: true, Images: r.images, Keys: r.keys}
}

// TestFaultInjection: while 30% of the reconciler's writes (the requests that reach the
// apiserver) and 10% of its cached reads fail (errors, conflicts, timeouts, timeouts after
// the write went through), registries are created, keys rotated,
// Secrets broken and deleted, patterns added and a registry deleted, with both engines in
// the shared layout. Every write of a shared policy is checked against the fail-closed
// invariants (internal/faults): never fewer signers or a foreign one, never broader
// images, never Audit where Enforce is asked, never a registry's branch missing, and
// always exactly the render of recorded inputs. Once faults stop, everything converges:
// registries Ready, key rings as the test's model says, policies equal to the render.
//
// The seed is logged; SIGNET_FAULT_SEED=<seed> replays the same fault and action sequence.
func TestFaultInjection(t *testing.T) {
	seed := faultSeed(t)
	t.Logf("fault seed %d (replay with SIGNET_FAULT_SEED=%d)", seed, seed)
	cfg, c := ownControlPlane(t)
	ctx := context.Background()

	checker := faults.NewChecker()
	// Reported whatever else fails (a violation usually also stops convergence).
	t.Cleanup(func() {
		for _, v := range checker.Violations() {
			t.Errorf("fail-closed invariant broken: %s", v)
		}
	})
	var fc *faults.Client
	startWrapped(t, cfg, func(inner client.Client) client.Client {
		fc = faults.NewClient(&faults.CheckingClient{Client: inner, C: checker}, seed, 0.3, 0.1)
		fc.Enable(true)
		return fc
	})
	rnd := rand.New(rand.NewPCG(seed, ^seed))

	var regs []*faultRegistry
	for i := range 3 {
		regs = append(regs,
			&faultRegistry{name: fmt.Sprintf("flt-i%d", i), engine: trustv1alpha1.EngineImageValidatingPolicy},
			&faultRegistry{name: fmt.Sprintf("flt-c%d", i), engine: trustv1alpha1.EngineClusterPolicy})
	}
	regs = append(regs, &faultRegistry{name: "flt-ia", engine: trustv1alpha1.EngineImageValidatingPolicy, audit: true})

	setSecret := func(r *faultRegistry, data string) {
		s := keySecret(r.name+"-key", map[string]string{"cosign.pub": data})
		if err := c.Update(ctx, s); isNotFound(err) {
			err = c.Create(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range regs {
		r.keys = []string{newKeyPEM(t)}
		r.images = []string{"ghcr.io/" + r.name + "/*"}
		checker.Expect(r.name, r.want())
		if err := c.Create(ctx, keySecret(r.name+"-key", map[string]string{"cosign.pub": r.keys[0]})); err != nil {
			t.Fatal(err)
		}
		tr := registry(r.name, func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Spec.Policy.Engine = r.engine
			if r.audit {
				tr.Spec.Action = trustv1alpha1.ActionAudit
			}
		})
		if err := c.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}

	// Churn under faults: one action every 300ms for ~24s.
	actions := map[string]int{}
	deletedOne := false
	for step := 0; step < 80; step++ {
		time.Sleep(300 * time.Millisecond)
		live := []*faultRegistry{}
		for _, r := range regs {
			if !r.deleted {
				live = append(live, r)
			}
		}
		r := live[rnd.IntN(len(live))]
		switch op := rnd.IntN(10); {
		case op < 3: // rotate: a new key in the Secret
			k := newKeyPEM(t)
			r.keys = append(r.keys, k)
			checker.Expect(r.name, r.want())
			setSecret(r, k)
			actions["rotate"]++
		case op < 5: // break: garbage instead of a PEM key
			setSecret(r, "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n")
			actions["break"]++
		case op < 6: // the Secret goes away
			if err := c.Delete(ctx, keySecret(r.name+"-key", nil)); err != nil && !isNotFound(err) {
				t.Fatal(err)
			}
			actions["delete secret"]++
		case op < 8: // repair with the current key
			setSecret(r, r.keys[len(r.keys)-1])
			actions["repair"]++
		case op < 9: // one more image pattern
			p := fmt.Sprintf("quay.io/%s/app%d", r.name, len(r.images))
			r.images = append(r.images, p)
			checker.Expect(r.name, r.want())
			// (the operator writes status meanwhile: read again on a conflict)
			if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				tr := &trustv1alpha1.TrustedRegistry{}
				if err := c.Get(ctx, client.ObjectKey{Name: r.name}, tr); err != nil {
					return err
				}
				tr.Spec.Images = append(tr.Spec.Images, trustv1alpha1.ImagePattern(p))
				return c.Update(ctx, tr)
			}); err != nil {
				t.Fatal(err)
			}
			actions["add pattern"]++
		default: // delete one registry (once), else nudge the Secret
			if !deletedOne && step > 20 && !r.audit {
				deletedOne, r.deleted = true, true
				checker.Deleted(r.name)
				tr := &trustv1alpha1.TrustedRegistry{}
				tr.Name = r.name
				if err := c.Delete(ctx, tr); err != nil {
					t.Fatal(err)
				}
				actions["delete registry"]++
				continue
			}
			s := &corev1.Secret{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: trustNS, Name: r.name + "-key"}, s); err == nil {
				s.Annotations = map[string]string{"nudge": strconv.Itoa(step)}
				if err := c.Update(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			actions["nudge"]++
		}
	}
	writesUnderFaults, _ := checker.Writes()
	counts, reads, writes := fc.Counts()
	t.Logf("actions: %v", actions)
	t.Logf("faults injected: %d (%v) into %d writes and %d reads of reconciles; policy writes checked under faults: %d",
		fc.Injected(), counts, writes, reads, writesUnderFaults)

	// Faults stop; every Secret gets its current key back.
	fc.Enable(false)
	stopped := time.Now()
	for _, r := range regs {
		if !r.deleted {
			setSecret(r, r.keys[len(r.keys)-1])
		}
	}
	converged := func() error { return faultConverged(ctx, c, regs) }
	var lastErr error
	for deadline := time.Now().Add(90 * time.Second); ; {
		if lastErr = converged(); lastErr == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged %v after the faults stopped: %v", time.Since(stopped).Round(time.Millisecond), lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	convergence := time.Since(stopped)
	total, byKind := checker.Writes()
	t.Logf("converged %v after the faults stopped; policy writes checked: %d (%v), %d of them under faults",
		convergence.Round(time.Millisecond), total, byKind, writesUnderFaults)

	// The checker must have had something to check, in both engines and under faults.
	if byKind["ImageValidatingPolicy"] < 3 || byKind["ClusterPolicy"] < 3 || writesUnderFaults < 10 {
		t.Errorf("too few policy writes checked to mean anything: %v, %d under faults", byKind, writesUnderFaults)
	}
	if fc.Injected() < 100 {
		t.Errorf("only %d faults injected", fc.Injected())
	}
	if actions["rotate"] == 0 || actions["break"] == 0 {
		t.Errorf("the action sequence of this seed rotated or broke nothing: %v", actions)
	}
}

// faultConverged tells what still differs from the converged state: every registry Ready
// for its generation; its key ring's recorded input is its spec with its current key
// active and only keys it was given; the shared policies are exactly the render of those
// inputs (content hash and registries annotations equal, every rendered field present).
func faultConverged(ctx context.Context, c client.Client, regs []*faultRegistry) error {
	var ins []render.Input
	for _, r := range regs {
		tr := &trustv1alpha1.TrustedRegistry{}
		err := c.Get(ctx, client.ObjectKey{Name: r.name}, tr)
		if r.deleted {
			if !isNotFound(err) {
				return fmt.Errorf("%s: deleted, still there (%v)", r.name, err)
			}
			continue
		}
		if err != nil {
			return err
		}
		if got := condition(tr, trustv1alpha1.ConditionReady); got != "True/Ready" || tr.Status.ObservedGeneration != tr.Generation {
			return fmt.Errorf("%s: Ready is %q (observed generation %d of %d)", r.name, got, tr.Status.ObservedGeneration, tr.Generation)
		}
		_, data, err := recordOf(controllers.LayoutShared, r.name).in(c).get()
		if err != nil {
			return err
		}
		var rec struct {
			UID    types.UID                         `json:"uid"`
			Spec   trustv1alpha1.TrustedRegistrySpec `json:"spec"`
			Keys   []render.Key                      `json:"keys"`
			Engine trustv1alpha1.Engine              `json:"engine"`
		}
		if err := json.Unmarshal([]byte(data["policy-input.json"]), &rec); err != nil {
			return fmt.Errorf("%s: recorded input: %v", r.name, err)
		}
		if rec.UID != tr.UID || !equality.Semantic.DeepEqual(rec.Spec, tr.Spec) || rec.Engine != r.engine {
			return fmt.Errorf("%s: the recorded input is not its current spec", r.name)
		}
		given := map[string]bool{}
		for _, k := range r.keys {
			given[strings.TrimSpace(k)] = true
		}
		current := strings.TrimSpace(r.keys[len(r.keys)-1])
		active := 0
		for _, k := range rec.Keys {
			pem := strings.TrimSpace(k.PEM)
			if !given[pem] {
				return fmt.Errorf("%s: its key ring holds a key it was never given", r.name)
			}
			if k.State == trustv1alpha1.KeyActive {
				active++
				if pem != current {
					return fmt.Errorf("%s: an old key is active", r.name)
				}
			}
		}
		if active != 1 {
			return fmt.Errorf("%s: %d active keys, want its current one", r.name, active)
		}
		tr.Spec = rec.Spec
		ins = append(ins, render.Input{Registry: tr, Keys: rec.Keys, Engine: rec.Engine})
	}
	res, err := render.RenderShared(ins)
	if err != nil {
		return err
	}
	want := map[string]*unstructured.Unstructured{}
	for _, p := range res.Policies {
		want[p.GetKind()+"/"+p.GetName()] = p
	}
	for _, gvk := range []struct{ kind, list string }{{"ImageValidatingPolicy", "ImageValidatingPolicyList"}, {"ClusterPolicy", "ClusterPolicyList"}} {
		list := &unstructured.UnstructuredList{}
		g := ivpGVK
		if gvk.kind == "ClusterPolicy" {
			g = cpGVK
		}
		list.SetGroupVersionKind(g.GroupVersion().WithKind(gvk.list))
		if err := c.List(ctx, list); err != nil {
			return err
		}
		for i := range list.Items {
			live := &list.Items[i]
			key := live.GetKind() + "/" + live.GetName()
			w := want[key]
			if w == nil {
				return fmt.Errorf("%s: not in the render", key)
			}
			delete(want, key)
			for _, a := range []string{render.AnnotationHash, render.AnnotationRegistries} {
				if live.GetAnnotations()[a] != w.GetAnnotations()[a] {
					return fmt.Errorf("%s: annotation %s differs from the render", key, a)
				}
			}
			if !specContains(w.Object["spec"], live.Object["spec"]) {
				return fmt.Errorf("%s: spec differs from the render", key)
			}
		}
	}
	if len(want) > 0 {
		keys := make([]string, 0, len(want))
		for k := range want {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return fmt.Errorf("missing policies: %v", keys)
	}
	return nil
}

// specContains tells whether every field of want is in have with the same value (have
// also holds the apiserver's defaults).
func specContains(want, have any) bool {
	w, _ := json.Marshal(want)
	h, _ := json.Marshal(have)
	var wv, hv any
	_ = json.Unmarshal(w, &wv)
	_ = json.Unmarshal(h, &hv)
	return contains(wv, hv)
}

func contains(want, have any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return len(w) == 0
		}
		for k, v := range w {
			if !contains(v, h[k]) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return len(w) == 0 && have == nil
		}
		for i := range w {
			if !contains(w[i], h[i]) {
				return false
			}
		}
		return true
	case nil:
		return true
	}
	return equality.Semantic.DeepEqual(want, have)
}

// TestKyvernoReinstall: Kyverno is uninstalled (its policy CRDs deleted, which deletes
// every policy) and installed again: the shared policies of both engines are back within 10s,
// and the registries are Ready again.
func TestKyvernoReinstall(t *testing.T) {
	cfg, c := ownControlPlane(t)
	ctx := context.Background()
	startWrapped(t, cfg, nil)
	for _, r := range []struct {
		name   string
		engine trustv1alpha1.Engine
	}{{"kr-ivp", trustv1alpha1.EngineImageValidatingPolicy}, {"kr-cpol", trustv1alpha1.EngineClusterPolicy}} {
		if err := c.Create(ctx, keySecret(r.name+"-key", map[string]string{"cosign.pub": newKeyPEM(t)})); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, registry(r.name, func(tr *trustv1alpha1.TrustedRegistry) { tr.Spec.Policy.Engine = r.engine })); err != nil {
			t.Fatal(err)
		}
	}
	policiesBack := func() error {
		for _, p := range []struct {
			c    client.Client
			gvk  string
			name string
			reg  string
		}{{c, "ivp", "signet.ivp.enforce", "kr-ivp"}, {c, "cpol", "signet.cpol.all", "kr-cpol"}} {
			g := ivpGVK
			if p.gvk == "cpol" {
				g = cpGVK
			}
			u, err := getPolicy(c, g, p.name)
			if err != nil {
				return err
			}
			if !strings.Contains(u.GetAnnotations()[render.AnnotationRegistries], `"`+p.reg+`"`) {
				return fmt.Errorf("%s does not hold %s", p.name, p.reg)
			}
		}
		return nil
	}
	ready := func() error {
		for _, n := range []string{"kr-ivp", "kr-cpol"} {
			tr := &trustv1alpha1.TrustedRegistry{}
			if err := c.Get(ctx, client.ObjectKey{Name: n}, tr); err != nil {
				return err
			}
			if got := condition(tr, trustv1alpha1.ConditionReady); got != "True/Ready" {
				return fmt.Errorf("%s Ready is %q", n, got)
			}
		}
		return nil
	}
	eventually(t, 30*time.Second, "the shared policies", policiesBack)
	eventually(t, 30*time.Second, "the registries Ready", ready)

	// Uninstall: the cluster-scoped CRDs of Kyverno's policy groups go (among them both
	// kinds Signet writes), and with them the policies. Each kind is listed first: the
	// apiserver's CRD finalizer fails, and retries only minutes later, when it lists the
	// instances of a CRD whose watch cache is still initialising ("storage is
	// (re)initializing"), as it is for kinds nobody has read since start-up.
	crds := &apiextensionsv1.CustomResourceDefinitionList{}
	if err := c.List(ctx, crds); err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for i := range crds.Items {
		crd := &crds.Items[i]
		if crd.Spec.Scope != apiextensionsv1.ClusterScoped || (crd.Spec.Group != "kyverno.io" && crd.Spec.Group != "policies.kyverno.io") {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if !v.Served {
				continue
			}
			list := &unstructured.UnstructuredList{}
			list.SetAPIVersion(crd.Spec.Group + "/" + v.Name)
			list.SetKind(crd.Spec.Names.ListKind)
			eventually(t, 30*time.Second, "listing "+crd.Name, func() error { return c.List(ctx, list) })
		}
		if err := c.Delete(ctx, crd); err != nil {
			t.Fatal(err)
		}
		deleted = append(deleted, crd.Name)
	}
	eventually(t, 60*time.Second, "Kyverno's CRDs gone", func() error {
		for _, n := range deleted {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKey{Name: n}, crd); !isNotFound(err) {
				return fmt.Errorf("CRD %s still there (%v): finalizers %v, conditions %+v", n, err, crd.Finalizers, crd.Status.Conditions)
			}
		}
		return nil
	})
	eventually(t, 30*time.Second, "the registries to notice", func() error {
		if ready() == nil {
			return fmt.Errorf("still Ready")
		}
		return nil
	})
	// Kyverno stays away long enough for retries to back off.
	time.Sleep(15 * time.Second)

	dirs, err := testenv.KyvernoCRDDirs()
	if err != nil {
		t.Fatal(err)
	}
	reinstalled := time.Now()
	if err := testenv.InstallCRDs(cfg, dirs...); err != nil {
		t.Fatal(err)
	}
	served := time.Since(reinstalled)
	eventually(t, 10*time.Second+served, "the shared policies back within 10s of Kyverno's CRDs being served", policiesBack)
	back := time.Since(reinstalled)
	eventually(t, 30*time.Second, "the registries Ready again", ready)
	t.Logf("CRDs served %v after the reinstall began; policies back %v after it (%v after served); registries Ready %v after it",
		served.Round(time.Millisecond), back.Round(time.Millisecond), (back - served).Round(time.Millisecond), time.Since(reinstalled).Round(time.Millisecond))
}
