package main

import (
	"context"
	"errors"
	"fmt"
	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/localstack"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/test/bench/kit"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"reflect"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"slices"
	"strings"
	"time"
)

const pollEvery = 500 * time.Millisecond

// runStep loads N registries of one variant, measures, and unloads them again. A failure
// to load or measure is recorded in the step; only a failure to clean up (the next step
// would measure the wrong thing) is returned.
func (e *env) runStep(ctx context.Context, v variant, n int) (step, error) {
	st := step{Variant: v.ID, Label: v.Label, Kind: v.Kind, ViaSignet: v.Signet, N: n}
	stepCtx, cancel := context.WithTimeout(ctx, e.cfg.StepTimeout)
	err := e.load(stepCtx, v, n, &st)
	if err == nil {
		if !e.cfg.SignetDuringMeasure {
			// Signet's work triggered by the measured Pods (Pod insights: every Pod event
			// enqueues every registry guarding its namespace) would compete with Kyverno
			// for the same cores; in a cluster they run on different nodes.
			e.stopSignet()
		}
		err = e.measure(stepCtx, fmt.Sprintf("%s-n%d", v.ID, n), &st)
	}
	cancel()
	if err == nil {
		e.logf("  median %s, p99 %s (%d errors), Kyverno CPU %s per admission, RSS %.0f MiB",
			ms(st.Latency.MedianMs), ms(st.Latency.P99Ms), st.Latency.Errors, ms(st.KyvernoCPUms), st.KyvernoRSSAfterMiB)
	}
	if err != nil {
		st.Error = oneLine(err.Error(), 600)
	}
	if ctx.Err() != nil {
		return st, ctx.Err()
	}
	if err := e.unload(ctx, v, &st); err != nil {
		return st, fmt.Errorf("cleaning up after %s N=%d: %w", v.ID, n, err)
	}
	return st, nil
}

// baseline measures Pod admissions with no policy at all.
func (e *env) baseline(ctx context.Context, tag string) (step, error) {
	st := step{Variant: "none", Label: "no policy (baseline)", N: 0}
	mctx, cancel := context.WithTimeout(ctx, e.cfg.StepTimeout)
	defer cancel()
	hooks, err := e.kyvernoWebhooks(mctx)
	if err != nil {
		return st, err
	}
	st.Webhooks = hooks
	if err := e.measure(mctx, tag, &st); err != nil {
		st.Error = oneLine(err.Error(), 600)
	}
	if err := e.deletePods(ctx); err != nil {
		return st, err
	}
	return st, nil
}

