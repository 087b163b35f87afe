package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// Shared layout: every TrustedRegistry becomes a branch of a small, fixed set of shared
// policies instead of a policy of its own.
//
// Why: Kyverno 1.19 spends ~7–10 ms on every Pod admission for every ImageValidatingPolicy
// that matches the namespace, whatever the policy contains (it converts the request,
// object and old object for each policy and evaluates each policy on its own). With one
// policy per TrustedRegistry, 300 registries cost seconds per Pod (README.md, "Policy
// layout"; docs/architecture.md, "The shared layout"). The shared layout renders at most
// three ImageValidatingPolicies (Enforce, Enforce with digest pinning, Audit: the settings
// Kyverno only has per policy) or one ClusterPolicy, split only when one would exceed the
// object size budget.
//
// ImageValidatingPolicy: the policy is data plus a few fixed expressions (celdata.go,
// shared_ivp.go).
//   - variables.registries lists the branches: one line per TrustedRegistry and literal
//     directory prefix of its patterns (prefix, number, image regular expression, the
//     tails of its digest and signature messages, its signers' attestor names);
//     attestors are named after their content (key fingerprint, keyless identity hash,
//     transparency-log switch), so one key trusted by many registries is one attestor
//     and one cached verification;
//   - variables.guarded names the branches for the request's namespace, found with one
//     lookup in a namespace index literal (label-selector branches add themselves with a
//     per-branch namespaceObject test): the digest and signature validations only look at
//     those, so a Pod pays for the registries that guard its namespace;
//   - matchImageReferences selects every image that has the literal directory prefix of
//     some branch's patterns; an image's canonical form is tested only against the
//     regular expressions of the guarding branches whose prefix it has, which gives
//     variables.matched, one entry per image and branch that checks it. Each image's
//     canonical form is computed once (variables.canonicalImages), for the branches and
//     the hosted restriction.
//
// Kyverno 1.19 compiles the whole policy on every admission request, and its type
// checker's work grows with each expression's operators and comprehensions and with the
// number of variables: the expressions are kept few and short, data stays in string
// literals (test/bench/kyvernocompile measures what each expression costs).
//
// ClusterPolicy: one policy with two rules per registry (verify.<name>, allow.<name>); the
// per-rule failureAction and mutateDigest keep every registry's settings. Kyverno skips a
// rule whose match does not select the namespace before any image work.

const (
	// AnnotationRegistries lists, as JSON {registry: "<input hash> <branch>"}, the branches
	// a shared policy holds, so each TrustedRegistry can tell that its current spec and
	// keys are in force, and where.
	AnnotationRegistries = "trust.signet.dev/registries"
	// LabelShard marks a shared policy with its group (enforce, enforce-pin, audit, all).
	LabelShard = "trust.signet.dev/shard"
	// AnnotationRestriction marks the shared policy that hosts a registry restriction
	// ("enforce", "audit" or "audit,enforce"; see hostGroups). It holds the restriction
	// data of registries whose branches are in other policies, so it is written after the
	// policies that gain branches and before those that lose some.
	AnnotationRestriction = "trust.signet.dev/restriction"

	sharedPrefix = "signet."

	// ClusterPolicy rule name prefixes (rule names are at most 63 characters; registry
	// names at most 56).
	cpSharedVerifyPrefix = "verify."
	// cpSharedLegacyRestrictPrefix named a registry's own host-spelling rule before the
	// shared policy had one for all (reports written then still carry it).
	cpSharedLegacyRestrictPrefix = "allow."
)

// Shared ImageValidatingPolicy variable names.
const (
	shVarRegistries = "registries"
	shVarGuarded    = "guarded"
	shVarMatched    = "matched"
	shVarCanonical  = "canonicalImages"
	shVarUndigested = "undigested"
	shVarUnsigned   = "unsigned"
)

