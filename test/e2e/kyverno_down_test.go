//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSignetKyvernoDown: while Kyverno's admission controller is down (killed, its webhook
// configurations left as a crashed pod leaves them), a Pod in a namespace a TrustedRegistry
// guards is denied, even with a signed image: the generated policies make Kyverno's
// webhooks fail closed. Once Kyverno is back, the signed Pod is admitted and the unsigned
// one still denied. Both engines.
//
// Not parallel: it takes Kyverno away from every scenario, so it runs while no other
// scenario of the package does (parallel tests start after the sequential ones).
func TestSignetKyvernoDown(t *testing.T) {
	s := newScenario(t, 6*time.Minute)
	key := s.keyPair()
	s.keySecret("kd-key", key)
	type guarded struct {
		ns, kind         string
		signed, unsigned string
	}
	var all []guarded
	for _, e := range signetEngines {
		name := "kd-" + e.short
		s.namespaces(name)
		s.create(s.registry(name, name, e.engine, []string{name}, keyRef("ci", "kd-key")))
		all = append(all, guarded{ns: name, kind: e.kind, signed: s.push(s.reg, name+"/app", key), unsigned: s.push(s.reg, name+"/app")})
	}
	for _, g := range all {
		s.waitReady(g.ns, g.kind)
		s.waitEnforced(newPod(g.ns, "probe", g.unsigned))
		if err := s.createPod(newPod(g.ns, "signed-before", g.signed), true); err != nil {
			t.Fatalf("%s: the signed Pod is denied while Kyverno is up: %v", g.ns, err)
		}
	}

	// The denial while Kyverno is down comes from whichever of its webhooks the apiserver
	// calls first (the mutating one, registered for ClusterPolicy's verifyImages); the
	// ImageValidatingPolicy's own webhook must fail closed too, on its own.
	vwcs, err := s.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(s.ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ivpWebhook := false
	for _, c := range vwcs.Items {
		for _, w := range c.Webhooks {
			if strings.HasPrefix(w.Name, "ivpol.validate.") {
				ivpWebhook = true
				if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail {
					t.Errorf("Kyverno's webhook %s of %s has failurePolicy %v, want Fail", w.Name, c.Name, w.FailurePolicy)
				}
			}
		}
	}
	if !ivpWebhook {
		t.Error("Kyverno registered no ImageValidatingPolicy webhook")
	}

	// Kyverno goes down; whatever happens, it is back for the scenarios after this one.
	s.stack.CrashKyverno()
	down := true
	t.Cleanup(func() {
		if down {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := s.stack.StartKyverno(ctx); err != nil {
				t.Errorf("restarting Kyverno: %v", err)
			}
		}
	})
	for _, g := range all {
		err := s.createPod(newPod(g.ns, "signed-while-down", g.signed), false)
		if err == nil {
			t.Errorf("%s (%s): a Pod was admitted while Kyverno was down", g.ns, g.kind)
			continue
		}
		if !strings.Contains(err.Error(), "failed calling webhook") {
			t.Errorf("%s (%s): denied, but not by the failing webhook: %v", g.ns, g.kind, err)
		}
		t.Logf("%s (%s), Kyverno down: denied: %s", g.ns, g.kind, oneLine(err.Error()))
	}

	// From the restart on, probe the unsigned images (dry run) to measure any window in
	// which the restarted Kyverno admits them.
	restarted := time.Now()
	type window struct {
		admitted int
		last     time.Duration
	}
	windows := make([]window, len(all))
	stopProbe := make(chan struct{})
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		for {
			for i, g := range all {
				if s.createPod(newPod(g.ns, "probe-unsigned", g.unsigned), true) == nil {
					windows[i].admitted++
					windows[i].last = time.Since(restarted)
				}
			}
			select {
			case <-stopProbe:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	if err := s.stack.StartKyverno(s.ctx); err != nil {
		close(stopProbe)
		t.Fatalf("restarting Kyverno: %v", err)
	}
	down = false
	t.Logf("Kyverno ready %v after the restart began", time.Since(restarted).Round(time.Millisecond))
	for _, g := range all {
		s.waitFor(g.ns+": the signed Pod admitted again", func() (bool, error) {
			return s.createPod(newPod(g.ns, "probe-signed", g.signed), true) == nil, nil
		})
		t.Logf("%s (%s): signed Pods admitted %v after the restart began", g.ns, g.kind, time.Since(restarted).Round(time.Millisecond))
		s.waitEnforced(newPod(g.ns, "probe-unsigned", g.unsigned))
	}
	time.Sleep(3 * time.Second) // still denied a while later
	close(stopProbe)
	<-probed
	for i, g := range all {
		if w := windows[i]; w.admitted > 0 {
			// Kyverno's doing, not Signet's: the policy is in place and unchanged throughout.
			t.Logf("FINDING: %s (%s): the restarted Kyverno admitted the unsigned Pod %d times (dry run), the last %v after the restart began",
				g.ns, g.kind, w.admitted, w.last.Round(time.Millisecond))
		} else {
			t.Logf("%s (%s): the unsigned Pod was never admitted across the restart", g.ns, g.kind)
		}
		s.admitted("signed, after Kyverno's restart", newPod(g.ns, "signed-after", g.signed))
		s.denied("unsigned, after Kyverno's restart", newPod(g.ns, "unsigned-after", g.unsigned), signatureDenial(g.kind, g.ns)...)
	}
}
