package render

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"k8s.io/apiserver/pkg/cel/library"
)

// CEL environments close to the ones Kyverno 1.19 compiles the rendered expressions in,
// restricted to what is common to all of them, so that an expression accepted here uses
// nothing the real environments lack:
//   - Kubernetes base environment (ClusterPolicy validate.cel, webhook match conditions):
//     no cel.bind, strings extension, optional types, homogeneous aggregate literals,
//     regex literals validated at compile time, Kubernetes' regex library (find);
//   - Kyverno ImageValidatingPolicy environment: the same plus images, attestors and
//     verifyImageSignatures (stubbed here).
// Strings extension version 0 is used: every function the renderer needs (indexOf,
// substring, join…) exists from version 0.

func baseEnvOptions() []cel.EnvOption {
	return []cel.EnvOption{
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(ext.StringsVersion(0)),
		// both environments have it (Kubernetes' base environment, Kyverno's compiler.DefaultEnvOptions)
		library.Regex(),
		cel.ASTValidators(
			cel.ValidateRegexLiterals(),
			cel.ValidateHomogeneousAggregateLiterals(),
		),
		cel.Variable("object", cel.DynType),
		cel.Variable("oldObject", cel.DynType),
		cel.Variable("request", cel.DynType),
		cel.Variable("namespaceObject", cel.DynType),
		cel.Variable("variables", cel.MapType(cel.StringType, cel.DynType)),
	}
}

// sigDB says which identities signed which images. An identity is a key PEM or
// keylessIdentity(...). Images are keyed by canonicalImage.
type sigDB map[string]map[string]bool

// sigKey is what a signature is bound to: the repository and the digest. Every tag
// resolves to digestA in this model.
func sigKey(image string) string {
	c := canonicalImage(image)
	digest := digestA
	if i := strings.Index(c, "@"); i >= 0 {
		c, digest = c[:i], c[i+1:]
	}
	if i := strings.LastIndex(c, ":"); i > strings.LastIndex(c, "/") {
		c = c[:i]
	}
	return c + "@" + digest
}

func (db sigDB) sign(image string, identities ...string) {
	c := sigKey(image)
	if db[c] == nil {
		db[c] = map[string]bool{}
	}
	for _, id := range identities {
		db[c][id] = true
	}
}

func (db sigDB) signed(image, identity string) bool { return db[sigKey(image)][identity] }

func keylessIdentity(issuer, issuerRE, subject, subjectRE string) string {
	return "keyless|" + issuer + "|" + issuerRE + "|" + subject + "|" + subjectRE
}

// ivpCall records verifyImageSignatures calls for the "required" check.
type ivpCalls struct {
	mu       sync.Mutex
	verified map[string]bool
}

func ivpEnv(db sigDB, calls *ivpCalls) (*cel.Env, error) {
	// Kyverno's ImageValidatingPolicy environment also has cel.bind (ext.Bindings) and the
	// lists extension (ext.Lists version 3 in its compiler.DefaultEnvOptions; flatten is
	// from version 1)
	opts := append(baseEnvOptions(), ext.Bindings(), ext.Lists(ext.ListsVersion(1)),
		cel.Variable("images", cel.MapType(cel.StringType, cel.ListType(cel.StringType))),
		cel.Variable("attestors", cel.MapType(cel.StringType, cel.DynType)),
		cel.Function("verifyImageSignatures",
			cel.Overload("verify_image_signature_string_stringarray",
				[]*cel.Type{cel.StringType, cel.ListType(cel.DynType)}, cel.IntType,
				cel.BinaryBinding(func(img, list ref.Val) ref.Val {
					image, ok := img.Value().(string)
					if !ok {
						return types.NewErr("image is not a string")
					}
					l, err := list.ConvertToNative(stringSliceType)
					if err != nil {
						return types.WrapErr(err)
					}
					n := 0
					for _, id := range l.([]string) {
						if db.signed(image, id) {
							n++
						}
					}
					if calls != nil {
						calls.mu.Lock()
						if calls.verified == nil {
							calls.verified = map[string]bool{}
						}
						calls.verified[image] = calls.verified[image] || n > 0
						calls.mu.Unlock()
					}
					return types.Int(n)
				}))),
	)
	opts = append(opts, attestationEnvOptions(db)...) // attest_test.go
	return cel.NewEnv(opts...)
}

func k8sEnv() (*cel.Env, error) { return cel.NewEnv(baseEnvOptions()...) }

// matchImageEnv is Kyverno's environment for matchImageReferences expressions.
func matchImageEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.HomogeneousAggregateLiterals(),
		cel.OptionalTypes(),
		ext.Strings(ext.StringsVersion(0)),
		cel.ASTValidators(cel.ValidateRegexLiterals()),
		cel.Variable("ref", cel.StringType),
	)
}

var stringSliceType = reflect.TypeOf([]string{})

type celProgram struct {
	src string
	prg cel.Program
}

func compileCEL(env *cel.Env, src string) (*celProgram, error) {
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, fmt.Errorf("compiling %q: %w", abbreviate(src), iss.Err())
	}
	// OptOptimize precompiles constant regular expressions; it does not change results
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return &celProgram{src: src, prg: prg}, nil
}

func (p *celProgram) eval(vars map[string]any) (ref.Val, error) {
	out, _, err := p.prg.Eval(vars)
	if err != nil {
		return nil, fmt.Errorf("evaluating %q: %w", abbreviate(p.src), err)
	}
	return out, nil
}

func (p *celProgram) evalBool(tb testing.TB, vars map[string]any) bool {
	tb.Helper()
	out, err := p.eval(vars)
	if err != nil {
		tb.Fatal(err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		tb.Fatalf("%q returned %T, want bool", abbreviate(p.src), out.Value())
	}
	return b
}

func abbreviate(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// kyvernoImageString emulates Kyverno's ImageInfo.String() (pkg/utils/image/infos.go) for a
// valid reference, with defaultRegistry docker.io.
func kyvernoImageString(raw string, registryMutation bool) string {
	name := raw
	i := strings.Index(name, "/")
	added := false
	if i == -1 || (!strings.ContainsAny(name[:i], ".:") && name[:i] != "localhost" && strings.ToLower(name[:i]) == name[:i]) {
		name = "docker.io/" + name
		added = true
	}
	digest := ""
	if j := strings.Index(name, "@"); j >= 0 {
		name, digest = name[:j], name[j+1:]
	}
	tag := ""
	if k := strings.LastIndex(name, ":"); k > strings.LastIndex(name, "/") {
		name, tag = name[:k], name[k+1:]
	}
	if added && !registryMutation {
		name = strings.TrimPrefix(name, "docker.io/")
	}
	if digest != "" {
		return name + "@" + digest
	}
	if tag == "" {
		tag = "latest"
	}
	return name + ":" + tag
}

// wildcardMatch is Kyverno's ext/wildcard.Match (github.com/IGLOU-EU/go-wildcard v1.0.3):
// '*' any sequence, '?' one character.
func wildcardMatch(pattern, name string) bool {
	if pattern == "" {
		return name == pattern
	}
	if pattern == "*" {
		return true
	}
	return deepMatch([]rune(name), []rune(pattern))
}

func deepMatch(str, pattern []rune) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		default:
			if len(str) == 0 || str[0] != pattern[0] {
				return false
			}
		case '?':
			if len(str) == 0 {
				return false
			}
		case '*':
			return deepMatch(str, pattern[1:]) || (len(str) > 0 && deepMatch(str[1:], pattern))
		}
		str = str[1:]
		pattern = pattern[1:]
	}
	return len(str) == 0 && len(pattern) == 0
}
