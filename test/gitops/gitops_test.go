// Package gitops tests how GitOps tools judge a TrustedRegistry: Argo CD with the health
// check of config/argocd (run in gopher-lua, the Lua interpreter Argo CD embeds), and Flux
// (`wait: true`, `flux ... --wait`) and kpt/kapply through kstatus (sigs.k8s.io/cli-utils).
//
// TestLiveStatuses runs the real operator on a real apiserver (envtest), drives
// TrustedRegistries into each state and judges the objects as the apiserver returns them;
// with -update it stores them (metadata trimmed) in testdata/, which TestCapturedStatuses
// judges without a control plane.
//
//	go test ./test/gitops/ -count=1 -v                       # both
//	go test ./test/gitops/ -run TestLiveStatuses -update     # refresh testdata/
package gitops

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
	"github.com/signet-operator/signet/internal/operator"
	"github.com/signet-operator/signet/internal/testenv"
)

var update = flag.Bool("update", false, "store the live objects of TestLiveStatuses in testdata/")

const trustNS = "signet-system"

// expectation is how each tool must judge one state.
type expectation struct {
	Argo    string `json:"argo"`    // Argo CD health status
	Kstatus string `json:"kstatus"` // kstatus status
	Reason  string `json:"reason"`  // the Ready reason ("" when there is no Ready condition)
}

// captured is one file of testdata/.
type captured struct {
	State  string         `json:"state"`
	Expect expectation    `json:"expect"`
	Object map[string]any `json:"object"`
}

// --- the judges ---------------------------------------------------------------------------

func healthScript(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "config", "argocd", "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// argoHealth runs the health check as Argo CD does: the object as the global obj, the
// script's return value a table with status and message.
func argoHealth(t *testing.T, script string, obj map[string]any) (string, string) {
	t.Helper()
	L := lua.NewState(lua.Options{SkipOpenLibs: false})
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		t.Fatalf("health.lua: %v", err)
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health.lua returned %s, want a table", L.Get(-1).Type())
	}
	return lua.LVAsString(ret.RawGetString("status")), lua.LVAsString(ret.RawGetString("message"))
}

func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case json.Number:
		f, _ := v.Float64()
		return lua.LNumber(f)
	case []any:
		t := L.NewTable()
		for _, x := range v {
			t.Append(toLua(L, x))
		}
		return t
	case map[string]any:
		t := L.NewTable()
		for k, x := range v {
			t.RawSetString(k, toLua(L, x))
		}
		return t
	default:
		panic(fmt.Sprintf("toLua: %T", v))
	}
}

func kstatusOf(t *testing.T, obj map[string]any) (string, string) {
	t.Helper()
	// As Flux reads it: JSON decoded by apimachinery (integers stay int64).
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	res, err := kstatus.Compute(u)
	if err != nil {
		t.Fatalf("kstatus: %v", err)
	}
	return res.Status.String(), res.Message
}

func readyReason(obj map[string]any) string {
	conds, _, _ := unstructured.NestedSlice(obj, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == trustv1alpha1.ConditionReady {
			r, _ := m["reason"].(string)
			return r
		}
	}
	return ""
}

func judge(t *testing.T, script, state string, obj map[string]any, want expectation) {
	t.Helper()
	argo, argoMsg := argoHealth(t, script, obj)
	ks, ksMsg := kstatusOf(t, obj)
	reason := readyReason(obj)
	t.Logf("%-22s Ready reason %-20q Argo CD %-11s %q; kstatus %-11s %q", state, reason, argo, argoMsg, ks, ksMsg)
	if argo != want.Argo {
		t.Errorf("%s: Argo CD health %s (%q), want %s", state, argo, argoMsg, want.Argo)
	}
	if ks != want.Kstatus {
		t.Errorf("%s: kstatus %s (%q), want %s", state, ks, ksMsg, want.Kstatus)
	}
	if reason != want.Reason {
		t.Errorf("%s: Ready reason %q, want %q", state, reason, want.Reason)
	}
}

// --- without a control plane ----------------------------------------------------------------

