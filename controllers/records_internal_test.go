package controllers

import (
	"reflect"
	"sort"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
)

func TestRecordShardName(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		n := recordShardName(string(rune('a'+i%26)) + "-team-" + string(rune('a'+i/26)))
		if len(n) != len(recordShardPrefix)+2 || n[:len(recordShardPrefix)] != recordShardPrefix {
			t.Fatalf("shard name %q", n)
		}
		seen[n] = true
	}
	// stable, and spread over (nearly) every shard
	if recordShardName("team-a") != recordShardName("team-a") || len(seen) < recordShards-2 {
		t.Fatalf("%d shards used by 200 registries", len(seen))
	}
}

func liveRegistry(name, uid string, deleting bool) *trustv1alpha1.TrustedRegistry {
	tr := &trustv1alpha1.TrustedRegistry{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(uid)}}
	if deleting {
		now := metav1.Now()
		tr.DeletionTimestamp = &now
	}
	return tr
}

func legacyRecord(name, uid, ring, input string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ringConfigMapName(name), Namespace: "signet-system",
		Labels:          map[string]string{render.LabelManagedBy: managedByValue, render.LabelRegistry: name},
		OwnerReferences: []metav1.OwnerReference{{Kind: "TrustedRegistry", Name: name, UID: types.UID(uid)}}},
		Data: map[string]string{ringDataKey: ring}}
	if input != "" {
		cm.Data[inputDataKey] = input
	}
	return cm
}

// TestPlanRecords: which record each registry has (proposal, then shard entry, then a
// per-registry ConfigMap to migrate; the other way round in the per-registry layout), and
// what the shards hold before and after the policies are written.
func TestPlanRecords(t *testing.T) {
	e := func(uid, ring, input string) string {
		return encodeEntry(shardEntry{UID: types.UID(uid), Ring: ring, Input: input})
	}
	for name, tc := range map[string]struct {
		perRegistry bool
		proposals   map[string]string
		inShard     map[string]string
		legacy      []*corev1.ConfigMap
		registries  []*trustv1alpha1.TrustedRegistry
		wantInput   map[string]string // registry -> input its branch is rendered from
		wantFirst   map[string]string // registry -> entry in the shards before the policies
		wantFinal   map[string]string
		wantMigrate []string
	}{
		"a proposal wins over the shard entry": {
			proposals:  map[string]string{"a": e("ua", "r2", "in2")},
			inShard:    map[string]string{"a": e("ua", "r1", "in1")},
			registries: []*trustv1alpha1.TrustedRegistry{liveRegistry("a", "ua", false)},
			wantInput:  map[string]string{"a": "in2"},
			wantFirst:  map[string]string{"a": e("ua", "r2", "in2")},
			wantFinal:  map[string]string{"a": e("ua", "r2", "in2")},
		},
		"a deleted registry's entry stays until the policies are written": {
			inShard:    map[string]string{"a": e("ua", "r1", "in1"), "gone": e("ug", "r", "ing"), "del": e("ud", "r", "ind")},
			registries: []*trustv1alpha1.TrustedRegistry{liveRegistry("a", "ua", false), liveRegistry("del", "ud", true)},
			wantInput:  map[string]string{"a": "in1"},
			wantFirst:  map[string]string{"a": e("ua", "r1", "in1"), "gone": e("ug", "r", "ing"), "del": e("ud", "r", "ind")},
			wantFinal:  map[string]string{"a": e("ua", "r1", "in1")},
		},
		"a per-registry ConfigMap moves into the shard": {
			legacy:      []*corev1.ConfigMap{legacyRecord("a", "ua", "r1", "in1")},
			registries:  []*trustv1alpha1.TrustedRegistry{liveRegistry("a", "ua", false)},
			wantInput:   map[string]string{"a": "in1"},
			wantFirst:   map[string]string{"a": e("ua", "r1", "in1")},
			wantFinal:   map[string]string{"a": e("ua", "r1", "in1")},
			wantMigrate: []string{ringConfigMapName("a")},
		},
		"the shard entry wins over a leftover ConfigMap, which goes": {
			inShard:     map[string]string{"a": e("ua", "r2", "in2")},
			legacy:      []*corev1.ConfigMap{legacyRecord("a", "ua", "r1", "in1")},
			registries:  []*trustv1alpha1.TrustedRegistry{liveRegistry("a", "ua", false)},
			wantInput:   map[string]string{"a": "in2"},
			wantFirst:   map[string]string{"a": e("ua", "r2", "in2")},
			wantFinal:   map[string]string{"a": e("ua", "r2", "in2")},
			wantMigrate: []string{ringConfigMapName("a")},
		},
		"per-registry layout: its own ConfigMap is the record, the shard entry goes": {
			perRegistry: true,
			inShard:     map[string]string{"a": e("ua", "r1", "in1"), "b": e("ub", "r", "inb")},
			legacy:      []*corev1.ConfigMap{legacyRecord("a", "ua", "r2", "")},
			registries:  []*trustv1alpha1.TrustedRegistry{liveRegistry("a", "ua", false), liveRegistry("b", "ub", false)},
			wantInput:   map[string]string{"a": "", "b": "inb"},
			wantFirst:   map[string]string{"a": e("ua", "r1", "in1"), "b": e("ub", "r", "inb")},
			wantFinal:   map[string]string{"b": e("ub", "r", "inb")},
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := &SharedPolicyReconciler{PerRegistryRecords: tc.perRegistry, proposals: &recordProposals{}}
			for k, v := range tc.proposals {
				ent, _ := decodeEntry(v)
				r.proposals.propose(k, ent)
			}
			src := recordSources{shards: map[string]*corev1.ConfigMap{}, inShard: tc.inShard, legacy: map[string]*corev1.ConfigMap{}}
			if src.inShard == nil {
				src.inShard = map[string]string{}
			}
			for _, cm := range tc.legacy {
				src.legacy[cm.Labels[render.LabelRegistry]] = cm
			}
			existing := map[string]*trustv1alpha1.TrustedRegistry{}
			for _, tr := range tc.registries {
				existing[tr.Name] = tr
			}
			rp := r.planRecords(src, existing)
			gotInput := map[string]string{}
			for k, v := range rp.records {
				gotInput[k] = v.Input
			}
			if !reflect.DeepEqual(gotInput, tc.wantInput) {
				t.Errorf("inputs %v, want %v", gotInput, tc.wantInput)
			}
			flat := func(m map[string]map[string]string) map[string]string {
				out := map[string]string{}
				for shard, entries := range m {
					for k, v := range entries {
						if recordShardName(k) != shard {
							t.Errorf("%s in shard %s", k, shard)
						}
						out[k] = v
					}
				}
				return out
			}
			if got := flat(rp.first); !reflect.DeepEqual(got, tc.wantFirst) {
				t.Errorf("first %v, want %v", got, tc.wantFirst)
			}
			if got := flat(rp.final); !reflect.DeepEqual(got, tc.wantFinal) {
				t.Errorf("final %v, want %v", got, tc.wantFinal)
			}
			var migrated []string
			for _, cm := range rp.migrated {
				migrated = append(migrated, cm.Name)
			}
			if !reflect.DeepEqual(migrated, tc.wantMigrate) {
				t.Errorf("migrated %v, want %v", migrated, tc.wantMigrate)
			}
		})
	}
}

