package kyvernocompile

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	policiesv1beta1 "github.com/kyverno/api/api/policies.kyverno.io/v1beta1"
	imageverifycache "github.com/kyverno/kyverno/pkg/image/verification/cache"
	eval "github.com/kyverno/kyverno/pkg/image/verification/evaluator"
	"github.com/kyverno/sdk/extensions/imagedataloader"
)

// compileCost is what one Kyverno compile of pol allocates (bytes): deterministic, unlike
// time on a shared machine, and proportional to the parser's and checker's work.
func compileCost(tb testing.TB, pol *policiesv1beta1.ImageValidatingPolicy) float64 {
	ictx, err := imagedataloader.NewImageContext(nil, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	comp := eval.NewCompiler(ictx, nil, podsGVR, imageverifycache.DisabledImageVerifyCache())
	// the first compile in the process also allocates once-only state (~0.15 MB), which
	// would be counted against whichever policy is measured first
	if _, errs := comp.Compile(pol, nil, nil); errs != nil {
		tb.Fatal(errs.ToAggregate())
	}
	const rounds = 5
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range rounds {
		if _, errs := comp.Compile(pol, nil, nil); errs != nil {
			tb.Fatal(errs.ToAggregate())
		}
	}
	runtime.ReadMemStats(&m1)
	return float64(m1.TotalAlloc-m0.TotalAlloc) / rounds
}

// TestCompileCostPerExpression (KYVERNO_BREAKDOWN=1, -v) logs what each expression of
// each policy adds to Kyverno's compile step (bytes allocated), over the policy without expressions (the
// CEL environment, which Kyverno builds per request).
func TestCompileCostPerExpression(t *testing.T) {
	if os.Getenv("KYVERNO_BREAKDOWN") == "" {
		t.Skip("KYVERNO_BREAKDOWN=1 to run")
	}
	f := getFixture(t)
	for _, n := range policyNames {
		pol := f.policy(t, n)
		empty := pol.DeepCopy()
		s := &empty.Spec
		s.Variables, s.Validations, s.MatchImageReferences, s.MatchConditions = nil, nil, nil, nil
		base := compileCost(t, empty)
		total := compileCost(t, pol)
		t.Logf("%s: whole policy %.2f MB allocated per compile, environment alone %.2f MB", n, total/1e6, base/1e6)
		// each expression in turn is added to the policy (variables in order: a variable
		// may only name earlier ones); logged: what it adds to the compile time
		cur := empty.DeepCopy()
		prev := base
		add := func(label string, mut func(*policiesv1beta1.ImageValidatingPolicy)) {
			mut(cur)
			d := compileCost(t, cur)
			t.Logf("  %-36s %6.2f MB", label, (d-prev)/1e6)
			prev = d
		}
		for _, m := range pol.Spec.MatchImageReferences {
			add("matchImageReferences", func(p *policiesv1beta1.ImageValidatingPolicy) {
				p.Spec.MatchImageReferences = append(p.Spec.MatchImageReferences, m)
			})
		}
		for _, m := range pol.Spec.MatchConditions {
			add("matchConditions."+m.Name, func(p *policiesv1beta1.ImageValidatingPolicy) {
				p.Spec.MatchConditions = append(p.Spec.MatchConditions, m)
			})
		}
		for _, v := range pol.Spec.Variables {
			add("variables."+v.Name, func(p *policiesv1beta1.ImageValidatingPolicy) {
				p.Spec.Variables = append(p.Spec.Variables, v)
			})
		}
		for i, v := range pol.Spec.Validations {
			msg := v.MessageExpression
			v.MessageExpression = ""
			add(fmt.Sprintf("validations[%d].expression", i), func(p *policiesv1beta1.ImageValidatingPolicy) {
				p.Spec.Validations = append(p.Spec.Validations, v)
			})
			if msg != "" {
				add(fmt.Sprintf("validations[%d].messageExpression", i), func(p *policiesv1beta1.ImageValidatingPolicy) {
					p.Spec.Validations[i].MessageExpression = msg
				})
			}
		}
	}
}