// TestCapturedStatuses judges the TrustedRegistries captured by TestLiveStatuses.
func TestCapturedStatuses(t *testing.T) {
	script := healthScript(t)
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 6 {
		t.Fatalf("testdata holds %d captured objects; run TestLiveStatuses with -update", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c captured
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		judge(t, script, c.State, c.Object, c.Expect)
		if c.State == "ready" {
			judge(t, script, "reconciling (derived)", reconciling(c.Object), expectation{
				Argo: "Progressing", Kstatus: "InProgress", Reason: trustv1alpha1.ReasonSharedPolicyPending})
		}
	}
}

// reconciling turns a captured Ready registry into one whose branch waits for the shared
// policy, with the conditions controllers/trustedregistry_status.go sets then (a state too
// short-lived to capture reliably).
func reconciling(ready map[string]any) map[string]any {
	obj := runtimeDeepCopy(ready)
	conds := []any{
		map[string]any{"type": trustv1alpha1.ConditionReady, "status": "False", "reason": trustv1alpha1.ReasonSharedPolicyPending, "message": "waiting for the shared ImageValidatingPolicy to take the current spec and keys"},
		map[string]any{"type": trustv1alpha1.ConditionReconciling, "status": "True", "reason": trustv1alpha1.ReasonSharedPolicyPending, "message": ""},
		map[string]any{"type": trustv1alpha1.ConditionStalled, "status": "False", "reason": trustv1alpha1.ReasonSharedPolicyPending, "message": ""},
	}
	_ = unstructured.SetNestedSlice(obj, conds, "status", "conditions")
	return obj
}

func runtimeDeepCopy(m map[string]any) map[string]any {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// TestArgoCDPatchEmbedsTheScript: the argocd-cm patch carries health.lua unchanged.
func TestArgoCDPatchEmbedsTheScript(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "config", "argocd", "argocd-cm-patch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.UnmarshalStrict(b, &cm); err != nil {
		t.Fatal(err)
	}
	// Argo CD's key: resource.customizations.health.<group>_<kind>.
	got := cm.Data["resource.customizations.health."+trustv1alpha1.GroupVersion.Group+"_TrustedRegistry"]
	if got != healthScript(t) {
		t.Errorf("config/argocd/argocd-cm-patch.yaml does not embed config/argocd/health.lua as it is (keys: %v)", keys(cm.Data))
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// --- live ---------------------------------------------------------------------------------

// TestLiveStatuses: the states a TrustedRegistry goes through, produced by the real
// operator, as Argo CD and kstatus see them. Degraded/Failed only where Signet says it
// cannot go on without a change (Stalled=True: an invalid spec, a missing key Secret,
// Kyverno not installed); everything Signet is still working on is Progressing/InProgress; Ready is
// Healthy/Current.
func TestLiveStatuses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts control planes")
	}
	script := healthScript(t)
	ctx := context.Background()
	cfg, c := testenv.Start(t, testenv.WithKyvernoCRDs())
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: trustNS}})
	stop := startOperator(t, cfg)

	var out []captured
	capture := func(state, name string, want expectation) {
		t.Helper()
		obj := getObject(t, c, name)
		judge(t, script, state, obj, want)
		out = append(out, captured{State: state, Expect: want, Object: obj})
	}

	mustCreate(t, c, keySecret("ready-key"), registry("ready", "ready-key"))
	waitReason(t, c, "ready", trustv1alpha1.ReasonReady)
	capture("ready", "ready", expectation{Argo: "Healthy", Kstatus: "Current", Reason: trustv1alpha1.ReasonReady})

	// "^(a)|(b)$" passes the CRD's CEL but is not anchored on every alternative: only the
	// operator's parser refuses it; nothing but a new spec helps.
	invalid := registry("invalid", "ready-key")
	invalid.Spec.Keyless = []trustv1alpha1.KeylessIdentity{{Name: "gh", Issuer: "https://token.actions.githubusercontent.com", SubjectRegExp: "^(a)|(b)$"}}
	mustCreate(t, c, invalid)
	waitReason(t, c, "invalid", trustv1alpha1.ReasonInvalidSpec)
	capture("invalid-spec", "invalid", expectation{Argo: "Degraded", Kstatus: "Failed", Reason: trustv1alpha1.ReasonInvalidSpec})

	// Its only key Secret does not exist: nothing to enforce until someone creates it.
	mustCreate(t, c, registry("nokey", "missing-key"))
	waitReason(t, c, "nokey", trustv1alpha1.ReasonSecretNotFound)
	capture("secret-not-found", "nokey", expectation{Argo: "Degraded", Kstatus: "Failed", Reason: trustv1alpha1.ReasonSecretNotFound})

	// With the operator stopped: a new registry (no status yet), a changed spec (generation
	// not observed yet), a deleted registry (held by the finalizer).
	stop()
	mustCreate(t, c, registry("fresh", "ready-key"))
	capture("not-yet-observed", "fresh", expectation{Argo: "Progressing", Kstatus: "InProgress"})
	tr := &trustv1alpha1.TrustedRegistry{}
	if err := c.Get(ctx, client.ObjectKey{Name: "ready"}, tr); err != nil {
		t.Fatal(err)
	}
	tr.Spec.Namespaces.Names = append(tr.Spec.Namespaces.Names, "qa")
	if err := c.Update(ctx, tr); err != nil {
		t.Fatal(err)
	}
	capture("spec-changed", "ready", expectation{Argo: "Progressing", Kstatus: "InProgress", Reason: trustv1alpha1.ReasonReady})
	if err := c.Delete(ctx, &trustv1alpha1.TrustedRegistry{ObjectMeta: metav1.ObjectMeta{Name: "nokey"}}); err != nil {
		t.Fatal(err)
	}
	capture("deleting", "nokey", expectation{Argo: "Progressing", Kstatus: "Terminating", Reason: trustv1alpha1.ReasonSecretNotFound})

	// The operator back: the changed spec becomes Ready again.
	startOperator(t, cfg)
	waitObserved(t, c, "ready")
	capture("spec-changed-ready", "ready", expectation{Argo: "Healthy", Kstatus: "Current", Reason: trustv1alpha1.ReasonReady})

	// A cluster without Kyverno: nothing Signet can do until Kyverno is installed.
	cfg2, c2 := testenv.Start(t)
	mustCreate(t, c2, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: trustNS}})
	startOperator(t, cfg2)
	mustCreate(t, c2, keySecret("ready-key"), registry("nokyverno", "ready-key"))
	waitReason(t, c2, "nokyverno", trustv1alpha1.ReasonKyvernoNotInstalled)
	obj := getObject(t, c2, "nokyverno")
	want := expectation{Argo: "Degraded", Kstatus: "Failed", Reason: trustv1alpha1.ReasonKyvernoNotInstalled}
	judge(t, script, "kyverno-not-installed", obj, want)
	out = append(out, captured{State: "kyverno-not-installed", Expect: want, Object: obj})

	checkPrinterColumns(t, cfg)

	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		for _, c := range out {
			trimMetadata(c.Object)
			b, err := json.MarshalIndent(c, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join("testdata", c.State+".json"), append(b, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("stored %d objects in testdata/", len(out))
	}
}

// checkPrinterColumns: `kubectl get trustedregistries` (the apiserver's Table) shows the
// Ready reason and the policy.
func checkPrinterColumns(t *testing.T, cfg *rest.Config) {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.APIPath = "/apis"
	cfg.GroupVersion = &trustv1alpha1.GroupVersion
	cfg.NegotiatedSerializer = clientgoscheme.Codecs.WithoutConversion()
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rc.Get().Resource("trustedregistries").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, c := range table.ColumnDefinitions {
		col[c.Name] = i
	}
	for _, name := range []string{"Ready", "Reason", "Policy"} {
		if _, ok := col[name]; !ok {
			t.Fatalf("no %s column in %v", name, table.ColumnDefinitions)
		}
	}
	rows := map[string][]any{}
	for _, r := range table.Rows {
		rows[fmt.Sprint(r.Cells[0])] = r.Cells
	}
	for name, want := range map[string][2]string{
		"ready":   {trustv1alpha1.ReasonReady, "signet.ivp.enforce"},
		"invalid": {trustv1alpha1.ReasonInvalidSpec, ""},
	} {
		cells := rows[name]
		if cells == nil {
			t.Fatalf("no row for %s", name)
		}
		if got := cell(cells, col["Reason"]); got != want[0] {
			t.Errorf("%s: REASON %q, want %q", name, got, want[0])
		}
		if got := cell(cells, col["Policy"]); got != want[1] {
			t.Errorf("%s: POLICY %q, want %q", name, got, want[1])
		}
	}
}

// cell is a Table cell as kubectl prints it ("" for none).
func cell(cells []any, i int) string {
	if i >= len(cells) || cells[i] == nil {
		return ""
	}
	return fmt.Sprint(cells[i])
}

// trimMetadata drops what changes on every run (and means nothing to the judges).
func trimMetadata(obj map[string]any) {
	for _, f := range []string{"managedFields", "uid", "resourceVersion", "creationTimestamp"} {
		unstructured.RemoveNestedField(obj, "metadata", f)
	}
	if _, ok, _ := unstructured.NestedString(obj, "metadata", "deletionTimestamp"); ok {
		_ = unstructured.SetNestedField(obj, "2026-01-01T00:00:00Z", "metadata", "deletionTimestamp")
	}
	conds, _, _ := unstructured.NestedSlice(obj, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok {
			m["lastTransitionTime"] = "2026-01-01T00:00:00Z"
		}
	}
	if len(conds) > 0 {
		_ = unstructured.SetNestedSlice(obj, conds, "status", "conditions")
	}
}

// --- helpers ------------------------------------------------------------------------------

func startOperator(t *testing.T, cfg *rest.Config) func() {
	t.Helper()
	mgr, err := operator.New(rest.CopyConfig(cfg), operator.Options{
		TrustNamespace:               trustNS,
		Clock:                        clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		Layout:                       controllers.LayoutShared,
		SkipControllerNameValidation: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func mustCreate(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %s: %v", o.GetName(), err)
		}
	}
}

func keySecret(name string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: trustNS},
		Data:       map[string][]byte{"cosign.pub": []byte(testKey)},
	}
}