// Placement tells where a registry is enforced in the shared layout.
type Placement struct {
	// Kind and Policy name the shared policy.
	Kind   string
	Policy string
	// Branch says which part of the policy is the registry's, for status.
	Branch string
	// Hash is InputHash of the input the policy was rendered from.
	Hash string
}

// SharedPolicies is the result of RenderShared.
type SharedPolicies struct {
	// Policies in a stable order (kind, then name).
	Policies []*unstructured.Unstructured
	// Placements by registry name.
	Placements map[string]Placement
}

// IsSharedPolicyName tells whether name is the name of a shared policy.
func IsSharedPolicyName(name string) bool { return strings.HasPrefix(name, sharedPrefix) }

// InputHash is a short stable digest of everything a branch is rendered from: registry
// name and UID, spec, keys and engine.
func InputHash(in Input) (string, error) {
	if in.Registry == nil {
		return "", errors.New("render: nil TrustedRegistry")
	}
	keys := append([]Key(nil), in.Keys...)
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Fingerprint != keys[j].Fingerprint {
			return keys[i].Fingerprint < keys[j].Fingerprint
		}
		return keys[i].Name < keys[j].Name
	})
	b, err := json.Marshal(struct {
		Name       string                       `json:"name"`
		UID        string                       `json:"uid"`
		Spec       v1alpha1.TrustedRegistrySpec `json:"spec"`
		Keys       []Key                        `json:"keys"`
		Engine     v1alpha1.Engine              `json:"engine"`
		TrustRoots *TrustRoots                  `json:"trustRoots,omitempty"`
	}{in.Registry.Name, string(in.Registry.UID), in.Registry.Spec, keys, in.Engine, in.TrustRoots})
	if err != nil {
		return "", fmt.Errorf("render: hashing input: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16], nil
}

// CheckShared tells whether in can be a branch of a shared policy: the same checks as
// Render, without rendering anything.
func CheckShared(in Input) error {
	if in.Engine != v1alpha1.EngineImageValidatingPolicy && in.Engine != v1alpha1.EngineClusterPolicy {
		return fmt.Errorf("render: engine %q is not a resolved policy kind", in.Engine)
	}
	_, err := resolve(in)
	return err
}

type branch struct {
	in   Input
	s    *settings
	hash string
}

type shardKey struct {
	engine v1alpha1.Engine
	group  string
}

// The size budget of one shared policy (variables for tests).
var (
	// maxSharedPolicyBytes bounds the JSON size of one shared policy (etcd's default
	// request limit is 1.5 MiB; Kyverno and the apiserver add status and managed fields).
	maxSharedPolicyBytes = 800 * 1024
	// maxSharedRegistries bounds the registries of one shared policy, which keeps the
	// registries annotation well under the 256 KiB annotation limit and each generated map
	// literal (prefixes, namespaces) under the CEL parsers' expression size limit.
	maxSharedRegistries = 500
)

// maxSharedPolicies bounds the policies of one group (named <group>, <group>.2, …):
// Signet's RBAC may write only the shared policies' names (SharedPolicyNames), which must
// be a fixed list. 8 policies of up to 500 registries each is 4,000 registries per group;
// a group that needs more is refused (the last good policies stay). A variable for tests.
var maxSharedPolicies = 8

// sharedGroups are the groups of each engine (see groupOf).
var sharedGroups = map[string][]string{"ivp": {"audit", "enforce", "enforce-pin"}, "cpol": {"all"}}

// SharedPolicyNames lists every name a shared policy of the given kind
// (ImageValidatingPolicy or ClusterPolicy) can have: the resourceNames of Signet's RBAC
// for writing policies (the markers in controllers/trustedregistry_controller.go, checked
// by test/packaging).
func SharedPolicyNames(engine v1alpha1.Engine) []string {
	tag := engineTag(engine)
	var out []string
	for _, g := range sharedGroups[tag] {
		for i := 1; i <= maxSharedPolicies; i++ {
			out = append(out, sharedPolicyName(tag, g, i))
		}
	}
	return out
}

// sharedPolicyName names the i-th (from 1) policy of a group.
func sharedPolicyName(tag, group string, i int) string {
	name := sharedPrefix + tag + "." + group
	if i > 1 {
		name += "." + strconv.Itoa(i)
	}
	return name
}

func groupOf(engine v1alpha1.Engine, s *settings) string {
	if engine == v1alpha1.EngineClusterPolicy {
		return "all"
	}
	switch {
	case !s.enforce:
		return "audit"
	case s.mutateDig:
		return "enforce-pin"
	}
	return "enforce"
}

func engineTag(e v1alpha1.Engine) string {
	if e == v1alpha1.EngineClusterPolicy {
		return "cpol"
	}
	return "ivp"
}

// RenderShared renders the shared policies for a set of registries (each as Render would
// take it). It is pure and deterministic: the result does not depend on the order of ins.
// Any input that Render would refuse makes it fail, naming the registry: a shared policy
// is never rendered without a registry that asked to be in it.
func RenderShared(ins []Input) (*SharedPolicies, error) { //nolint:revive // the pair Render / RenderShared reads better than Shared
	return RenderSharedKeeping(ins, nil)
}

// RenderSharedKeeping is RenderShared that keeps each registry in the policy previous
// names for it (registry name -> policy name, as the live policies' registries annotations
// say) while that policy has room: as a burst of registries makes a group grow past one
// policy, the registries already placed stay where they are and only new ones spread, so
// no status is rewritten for a move (status names the policy). The output depends on
// previous only in which policy of its group each registry's branch is.
func RenderSharedKeeping(ins []Input, previous map[string]string) (*SharedPolicies, error) {
	byKey := map[shardKey][]*branch{}
	seen := map[string]bool{}
	for _, in := range ins {
		if in.Registry == nil {
			return nil, errors.New("render: nil TrustedRegistry")
		}
		if seen[in.Registry.Name] {
			return nil, fmt.Errorf("render: TrustedRegistry %q is given twice", in.Registry.Name)
		}
		seen[in.Registry.Name] = true
		if err := CheckShared(in); err != nil {
			return nil, fmt.Errorf("TrustedRegistry %s: %w", in.Registry.Name, err)
		}
		s, _ := resolve(in)
		for _, p := range s.patterns.raw {
			if strings.ContainsAny(p, ";\n") {
				return nil, fmt.Errorf("TrustedRegistry %s: %w", in.Registry.Name, invalidf("image pattern %q contains ';' or a line break", p))
			}
		}
		h, err := InputHash(in)
		if err != nil {
			return nil, err
		}
		k := shardKey{engine: in.Engine, group: groupOf(in.Engine, s)}
		byKey[k] = append(byKey[k], &branch{in: in, s: s, hash: h})
	}
	keys := make([]shardKey, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].engine != keys[j].engine {
			return keys[i].engine < keys[j].engine
		}
		return keys[i].group < keys[j].group
	})
	var all []*settings
	for _, k := range keys {
		for _, b := range byKey[k] {
			all = append(all, b.s)
		}
	}
	hosts := hostGroups(byKey, all)
	out := &SharedPolicies{Placements: map[string]Placement{}}
	for _, k := range keys {
		bs := byKey[k]
		sort.Slice(bs, func(i, j int) bool { return bs[i].s.name < bs[j].s.name })
		policies, err := renderChunks(k, bs, out.Placements, hosts[k], previous)
		if err != nil {
			return nil, err
		}
		out.Policies = append(out.Policies, policies...)
	}
	return out, nil
}

