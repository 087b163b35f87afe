package controllers_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
)

// TestPerRegistryRestrictionKnowsPeers: in the per-registry layout, a registry's policy
// allows the images of the other restricting registries of its namespaces (a union, see
// README.md "Composition"): it is rendered again when another registry comes or goes.
func TestPerRegistryRestrictionKnowsPeers(t *testing.T) {
	startManager(t, managerOpts{clock: clocktesting.NewFakeClock(t0)})
	create(t, keySecret("pr-a-key", map[string]string{"cosign.pub": newKeyPEM(t)}), registry("pr-a"))
	t.Cleanup(func() { deleteRegistry(t, "pr-a"); deleteRegistry(t, "pr-b") })
	waitCondition(t, "pr-a", trustv1alpha1.ConditionReady, "True/Ready")
	hasPeer := func(want bool) func() error {
		return func() error {
			p, err := getPolicy(sharedClient, ivpGVK, "signet-pr-a")
			if err != nil {
				return err
			}
			b, _ := json.Marshal(p.Object["spec"])
			if got := strings.Contains(string(b), "ghcr.io/pr-b/*"); got != want {
				return fmt.Errorf("signet-pr-a names ghcr.io/pr-b/*: %v, want %v", got, want)
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, "pr-a's policy without pr-b", hasPeer(false))
	create(t, keySecret("pr-b-key", map[string]string{"cosign.pub": newKeyPEM(t)}), registry("pr-b"))
	waitCondition(t, "pr-b", trustv1alpha1.ConditionReady, "True/Ready")
	eventually(t, 10*time.Second, "pr-a's policy allowing pr-b's images", hasPeer(true))
	deleteRegistry(t, "pr-b")
	eventually(t, 10*time.Second, "pr-a's policy without pr-b after its deletion", hasPeer(false))
}
