package kyvernocompile

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	kyvernov1 "github.com/kyverno/kyverno/api/kyverno/v1"
	"github.com/kyverno/kyverno/pkg/admissionpolicy"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

// The shared ClusterPolicy's registry restriction rule (a validate.cel rule), as Kyverno
// 1.19's validateCELHandler.Process (pkg/engine/handlers/validation/validate_cel.go)
// compiles and evaluates it on every admission request: a new compiler, every variable,
// validation and messageExpression compiled, then Kubernetes' validating admission
// policy evaluator, which evaluates the messageExpressions even when the validations
// pass, each in a composition context of its own (so every variable they read is
// evaluated again).

// cpolRestrictNames are the rules in testdata/ (rendered by internal/render,
// TestKyvernoReproPolicies): the restriction of 1 and 300 registries team-<i>, each
// allowing localhost:5000/team-<i>/* in production.
var cpolRestrictNames = []string{"cpol-restrict-1", "cpol-restrict-300"}

const cpolAllowedImage = "localhost:5000/team-0/app:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func cpolRule(tb testing.TB, name string) kyvernov1.Rule {
	b, err := os.ReadFile(filepath.Join("testdata", name+".yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	var p kyvernov1.ClusterPolicy
	if err := yaml.Unmarshal(b, &p); err != nil {
		tb.Fatal(err)
	}
	if len(p.Spec.Rules) != 1 || p.Spec.Rules[0].Validation == nil || p.Spec.Rules[0].Validation.CEL == nil {
		tb.Fatalf("%s: want one validate.cel rule", name)
	}
	return p.Spec.Rules[0]
}

// cpolCompile is the compile half of validateCELHandler.Process; it returns the
// evaluation half for a Pod CREATE in namespace production running image.
func cpolCompile(tb testing.TB, rule kyvernov1.Rule, image string) func() validating.ValidateResult {
	validations := append(rule.Validation.CEL.Expressions[:0:0], rule.Validation.CEL.Expressions...)
	for i := range validations {
		if validations[i].Message == "" {
			validations[i].Message = rule.Validation.Message
		}
	}
	optionalVars := cel.OptionalVariableDeclarations{HasAuthorizer: true}
	compiler, err := admissionpolicy.NewCompiler(rule.CELPreconditions, rule.Validation.CEL.Variables)
	if err != nil {
		tb.Fatal(err)
	}
	compiler.WithValidations(validations)
	compiler.CompileVariables(optionalVars)
	filter := compiler.CompileValidations(optionalVars)
	messages := compiler.CompileMessageExpressions(cel.OptionalVariableDeclarations{})
	audit := compiler.CompileAuditAnnotationsExpressions(optionalVars)
	matcher := matchconditions.NewMatcher(compiler.CompileMatchConditions(optionalVars), nil, "ClusterPolicy", "", "repro")
	validator := validating.NewValidator(filter, matcher, audit, messages, nil, nil)

	pod := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "p", "namespace": namespace},
		"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": image}}},
	}}
	gvk := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	user := admissionpolicy.NewUser(authenticationv1.UserInfo{Username: "repro"})
	attr := admission.NewAttributesRecord(pod, nil, gvk, namespace, "p", gvr, "", admission.Create, nil, false, &user)
	versioned, err := admission.NewVersionedAttributes(attr, gvk, admission.NewObjectInterfacesFromScheme(runtime.NewScheme()))
	if err != nil {
		tb.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	return func() validating.ValidateResult {
		return validator.Validate(context.Background(), gvr, versioned, nil, ns, celconfig.RuntimeCELCostBudget, nil)
	}
}

// TestClusterPolicyRestriction: each rule admits an image of its registries and denies
// another with the message listing the allowed patterns (so the benchmark measures a
// rule that works).
func TestClusterPolicyRestriction(t *testing.T) {
	for _, name := range cpolRestrictNames {
		rule := cpolRule(t, name)
		for _, tc := range []struct {
			image   string
			deny    bool
			message string
		}{
			{cpolAllowedImage, false, ""},
			{"localhost:5000/team-0-other/app:v1", true, "image(s) localhost:5000/team-0-other/app:v1 not allowed by TrustedRegistry team-0"},
			{"evil.example/app:v1", true, ": only images matching localhost:5000/team-0/*"},
		} {
			res := cpolCompile(t, rule, tc.image)()
			if len(res.Decisions) != 1 {
				t.Fatalf("%s %s: %d decisions, want 1", name, tc.image, len(res.Decisions))
			}
			d := res.Decisions[0]
			if got := d.Action == validating.ActionDeny; got != tc.deny || d.Evaluation == validating.EvalError {
				t.Errorf("%s %s: %v %v %q, want deny %v", name, tc.image, d.Action, d.Evaluation, d.Message, tc.deny)
			}
			if !strings.Contains(d.Message, tc.message) {
				t.Errorf("%s %s: message %q, want it to contain %q", name, tc.image, d.Message, tc.message)
			}
		}
	}
}

// BenchmarkClusterPolicyRestriction: per admission request, compile (as Kyverno does on
// every request) and evaluate (validations and messageExpressions) the restriction
// rule; /evaluate is the evaluation alone.
func BenchmarkClusterPolicyRestriction(b *testing.B) {
	for _, name := range cpolRestrictNames {
		rule := cpolRule(b, name)
		b.Run(name+"/request", func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				cpolCompile(b, rule, cpolAllowedImage)()
			}
		})
		b.Run(name+"/evaluate", func(b *testing.B) {
			eval := cpolCompile(b, rule, cpolAllowedImage)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				eval()
			}
		})
	}
}
