package render

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// TestStableChunk: the chunk of a name depends on the name and n only, and going from n to
// n+1 chunks a name stays or moves to the new chunk, about one in n+1 of them.
func TestStableChunk(t *testing.T) {
	// Pinned: a change of the function moves registries between the shared policies of
	// every cluster on upgrade (one status write each). Change these only on purpose.
	pinned := []struct {
		name string
		n    int
		want int
	}{
		{"team-a", 1, 0},
		{"team-a", 2, 0},
		{"team-a", 8, 2},
		{"team-b", 2, 0},
		{"team-b", 8, 5},
		{"payments", 3, 0},
		{"payments", 8, 0},
	}
	for _, c := range pinned {
		if got := stableChunk(c.name, c.n); got != c.want {
			t.Errorf("stableChunk(%q, %d) = %d, want %d", c.name, c.n, got, c.want)
		}
	}
	const names = 8000
	for n := 1; n < 8; n++ {
		count := make([]int, n+1)
		moved := 0
		for i := range names {
			name := fmt.Sprintf("team-%d", i)
			before, after := stableChunk(name, n), stableChunk(name, n+1)
			if before < 0 || before >= n || after < 0 || after > n {
				t.Fatalf("%s: chunk %d of %d, then %d of %d", name, before, n, after, n+1)
			}
			if after != before {
				if after != n {
					t.Fatalf("%s moved from chunk %d to %d going from %d to %d chunks; only moves to the new chunk are allowed", name, before, after, n, n+1)
				}
				moved++
			}
			count[after]++
		}
		// expected share of the new chunk: names/(n+1); allow ±15 % (binomial, 8,000 names)
		want := names / (n + 1)
		if moved < want*85/100 || moved > want*115/100 {
			t.Errorf("%d -> %d chunks: %d of %d names moved, want about %d", n, n+1, moved, names, want)
		}
		for i, c := range count {
			if c < want*85/100 || c > want*115/100 {
				t.Errorf("%d chunks: chunk %d holds %d names, want about %d", n+1, i, c, want)
			}
		}
	}
}

// chunkInputs builds n registries team-<from>… (one key, distinct patterns).
func chunkInputs(t *testing.T, from, n int) []Input {
	t.Helper()
	key := testKey(t, "ci", 1, v1alpha1.KeyActive)
	var ins []Input
	for i := from; i < from+n; i++ {
		name := fmt.Sprintf("team-%d", i)
		tr := registry(name, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Images = patterns(fmt.Sprintf("registry.example.com/team-%d/*", i))
		})
		ins = append(ins, Input{Registry: tr, Keys: []Key{key}, Engine: v1alpha1.EngineImageValidatingPolicy})
	}
	return ins
}

// checkChunks checks that every input is placed exactly once, in the policy its placement
// names, within the budget and under a name Signet's RBAC may write, and that exactly one
// policy hosts the restriction (every test registry restricts).
func checkChunks(t *testing.T, ins []Input, res *SharedPolicies) {
	t.Helper()
	names := SharedPolicyNames(v1alpha1.EngineImageValidatingPolicy)
	where := map[string]string{}
	hosts := 0
	for _, u := range res.Policies {
		if !slices.Contains(names, u.GetName()) {
			t.Errorf("policy %s is not among SharedPolicyNames", u.GetName())
		}
		if u.GetAnnotations()[AnnotationRestriction] != "" {
			hosts++
		}
		entries := map[string]string{}
		if err := json.Unmarshal([]byte(u.GetAnnotations()[AnnotationRegistries]), &entries); err != nil {
			t.Fatal(err)
		}
		if len(entries) == 0 || len(entries) > maxSharedRegistries {
			t.Errorf("%s holds %d registries (at most %d, never none)", u.GetName(), len(entries), maxSharedRegistries)
		}
		if b, _ := json.Marshal(u.Object); len(b) > maxSharedPolicyBytes && len(entries) > 1 {
			t.Errorf("%s: %d bytes, over the budget of %d", u.GetName(), len(b), maxSharedPolicyBytes)
		}
		for name := range entries {
			if prev, ok := where[name]; ok {
				t.Errorf("%s is in %s and %s", name, prev, u.GetName())
			}
			where[name] = u.GetName()
		}
	}
	if hosts != 1 {
		t.Errorf("%d policies host the restriction, want 1", hosts)
	}
	if len(where) != len(ins) || len(res.Placements) != len(ins) {
		t.Errorf("%d inputs, %d placed in policies, %d placements", len(ins), len(where), len(res.Placements))
	}
	for _, in := range ins {
		if p := res.Placements[in.Registry.Name]; p.Policy != where[in.Registry.Name] {
			t.Errorf("%s: placement says %q, the policies say %q", in.Registry.Name, p.Policy, where[in.Registry.Name])
		}
	}
}