// load creates N registries (through Signet), N naive policies or the shared policies
// of N registries, and waits until Signet reports all Ready, Kyverno reports every policy
// of the step ready and serves it from its webhook configuration, and the last registry's
// policy is enforced.
func (e *env) load(ctx context.Context, v variant, n int, st *step) error {
	gvr := gvrFor(v.Kind)
	if v.Signet {
		if err := e.startSignet(); err != nil {
			return err
		}
	}
	t0 := time.Now()
	// names are the policies the step waits for: the ones applied (naive, shared), or
	// the ones the registries' status names (Signet; completed below with every policy
	// labelled as Signet's, whatever the layout).
	var names []string
	if v.Signet {
		err := kit.Parallel(ctx, n, applyWorkers, func(ctx context.Context, i int) error {
			return e.cl.Create(ctx, e.trustedRegistry(i, v.Engine))
		})
		if err != nil {
			return fmt.Errorf("creating TrustedRegistries: %w", err)
		}
	} else {
		var objs []*unstructured.Unstructured
		if v.Shared {
			pols, err := e.sharedPolicies(n, v.Engine)
			if err != nil {
				return fmt.Errorf("rendering the shared policies: %w", err)
			}
			for _, p := range pols {
				objs = append(objs, &unstructured.Unstructured{Object: p})
			}
		} else {
			for i := range n {
				obj, err := e.naivePolicy(i, v.Engine)
				if err != nil {
					return fmt.Errorf("rendering policy %d: %w", i, err)
				}
				objs = append(objs, &unstructured.Unstructured{Object: obj})
			}
		}
		for _, o := range objs {
			names = append(names, o.GetName())
		}
		err := kit.Parallel(ctx, len(objs), applyWorkers, func(ctx context.Context, i int) error {
			_, err := e.dyn.Resource(gvr).Create(ctx, objs[i], metav1.CreateOptions{FieldManager: "bench-naive"})
			if err != nil {
				return fmt.Errorf("%s %s: %w", objs[i].GetKind(), objs[i].GetName(), err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("creating policies: %w", err)
		}
	}
	st.CreateSeconds = time.Since(t0).Seconds()
	if v.Signet {
		e.logf("  created %d TrustedRegistries in %.1fs", n, st.CreateSeconds)
	} else {
		e.logf("  created %d %ss for %d registries in %.1fs", len(names), v.Kind, n, st.CreateSeconds)
	}

	if v.Signet {
		var last string
		err := poll(ctx, pollEvery, fmt.Sprintf("%d TrustedRegistries Ready", n), func(ctx context.Context) (bool, error) {
			ready, why, policies, err := e.registriesReady(ctx, v.Kind)
			last = why
			names = policies
			return err == nil && ready == n, err
		})
		if err != nil {
			return fmt.Errorf("%w; %s", err, last)
		}
		st.SignetReadySeconds = time.Since(t0).Seconds()
		e.logf("  all %d TrustedRegistries Ready after %.1fs", n, st.SignetReadySeconds)
	}

	sel := benchLabel + "=true"
	if v.Signet {
		sel = render.LabelManagedBy + "=signet"
	}
	var want []string
	err := poll(ctx, pollEvery, "Kyverno to report every "+v.Kind+" ready and serve it", func(ctx context.Context) (bool, error) {
		list, err := e.dyn.Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false, err
		}
		byName := map[string]*unstructured.Unstructured{}
		for i := range list.Items {
			byName[list.Items[i].GetName()] = &list.Items[i]
		}
		want = slices.Clone(names)
		if v.Signet {
			// Signet's policies, one per registry or shared: whatever it labels as its own
			for name := range byName {
				if !slices.Contains(want, name) {
					want = append(want, name)
				}
			}
		}
		slices.Sort(want)
		st.Policies = len(want)
		if len(want) == 0 {
			return false, fmt.Errorf("no %s labelled %s", v.Kind, sel)
		}
		notReady, why := 0, ""
		for _, name := range want {
			u, ok := byName[name]
			switch {
			case !ok:
				notReady++
				if why == "" {
					why = name + " is missing"
				}
			case !policyReady(u):
				notReady++
				if why == "" {
					why = name + ": " + policyStatus(u)
				}
			}
		}
		if notReady > 0 {
			return false, fmt.Errorf("%d of %d ready; e.g. %s", len(want)-notReady, len(want), why)
		}
		missing, err := e.notInWebhooks(ctx, v.Kind, want)
		if err != nil {
			return false, err
		}
		if len(missing) > 0 {
			return false, fmt.Errorf("all %d ready, %d not in Kyverno's webhooks yet (e.g. %s)", len(want), len(missing), missing[0])
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if len(want) <= 10 {
		st.PolicyNames = want
	}
	st.KyvernoReadySeconds = time.Since(t0).Seconds()
	e.logf("  Kyverno reports all %d %ss ready and in its webhooks after %.1fs", len(want), v.Kind, st.KyvernoReadySeconds)

	// The last policy must deny an unsigned image under its pattern: then the policy is
	// live in admission, not only marked ready. Each probe goes through all N policies.
	img, err := e.unsignedImage(ctx, n-1)
	if err != nil {
		return err
	}
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: guardedNS},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: img}}},
	}
	err = poll(ctx, pollEvery, "the policy of registry "+registryName(n-1)+" to deny an unsigned image", func(ctx context.Context) (bool, error) {
		_, err := e.kube.CoreV1().Pods(guardedNS).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			return false, errors.New("admitted")
		}
		if isTimeout(err) || !strings.Contains(err.Error(), registryName(n-1)) {
			return false, err
		}
		st.ProbeDenial = oneLine(err.Error(), 300)
		return true, nil
	})
	if err != nil {
		return err
	}
	st.EnforcedSeconds = time.Since(t0).Seconds()

	if st.Webhooks, err = e.kyvernoWebhooks(ctx); err != nil {
		return err
	}
	if p := findProc(e.stack.Dir(), "kyverno"); p != 0 {
		st.KyvernoRSSLoadedMiB = rssMiB(p, "VmRSS")
	}
	return e.compareSpecs(ctx, v, n, want, st)
}

