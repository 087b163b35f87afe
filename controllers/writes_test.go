package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
)

// writeTally sorts the write requests made since a mark into those of the named
// registries: status writes, key-ring ConfigMap writes, finalizer patches, and Events (the
// path of an Event names no object: every Event write counts, so an Event of another
// registry that this manager reconciles on its start can land in the window; the checks
// allow for a few).
type writeTally struct {
	status, rings, shards, finalizers, events, other int
	all                                              []string
}

func tallyWrites(writes []string, prefix string) writeTally {
	var w writeTally
	for _, s := range writes {
		switch {
		case strings.HasSuffix(s, "/status") && strings.Contains(s, "/trustedregistries/"+prefix):
			w.status++
		case strings.Contains(s, "/configmaps/signet-keyring-"+prefix):
			w.rings++
		case strings.Contains(s, "/configmaps/signet-keyrings-") || strings.HasSuffix(s, "/namespaces/"+trustNS+"/configmaps"):
			w.shards++ // (a create names no object: the trust namespace has no other Signet writes)
		case strings.Contains(s, "/trustedregistries/"+prefix):
			w.finalizers++
		case strings.Contains(s, "/events"):
			w.events++
		default:
			w.other++
			continue
		}
		w.all = append(w.all, s)
	}
	return w
}

// waitWritesSettle waits until the manager has written nothing for a second (the event
// recorder sends Events after the reconcile that made them).
func waitWritesSettle(t *testing.T, m *runningManager) {
	t.Helper()
	last, since := m.writes.n.Load(), time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if n := m.writes.n.Load(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > time.Second {
			return
		}
	}
	t.Fatal("the manager kept writing")
}

// waitAllReady waits until every named registry is Ready for its current generation, with
// want keys in status.keys.
func waitAllReady(t *testing.T, names []string, wantKeys int) {
	t.Helper()
	eventually(t, 60*time.Second, "all registries Ready", func() error {
		for _, n := range names {
			tr := getRegistry(t, n)
			if got := condition(tr, trustv1alpha1.ConditionReady); got != "True/Ready" || tr.Status.ObservedGeneration != tr.Generation || len(tr.Status.Keys) != wantKeys {
				return fmt.Errorf("%s: Ready %q, %d keys", n, got, len(tr.Status.Keys))
			}
		}
		return nil
	})
}

// TestConvergenceWrites: new registries converge with one status write each (no
// SharedPolicyPending write before the shared pass places their branches), one finalizer
// patch and no Event (a first convergence is told by the conditions), and their key-ring
// records cost a write per record shard, not per registry (records.go); a rotation of a key
// shared by all of them costs each one status write, plus a write per shard and one
// KeyRetiring Event on the Secret (docs/performance.md).
func TestConvergenceWrites(t *testing.T) {
	const n = 20
	// A loaded machine (CI runs every package at once on 2 cores) can delay the shared pass
	// past the 3 s grace, which adds a (correct) pending status write; this test counts
	// writes, not the pass's latency, so the grace is long here.
	m := startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: controllers.LayoutShared, pendingGrace: 30 * time.Second})
	key := keySecret("cw-key", map[string]string{"cosign.pub": newKeyPEM(t)})
	create(t, key)
	t.Cleanup(func() { _ = sharedClient.Delete(context.Background(), key) })
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("cw-%02d", i)
	}
	time.Sleep(time.Second) // the manager's start (caches, a first discovery) is not measured
	mark := m.writes.n.Load()
	for _, name := range names {
		tr := registry(name)
		tr.Spec.Keys[0].SecretRef.Name = "cw-key"
		create(t, tr)
		t.Cleanup(func() { deleteRegistry(t, name) })
	}
	waitAllReady(t, names, 1)
	waitWritesSettle(t, m)
	_, writes := m.writes.since(mark)
	w := tallyWrites(writes, "cw-")
	t.Logf("convergence of %d registries: %d status, %d key rings, %d record shards, %d finalizers, %d events", n, w.status, w.rings, w.shards, w.finalizers, w.events)
	// (a slow shared pass, past the grace, may make a few registries report pending first)
	// (records: a write per shard and pass, 16 shards; a burst is one or two passes)
	if w.status > n+n/10 || w.rings != 0 || w.shards > 2*16 || w.finalizers > n || w.events > n/10 {
		t.Errorf("convergence of %d registries wrote %d statuses, %d key rings, %d record shards, %d finalizers, %d events; want one status and finalizer per registry, a few shard writes and no Event: %v",
			n, w.status, w.rings, w.shards, w.finalizers, w.events, w.all)
	}

	// Rotate the shared key: every ring changes, one Event each.
	mark = m.writes.n.Load()
	s := &corev1.Secret{}
	if err := sharedClient.Get(context.Background(), client.ObjectKey{Namespace: trustNS, Name: "cw-key"}, s); err != nil {
		t.Fatal(err)
	}
	s.Data["cosign.pub"] = []byte(newKeyPEM(t))
	if err := sharedClient.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	waitAllReady(t, names, 2)
	waitWritesSettle(t, m)
	_, writes = m.writes.since(mark)
	w = tallyWrites(writes, "cw-")
	t.Logf("rotation of a key shared by %d registries: %d status, %d key rings, %d record shards, %d events", n, w.status, w.rings, w.shards, w.events)
	// (one KeyRetiring Event, on the shared Secret; the shards the 20 records are in)
	if w.status > n+n/10 || w.rings != 0 || w.shards > 16 || w.finalizers != 0 || w.events > 1+n/10 {
		t.Errorf("rotation of a key shared by %d registries wrote %d statuses, %d key rings, %d record shards, %d events; want one status per registry, a write per shard, one Event: %v",
			n, w.status, w.rings, w.shards, w.events, w.all)
	}
}