// testKey is a fresh P-256 public key (its private key is thrown away).
var testKey = func() string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}()

func registry(name, secret string) *trustv1alpha1.TrustedRegistry {
	return &trustv1alpha1.TrustedRegistry{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: trustv1alpha1.TrustedRegistrySpec{
			Images:     []trustv1alpha1.ImagePattern{trustv1alpha1.ImagePattern("ghcr.io/" + name + "/*")},
			Namespaces: trustv1alpha1.NamespaceSelection{Names: []string{"production"}},
			Keys:       []trustv1alpha1.PublicKey{{Name: "ci", SecretRef: trustv1alpha1.SecretKeyReference{Name: secret}}},
			Digest:     trustv1alpha1.DigestPolicy{Mutate: ptr.To(false)},
		},
	}
}

func getObject(t *testing.T, c client.Client, name string) map[string]any {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(trustv1alpha1.GroupVersion.WithKind("TrustedRegistry"))
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, u); err != nil {
		t.Fatal(err)
	}
	// As Argo CD and kstatus get it: JSON from the apiserver.
	b, err := json.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

func waitReason(t *testing.T, c client.Client, name, reason string) {
	t.Helper()
	eventually(t, name+" Ready reason "+reason, func() error {
		tr := &trustv1alpha1.TrustedRegistry{}
		if err := c.Get(context.Background(), client.ObjectKey{Name: name}, tr); err != nil {
			return err
		}
		r := meta.FindStatusCondition(tr.Status.Conditions, trustv1alpha1.ConditionReady)
		if r == nil || r.Reason != reason || tr.Status.ObservedGeneration != tr.Generation {
			return fmt.Errorf("Ready %+v, observedGeneration %d of %d", r, tr.Status.ObservedGeneration, tr.Generation)
		}
		return nil
	})
}

func waitObserved(t *testing.T, c client.Client, name string) {
	t.Helper()
	waitReason(t, c, name, trustv1alpha1.ReasonReady)
}

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		if apierrors.IsNotFound(err) {
			err = fmt.Errorf("not found: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %v", what, err)
}