// compareSpecs keeps the specs of Signet's live ImageValidatingPolicies (per N, by name)
// and checks that the naive (registries 0 and 1) or shared policies have the same specs as
// their counterparts in Signet's layout: signet-<registry> for naive-<registry>, signet.<x>
// for shared.<x>. When Signet's layout is not the variant's (no counterpart), nothing is
// compared.
func (e *env) compareSpecs(ctx context.Context, v variant, n int, names []string, st *step) error {
	if v.Kind != kindIVP {
		return nil
	}
	if v.Signet {
		list, err := e.dyn.Resource(ivpGVR).List(ctx, metav1.ListOptions{LabelSelector: render.LabelManagedBy + "=signet"})
		if err != nil {
			return err
		}
		specs := map[string]map[string]any{}
		for i := range list.Items {
			spec, _ := list.Items[i].Object["spec"].(map[string]any)
			specs[list.Items[i].GetName()] = spec
		}
		e.signetSpecs[n] = specs
		return nil
	}
	signet, ok := e.signetSpecs[n]
	if !ok {
		return nil
	}
	// name of the bench's policy -> name of Signet's counterpart
	pairs := map[string]string{}
	if v.Shared {
		for _, name := range names {
			pairs[name] = signetNameOfShared(name)
		}
	} else {
		for i := range min(n, 2) {
			pairs["naive-"+registryName(i)] = render.PolicyName(registryName(i))
		}
	}
	if len(pairs) == 0 {
		return nil
	}
	same := true
	for name, counterpart := range pairs {
		want, ok := signet[counterpart]
		if !ok {
			return nil // Signet's layout is another one
		}
		u, err := e.dyn.Resource(ivpGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		spec, _ := u.Object["spec"].(map[string]any)
		same = same && reflect.DeepEqual(want, spec)
	}
	if v.Shared && len(pairs) != countShared(signet) {
		same = false // Signet has more (or fewer) shared policies
	}
	st.SpecsEqualSignet = &same
	return nil
}

func countShared(specs map[string]map[string]any) int {
	c := 0
	for name := range specs {
		if strings.HasPrefix(name, signetSharedPrefix) {
			c++
		}
	}
	return c
}

// registriesReady counts the bench's TrustedRegistries that are Ready for their current
// generation with a policy of the wanted kind, and returns the policies their status
// names (one per registry or shared, whatever Signet's layout).
func (e *env) registriesReady(ctx context.Context, kind string) (int, string, []string, error) {
	list := &trustv1alpha1.TrustedRegistryList{}
	if err := e.cl.List(ctx, list, client.MatchingLabels{benchLabel: "true"}); err != nil {
		return 0, "", nil, err
	}
	ready := 0
	why := ""
	var policies []string
	for i := range list.Items {
		tr := &list.Items[i]
		c := meta.FindStatusCondition(tr.Status.Conditions, trustv1alpha1.ConditionReady)
		if c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == tr.Generation &&
			tr.Status.Policy != nil && tr.Status.Policy.Kind == kind {
			ready++
			if p := tr.Status.Policy.Name; p != "" && !slices.Contains(policies, p) {
				policies = append(policies, p)
			}
		} else if why == "" && c != nil {
			why = fmt.Sprintf("e.g. %s: Ready=%s %s: %s", tr.Name, c.Status, c.Reason, oneLine(c.Message, 200))
		}
	}
	return ready, fmt.Sprintf("%d of %d Ready; %s", ready, len(list.Items), why), policies, nil
}

// policyReady is Kyverno's own readiness of a policy: the Ready condition of a
// ClusterPolicy, status.conditionStatus.ready of a policies.kyverno.io policy.
func policyReady(u *unstructured.Unstructured) bool {
	if u.GetKind() == kindCP {
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Ready" && m["status"] == "True" {
				return true
			}
		}
		return false
	}
	ready, _, _ := unstructured.NestedBool(u.Object, "status", "conditionStatus", "ready")
	return ready
}

