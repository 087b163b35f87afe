package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
)

// Key-ring records of the shared layout (docs/fail-closed.md, section 2).
//
// A registry's record (its key ring and its last input that rendered) is one entry of a
// record shard: a ConfigMap signet-keyrings-NN of the trust namespace, one of
// recordShards, chosen by a hash of the registry's name. Only the pass over the shared
// policies writes shards, one write per changed shard per pass, before the policies it
// renders from them: a burst of new registries or the rotation of a key that a thousand
// registries share costs a few ConfigMap writes instead of one per registry
// (docs/performance.md). A TrustedRegistry reconcile proposes its new record in memory
// (recordProposals) and starts the pass; until a shard in the cache holds it, the proposal
// is what that registry reads as its record.
//
// The per-registry layout keeps one ConfigMap per registry (signet-keyring-<name>, written
// by the registry's reconcile): it has no pass to write shards. Switching layout migrates
// them: the shared pass moves a registry's per-registry record into its shard, then
// deletes it; the per-registry layout's records take precedence over shard entries, which
// the pass then drops.

const (
	// recordShards is how many ConfigMaps hold the records: a shard stays well under the
	// 1 MiB object limit for the registries the shared policies can hold
	// (render.SharedPolicyNames: 8 policies of at most 500 registries, ~2 KB a record).
	recordShards      = 16
	recordShardPrefix = render.RecordShardPrefix
	// maxShardBytes refuses a shard the apiserver would refuse (fail closed: the pass
	// stops, every policy stays as it is, and the error says why).
	maxShardBytes = 900 * 1024
)

// RecordShardName is the ConfigMap (of the trust namespace) that holds a registry's
// record in the shared layout.
func RecordShardName(registry string) string { return recordShardName(registry) }

// recordShardName is the shard that holds a registry's record.
func recordShardName(registry string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(registry))
	return fmt.Sprintf("%s%02d", recordShardPrefix, h.Sum32()%recordShards)
}

func isRecordShard(o client.Object) bool {
	return strings.HasPrefix(o.GetName(), recordShardPrefix) && o.GetLabels()[render.LabelManagedBy] == managedByValue
}

// shardEntry is one registry's record in a shard: what a per-registry ConfigMap holds
// (the ring, and the recorded input of the shared layout), with the UID of the registry it
// belongs to (a registry deleted and created again under its name is another registry).
type shardEntry struct {
	UID   types.UID `json:"uid"`
	Ring  string    `json:"ring"`
	Input string    `json:"input,omitempty"`
}

func encodeEntry(e shardEntry) string {
	b, _ := json.Marshal(e) // strings only: cannot fail
	return string(b)
}

func decodeEntry(s string) (shardEntry, error) {
	var e shardEntry
	if err := json.Unmarshal([]byte(s), &e); err != nil {
		return shardEntry{}, err
	}
	return e, nil
}

// recordData is a record in the form of a per-registry ConfigMap's data.
func (e shardEntry) data() map[string]string {
	d := map[string]string{ringDataKey: e.Ring}
	if e.Input != "" {
		d[inputDataKey] = e.Input
	}
	return d
}

// recordProposals holds the records TrustedRegistry reconciles decided on that no shard in
// the cache shows yet, by registry name.
type recordProposals struct {
	mu sync.Mutex
	m  map[string]string // encoded shardEntry
	// trigger starts a pass over the shared policies (nil in unit tests)
	trigger chan event.GenericEvent
}

// propose records a registry's new record and starts the pass.
func (p *recordProposals) propose(registry string, e shardEntry) {
	p.mu.Lock()
	if p.m == nil {
		p.m = map[string]string{}
	}
	p.m[registry] = encodeEntry(e)
	p.mu.Unlock()
	if p.trigger != nil {
		select {
		case p.trigger <- event.GenericEvent{Object: &corev1.ConfigMap{}}:
		default: // a pass is already due
		}
	}
}

// get is the registry's pending record ("" when none).
func (p *recordProposals) get(registry string) string {
	if p == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[registry]
}

func (p *recordProposals) snapshot() map[string]string {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]string, len(p.m))
	for k, v := range p.m {
		out[k] = v
	}
	return out
}

// settle forgets the proposals that the cached shards hold, and those of registries that
// are gone (stored: registry -> entry as cached; exists: whether the registry is live).
func (p *recordProposals) settle(stored map[string]string, exists func(string) bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, v := range p.m {
		if stored[name] == v || !exists(name) {
			delete(p.m, name)
		}
	}
}

func (p *recordProposals) forget(registry string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, registry)
}

// recordSources are the records a pass reads: shard entries and per-registry ConfigMaps
// (with Signet's labels) of the trust namespace, by registry name.
type recordSources struct {
	shards  map[string]*corev1.ConfigMap // by shard name
	inShard map[string]string            // registry -> encoded entry
	legacy  map[string]*corev1.ConfigMap // registry -> its own ConfigMap
}