// TestProposalsSettle: a proposal is forgotten once a cached shard holds it, or its
// registry is gone; a newer one stays.
func TestProposalsSettle(t *testing.T) {
	p := &recordProposals{}
	p.propose("a", shardEntry{UID: "ua", Ring: "r1"})
	p.propose("b", shardEntry{UID: "ub", Ring: "r1"})
	p.propose("c", shardEntry{UID: "uc", Ring: "r1"})
	stored := map[string]string{"a": encodeEntry(shardEntry{UID: "ua", Ring: "r1"}), "b": encodeEntry(shardEntry{UID: "ub", Ring: "r0"})}
	p.settle(stored, func(n string) bool { return n != "c" })
	got := p.snapshot()
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if !reflect.DeepEqual(keys, []string{"b"}) {
		t.Fatalf("proposals left: %v, want [b]", keys)
	}
}

// TestShardEventsEnqueueChangedEntries: a shard's watch event reconciles only the
// registries whose entry it added, changed or removed; a shard without Signet's labels
// counts as gone.
func TestShardEventsEnqueueChangedEntries(t *testing.T) {
	shard := func(labels bool, data map[string]string) *corev1.ConfigMap {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: recordShardPrefix + "03", Namespace: "signet-system"}, Data: data}
		if labels {
			cm.Labels = map[string]string{render.LabelManagedBy: managedByValue}
		}
		return cm
	}
	for name, tc := range map[string]struct {
		old, new *corev1.ConfigMap
		want     []string
	}{
		"created":        {new: shard(true, map[string]string{"a": "1", "b": "1"}), want: []string{"a", "b"}},
		"one changed":    {old: shard(true, map[string]string{"a": "1", "b": "1"}), new: shard(true, map[string]string{"a": "2", "b": "1"}), want: []string{"a"}},
		"one removed":    {old: shard(true, map[string]string{"a": "1", "b": "1"}), new: shard(true, map[string]string{"b": "1"}), want: []string{"a"}},
		"labels removed": {old: shard(true, map[string]string{"a": "1", "b": "1"}), new: shard(false, map[string]string{"a": "1", "b": "1"}), want: []string{"a", "b"}},
		"deleted":        {old: shard(true, map[string]string{"a": "1"}), want: []string{"a"}},
		"unchanged":      {old: shard(true, map[string]string{"a": "1"}), new: shard(true, map[string]string{"a": "1"})},
	} {
		t.Run(name, func(t *testing.T) {
			q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
			defer q.ShutDown()
			switch {
			case tc.old == nil:
				enqueueChanged(q, nil, tc.new)
			case tc.new == nil:
				enqueueChanged(q, tc.old, nil)
			default:
				enqueueChanged(q, tc.old, tc.new)
			}
			var got []string
			for q.Len() > 0 {
				item, _ := q.Get()
				got = append(got, item.Name)
				q.Done(item)
			}
			sort.Strings(got)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("enqueued %v, want %v", got, tc.want)
			}
		})
	}
}
