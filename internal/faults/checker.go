package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
)

// The invariants the Checker enforces on every write of a shared policy (README.md,
// "Failing closed": enforcement never drops below the last good policy).
const (
	// BranchMissing: a registry whose branch was in force is in no shared policy after the
	// write (and the registry was not deleted).
	BranchMissing = "branch-missing"
	// FewerSigners: a key the registry's last good branch trusted is gone, or fewer
	// signatures are required (the test never lets a retiring key's time pass).
	FewerSigners = "fewer-signers"
	// ForeignSigner: the branch trusts a key the registry was never given.
	ForeignSigner = "foreign-signer"
	// BroaderImages: the branch matches an image pattern the registry never asked for, or
	// no longer restricts the namespaces to its patterns while it is asked to.
	BroaderImages = "broader-images"
	// FewerNamespaces: a namespace the last good branch guarded is no longer guarded.
	FewerNamespaces = "fewer-namespaces"
	// AuditNotEnforce: an enforcing branch became Audit while Enforce is asked.
	AuditNotEnforce = "audit-where-enforce"
	// NotARender: the policy written is not what Signet renders from the inputs its
	// registries annotation names (a tampered or mixed-up policy), or names an input no
	// key ring ever recorded.
	NotARender = "not-a-render"
)

// Violation is one invariant broken by one write.
type Violation struct {
	Write     string // e.g. "#12 update ImageValidatingPolicy signet.ivp.enforce"
	Registry  string // "" for policy-wide violations
	Invariant string
	Detail    string
}

func (v Violation) String() string {
	r := ""
	if v.Registry != "" {
		r = " registry " + v.Registry
	}
	return fmt.Sprintf("%s:%s %s: %s", v.Write, r, v.Invariant, v.Detail)
}

// Want is what the test asks of one TrustedRegistry (its spec as the test last wrote it,
// with the keys of its Secrets).
type Want struct {
	Enforce  bool
	Restrict bool
	Images   []string
	Keys     []string // PEM public keys
}

type want struct {
	enforce, restrict bool
	images, keys      map[string]bool // everything ever asked: a pending narrowing is not broader
}

// Checker checks every write of a shared policy against the invariants above. It learns
// the policy inputs from the key-ring ConfigMaps written through the same client (the
// controller records each registry's last good input there before rendering it).
type Checker struct {
	mu         sync.Mutex
	inputs     map[string]render.Input               // by render.InputHash
	policies   map[string]*unstructured.Unstructured // "Kind/name" → as last written
	wants      map[string]*want                      // by registry
	lastGood   map[string]render.Input               // by registry: the branch last in force
	recorded   map[string]render.Input               // by registry: the input last recorded
	history    map[string][]render.Input             // by registry: every input recorded, oldest first
	deleted    map[string]bool                       // registries the test deleted
	writes     int                                   // policy writes checked
	perKind    map[string]int                        // policy writes by kind
	violations []Violation
}

// NewChecker returns an empty checker.
func NewChecker() *Checker {
	return &Checker{
		inputs: map[string]render.Input{}, policies: map[string]*unstructured.Unstructured{},
		wants: map[string]*want{}, lastGood: map[string]render.Input{}, recorded: map[string]render.Input{}, history: map[string][]render.Input{}, deleted: map[string]bool{},
		perKind: map[string]int{},
	}
}

// Expect records what the test asks of a registry (call it before writing the spec or
// Secret); images and keys accumulate over calls.
func (c *Checker) Expect(registry string, w Want) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.wants[registry]
	if cur == nil {
		cur = &want{images: map[string]bool{}, keys: map[string]bool{}}
		c.wants[registry] = cur
	}
	cur.enforce, cur.restrict = w.Enforce, w.Restrict
	for _, i := range w.Images {
		cur.images[i] = true
	}
	for _, k := range w.Keys {
		cur.keys[strings.TrimSpace(k)] = true
	}
}

// Deleted records that the test deleted a registry: its branch may leave.
func (c *Checker) Deleted(registry string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleted[registry] = true
}

// Writes returns how many policy writes were checked, in total and by kind.
func (c *Checker) Writes() (int, map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	byKind := make(map[string]int, len(c.perKind))
	for k, v := range c.perKind {
		byKind[k] = v
	}
	return c.writes, byKind
}

// Violations returns every violation seen so far.
func (c *Checker) Violations() []Violation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Violation(nil), c.violations...)
}