func readRecordSources(ctx context.Context, c client.Client, ns string) (recordSources, error) {
	// (every ConfigMap of the trust namespace is cached: a shard that lost its labels is
	// still written over, not created again)
	cms := &corev1.ConfigMapList{}
	if err := c.List(ctx, cms, client.InNamespace(ns)); err != nil {
		return recordSources{}, fmt.Errorf("listing key-ring records: %w", err)
	}
	s := recordSources{shards: map[string]*corev1.ConfigMap{}, inShard: map[string]string{}, legacy: map[string]*corev1.ConfigMap{}}
	for i := range cms.Items {
		cm := &cms.Items[i]
		switch {
		case strings.HasPrefix(cm.Name, recordShardPrefix):
			s.shards[cm.Name] = cm
			if !isRecordShard(cm) {
				continue // not read: its registries rebuild their records (recover.go)
			}
			for name, v := range cm.Data {
				// an entry in the wrong shard is not read (nor written back: it goes)
				if recordShardName(name) == cm.Name {
					s.inShard[name] = v
				}
			}
		case strings.HasPrefix(cm.Name, ringConfigMapName("")) && cm.Labels[render.LabelManagedBy] == managedByValue:
			if name := cm.Labels[render.LabelRegistry]; name != "" && cm.Name == ringConfigMapName(name) {
				s.legacy[name] = cm
			}
		}
	}
	return s, nil
}

// legacyEntry is a per-registry ConfigMap's record as a shard entry.
func legacyEntry(cm *corev1.ConfigMap, uid types.UID) string {
	return encodeEntry(shardEntry{UID: uid, Ring: cm.Data[ringDataKey], Input: cm.Data[inputDataKey]})
}

// shardBytes is the size of a shard's entries.
func shardBytes(entries map[string]string) int {
	n := 0
	for k, v := range entries {
		n += len(k) + len(v)
	}
	return n
}

// groupShards splits entries (registry -> encoded entry) by shard.
func groupShards(entries map[string]string) map[string]map[string]string {
	out := map[string]map[string]string{}
	for name, v := range entries {
		s := recordShardName(name)
		if out[s] == nil {
			out[s] = map[string]string{}
		}
		out[s][name] = v
	}
	return out
}

// sameData tells whether a cached shard holds exactly entries.
func sameData(cm *corev1.ConfigMap, entries map[string]string) bool {
	if cm == nil || !isRecordShard(cm) || len(cm.Data) != len(entries) || len(cm.BinaryData) != 0 {
		return false
	}
	for k, v := range entries {
		if cur, ok := cm.Data[k]; !ok || cur != v {
			return false
		}
	}
	return true
}

// shardEventHandler maps a change of a record shard to the registries whose entry it
// added, changed or removed (their reconcile reads its record again and repairs a lost or
// edited one: recover.go); other ConfigMaps go to next.
type shardEventHandler struct {
	next handler.EventHandler
}

func (h shardEventHandler) Create(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if !strings.HasPrefix(e.Object.GetName(), recordShardPrefix) {
		h.next.Create(ctx, e, q)
		return
	}
	enqueueChanged(q, nil, e.Object)
}

func (h shardEventHandler) Update(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if !strings.HasPrefix(e.ObjectNew.GetName(), recordShardPrefix) {
		h.next.Update(ctx, e, q)
		return
	}
	enqueueChanged(q, e.ObjectOld, e.ObjectNew)
}

func (h shardEventHandler) Delete(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if !strings.HasPrefix(e.Object.GetName(), recordShardPrefix) {
		h.next.Delete(ctx, e, q)
		return
	}
	enqueueChanged(q, e.Object, nil)
}

func (h shardEventHandler) Generic(ctx context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.next.Generic(ctx, e, q)
}

// enqueueChanged queues the registries whose entry differs between two versions of a
// shard (nil: absent). A shard that loses its labels is, to Signet, gone.
func enqueueChanged(q workqueue.TypedRateLimitingInterface[reconcile.Request], oldObj, newObj client.Object) {
	data := func(o client.Object) map[string]string {
		cm, ok := o.(*corev1.ConfigMap)
		if !ok || cm == nil || !isRecordShard(cm) {
			return nil
		}
		return cm.Data
	}
	before, after := data(oldObj), data(newObj)
	names := map[string]bool{}
	for k, v := range before {
		if after[k] != v {
			names[k] = true
		}
	}
	for k, v := range after {
		if before[k] != v {
			names[k] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: n}})
	}
}