// policyStatus summarises why Kyverno does not report a policy ready: the conditions
// that are not True, with their messages.
func policyStatus(u *unstructured.Unstructured) string {
	var conds []any
	if u.GetKind() == kindCP {
		conds, _, _ = unstructured.NestedSlice(u.Object, "status", "conditions")
	} else {
		conds, _, _ = unstructured.NestedSlice(u.Object, "status", "conditionStatus", "conditions")
	}
	var parts []string
	if msg, _, _ := unstructured.NestedString(u.Object, "status", "conditionStatus", "message"); msg != "" {
		parts = append(parts, msg)
	}
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["status"] == "True" {
			continue
		}
		parts = append(parts, fmt.Sprintf("%v=%v %v: %v", m["type"], m["status"], m["reason"], m["message"]))
	}
	if len(parts) == 0 {
		return "no status yet"
	}
	return oneLine(strings.Join(parts, "; "), 400)
}

// measure creates warm-up and measured Pods one after the other and records the latency
// of each CREATE, and the CPU time Kyverno, the apiserver and this process (Signet's
// manager and the client) spent during the measured ones.
func (e *env) measure(ctx context.Context, tag string, st *step) error {
	image := e.signedImage
	create := func(i int) (time.Duration, error) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%03d", tag, i), Namespace: guardedNS},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
		}
		t0 := time.Now()
		_, err := e.kube.CoreV1().Pods(guardedNS).Create(ctx, pod, metav1.CreateOptions{})
		return time.Since(t0), err
	}
	var lat latency
	for i := range e.cfg.Warmup {
		d, err := create(i)
		lat.WarmupMs = append(lat.WarmupMs, msOf(d))
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	kyv, api := findProc(e.stack.Dir(), "kyverno"), findProc(e.stack.Dir(), "kube-apiserver")
	cpu0 := [3]float64{procCPUSeconds(kyv), procCPUSeconds(api), selfCPUSeconds()}
	rec0 := signetReconciles()
	t0 := time.Now()
	consecutive := 0
	for i := range e.cfg.Requests {
		d, err := create(e.cfg.Warmup + i)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		lat.SamplesMs = append(lat.SamplesMs, msOf(d))
		if err == nil {
			consecutive = 0
			continue
		}
		lat.Errors++
		consecutive++
		if isTimeout(err) || d >= webhookTimeout {
			lat.Timeouts++
		}
		if lat.FirstError == "" {
			lat.FirstError = oneLine(err.Error(), 400)
		}
		if consecutive >= 5 {
			lat.Aborted = true
			break
		}
	}
	wall := time.Since(t0)
	lat.summarize()
	st.Latency = lat
	cnt := float64(len(lat.SamplesMs))
	cpu1 := [3]float64{procCPUSeconds(kyv), procCPUSeconds(api), selfCPUSeconds()}
	st.KyvernoCPUms = 1000 * (cpu1[0] - cpu0[0]) / cnt
	st.APIServerCPUms = 1000 * (cpu1[1] - cpu0[1]) / cnt
	st.BenchProcessCPUms = 1000 * (cpu1[2] - cpu0[2]) / cnt
	st.MeasureSeconds = wall.Seconds()
	st.SignetReconciles = signetReconciles() - rec0
	if kyv != 0 {
		st.KyvernoRSSAfterMiB = rssMiB(kyv, "VmRSS")
		st.KyvernoPeakRSSMiB = rssMiB(kyv, "VmHWM")
	}
	if lat.Aborted {
		return fmt.Errorf("%d requests failed in a row: %s", consecutive, lat.FirstError)
	}
	return nil
}