// hosted are the registry restrictions a shard's first policy evaluates.
type hosted struct {
	enforce, audit *restriction
}

// hostGroups picks, per engine, the shard whose first policy evaluates each registry
// restriction (restrict.go). A restriction is the union over ALL restricting registries
// of the cluster (both engines: a ClusterPolicy registry's images are verified by its own
// rules), so it must be evaluated in one place per engine, with the data of every
// registry, where a restricting registry of that engine guards the namespace:
//   - ImageValidatingPolicy: the Enforce restriction in enforce when it exists, else in
//     enforce-pin; the Audit restriction in audit. Only a policy of the same validation
//     action can deny, or only report. The host matches every restricted namespace and its
//     image references are namespace-blind, so a pinning host would pin the tags of a
//     registry that asked for tags to be denied (digest: {mutate: false}) wherever an
//     image also has a pinning registry's prefix: the non-pinning policy hosts when there
//     is one (with only pinning Enforce registries, pinning is what every one asked).
//   - ClusterPolicy: both in the one policy (failureAction is per rule).
//
// The restriction is never split across chunks or groups: evaluating a part of it in
// each policy would intersect the parts again.
func hostGroups(byKey map[shardKey][]*branch, all []*settings) map[shardKey]hosted {
	enf, aud := restrictionsOf(all)
	out := map[shardKey]hosted{}
	ivp := func(g string) shardKey { return shardKey{engine: v1alpha1.EngineImageValidatingPolicy, group: g} }
	cp := shardKey{engine: v1alpha1.EngineClusterPolicy, group: "all"}
	// a host only where its engine has a registry the restriction applies for
	applies := func(r *restriction) *restriction {
		if r == nil || len(r.appliesTo()) == 0 {
			return nil
		}
		return r
	}
	cpEnf := applies(enf.forEngine(v1alpha1.EngineClusterPolicy))
	cpAud := applies(aud.forEngine(v1alpha1.EngineClusterPolicy))
	if _, ok := byKey[cp]; ok && (cpEnf != nil || cpAud != nil) {
		out[cp] = hosted{enforce: cpEnf, audit: cpAud}
	}
	if r := applies(enf.forEngine(v1alpha1.EngineImageValidatingPolicy)); r != nil {
		for _, g := range []string{"enforce", "enforce-pin"} {
			if _, ok := byKey[ivp(g)]; ok {
				out[ivp(g)] = hosted{enforce: r}
				break
			}
		}
	}
	if r := applies(aud.forEngine(v1alpha1.EngineImageValidatingPolicy)); r != nil {
		out[ivp("audit")] = hosted{audit: r}
	}
	return out
}