// recordPlan is what one pass decides about the records.
type recordPlan struct {
	// records is the record each live registry's branch is rendered from, by name.
	records map[string]shardEntry
	// first is every shard's entries to write before the policies: the records above plus
	// the cached entries of registries leaving (deleted, or back to a ConfigMap of their
	// own), which stay as fallbacks until their branches are out; final is without those.
	first, final map[string]map[string]string
	// migrated are per-registry ConfigMaps whose records the shards take over (deleted once
	// the final shards are written).
	migrated []*corev1.ConfigMap
	shards   map[string]*corev1.ConfigMap // as cached
}

// planRecords decides, from the cached records, the proposals and the live registries,
// which record each registry has and what the shards must hold (pure apart from reading
// the proposals, which it also settles).
func (r *SharedPolicyReconciler) planRecords(src recordSources, existing map[string]*trustv1alpha1.TrustedRegistry) recordPlan {
	live := func(name string) bool {
		tr := existing[name]
		return tr != nil && tr.DeletionTimestamp.IsZero()
	}
	r.proposals.settle(src.inShard, live)
	proposals := r.proposals.snapshot()
	rp := recordPlan{records: map[string]shardEntry{}, shards: src.shards}
	desired := map[string]string{}
	for name, tr := range existing {
		if !live(name) {
			continue
		}
		var v string
		if r.PerRegistryRecords {
			// its own ConfigMap, when it has one, is its record; the shard entry goes
			if cm := src.legacy[name]; cm != nil {
				if e, err := decodeEntry(legacyEntry(cm, ownerUID(cm, tr))); err == nil {
					rp.records[name] = e
				}
				continue
			}
			v = src.inShard[name]
		} else {
			switch cm := src.legacy[name]; {
			case proposals[name] != "":
				v = proposals[name]
			case src.inShard[name] != "":
				v = src.inShard[name]
			case cm != nil:
				v = legacyEntry(cm, ownerUID(cm, tr))
			}
			if cm := src.legacy[name]; cm != nil && v != "" {
				rp.migrated = append(rp.migrated, cm)
			}
		}
		if v == "" {
			continue
		}
		desired[name] = v
		if e, err := decodeEntry(v); err == nil {
			rp.records[name] = e
		} else {
			// unreadable: the registry's reconcile rebuilds it (recover.go); the branch
			// keeps the input in force meanwhile
			rp.records[name] = shardEntry{Input: "{unreadable record}"}
		}
	}
	withLeaving := make(map[string]string, len(desired))
	for k, v := range src.inShard {
		withLeaving[k] = v
	}
	for k, v := range desired {
		withLeaving[k] = v
	}
	rp.first, rp.final = groupShards(withLeaving), groupShards(desired)
	sort.Slice(rp.migrated, func(i, j int) bool { return rp.migrated[i].Name < rp.migrated[j].Name })
	return rp
}

// ownerUID is the UID of the registry a per-registry ConfigMap belongs to (its owner
// reference; else the live registry's).
func ownerUID(cm *corev1.ConfigMap, tr *trustv1alpha1.TrustedRegistry) types.UID {
	for _, o := range cm.OwnerReferences {
		if o.Kind == "TrustedRegistry" {
			return o.UID
		}
	}
	return tr.UID
}