// RecordObject learns the policy input in a key-ring ConfigMap (other objects are ignored).
// Inputs are remembered whether or not the write succeeds: keyed by hash, more is harmless.
func (c *Checker) RecordObject(u *unstructured.Unstructured) {
	if u.GetKind() != "ConfigMap" {
		return
	}
	if strings.HasPrefix(u.GetName(), render.RecordShardPrefix) {
		// a shard of the shared layout: one record per registry, {"input": ...} each
		data, _, _ := unstructured.NestedStringMap(u.Object, "data")
		for _, v := range data {
			var e struct {
				Input string `json:"input"`
			}
			if json.Unmarshal([]byte(v), &e) == nil && e.Input != "" {
				c.recordInput(e.Input)
			}
		}
		return
	}
	raw, ok, _ := unstructured.NestedString(u.Object, "data", render.RecordDataKey)
	if !ok {
		return
	}
	c.recordInput(raw)
}

func (c *Checker) recordInput(raw string) {
	in, err := render.DecodeRecord(raw)
	if err != nil {
		return // the render check reports the unknown input of any policy naming it
	}
	h, err := render.InputHash(in)
	if err != nil {
		return
	}
	c.mu.Lock()
	if _, seen := c.inputs[h]; !seen {
		c.history[in.Registry.Name] = append(c.history[in.Registry.Name], in)
	}
	c.inputs[h] = in
	c.recorded[in.Registry.Name] = in
	c.mu.Unlock()
}

func isShared(u *unstructured.Unstructured) bool {
	_, ok := u.GetLabels()[render.LabelShard]
	return ok && render.IsSharedPolicyName(u.GetName())
}

// CheckWrite checks a write about to be sent: obj is the policy as written, or nil when
// the policy named kind/name is being deleted. It returns the violations found (also kept).
func (c *Checker) CheckWrite(op, kind, name string, obj *unstructured.Unstructured) []Violation {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	c.perKind[kind]++
	write := fmt.Sprintf("#%d %s %s %s", c.writes, op, kind, name)
	var vs []Violation
	add := func(reg, inv, format string, args ...any) {
		vs = append(vs, Violation{Write: write, Registry: reg, Invariant: inv, Detail: fmt.Sprintf(format, args...)})
	}

	world := map[string]*unstructured.Unstructured{}
	for k, v := range c.policies {
		world[k] = v
	}
	key := kind + "/" + name
	delete(world, key)
	if obj != nil {
		world[key] = obj
		ins, ok := c.inputsOf(obj, add)
		if ok {
			c.checkRender(obj, c.renderCandidates(obj, ins), add)
		}
		for reg, in := range ins {
			c.checkBranch(reg, in, add)
		}
		c.checkActions(obj, add)
	}
	// Presence: every branch that was in force is still in some shared policy.
	present := map[string]bool{}
	for _, p := range world {
		for reg := range render.InputHashesOf(p) {
			present[reg] = true
		}
	}
	for _, reg := range sortedKeys(c.lastGood) {
		if !present[reg] && !c.deleted[reg] {
			add(reg, BranchMissing, "its branch was in force and is in no shared policy after this write")
		}
	}
	c.violations = append(c.violations, vs...)
	return vs
}

// Committed records that a checked write succeeded: the policy is now as written (nil:
// deleted) and its branches are the registries' last good ones.
func (c *Checker) Committed(kind, name string, obj *unstructured.Unstructured) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := kind + "/" + name
	if obj == nil {
		delete(c.policies, key)
		return
	}
	c.policies[key] = obj.DeepCopy()
	for reg, hash := range render.InputHashesOf(obj) {
		if in, ok := c.inputs[hash]; ok {
			c.lastGood[reg] = in
		}
	}
}

// inputsOf returns the recorded inputs the policy's registries annotation names; ok is
// false when one is unknown (reported).
func (c *Checker) inputsOf(obj *unstructured.Unstructured, add func(string, string, string, ...any)) (map[string]render.Input, bool) {
	out := map[string]render.Input{}
	ok := true
	for reg, hash := range render.InputHashesOf(obj) {
		in, known := c.inputs[hash]
		if !known || in.Registry.Name != reg {
			add(reg, NotARender, "the registries annotation names input %s, which no key ring recorded for it", hash)
			ok = false
			continue
		}
		out[reg] = in
	}
	return out, ok
}

// renderCandidates returns the input sets the written policy may have been rendered from.
// A policy that hosts the registry restriction (render.AnnotationRestriction) also holds the
// restriction data of registries whose branches are in other policies, so its inputs are
// its own plus the others of the same pass: either the branches last in force elsewhere (a
// pass writes the policies that gain branches before the hosts) or the inputs last
// recorded (the host written first); registries the test deleted are left out.
func (c *Checker) renderCandidates(obj *unstructured.Unstructured, own map[string]render.Input) []map[string]render.Input {
	sets := []map[string]render.Input{own}
	if obj.GetAnnotations()[render.AnnotationRestriction] == "" {
		return sets
	}
	for _, others := range []map[string]render.Input{c.lastGood, c.recorded} {
		set := map[string]render.Input{}
		for reg, in := range others {
			if !c.deleted[reg] {
				set[reg] = in
			}
		}
		for reg, in := range own {
			set[reg] = in
		}
		sets = append(sets, set)
	}
	return sets
}

