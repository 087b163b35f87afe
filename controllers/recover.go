package controllers

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/render"
)

// Lost or damaged state, and per-registry isolation (see docs/fail-closed.md).
//
// The key-ring ConfigMap is a record, not the source of truth for enforcement: whatever
// happens to it (deleted, labels removed, data edited), a registry that is enforced stays
// enforced with the same keys. What Signet still has is enough to rebuild it:
//   - status.keys: every key of the ring with its state and retiresAt (no material);
//   - the live policy that enforces the registry: the PEM of every key it accepts, and
//     (shared layout) the registries annotation with the hash of the input of the branch.
//
// A rebuilt input is used only when its render.InputHash equals the hash the live policy
// records for the branch: then it is the very input that was rendered into it, and it
// renders again to the same branch.

// sharedInputs chooses, for every TrustedRegistry, the input its branch is rendered from:
//  1. its recorded input (records.go), when it decodes, belongs to this registry (UID)
//     and renders;
//  2. otherwise the input of its branch in force: the one this process last rendered for
//     it (by the hash in the registries annotation), or one rebuilt from its spec,
//     status.keys and the live policy's keys that has that hash;
//  3. otherwise, if its branch is in force but cannot be reproduced, the pass stops and
//     every shared policy stays as it is (fail closed; see docs/fail-closed.md) — unless
//     the branch is a previous registry's of the same name (deleted and created again).
//
// A registry with no record and no branch in force has nothing to keep (new, or never
// renderable). A registry that cannot render never blocks the others: it keeps the branch
// it has (1 or 2) and the others' changes go through.
func (r *SharedPolicyReconciler) sharedInputs(ctx context.Context, live map[string]*unstructured.Unstructured) ([]render.Input, map[string]*trustv1alpha1.TrustedRegistry, recordPlan, error) {
	src, err := readRecordSources(ctx, r.Client, r.TrustNamespace)
	if err != nil {
		return nil, nil, recordPlan{}, err
	}
	trs := &trustv1alpha1.TrustedRegistryList{}
	if err := r.Client.List(ctx, trs); err != nil {
		return nil, nil, recordPlan{}, fmt.Errorf("listing TrustedRegistries: %w", err)
	}
	existing := make(map[string]*trustv1alpha1.TrustedRegistry, len(trs.Items))
	for i := range trs.Items {
		existing[trs.Items[i].Name] = &trs.Items[i]
	}
	rp := r.planRecords(src, existing)
	inForce := branchesInForce(live)
	byName := make(map[string]*trustv1alpha1.TrustedRegistry, len(trs.Items))
	var ins []render.Input
	for i := range trs.Items {
		tr := &trs.Items[i]
		if !tr.DeletionTimestamp.IsZero() {
			continue // its branch goes
		}
		byName[tr.Name] = tr
		raw := ""
		if e, ok := rp.records[tr.Name]; ok {
			raw = e.Input
		}
		in, ok, err := r.branchInput(ctx, tr, raw, inForce[tr.Name])
		if err != nil {
			return nil, nil, recordPlan{}, err
		}
		if ok {
			ins = append(ins, in)
		}
	}
	return ins, byName, rp, nil
}