// unload deletes what the step created, the Pods and Kyverno's admission reports, waits
// until Kyverno's webhooks are back to their 0-policy state and restarts Kyverno.
func (e *env) unload(ctx context.Context, v variant, st *step) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	t0 := time.Now()
	gvr := gvrFor(v.Kind)
	if v.Signet {
		if err := e.cl.DeleteAllOf(ctx, &trustv1alpha1.TrustedRegistry{}, client.MatchingLabels{benchLabel: "true"}); err != nil {
			return err
		}
	}
	if err := e.deletePods(ctx); err != nil {
		return err
	}
	// Signet's policies and key rings would go with their TrustedRegistries (garbage
	// collection); deleting them directly is faster. Repeat until all are gone: a
	// reconcile in flight when its registry was deleted may write once more.
	sel := benchLabel + "=true"
	if v.Signet {
		sel = render.LabelManagedBy + "=signet"
	}
	err := poll(ctx, pollEvery, "the step's objects to be deleted", func(ctx context.Context) (bool, error) {
		left := 0
		if v.Signet {
			trs := &trustv1alpha1.TrustedRegistryList{}
			if err := e.cl.List(ctx, trs, client.MatchingLabels{benchLabel: "true"}); err != nil {
				return false, err
			}
			left += len(trs.Items)
			for i := range trs.Items {
				// Signet is stopped: release its cleanup finalizer (its policies and key
				// rings are deleted here directly)
				if tr := &trs.Items[i]; len(tr.Finalizers) > 0 {
					patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))
					if err := e.cl.Patch(ctx, tr, patch); client.IgnoreNotFound(err) != nil {
						return false, err
					}
				}
			}
			cms, err := e.kube.CoreV1().ConfigMaps(trustNS).List(ctx, metav1.ListOptions{LabelSelector: sel})
			if err != nil {
				return false, err
			}
			left += len(cms.Items)
			if len(cms.Items) > 0 {
				if err := e.kube.CoreV1().ConfigMaps(trustNS).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: sel}); err != nil {
					return false, err
				}
			}
		}
		pols, err := e.dyn.Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false, err
		}
		left += len(pols.Items)
		if len(pols.Items) > 0 {
			if err := e.dyn.Resource(gvr).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: sel}); err != nil {
				return false, err
			}
		}
		return left == 0, fmt.Errorf("%d objects left", left)
	})
	if err != nil {
		return err
	}
	// Kyverno has unloaded the policies when its webhooks are those it had with none.
	err = poll(ctx, pollEvery, "Kyverno to remove the policies from its webhooks", func(ctx context.Context) (bool, error) {
		hooks, err := e.kyvernoWebhooks(ctx)
		if err != nil {
			return false, err
		}
		return slices.Equal(sortedCopy(hooks), sortedCopy(e.baseHooks)), fmt.Errorf("webhooks %v", hooks)
	})
	if err != nil {
		return err
	}
	st.UnloadSeconds = time.Since(t0).Seconds()
	if e.cfg.Restart {
		t1 := time.Now()
		if err := e.stack.RestartKyverno(ctx); err != nil {
			return err
		}
		st.RestartSeconds = time.Since(t1).Seconds()
	}
	e.logf("  unloaded in %.1fs, Kyverno restarted in %.1fs", st.UnloadSeconds, st.RestartSeconds)
	return nil
}

func (e *env) deletePods(ctx context.Context) error {
	if err := e.kube.CoreV1().Pods(guardedNS).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		return fmt.Errorf("deleting the measured Pods: %w", err)
	}
	// Kyverno writes an admission report per admitted Pod; nothing aggregates them here.
	err := e.dyn.Resource(ephGVR).Namespace(guardedNS).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		e.logf("  deleting admission reports: %v", err)
	}
	return nil
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// signetReconciles is the number of reconciles Signet's controller has done so far.
func signetReconciles() float64 {
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return 0
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "trustedregistry" {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

// kyvernoVersion is the module version of the kyverno binary the stack runs.
func kyvernoVersion(s *localstack.Stack) string {
	return binaryModuleVersion(strings.TrimSuffix(s.KyvernoCLIPath(), "-cli"))
}
