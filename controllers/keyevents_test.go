package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
)

// TestKeyRetiringEventsOnSharedSecret: a key leaving a Secret that several registries use
// is told once, on the Secret (rotating a key that a thousand registries share writes one
// Event, not a thousand: controllers/events.go); a registry with a Secret of its own still
// gets the Event itself. status.keys of each says when the key leaves it.
func TestKeyRetiringEventsOnSharedSecret(t *testing.T) {
	startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: controllers.LayoutShared})
	overlap := func(tr *trustv1alpha1.TrustedRegistry) {
		tr.Spec.Rotation.Overlap = &metav1.Duration{Duration: time.Hour}
	}
	shared := func(tr *trustv1alpha1.TrustedRegistry) { tr.Spec.Keys[0].SecretRef.Name = "ke-shared-key" }
	create(t, keySecret("ke-shared-key", map[string]string{"cosign.pub": newKeyPEM(t)}),
		keySecret("ke-own-key", map[string]string{"cosign.pub": newKeyPEM(t)}),
		registry("ke-a", overlap, shared), registry("ke-b", overlap, shared), registry("ke-own", overlap))
	t.Cleanup(func() { deleteRegistry(t, "ke-a"); deleteRegistry(t, "ke-b"); deleteRegistry(t, "ke-own") })
	for _, n := range []string{"ke-a", "ke-b", "ke-own"} {
		waitCondition(t, n, trustv1alpha1.ConditionReady, "True/Ready")
	}
	updateSecret(t, "ke-shared-key", map[string]string{"cosign.pub": newKeyPEM(t)})
	updateSecret(t, "ke-own-key", map[string]string{"cosign.pub": newKeyPEM(t)})

	retiring := func() (map[string]int, []string) {
		list := &eventsv1.EventList{}
		if err := sharedClient.List(context.Background(), list); err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{}
		var notes []string
		for _, ev := range list.Items {
			if ev.Reason != "KeyRetiring" || !strings.HasPrefix(ev.Regarding.Name, "ke-") {
				continue
			}
			counts[ev.Regarding.Kind+"/"+ev.Regarding.Name]++
			notes = append(notes, ev.Note)
		}
		return counts, notes
	}
	eventually(t, 20*time.Second, "KeyRetiring on the shared Secret and on ke-own", func() error {
		for _, n := range []string{"ke-a", "ke-b", "ke-own"} {
			if s := getRegistry(t, n).Status.KeySummary; s != "1 active, 1 retiring" {
				return fmt.Errorf("%s: keySummary %q", n, s)
			}
		}
		counts, notes := retiring()
		if counts["Secret/ke-shared-key"] != 1 || counts["TrustedRegistry/ke-own"] != 1 {
			return fmt.Errorf("KeyRetiring events: %v %q", counts, notes)
		}
		return nil
	})
	time.Sleep(time.Second) // (the Events of the other registry's reconcile, if any)
	counts, notes := retiring()
	if len(counts) != 2 || counts["Secret/ke-shared-key"] != 1 {
		t.Errorf("KeyRetiring events: %v, want one on Secret ke-shared-key and one on ke-own: %q", counts, notes)
	}
	for _, n := range notes {
		if strings.Contains(n, "ke-shared-key") && !strings.Contains(n, "the 2 TrustedRegistries that use this Secret") {
			t.Errorf("note of the shared Secret's Event: %q", n)
		}
	}
}

// TestRecordShardKeepsOnlySignetEntries: an entry someone adds to a record shard (a
// registry that does not exist, or in the wrong shard) is removed at once, and the
// registry's own entry stays as it was.
func TestRecordShardKeepsOnlySignetEntries(t *testing.T) {
	startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0), layout: controllers.LayoutShared})
	create(t, keySecret("rs-key", map[string]string{"cosign.pub": newKeyPEM(t)}), registry("rs"))
	t.Cleanup(func() { deleteRegistry(t, "rs") })
	waitCondition(t, "rs", trustv1alpha1.ConditionReady, "True/Ready")
	rec := recordOf(controllers.LayoutShared, "rs")
	var before string
	eventually(t, 10*time.Second, "rs's record", func() error {
		cm, _, err := rec.get()
		if err != nil {
			return err
		}
		before = cm.Data["rs"]
		return nil
	})
	rec.update(t, func(cm *corev1.ConfigMap, _ map[string]string) {
		cm.Data["not-a-registry"] = `{"uid":"x","ring":"{}","input":"{}"}`
	})
	eventually(t, 10*time.Second, "the foreign entry removed", func() error {
		cm, _, err := rec.get()
		if err != nil {
			return err
		}
		if _, ok := cm.Data["not-a-registry"]; ok || len(cm.Data) == 0 {
			return fmt.Errorf("entries: %d, foreign one present: %v", len(cm.Data), ok)
		}
		if cm.Data["rs"] != before {
			return fmt.Errorf("rs's entry changed")
		}
		return nil
	})
}