func (r *SharedPolicyReconciler) branchInput(ctx context.Context, tr *trustv1alpha1.TrustedRegistry, raw string, pl *sharedPlacement) (render.Input, bool, error) {
	if pl == nil && !controllerutil.ContainsFinalizer(tr, Finalizer) {
		// Not in force yet, and its finalizer is not stored yet (it is written alongside
		// the first key-ring record: finalizer.go): no policy may hold it before, or its
		// branch could outlive it. Its finalizer's watch event brings it in. One in force
		// without it (removed by hand) keeps its branch until its reconcile adds it again.
		return render.Input{}, false, nil
	}
	why := "no recorded input"
	// whether the branch in force under this name can be another registry's: one deleted
	// and created again under the same name (its record names the old UID, or there is no
	// record and this one never had a key ring)
	previousOwner := len(tr.Status.Keys) == 0
	if raw != "" {
		in, err := decodeInput(raw)
		switch {
		case err != nil:
			why = "the recorded input is unreadable: " + err.Error()
			previousOwner = false // in this registry's record: assume its own
		case in.Registry.Name != tr.Name || in.Registry.UID != tr.UID:
			why = "the recorded input is another registry's"
			previousOwner = true
		default:
			previousOwner = false
			if err := r.renders.check(raw, in); err != nil {
				why = "the recorded input does not render: " + err.Error()
			} else {
				return in, true, nil
			}
		}
	}
	if pl == nil {
		return render.Input{}, false, nil
	}
	in, ok := r.rendered.get(tr.UID, pl.entry.hash)
	if !ok {
		in, ok = recoverInput(tr, pl)
		ok = ok && r.renders.check("", in) == nil
	}
	if ok {
		log.FromContext(ctx).Info("a registry's branch is kept as it is in force", "registry", tr.Name, "policy", pl.policy.GetName(), "why", why)
		return in, true, nil
	}
	if previousOwner {
		return render.Input{}, false, nil // a new registry of the same name records its own input
	}
	return render.Input{}, false, fmt.Errorf("TrustedRegistry %s: %s, and the input of its branch in %s %s cannot be rebuilt (status.keys or the spec changed since); every shared policy stays as it is until it records a new input",
		tr.Name, why, pl.policy.GetKind(), pl.policy.GetName())
}

// branchesInForce maps each registry to a live shared policy holding its branch (the
// first by kind and name when it is in two, as while it moves between them).
func branchesInForce(live map[string]*unstructured.Unstructured) map[string]*sharedPlacement {
	keys := make([]string, 0, len(live))
	for k := range live {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := map[string]*sharedPlacement{}
	for _, k := range keys {
		for name, e := range registriesOf(live[k]) {
			if _, ok := out[name]; !ok {
				out[name] = &sharedPlacement{policy: live[k], entry: e}
			}
		}
	}
	return out
}

// recoverInput rebuilds the input of a registry's branch in force from its spec, its
// status.keys and the keys of the policy; ok only when it has the branch's input hash.
func recoverInput(tr *trustv1alpha1.TrustedRegistry, pl *sharedPlacement) (render.Input, bool) {
	ring, err := recoverRing(tr.Status.Keys, pl.policy)
	if err != nil || len(ring.Entries) == 0 {
		return render.Input{}, false
	}
	in := render.Input{Registry: tr, Keys: renderKeys(ring), Engine: engineOfKind(pl.policy.GetKind())}
	h, err := render.InputHash(in)
	return in, err == nil && h == pl.entry.hash
}

func engineOfKind(kind string) trustv1alpha1.Engine {
	for _, e := range []trustv1alpha1.Engine{trustv1alpha1.EngineImageValidatingPolicy, trustv1alpha1.EngineClusterPolicy} {
		if render.GVK(e).Kind == kind {
			return e
		}
	}
	return ""
}

// recoverRing rebuilds a key ring from status.keys, taking each key's material from the
// policies (a key is in status.keys only while the policy accepts it). Keys whose PEM no
// policy holds are left out: the policy does not accept them either.
func recoverRing(status []trustv1alpha1.KeyStatus, policies ...*unstructured.Unstructured) (keys.Ring, error) {
	want := map[string]bool{}
	for _, k := range status {
		want[k.Fingerprint] = true
	}
	pems := map[string]*keys.PublicKey{}
	for _, p := range policies {
		if p == nil {
			continue
		}
		for _, text := range pemBlocks(p.Object["spec"]) {
			// a shared policy holds every registry's keys: parse only the wanted ones
			if block, _ := pem.Decode([]byte(text)); block == nil || !want[keys.Fingerprint(block.Bytes)] {
				continue
			}
			if pk, err := keys.ParsePublicKey([]byte(text)); err == nil {
				pems[pk.Fingerprint] = pk
			}
		}
	}
	entries := make([]keys.Entry, 0, len(status))
	for _, k := range status {
		pk := pems[k.Fingerprint]
		if pk == nil {
			continue
		}
		e := keys.Entry{Name: k.Name, Fingerprint: k.Fingerprint, Algorithm: pk.Algorithm, PEM: pk.PEM, State: k.State}
		if k.RetiresAt != nil {
			t := k.RetiresAt.UTC()
			e.RetiresAt = &t
		}
		entries = append(entries, e)
	}
	// through the record format: the same validation and normal form as a stored ring
	b, err := json.Marshal(map[string]any{"version": keys.RingVersion, "entries": entries})
	if err != nil {
		return keys.Ring{}, err
	}
	return keys.UnmarshalRing(b)
}

// pemBlocks finds the PEM public keys inlined anywhere in a policy spec.
func pemBlocks(v any) []string {
	const begin, end = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for _, x := range t {
				walk(x)
			}
		case []any:
			for _, x := range t {
				walk(x)
			}
		case string:
			for _, chunk := range strings.SplitAfter(t, end) {
				if i := strings.Index(chunk, begin); i >= 0 && strings.HasSuffix(chunk, end) {
					out = append(out, chunk[i:]+"\n")
				}
			}
		}
	}
	walk(v)
	return out
}