// renderChunks renders one shard into as few policies as fit the size budget
// (maxSharedRegistries and maxSharedPolicyBytes per policy, at most maxSharedPolicies);
// the first non-empty policy holds the restrictions the shard hosts.
//
// A registry's policy is a function of its name and the number of policies (stableChunk),
// not of its place in the list: with even runs in name order, a registry added or removed
// anywhere but at the end shifted every later boundary, and each registry that changed
// policy had its status written again (status names the policy). When the number of
// policies grows, about one in n moves. A policy the hash fills beyond maxSharedRegistries
// passes its last registries (by name) on to the next ones with room (stableChunks), so n
// grows only when the shard needs it.
func renderChunks(k shardKey, bs []*branch, placements map[string]Placement, host hosted, previous map[string]string) ([]*unstructured.Unstructured, error) {
	first := max(1, (len(bs)+maxSharedRegistries-1)/maxSharedRegistries)
	// the chunk each registry was in (its policy's index in this group)
	index := map[string]int{}
	for i := range maxSharedPolicies {
		index[sharedPolicyName(engineTag(k.engine), k.group, i+1)] = i
	}
	kept := func(name string) (int, bool) {
		i, ok := index[previous[name]]
		return i, ok
	}
	for n := first; n <= maxSharedPolicies; n++ {
		// staying where they are first; if a policy then exceeds the size budget, by the
		// hash alone (at this n), before one policy more
		attempts := []func(string) (int, bool){kept, nil}
		if len(previous) == 0 {
			attempts = attempts[1:]
		}
		for _, stay := range attempts {
			policies, place, err := renderChunkSet(k, stableChunks(bs, n, stay), host)
			if err != nil {
				return nil, err
			}
			if policies == nil {
				continue
			}
			for name, p := range place {
				placements[name] = p
			}
			return policies, nil
		}
	}
	return nil, fmt.Errorf("render: the %d TrustedRegistries of shared group %s.%s do not fit %d policies (at most %d registries each, and %d KiB): Signet may write only that many policies per group",
		len(bs), engineTag(k.engine), k.group, maxSharedPolicies, maxSharedRegistries, maxSharedPolicyBytes/1024)
}