// maxPeerRenders bounds the search of rendersFromRecordedPeers.
const maxPeerRenders = 512

// rendersFromRecordedPeers reports whether a restriction host is the render of its own
// inputs plus, for each other registry its restriction data names, some input recorded for
// that registry. The shared pass renders from the key rings in its cache, which may lag
// behind the latest record of a registry (or not hold it yet) when registries change while
// the pass runs; that is still exactly a render of recorded inputs. Inputs that project to
// the same restriction (action, restrictRegistries, images, namespaces, engine) are tried once.
func (c *Checker) rendersFromRecordedPeers(obj *unstructured.Unstructured, own map[string]render.Input) bool {
	var names []string
	options := [][]render.Input{}
	for _, reg := range restrictionNames(obj) {
		if _, ok := own[reg]; ok {
			continue
		}
		var opts []render.Input
		seen := map[string]bool{}
		for i := len(c.history[reg]) - 1; i >= 0; i-- {
			in := c.history[reg][i]
			k := restrictionProjection(in)
			if !seen[k] {
				seen[k] = true
				opts = append(opts, in)
			}
		}
		if len(opts) == 0 {
			return false // names a registry no key ring ever recorded
		}
		names = append(names, reg)
		options = append(options, opts)
	}
	idx := make([]int, len(names))
	for tries := 0; tries < maxPeerRenders; tries++ {
		set := make(map[string]render.Input, len(own)+len(names))
		for reg, in := range own {
			set[reg] = in
		}
		for i, reg := range names {
			set[reg] = options[i][idx[i]]
		}
		if len(renderProblems(obj, set)) == 0 {
			return true
		}
		// next combination (odometer)
		i := 0
		for ; i < len(idx); i++ {
			idx[i]++
			if idx[i] < len(options[i]) {
				break
			}
			idx[i] = 0
		}
		if i == len(idx) {
			return false
		}
	}
	return false
}

// restrictionProjection is what the restriction data and indexes take from an input.
func restrictionProjection(in render.Input) string {
	spec := in.Registry.Spec
	b, _ := json.Marshal([]any{spec.Action, spec.RestrictRegistries, spec.Images, spec.Namespaces, in.Engine})
	return string(b)
}

// restrictionNames returns the registries a host policy's restriction data names: the
// first field of each line of its restrictData<N> variables (internal/render/restrict.go).
func restrictionNames(obj *unstructured.Unstructured) []string {
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			name, _ := t["name"].(string)
			expr, _ := t["expression"].(string)
			if strings.HasPrefix(name, "restrictData") && strings.Trim(name[len("restrictData"):], "0123456789") == "" && name != "restrictData" {
				// a quoted literal with escaped line breaks, or a raw one (r'…') whose
				// lines are separated by '#' (internal/render/restrict_lookup.go)
				body := strings.Trim(strings.TrimPrefix(expr, "r'"), "'")
				for _, line := range strings.FieldsFunc(strings.ReplaceAll(body, `\x0a`, "#"), func(r rune) bool { return r == '#' }) {
					if n, _, ok := strings.Cut(line, ";"); ok && n != "" {
						seen[n] = true
					}
				}
			}
			for _, x := range t {
				walk(x)
			}
		case []any:
			for _, x := range t {
				walk(x)
			}
		}
	}
	walk(obj.Object["spec"])
	return sortedKeys(seen)
}

// checkRender compares the written policy with the render of one of the candidate input
// sets (renderCandidates); the differences from the first are reported when none matches.
func (c *Checker) checkRender(obj *unstructured.Unstructured, candidates []map[string]render.Input, add func(string, string, string, ...any)) {
	var first []string
	for i, ins := range candidates {
		problems := renderProblems(obj, ins)
		if len(problems) == 0 {
			return
		}
		if i == 0 {
			first = problems
		}
	}
	if len(candidates) > 1 && c.rendersFromRecordedPeers(obj, candidates[0]) {
		return
	}
	for _, p := range first {
		add("", NotARender, "%s", p)
	}
}