// writeShards writes every shard whose cached entries differ from want (deleting those
// that want empty when deleteEmpty), and returns the shards as now stored. The shards are
// independent objects: they are written concurrently (shardWriters at a time), since a
// burst of new registries changes most of them and each write is a round trip on the path
// of every registry's first status (docs/performance.md). Callers still get all or an
// error: a failed write returns only after every write already started has ended.
func (r *SharedPolicyReconciler) writeShards(ctx context.Context, have map[string]*corev1.ConfigMap, want map[string]map[string]string, deleteEmpty bool) (map[string]*corev1.ConfigMap, error) {
	names := map[string]bool{}
	for n := range have {
		names[n] = true
	}
	for n := range want {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	out := make(map[string]*corev1.ConfigMap, len(have))
	for k, v := range have {
		out[k] = v
	}
	var (
		mu sync.Mutex
		g  errgroup.Group
	)
	g.SetLimit(shardWriters)
	// Sizes first: an oversized shard writes (and deletes) nothing at all.
	for _, name := range sorted {
		if entries := want[name]; len(entries) > 0 && !sameData(have[name], entries) {
			if n := shardBytes(entries); n > maxShardBytes {
				return nil, fmt.Errorf("the key-ring records of ConfigMap %s/%s would take %d bytes, more than %d: every shared policy stays as it is", r.TrustNamespace, name, n, maxShardBytes)
			}
		}
	}
	for _, name := range sorted {
		entries, cur := want[name], have[name]
		if len(entries) == 0 {
			if cur == nil || !deleteEmpty {
				continue
			}
			g.Go(func() error {
				if err := r.Client.Delete(ctx, cur, client.Preconditions{ResourceVersion: &cur.ResourceVersion}); client.IgnoreNotFound(err) != nil {
					return fmt.Errorf("deleting the emptied key-ring records %s: %w", name, err)
				}
				mu.Lock()
				delete(out, name)
				mu.Unlock()
				return nil
			})
			continue
		}
		if sameData(cur, entries) {
			continue
		}
		// A full write (not an apply): entries others added or own are replaced too.
		cm := &corev1.ConfigMap{}
		if cur != nil {
			cm = cur.DeepCopy()
		} else {
			cm.Namespace, cm.Name = r.TrustNamespace, name
		}
		if cm.Labels == nil {
			cm.Labels = map[string]string{}
		}
		cm.Labels[render.LabelManagedBy] = managedByValue
		cm.Data, cm.BinaryData = entries, nil
		cm.APIVersion, cm.Kind = "v1", "ConfigMap" // (for wrappers that look at the kind)
		g.Go(func() error {
			var err error
			if cur != nil {
				err = r.Client.Update(ctx, cm, client.FieldOwner(render.FieldOwner))
			} else {
				err = r.Client.Create(ctx, cm, client.FieldOwner(render.FieldOwner))
			}
			if err != nil {
				return fmt.Errorf("writing the key-ring records %s/%s: %w", r.TrustNamespace, name, err)
			}
			mu.Lock()
			out[name] = cm
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// shardWriters is how many shard writes run at once.
const shardWriters = 8

// readRecord reads the registry's record: in the shared layout its proposal, else its
// shard entry, else (not migrated yet) its own ConfigMap; in the per-registry layout its
// own ConfigMap, else (just switched) its shard entry. nil data with why: there is none
// usable (recover.go rebuilds it).
func (r *TrustedRegistryReconciler) readRecord(ctx context.Context, tr *trustv1alpha1.TrustedRegistry) (map[string]string, string, error) {
	fromShard := func() (map[string]string, string, error) {
		raw := ""
		if r.sharedLayout() {
			raw = r.shared.proposals.get(tr.Name)
		}
		if raw == "" {
			shard := &corev1.ConfigMap{}
			switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.TrustNamespace, Name: recordShardName(tr.Name)}, shard); {
			case apierrors.IsNotFound(err):
			case err != nil:
				return nil, "", fmt.Errorf("reading the key-ring records: %w", err)
			case isRecordShard(shard):
				raw = shard.Data[tr.Name]
			}
		}
		if raw == "" {
			return nil, "it was missing (or lost its labels)", nil
		}
		e, err := decodeEntry(raw)
		switch {
		case err != nil:
			return nil, "its entry was unreadable (" + err.Error() + ")", nil
		case e.UID != tr.UID:
			return nil, "its entry is another registry's", nil
		}
		return e.data(), "", nil
	}
	own := func() (map[string]string, string, error) {
		cm := &corev1.ConfigMap{}
		switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.TrustNamespace, Name: ringConfigMapName(tr.Name)}, cm); {
		case apierrors.IsNotFound(err):
			return nil, "it was missing (or lost its labels)", nil
		case err != nil:
			return nil, "", fmt.Errorf("reading the key ring: %w", err)
		case cm.Labels[render.LabelManagedBy] != managedByValue || cm.Labels[render.LabelRegistry] != tr.Name:
			// (the ConfigMap cache holds every ConfigMap of the trust namespace: trust roots
			// need no label) an unlabelled record is not one the shared pass reads
			return nil, "it lost its labels", nil
		}
		return cm.Data, "", nil
	}
	first, second := fromShard, own
	if !r.sharedLayout() {
		first, second = own, fromShard
	}
	data, why, err := first()
	if data != nil || err != nil {
		return data, why, err
	}
	if data2, why2, err := second(); data2 != nil || err != nil {
		return data2, why2, err
	}
	return nil, why, nil
}

// recordLocation names where a registry's record is kept, for messages.
func recordLocation(registry, trustNamespace string, shared bool) string {
	if shared {
		return fmt.Sprintf("key-ring record %s in ConfigMap %s/%s", registry, trustNamespace, recordShardName(registry))
	}
	return fmt.Sprintf("key ring ConfigMap %s/%s", trustNamespace, ringConfigMapName(registry))
}

// proposal is a plan's new record of the shared layout.
type proposal struct {
	registry string
	entry    shardEntry
}

// persist plans writing the ring with input as the registry's record: a proposal to the
// shared pass (shared layout), or its own ConfigMap (per-registry layout).
func (p *plan) persist(registry *trustv1alpha1.TrustedRegistry, trustNamespace, input string, shared bool) {
	if !shared {
		p.persistRing = ringConfigMap(registry, trustNamespace, p.ring, input)
		return
	}
	p.propose = &proposal{registry: registry.Name, entry: shardEntry{UID: registry.UID, Ring: ringText(p.ring), Input: input}}
}