// renderedInputs remembers the inputs of the last successful pass over the shared
// policies, by UID and input hash: each rendered then, so each renders again (rendering is
// pure), and the hash in a live policy's registries annotation finds the one in force.
type renderedInputs struct {
	mu sync.Mutex
	m  map[string]render.Input
}

func (c *renderedInputs) remember(ins []render.Input, placements map[string]render.Placement) {
	m := make(map[string]render.Input, len(ins))
	for _, in := range ins {
		if pl, ok := placements[in.Registry.Name]; ok {
			m[string(in.Registry.UID)+"/"+pl.Hash] = in
		}
	}
	c.mu.Lock()
	c.m = m
	c.mu.Unlock()
}

func (c *renderedInputs) get(uid types.UID, hash string) (render.Input, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	in, ok := c.m[string(uid)+"/"+hash]
	return in, ok
}

// renderChecks memoises, by recorded input (the ConfigMap's text), whether it renders as a
// branch of a shared policy on its own: rendering is pure, so the answer never changes,
// and each pass over the shared policies checks every registry.
type renderChecks struct {
	mu sync.Mutex
	m  map[string]error
}

// maxRenderChecks bounds the memo; it is emptied when full (inputs change over time).
const maxRenderChecks = 4096

// check tells whether in renders on its own; key is its recorded text ("": not memoised).
func (c *renderChecks) check(key string, in render.Input) error {
	if key != "" {
		c.mu.Lock()
		err, ok := c.m[key]
		c.mu.Unlock()
		if ok {
			return err
		}
	}
	_, err := render.RenderShared([]render.Input{in})
	if key != "" {
		c.mu.Lock()
		if c.m == nil || len(c.m) >= maxRenderChecks {
			c.m = map[string]error{}
		}
		c.m[key] = err
		c.mu.Unlock()
	}
	return err
}