// renderProblems lists how the written policy differs from the render of ins.
func renderProblems(obj *unstructured.Unstructured, ins map[string]render.Input) []string {
	list := make([]render.Input, 0, len(ins))
	for _, reg := range sortedKeys(ins) {
		list = append(list, ins[reg])
	}
	res, err := render.RenderShared(list)
	if err != nil {
		return []string{fmt.Sprintf("its inputs do not render: %v", err)}
	}
	for _, p := range res.Policies {
		if p.GetKind() != obj.GetKind() || p.GetName() != obj.GetName() {
			continue
		}
		var out []string
		if d := diff("spec", normalize(p.Object["spec"]), normalize(obj.Object["spec"])); d != "" {
			out = append(out, "spec differs from the render of the inputs it names at "+d)
		}
		// (the registries annotation of a render over more inputs names only this
		// policy's branches too, so it compares as well)
		for _, a := range []string{render.AnnotationRegistries, render.AnnotationHash} {
			if p.GetAnnotations()[a] != obj.GetAnnotations()[a] {
				out = append(out, "annotation "+a+" differs from the render")
			}
		}
		return out
	}
	return []string{fmt.Sprintf("the inputs it names render no %s %s", obj.GetKind(), obj.GetName())}
}

// checkBranch checks one registry's branch (its input) against the last good one and
// what the test asks.
func (c *Checker) checkBranch(reg string, in render.Input, add func(string, string, string, ...any)) {
	w := c.wants[reg]
	if w == nil {
		return // not under test
	}
	spec := in.Registry.Spec
	enforce := spec.Action != trustv1alpha1.ActionAudit
	restrict := spec.RestrictRegistries == nil || *spec.RestrictRegistries
	keys := keySet(in)
	for k := range keys {
		if !w.keys[k] {
			add(reg, ForeignSigner, "trusts key %s, which the registry was never given", short(k))
		}
	}
	for _, i := range spec.Images {
		if !w.images[string(i)] {
			add(reg, BroaderImages, "matches pattern %q, which the registry never asked for", i)
		}
	}
	prev, had := c.lastGood[reg]
	if !had {
		return
	}
	pspec := prev.Registry.Spec
	for k := range keySet(prev) {
		if !keys[k] {
			add(reg, FewerSigners, "key %s of the last good branch is no longer trusted", short(k))
		}
	}
	if required(spec) < required(pspec) {
		add(reg, FewerSigners, "requires %d signatures, the last good branch %d", required(spec), required(pspec))
	}
	if w.enforce && pspec.Action != trustv1alpha1.ActionAudit && !enforce {
		add(reg, AuditNotEnforce, "moved from Enforce to Audit while Enforce is asked")
	}
	if w.restrict && (pspec.RestrictRegistries == nil || *pspec.RestrictRegistries) && !restrict {
		add(reg, BroaderImages, "no longer restricts its namespaces to its patterns")
	}
	names := map[string]bool{}
	for _, n := range spec.Namespaces.Names {
		names[n] = true
	}
	for _, n := range pspec.Namespaces.Names {
		if !names[n] {
			add(reg, FewerNamespaces, "namespace %s of the last good branch is no longer guarded", n)
		}
	}
	if !reflect.DeepEqual(spec.Namespaces.Selector, pspec.Namespaces.Selector) && pspec.Namespaces.Selector != nil {
		add(reg, FewerNamespaces, "its namespace selector changed from the last good one")
	}
}

// checkActions reads the enforcement mode straight from the written policy (independent
// of the inputs): a branch of an Enforce-asked registry must deny.
func (c *Checker) checkActions(obj *unstructured.Unstructured, add func(string, string, string, ...any)) {
	switch obj.GetKind() {
	case "ImageValidatingPolicy":
		actions, _, _ := unstructured.NestedStringSlice(obj.Object, "spec", "validationActions")
		deny := false
		for _, a := range actions {
			deny = deny || a == "Deny"
		}
		for reg := range render.InputHashesOf(obj) {
			if w := c.wants[reg]; w != nil && w.enforce && !deny && c.wasEnforced(reg) {
				add(reg, AuditNotEnforce, "%s has validationActions %v", obj.GetName(), actions)
			}
		}
	case "ClusterPolicy":
		rules, _, _ := unstructured.NestedSlice(obj.Object, "spec", "rules")
		for _, r := range rules {
			rule, _ := r.(map[string]any)
			name, _ := rule["name"].(string)
			reg, ok := render.RegistryOfSharedRule(name)
			w := c.wants[reg]
			if !ok || w == nil || !w.enforce || !c.wasEnforced(reg) {
				continue
			}
			for _, fa := range findAll(rule, "failureAction") {
				if fa != "Enforce" {
					add(reg, AuditNotEnforce, "rule %s has failureAction %v", name, fa)
				}
			}
		}
	}
}