// renderChunkSet renders chunk i as policy i+1 of the shard (empty chunks have no
// policy); nil policies when one exceeds the size budget.
func renderChunkSet(k shardKey, chunks [][]*branch, host hosted) ([]*unstructured.Unstructured, map[string]Placement, error) {
	var (
		policies []*unstructured.Unstructured
		place    = map[string]Placement{}
	)
	for i, chunk := range chunks {
		if len(chunk) == 0 {
			continue
		}
		name := sharedPolicyName(engineTag(k.engine), k.group, i+1)
		h := hosted{}
		if len(policies) == 0 {
			h = host
		}
		u, err := renderShard(k, name, chunk, place, h)
		if err != nil {
			return nil, nil, err
		}
		b, err := json.Marshal(u.Object)
		if err != nil {
			return nil, nil, fmt.Errorf("render: %w", err)
		}
		if len(b) > maxSharedPolicyBytes && len(chunk) > 1 {
			return nil, nil, nil
		}
		policies = append(policies, u)
	}
	return policies, place, nil
}

// stableChunks splits bs (in name order, at most n*maxSharedRegistries) into n chunks:
// each registry goes to the chunk stay gives it (below n; stay may be nil), else to chunk
// stableChunk(name, n); a chunk keeps its first maxSharedRegistries, those staying first,
// then by name, and each of the others goes to the next chunk (cyclically) with room. Each
// chunk ends in name order.
func stableChunks(bs []*branch, n int, stay func(string) (int, bool)) [][]*branch {
	chunks := make([][]*branch, n)
	staying := map[*branch]bool{}
	for _, b := range bs {
		i := stableChunk(b.s.name, n)
		if stay != nil {
			if j, ok := stay(b.s.name); ok && j < n {
				i, staying[b] = j, true
			}
		}
		chunks[i] = append(chunks[i], b)
	}
	var over []int // the chunk each passed-on registry came from
	var passed []*branch
	for i := range chunks {
		if len(chunks[i]) > maxSharedRegistries {
			// those staying are kept first (then by name, as chunks are built)
			sort.SliceStable(chunks[i], func(x, y int) bool { return staying[chunks[i][x]] && !staying[chunks[i][y]] })
			for _, b := range chunks[i][maxSharedRegistries:] {
				over, passed = append(over, i), append(passed, b)
			}
			chunks[i] = chunks[i][:maxSharedRegistries:maxSharedRegistries]
		}
	}
	for x, b := range passed {
		for step := 1; step < n; step++ {
			if j := (over[x] + step) % n; len(chunks[j]) < maxSharedRegistries {
				chunks[j] = append(chunks[j], b)
				break
			}
		}
	}
	for _, c := range chunks {
		sort.Slice(c, func(i, j int) bool { return c[i].s.name < c[j].s.name })
	}
	return chunks
}