// budget sets the size budget of one policy for a test.
func budget(t *testing.T, registries, bytes, policies int) {
	r, b, p := maxSharedRegistries, maxSharedPolicyBytes, maxSharedPolicies
	t.Cleanup(func() { maxSharedRegistries, maxSharedPolicyBytes, maxSharedPolicies = r, b, p })
	maxSharedRegistries, maxSharedPolicyBytes, maxSharedPolicies = registries, bytes, policies
}

// TestSharedChunksStable: registries added to a shard that needs more than one policy
// never move the registries already placed, unless the number of policies changes; then
// only towards the new policy. (Split into even runs, every registry after the first new
// one moved: each move is a status write.)
func TestSharedChunksStable(t *testing.T) {
	cases := []struct {
		name                      string
		registries, bytes, before int
		added                     []int
	}{
		{"by count", 20, 1 << 30, 30, []int{1, 5, 10}},
		{"by size", 1000, 20 << 10, 30, []int{1, 5, 10}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			budget(t, c.registries, c.bytes, 8)
			ins := chunkInputs(t, 0, c.before)
			prev, err := RenderShared(ins)
			if err != nil {
				t.Fatal(err)
			}
			checkChunks(t, ins, prev)
			if len(prev.Policies) < 2 {
				t.Fatalf("%d registries in %d policy: the case must need several", len(ins), len(prev.Policies))
			}
			for _, add := range c.added {
				ins = append(ins, chunkInputs(t, len(ins), add)...)
				res, err := RenderShared(ins)
				if err != nil {
					t.Fatal(err)
				}
				checkChunks(t, ins, res)
				moved := 0
				for name, p := range prev.Placements {
					if q := res.Placements[name]; q.Policy != p.Policy {
						moved++
					}
				}
				// with as many policies, only a registry pushed out of a full policy moves
				// (one at most per registry added to it)
				if len(res.Policies) == len(prev.Policies) && moved > add {
					t.Errorf("+%d registries, still %d policies: %d registries moved", add, len(res.Policies), moved)
				}
				t.Logf("%d registries: %d policies, %d of %d moved", len(ins), len(res.Policies), moved, len(prev.Placements))
				prev = res
			}
		})
	}
}

// TestSharedChunksFull: a policy the hash fills beyond its budget passes registries on to
// the others, so a shard fills every policy Signet may write (8 x 500 per group); one
// registry more is refused.
func TestSharedChunksFull(t *testing.T) {
	budget(t, 10, 1<<30, 3)
	ins := chunkInputs(t, 0, 30)
	res, err := RenderShared(ins)
	if err != nil {
		t.Fatal(err)
	}
	checkChunks(t, ins, res)
	if len(res.Policies) != 3 {
		t.Errorf("%d policies for 30 registries, at most 10 each", len(res.Policies))
	}
	if _, err := RenderShared(chunkInputs(t, 0, 31)); err == nil || !strings.Contains(err.Error(), "do not fit 3 policies") {
		t.Errorf("31 registries in 3 policies of 10: %v", err)
	}
	// fewer policies than the hash would need: 20 registries in 2 of 10
	budget(t, 10, 1<<30, 8)
	ins = chunkInputs(t, 0, 20)
	if res, err = RenderShared(ins); err != nil {
		t.Fatal(err)
	}
	checkChunks(t, ins, res)
	if len(res.Policies) != 2 {
		t.Errorf("%d policies for 20 registries, at most 10 each", len(res.Policies))
	}
}

// TestSharedChunksEmptyFirst: when the first chunk is empty, no empty policy is written
// and the next policy hosts the restriction.
func TestSharedChunksEmptyFirst(t *testing.T) {
	// every policy of two registries is over the size budget: one registry each
	budget(t, 1000, 1, 8)
	// two names that share chunk 1 of 2 and take chunks 1 and 2 of 3
	var picked []string
	for i := 0; len(picked) < 2 && i < 10000; i++ {
		name := fmt.Sprintf("team-%d", i)
		if stableChunk(name, 2) == 1 && stableChunk(name, 3) == 1+len(picked) {
			picked = append(picked, name)
		}
	}
	if len(picked) != 2 {
		t.Fatal("no such names")
	}
	key := testKey(t, "ci", 1, v1alpha1.KeyActive)
	var ins []Input
	for _, name := range picked {
		tr := registry(name, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Images = patterns("registry.example.com/" + name + "/*")
		})
		ins = append(ins, Input{Registry: tr, Keys: []Key{key}, Engine: v1alpha1.EngineImageValidatingPolicy})
	}
	res, err := RenderShared(ins)
	if err != nil {
		t.Fatal(err)
	}
	checkChunks(t, ins, res)
	var got []string
	for _, u := range res.Policies {
		got = append(got, u.GetName())
	}
	if want := []string{"signet.ivp.enforce.2", "signet.ivp.enforce.3"}; !slices.Equal(got, want) {
		t.Errorf("policies %q, want %q", got, want)
	}
	if len(res.Policies) > 0 && res.Policies[0].GetAnnotations()[AnnotationRestriction] != "enforce" {
		t.Errorf("%s does not host the restriction", res.Policies[0].GetName())
	}
}