// eventOnBranches records an Event on every TrustedRegistry with a branch in policy,
// related to the policy as it was edited (see emitEvents).
func (r *SharedPolicyReconciler) eventOnBranches(policy, drifted *unstructured.Unstructured, registries map[string]*trustv1alpha1.TrustedRegistry, note string) {
	if r.Recorder == nil {
		return
	}
	names := make([]string, 0)
	for name := range registriesOf(policy) {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, n := range names {
		if tr := registries[n]; tr != nil {
			r.Recorder.Eventf(tr, drifted, corev1.EventTypeWarning, ReasonDriftReverted, "Revert", "%s", note)
		}
	}
}

// recoverRecord fills in, after the live policies were read, what a missing or damaged
// key-ring record held: the ring (from status.keys and the keys of the policies enforcing
// the registry) and, in the shared layout, the input of the branch in force (the one this
// process rendered, or one rebuilt with the branch's hash). why says what was wrong with
// the record ("" when nothing was). An unusable recorded input that cannot be rebuilt is
// left as it is.
func (r *TrustedRegistryReconciler) recoverRecord(obs *observed, why string, now time.Time) {
	var sources []*unstructured.Unstructured
	for _, l := range obs.live {
		sources = append(sources, l)
	}
	sources = append(sources, obs.legacy...)
	if why == "" {
		// An edited record may lack keys that are still in force: a key status.keys lists
		// as Active, or Retiring until a time to come, whose material the policy holds, is
		// put back (status is written by Signet only, after the record).
		if lacksKeysInForce(obs.registry.Status.Keys, obs.ring, now) {
			if fromStatus, err := recoverRing(obs.registry.Status.Keys, sources...); err == nil {
				obs.ring, obs.restoredKeys = mergeRing(obs.ring, fromStatus, now)
			}
		}
		return
	}
	recovered := false
	if len(obs.ring.Entries) == 0 {
		if ring, err := recoverRing(obs.registry.Status.Keys, sources...); err == nil && len(ring.Entries) > 0 {
			obs.ring, recovered = ring, true
		}
	}
	for _, engine := range []trustv1alpha1.Engine{trustv1alpha1.EngineImageValidatingPolicy, trustv1alpha1.EngineClusterPolicy} {
		sp := obs.shared[engine]
		if sp == nil {
			continue
		}
		in, ok := r.shared.rendered.get(obs.registry.UID, sp.entry.hash)
		if !ok {
			in, ok = recoverInput(obs.registry, sp)
		}
		if !ok {
			continue
		}
		if enc, err := encodeInput(in); err == nil {
			obs.storedInput, recovered = enc, true
			break
		}
	}
	if recovered {
		obs.recordRepair = why
	}
}

// lacksKeysInForce tells whether status.keys lists a key in force at now (Active, or
// Retiring until later) that the ring lacks.
func lacksKeysInForce(status []trustv1alpha1.KeyStatus, ring keys.Ring, now time.Time) bool {
	in := map[[2]string]bool{}
	for _, e := range ring.Entries {
		in[[2]string{e.Name, e.Fingerprint}] = true
	}
	for _, k := range status {
		if in[[2]string{k.Name, k.Fingerprint}] {
			continue
		}
		if k.State == trustv1alpha1.KeyActive || (k.RetiresAt != nil && k.RetiresAt.After(now)) {
			return true
		}
	}
	return false
}

// mergeRing adds to ring the entries of extra it lacks (by name and fingerprint) that are
// still in force at now: Active, or Retiring until later. It returns the names of the keys
// added ("name (fingerprint)").
func mergeRing(ring, extra keys.Ring, now time.Time) (keys.Ring, []string) {
	have := map[[2]string]bool{}
	for _, e := range ring.Entries {
		have[[2]string{e.Name, e.Fingerprint}] = true
	}
	entries := append([]keys.Entry(nil), ring.Entries...)
	var added []string
	for _, e := range extra.Entries {
		if have[[2]string{e.Name, e.Fingerprint}] {
			continue
		}
		if e.State == trustv1alpha1.KeyRetiring && (e.RetiresAt == nil || !e.RetiresAt.After(now)) {
			continue
		}
		entries = append(entries, e)
		added = append(added, e.Name+" ("+e.Fingerprint+")")
	}
	if len(added) == 0 {
		return ring, nil
	}
	b, err := json.Marshal(map[string]any{"version": keys.RingVersion, "entries": entries})
	if err != nil {
		return ring, nil
	}
	merged, err := keys.UnmarshalRing(b)
	if err != nil {
		return ring, nil
	}
	return merged, added
}