func (c *Checker) wasEnforced(reg string) bool {
	prev, ok := c.lastGood[reg]
	return ok && prev.Registry.Spec.Action != trustv1alpha1.ActionAudit
}

func findAll(v any, key string) []any {
	var out []any
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if k == key {
				out = append(out, x)
			} else {
				out = append(out, findAll(x, key)...)
			}
		}
	case []any:
		for _, x := range t {
			out = append(out, findAll(x, key)...)
		}
	}
	return out
}

func required(s trustv1alpha1.TrustedRegistrySpec) int32 { return max(s.RequiredSignatures, 1) }

func keySet(in render.Input) map[string]bool {
	out := map[string]bool{}
	for _, k := range in.Keys {
		if k.PEM != "" {
			out[strings.TrimSpace(k.PEM)] = true
		}
	}
	return out
}

func short(pem string) string {
	s := strings.Join(strings.Fields(strings.TrimSuffix(strings.TrimPrefix(pem, "-----BEGIN PUBLIC KEY-----"), "-----END PUBLIC KEY-----")), "")
	if len(s) > 40 {
		s = s[len(s)-40:]
	}
	return "…" + s
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// normalize turns a value into its JSON form (numbers as float64), so that a rendered
// spec and one read back compare equal when they say the same.
func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// diff returns the path of the first difference between a and b, or "".
func diff(path string, a, b any) string {
	switch at := a.(type) {
	case map[string]any:
		bt, ok := b.(map[string]any)
		if !ok {
			return path
		}
		for _, k := range sortedKeys(at) {
			if d := diff(path+"."+k, at[k], bt[k]); d != "" {
				return d
			}
		}
		for _, k := range sortedKeys(bt) {
			if _, ok := at[k]; !ok {
				return path + "." + k + " (not rendered)"
			}
		}
		return ""
	case []any:
		bt, ok := b.([]any)
		if !ok || len(at) != len(bt) {
			return path + " (length)"
		}
		for i := range at {
			if d := diff(fmt.Sprintf("%s[%d]", path, i), at[i], bt[i]); d != "" {
				return d
			}
		}
		return ""
	}
	if !reflect.DeepEqual(a, b) {
		return path
	}
	return ""
}

// Client checks every write of a shared policy made through it, and learns the recorded
// inputs from key-ring writes. Put it inside the fault injector, so that it sees exactly
// the writes that reach the apiserver.
type CheckingClient struct {
	client.Client
	C *Checker
}

func toUnstructured(obj any) *unstructured.Unstructured {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		return u
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil
	}
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(b, &u.Object); err != nil {
		return nil
	}
	return u
}

// write checks obj (nil: a deletion of del) before the write and records it after.
func (cc *CheckingClient) write(op string, u *unstructured.Unstructured, deletion bool, do func() error) error {
	if u == nil {
		return do()
	}
	cc.C.RecordObject(u)
	if !isShared(u) {
		return do()
	}
	kind, name := u.GetKind(), u.GetName()
	sent := u.DeepCopy()
	if deletion {
		sent = nil
	}
	cc.C.CheckWrite(op, kind, name, sent)
	if err := do(); err != nil {
		return err
	}
	cc.C.Committed(kind, name, sent)
	return nil
}

// Apply implements client.Writer.
func (cc *CheckingClient) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	return cc.write("apply", toUnstructured(obj), false, func() error { return cc.Client.Apply(ctx, obj, opts...) })
}

// Create implements client.Writer.
func (cc *CheckingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	return cc.write("create", toUnstructured(obj), false, func() error { return cc.Client.Create(ctx, obj, opts...) })
}

// Update implements client.Writer.
func (cc *CheckingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	return cc.write("update", toUnstructured(obj), false, func() error { return cc.Client.Update(ctx, obj, opts...) })
}

// Patch implements client.Writer: the patched object is only known afterwards, so it is
// checked then (Signet does not patch policies; this keeps the checker honest if it did).
func (cc *CheckingClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	if err := cc.Client.Patch(ctx, obj, patch, opts...); err != nil {
		return err
	}
	if u := toUnstructured(obj); u != nil {
		cc.C.RecordObject(u)
		if isShared(u) {
			cc.C.CheckWrite("patch", u.GetKind(), u.GetName(), u.DeepCopy())
			cc.C.Committed(u.GetKind(), u.GetName(), u)
		}
	}
	return nil
}

// Delete implements client.Writer.
func (cc *CheckingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	return cc.write("delete", toUnstructured(obj), true, func() error { return cc.Client.Delete(ctx, obj, opts...) })
}