// stableChunk is the chunk (0 to n-1) of a registry among n: Lamping and Veach's jump
// consistent hash ("A Fast, Minimal Memory, Consistent Hash Algorithm", 2014) of the
// FNV-1a hash of its name. From n to n+1 chunks, a registry either stays or moves to the
// new chunk n, each with the expected share.
func stableChunk(name string, n int) int {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	key := h.Sum64()
	b, j := int64(-1), int64(0)
	for j < int64(n) {
		b = j
		// the algorithm's 64-bit linear congruential step, then the next candidate
		// bucket: where the key would jump to as the number of buckets grows
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}

func renderShard(k shardKey, name string, bs []*branch, place map[string]Placement, host hosted) (*unstructured.Unstructured, error) {
	var (
		spec        any
		annotations = map[string]any{}
	)
	var roles []string
	if host.audit != nil {
		roles = append(roles, "audit")
	}
	if host.enforce != nil {
		roles = append(roles, "enforce")
	}
	if len(roles) > 0 {
		annotations[AnnotationRestriction] = strings.Join(roles, ",")
	}
	switch k.engine {
	case v1alpha1.EngineImageValidatingPolicy:
		rs := host.enforce
		if k.group == "audit" {
			rs = host.audit
		}
		ivp, branchOf := buildSharedIVP(k, bs, rs)
		spec = &ivp
		for _, b := range bs {
			place[b.s.name] = Placement{Kind: ivpKind, Policy: name, Branch: branchOf[b.s.name], Hash: b.hash}
		}
	case v1alpha1.EngineClusterPolicy:
		cp := buildSharedClusterPolicy(bs, host)
		spec = &cp
		annotations[annotationAutogen] = "none"
		for _, b := range bs {
			br := "rules " + sharedRespelledRule(b.s) + ", " + cpSharedVerifyPrefix + b.s.name
			place[b.s.name] = Placement{Kind: cpKind, Policy: name, Branch: br, Hash: b.hash}
		}
	}
	specMap, err := toUnstructured(spec)
	if err != nil {
		return nil, err
	}
	entries := map[string]string{}
	for _, b := range bs {
		entries[b.s.name] = b.hash + " " + place[b.s.name].Branch
	}
	hj, err := json.Marshal(entries) // map keys are sorted: deterministic
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	annotations[AnnotationRegistries] = string(hj)
	gvk := GVK(k.engine)
	obj := map[string]any{
		"apiVersion": gvk.GroupVersion().String(),
		"kind":       gvk.Kind,
		"metadata": map[string]any{
			"name": name,
			"labels": map[string]any{
				LabelManagedBy: ManagedByValue,
				LabelShard:     k.group,
			},
			"annotations": annotations,
		},
		"spec": specMap,
	}
	hash, err := contentHash(obj)
	if err != nil {
		return nil, err
	}
	annotations[AnnotationHash] = hash
	return &unstructured.Unstructured{Object: obj}, nil
}

// sharedAttestorName names an attestor after its content, so that equal attestors of
// different registries are one (and share Kyverno's verification cache entries), and a
// changed key or identity is a new name (never a stale cached success).
func sharedKeyAttestor(fingerprint string, ignoreLog bool) string {
	n := "k_" + strings.TrimPrefix(fingerprint, "sha256:")[:24]
	if ignoreLog {
		n += "_notlog"
	}
	return n
}

func sharedKeylessAttestor(id *v1alpha1.KeylessIdentity, ignoreLog bool, ss *sigstoreSettings) string {
	parts := []string{id.Issuer, id.IssuerRegExp, id.Subject, id.SubjectRegExp, strconv.FormatBool(ignoreLog)}
	if k := ss.key(); k != "" {
		// other trust roots: another attestor (public Sigstore keeps its old names)
		parts = append(parts, k)
	}
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return "kl_" + hex.EncodeToString(sum[:])[:24]
}

// literalDir is the literal prefix of a pattern alternative (a regular expression over
// canonical images) up to and including its last '/': every image the alternative matches
// starts with it.
func literalDir(alt string) string {
	if d, ok := literalDirs.Load(alt); ok {
		return d.(string)
	}
	prefix, _ := regexp.MustCompile(`(?:` + alt + `)`).LiteralPrefix()
	d := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		d = prefix[:i+1]
	}
	literalDirs.Store(alt, d)
	return d
}

// literalDirs memoises literalDir: the controller renders every registry on each pass over
// the shared policies, and compiling the expressions was a third of that work. Entries are
// a few hundred bytes per distinct pattern.
var literalDirs sync.Map
