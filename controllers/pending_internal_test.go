package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
)

func TestPendingWaitsHold(t *testing.T) {
	var w pendingWaits
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	if ok, left := w.hold("a", "h1", now, 0); !ok || left != pendingGrace {
		t.Fatalf("first wait: %v %v", ok, left)
	}
	if ok, left := w.hold("a", "h1", now.Add(time.Second), 0); !ok || left != pendingGrace-time.Second {
		t.Fatalf("same input, 1 s later: %v %v", ok, left)
	}
	if ok, _ := w.hold("a", "h1", now.Add(pendingGrace), 0); ok {
		t.Fatal("past the grace the pending status must be written")
	}
	// a new input waits afresh; another registry's wait is its own
	if ok, _ := w.hold("a", "h2", now.Add(pendingGrace), 0); !ok {
		t.Fatal("a new input did not wait")
	}
	if ok, left := w.hold("b", "h1", now.Add(pendingGrace), 0); !ok || left != pendingGrace {
		t.Fatalf("registry b: %v %v", ok, left)
	}
	w.done("a")
	if ok, left := w.hold("a", "h2", now.Add(10*pendingGrace), 0); !ok || left != pendingGrace {
		t.Fatalf("after done: %v %v", ok, left)
	}

	// a configured grace replaces the default
	long := pendingWaits{grace: 10 * pendingGrace}
	if ok, left := long.hold("a", "h1", now, 0); !ok || left != 10*pendingGrace {
		t.Fatalf("configured grace, first wait: %v %v", ok, left)
	}
	if ok, _ := long.hold("a", "h1", now.Add(pendingGrace), 0); !ok {
		t.Fatal("the configured grace was not used")
	}
}

func TestDeferPendingStatus(t *testing.T) {
	engine := trustv1alpha1.EngineImageValidatingPolicy
	placed := func(hash string) *observed {
		obs := &observed{shared: map[trustv1alpha1.Engine]*sharedPlacement{}}
		if hash != "" {
			obs.shared[engine] = &sharedPlacement{policy: &unstructured.Unstructured{}, entry: registryEntry{hash: hash}}
		}
		return obs
	}
	pending := plan{engine: engine, input: &render.Input{}, inputHash: "new"}
	for name, tc := range map[string]struct {
		obs     *observed
		p       plan
		outcome applyOutcome
		want    bool
	}{
		"waiting for the first placement":   {obs: placed(""), p: pending, want: true},
		"previous input in force":           {obs: placed("old"), p: pending, want: true},
		"in force":                          {obs: placed("new"), p: pending},
		"nothing recorded (per-registry)":   {obs: placed(""), p: plan{engine: engine}},
		"the shared pass failed":            {obs: func() *observed { o := placed("old"); o.sharedErr = "too big"; return o }(), p: pending},
		"a write failed":                    {obs: placed("old"), p: pending, outcome: applyOutcome{err: errors.New("boom")}},
		"record rebuilt (its Event is now)": {obs: placed("old"), p: func() plan { p := pending; p.recovered = "rebuilt"; return p }()},
		"legacy policy deleted":             {obs: placed("old"), p: pending, outcome: applyOutcome{deletedOld: "ImageValidatingPolicy signet-a"}},
		"blocked":                           {obs: placed("old"), p: func() plan { p := pending; p.blocked = "X"; return p }()},
	} {
		if got := deferPendingStatus(tc.obs, tc.p, tc.outcome); got != tc.want {
			t.Errorf("%s: defer %v, want %v", name, got, tc.want)
		}
	}
}

func TestRegistriesForPolicyUpdate(t *testing.T) {
	shared := func(registries string, status map[string]any) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		u.SetLabels(map[string]string{render.LabelManagedBy: managedByValue, render.LabelShard: "enforce"})
		u.SetAnnotations(map[string]string{render.AnnotationRegistries: registries})
		if status != nil {
			u.Object["status"] = status
		}
		return u
	}
	names := func(old, new *unstructured.Unstructured) string {
		var out []string
		for _, r := range registriesForPolicyUpdate(context.Background(), old, new) {
			out = append(out, r.Name)
		}
		return strings.Join(out, ",")
	}
	ab := `{"a":"h1 registries[0]","b":"h2 registries[1]"}`
	for name, tc := range map[string]struct {
		old, new *unstructured.Unstructured
		want     string
	}{
		"one registry's input changed":  {shared(ab, nil), shared(`{"a":"h1 registries[0]","b":"h3 registries[1]"}`, nil), "b"},
		"a registry added":              {shared(ab, nil), shared(`{"a":"h1 registries[0]","b":"h2 registries[1]","c":"h4 registries[2]"}`, nil), "c"},
		"a registry removed":            {shared(ab, nil), shared(`{"a":"h1 registries[0]"}`, nil), "b"},
		"a branch moved":                {shared(ab, nil), shared(`{"a":"h1 registries[1]","b":"h2 registries[1]"}`, nil), "a"},
		"nothing of theirs changed":     {shared(ab, nil), shared(ab, nil), ""},
		"Kyverno's status changed: all": {shared(ab, nil), shared(ab, map[string]any{"ready": true}), "a,b"},
	} {
		if got := names(tc.old, tc.new); got != tc.want {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}

// TestPolicyFanoutPriority: the registries whose new input a shared policy's update took
// are taken from controller-runtime's priority queue before registries queued earlier (new
// ones waiting for their finalizer and key ring): their status write follows at once. A
// registry whose branch only moved waits its turn.
func TestPolicyFanoutPriority(t *testing.T) {
	q := priorityqueue.New[reconcile.Request]("fanout-test")
	defer q.ShutDown()
	for _, n := range []string{"new-1", "new-2"} {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: n}})
	}
	shared := func(registries string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		u.SetLabels(map[string]string{render.LabelManagedBy: managedByValue, render.LabelShard: "enforce"})
		u.SetAnnotations(map[string]string{render.AnnotationRegistries: registries})
		return u
	}
	policyFanout{}.Update(context.Background(), event.UpdateEvent{
		ObjectOld: shared(`{"moved":"h1 registries[0]","rotated":"h2 registries[1]"}`),
		ObjectNew: shared(`{"added":"h3 registries[0]","moved":"h1 registries[1]","rotated":"h4 registries[2]"}`),
	}, q)
	// (the queue takes additions in asynchronously)
	for deadline := time.Now().Add(5 * time.Second); q.Len() < 5 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	var got []string
	for q.Len() > 0 {
		item, _, _ := q.GetWithPriority()
		got = append(got, item.Name)
		q.Done(item)
	}
	// (items of one priority leave in the order they came)
	if s := strings.Join(got, ","); s != "added,rotated,new-1,new-2,moved" {
		t.Errorf("dequeued %s, want the registries with a new input first, the moved one last", s)
	}
}
