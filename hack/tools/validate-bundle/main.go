// Command validate-bundle validates Signet's OLM bundle and fails on any error or warning.
//
//	go run . [--dockerfile ../../../bundle.Dockerfile] [--k8s-version 1.37] ../../../bundle
//
// (hack/validate-bundle.sh runs it from the repository root.) It runs the checks of
// `operator-sdk bundle validate --select-optional suite=operatorframework`, read from
// operator-sdk's internal/cmd/operator-sdk/bundle/validate:
//
//   - the default validators (validation.DefaultBundleValidators: ClusterServiceVersion,
//     CustomResourceDefinition, Bundle) and operator-sdk's per-object content checks
//     (object kinds supported by registry+v1, object metadata);
//   - the optional suite=operatorframework validators: operatorhubv2, capabilities,
//     categories, alpha-deprecated-apis, good-practices;
//   - the bundle format checks operator-sdk takes from operator-registry (annotations.yaml
//     keys, default channel among the channels) and that bundle.Dockerfile labels match it;
//
// plus Signet's own checks: the CSV decodes strictly into the operator-framework types
// (no misspelt fields), the RBAC it grants stays least-privilege under every supported install
// mode, every descriptor path exists in the CRD schema and every top-level spec and status
// field has a descriptor (what the scorecard olm-spec/status-descriptors tests require), and
// the operator image is the same everywhere.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/operators/v1alpha1"
	"github.com/operator-framework/api/pkg/validation"
	apierrors "github.com/operator-framework/api/pkg/validation/errors"
	interfaces "github.com/operator-framework/api/pkg/validation/interfaces"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	k8svalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// Level of a finding.
type Level string

const (
	Error   Level = "ERROR"
	Warning Level = "WARNING"
)

// Finding is one validation result.
type Finding struct {
	Level   Level
	Source  string
	Message string
}

func (f Finding) String() string { return fmt.Sprintf("%s [%s] %s", f.Level, f.Source, f.Message) }

func main() {
	dockerfile := flag.String("dockerfile", "", "bundle.Dockerfile whose labels must match metadata/annotations.yaml (empty: skip)")
	k8sVersion := flag.String("k8s-version", "1.37", "Kubernetes version the deprecated-API checks target (--optional-values=k8s-version=...)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: bundle [--dockerfile FILE] [--k8s-version X.Y] BUNDLE_DIR")
		os.Exit(2)
	}
	findings, err := Validate(flag.Arg(0), *dockerfile, *k8sVersion)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bundle validation:", err)
		os.Exit(1)
	}
	for _, f := range findings {
		fmt.Println(f)
	}
	if len(findings) > 0 {
		fmt.Printf("bundle %s: %d finding(s); errors and warnings both fail\n", flag.Arg(0), len(findings))
		os.Exit(1)
	}
	fmt.Printf("bundle %s: valid (default validators, suite=operatorframework, format, Signet checks): no errors, no warnings\n", flag.Arg(0))
}

// Validate loads the bundle in dir and returns every error and warning.
func Validate(dir, dockerfile, k8sVersion string) ([]Finding, error) {
	bundle, err := manifests.GetBundleFromDir(dir)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", dir, err)
	}
	var out []Finding
	add := func(results []apierrors.ManifestResult, source string) {
		for _, r := range results {
			for _, e := range r.Errors {
				out = append(out, Finding{Error, source, e.Error()})
			}
			for _, w := range r.Warnings {
				out = append(out, Finding{Warning, source, w.Error()})
			}
		}
	}

	// Default validators, run the way operator-sdk's ValidateBundleContent runs them.
	add(validation.BundleValidator.Validate(bundle), "bundle")
	add(validation.ClusterServiceVersionValidator.Validate(bundle.CSV), "csv")
	var crds []any
	for _, crd := range bundle.V1CRDs {
		crds = append(crds, crd)
	}
	for _, crd := range bundle.V1beta1CRDs {
		crds = append(crds, crd)
	}
	add(validation.CustomResourceDefinitionValidator.Validate(crds...), "crd")
	out = append(out, objectFindings(bundle)...)

	// Optional validators of suite=operatorframework, with the objects operator-sdk passes.
	objs := bundle.ObjectsToValidate()
	for _, o := range bundle.Objects {
		objs = append(objs, o)
	}
	objs = append(objs, map[string]string{"k8s-version": k8sVersion})
	for _, v := range []struct {
		name string
		v    interfaces.Validator
	}{
		{"operatorhubv2", validation.OperatorHubV2Validator},
		{"capabilities", validation.StandardCapabilitiesValidator},
		{"categories", validation.StandardCategoriesValidator},
		{"alpha-deprecated-apis", validation.AlphaDeprecatedAPIsValidator},
		{"good-practices", validation.GoodPracticesValidator},
	} {
		add(v.v.Validate(objs...), v.name)
	}

	// Bundle format and image labels.
	ann, fs := annotationFindings(dir)
	out = append(out, fs...)
	if dockerfile != "" {
		out = append(out, dockerfileFindings(dockerfile, ann)...)
	}

	// Signet's checks.
	csvFile, fs := strictCSVFindings(dir)
	out = append(out, fs...)
	if csvFile == "" {
		out = append(out, Finding{Error, "signet", "no ClusterServiceVersion file in manifests/"})
	}
	out = append(out, rbacFindings(bundle.CSV)...)
	out = append(out, descriptorFindings(bundle.CSV, bundle.V1CRDs)...)
	out = append(out, imageFindings(bundle.CSV)...)
	return out, nil
}

// Kinds OLM installs from a registry+v1 bundle (operator-registry's supported objects).
var supportedKinds = map[string]bool{
	"ClusterServiceVersion": true, "CustomResourceDefinition": true,
	"ClusterRole": true, "ClusterRoleBinding": true, "ConfigMap": true,
	"ConsoleCLIDownload": true, "ConsoleLink": true, "ConsoleQuickStart": true,
	"ConsoleYAMLSample": true, "NetworkPolicy": true, "PodDisruptionBudget": true,
	"PriorityClass": true, "PrometheusRule": true, "Role": true, "RoleBinding": true,
	"Secret": true, "Service": true, "ServiceAccount": true, "ServiceMonitor": true,
	"VerticalPodAutoscaler": true,
}

// objectFindings repeats operator-sdk's per-object content checks.
func objectFindings(b *manifests.Bundle) []Finding {
	var out []Finding
	noName := func(string, bool) []string { return nil }
	for _, u := range b.Objects {
		kind := u.GetKind()
		if !supportedKinds[kind] {
			out = append(out, Finding{Error, "bundle", fmt.Sprintf("%s %q is not a supported registry+v1 bundle object", kind, u.GetName())})
			continue
		}
		if kind == "ClusterServiceVersion" || kind == "CustomResourceDefinition" {
			continue
		}
		if errs := k8svalidation.ValidateObjectMetaAccessor(u, false, noName, field.NewPath("metadata")); len(errs) > 0 {
			out = append(out, Finding{Error, "bundle", fmt.Sprintf("%s %q: %v", kind, u.GetName(), errs.ToAggregate())})
		}
		if u.GetNamespace() != "" {
			out = append(out, Finding{Error, "bundle", fmt.Sprintf("%s %q sets namespace %q: OLM creates bundle objects in the operator's namespace", kind, u.GetName(), u.GetNamespace())})
		}
	}
	return out
}

const annotationPrefix = "operators.operatorframework.io."

// annotationFindings checks metadata/annotations.yaml like operator-registry's bundle format
// validation does.
func annotationFindings(dir string) (map[string]string, []Finding) {
	path := filepath.Join(dir, "metadata", "annotations.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, []Finding{{Error, "format", err.Error()}}
	}
	var f struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, []Finding{{Error, "format", fmt.Sprintf("%s: %v", path, err)}}
	}
	a := f.Annotations
	var out []Finding
	want := map[string]string{
		"bundle.mediatype.v1": "registry+v1",
		"bundle.manifests.v1": "manifests/",
		"bundle.metadata.v1":  "metadata/",
	}
	for k, v := range want {
		if got := a[annotationPrefix+k]; got != v {
			out = append(out, Finding{Error, "format", fmt.Sprintf("annotation %s%s is %q, want %q", annotationPrefix, k, got, v)})
		}
	}
	if a[annotationPrefix+"bundle.package.v1"] == "" {
		out = append(out, Finding{Error, "format", "annotation " + annotationPrefix + "bundle.package.v1 is empty"})
	}
	channels := strings.Split(a[annotationPrefix+"bundle.channels.v1"], ",")
	if a[annotationPrefix+"bundle.channels.v1"] == "" {
		out = append(out, Finding{Error, "format", "annotation " + annotationPrefix + "bundle.channels.v1 is empty"})
	}
	if def := a[annotationPrefix+"bundle.channel.default.v1"]; def != "" {
		found := false
		for _, c := range channels {
			found = found || strings.TrimSpace(c) == def
		}
		if !found {
			out = append(out, Finding{Error, "format", fmt.Sprintf("default channel %q is not one of the channels %q", def, channels)})
		}
	}
	for _, sub := range []string{"manifests", "metadata"} {
		if st, err := os.Stat(filepath.Join(dir, sub)); err != nil || !st.IsDir() {
			out = append(out, Finding{Error, "format", "missing directory " + sub + "/"})
		}
	}
	if cfg := a[annotationPrefix+"test.config.v1"]; cfg != "" {
		if _, err := os.Stat(filepath.Join(dir, cfg, "config.yaml")); err != nil {
			out = append(out, Finding{Error, "format", "scorecard config announced but missing: " + err.Error()})
		}
	}
	return a, out
}

var labelRE = regexp.MustCompile(`^LABEL\s+(\S+?)=(\S+)\s*$`)

// dockerfileFindings checks that the bundle image carries exactly the annotations as labels
// and copies the directories they name.
func dockerfileFindings(path string, ann map[string]string) []Finding {
	data, err := os.ReadFile(path)
	if err != nil {
		return []Finding{{Error, "dockerfile", err.Error()}}
	}
	labels := map[string]string{}
	var copies []string
	for _, line := range strings.Split(string(data), "\n") {
		if m := labelRE.FindStringSubmatch(line); m != nil {
			labels[m[1]] = m[2]
		}
		if strings.HasPrefix(line, "COPY ") {
			copies = append(copies, strings.TrimSpace(line))
		}
	}
	var out []Finding
	for k, v := range ann {
		if labels[k] != v {
			out = append(out, Finding{Error, "dockerfile", fmt.Sprintf("label %s is %q, annotations.yaml says %q", k, labels[k], v)})
		}
	}
	for k := range labels {
		if _, ok := ann[k]; !ok && strings.HasPrefix(k, annotationPrefix) {
			out = append(out, Finding{Error, "dockerfile", fmt.Sprintf("label %s is not in annotations.yaml", k)})
		}
	}
	need := []string{"COPY bundle/manifests /" + ann[annotationPrefix+"bundle.manifests.v1"], "COPY bundle/metadata /" + ann[annotationPrefix+"bundle.metadata.v1"]}
	if cfg := ann[annotationPrefix+"test.config.v1"]; cfg != "" {
		need = append(need, "COPY bundle/"+strings.TrimSuffix(cfg, "/")+" /"+cfg)
	}
	for _, n := range need {
		found := false
		for _, c := range copies {
			found = found || c == n
		}
		if !found {
			out = append(out, Finding{Error, "dockerfile", fmt.Sprintf("missing %q", n)})
		}
	}
	return out
}

// strictCSVFindings decodes the CSV file rejecting unknown and duplicate fields, so a field the
// generator misspells (which the validators above would silently ignore) fails.
func strictCSVFindings(dir string) (string, []Finding) {
	files, _ := filepath.Glob(filepath.Join(dir, "manifests", "*.clusterserviceversion.yaml"))
	if len(files) != 1 {
		return "", []Finding{{Error, "signet", fmt.Sprintf("want one *.clusterserviceversion.yaml in manifests/, found %d", len(files))}}
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		return files[0], []Finding{{Error, "signet", err.Error()}}
	}
	var csv v1alpha1.ClusterServiceVersion
	if err := yaml.UnmarshalStrict(data, &csv); err != nil {
		return files[0], []Finding{{Error, "signet", fmt.Sprintf("%s does not decode strictly into a ClusterServiceVersion: %v", filepath.Base(files[0]), err)}}
	}
	return files[0], nil
}

func supports(csv *v1alpha1.ClusterServiceVersion, mode v1alpha1.InstallModeType) bool {
	for _, m := range csv.Spec.InstallModes {
		if m.Type == mode {
			return m.Supported
		}
	}
	return false
}

func grants(rules []rbacv1.PolicyRule, group, resource string) bool {
	for _, r := range rules {
		for _, g := range r.APIGroups {
			if g != group && g != "*" {
				continue
			}
			for _, res := range r.Resources {
				if res == resource || res == "*" {
					return true
				}
			}
		}
	}
	return false
}

// rbacFindings keeps the CSV's RBAC least-privilege under OLM. OLM grants `permissions` as a
// Role in the operator's namespace for OwnNamespace, but for an AllNamespaces OperatorGroup
// it lifts them to a ClusterRole and ClusterRoleBinding (operator-lifecycle-manager,
// ensureSingletonRBAC; OLM v1 renders registry+v1 bundles the same way), and for
// SingleNamespace/MultiNamespace it grants them in every target namespace. Signet may read
// Secrets only in its own (trust) namespace, so any install mode other than OwnNamespace
// must not be supported while `permissions` grant Secrets.
func rbacFindings(csv *v1alpha1.ClusterServiceVersion) []Finding {
	var out []Finding
	spec := csv.Spec.InstallStrategy.StrategySpec
	check := func(kind string, perms []v1alpha1.StrategyDeploymentPermissions) {
		for _, p := range perms {
			for _, r := range p.Rules {
				for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
					for _, v := range list {
						if v == "*" {
							out = append(out, Finding{Error, "signet", fmt.Sprintf("%s of %s use a wildcard: %v", kind, p.ServiceAccountName, r)})
						}
					}
				}
				for _, v := range r.Verbs {
					if v == "escalate" || v == "bind" || v == "impersonate" {
						out = append(out, Finding{Error, "signet", fmt.Sprintf("%s of %s grant %q", kind, p.ServiceAccountName, v)})
					}
				}
			}
		}
	}
	check("clusterPermissions", spec.ClusterPermissions)
	check("permissions", spec.Permissions)
	for _, p := range spec.ClusterPermissions {
		for _, res := range []string{"secrets", "configmaps"} {
			if grants(p.Rules, "", res) {
				out = append(out, Finding{Error, "signet", fmt.Sprintf("clusterPermissions grant %s cluster-wide; they belong in permissions (the trust namespace only)", res)})
			}
		}
	}
	for _, p := range spec.Permissions {
		if !grants(p.Rules, "", "secrets") {
			continue
		}
		for _, mode := range []v1alpha1.InstallModeType{v1alpha1.InstallModeTypeAllNamespaces, v1alpha1.InstallModeTypeSingleNamespace, v1alpha1.InstallModeTypeMultiNamespace} {
			if supports(csv, mode) {
				out = append(out, Finding{Error, "signet", fmt.Sprintf("install mode %s is supported while permissions grant Secrets: OLM would grant them beyond the operator's namespace (cluster-wide for AllNamespaces)", mode)})
			}
		}
	}
	if !supports(csv, v1alpha1.InstallModeTypeOwnNamespace) && !supports(csv, v1alpha1.InstallModeTypeAllNamespaces) {
		out = append(out, Finding{Error, "signet", "neither OwnNamespace nor AllNamespaces is supported: a cluster-wide operator needs one"})
	}
	return out
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

// schemaAt resolves a descriptor path such as "keys[0].secretRef.name" in schema.
func schemaAt(schema *apiextensionsv1.JSONSchemaProps, path string) *apiextensionsv1.JSONSchemaProps {
	cur := schema
	for _, seg := range strings.Split(path, ".") {
		name := indexRE.ReplaceAllString(seg, "")
		next, ok := cur.Properties[name]
		if !ok {
			return nil
		}
		cur = &next
		for range indexRE.FindAllString(seg, -1) {
			if cur.Items == nil || cur.Items.Schema == nil {
				return nil
			}
			cur = cur.Items.Schema
		}
	}
	return cur
}

// descriptorFindings checks the owned-CRD descriptors against the CRD schema: every path
// resolves, every top-level spec and status field has a descriptor, and every owned CRD has a
// description, display name and resources (scorecard olm-* tests).
func descriptorFindings(csv *v1alpha1.ClusterServiceVersion, crds []*apiextensionsv1.CustomResourceDefinition) []Finding {
	var out []Finding
	for _, owned := range csv.Spec.CustomResourceDefinitions.Owned {
		var schema *apiextensionsv1.JSONSchemaProps
		for _, crd := range crds {
			if crd.Name != owned.Name {
				continue
			}
			for _, v := range crd.Spec.Versions {
				if v.Name == owned.Version && v.Schema != nil {
					schema = v.Schema.OpenAPIV3Schema
				}
			}
		}
		if schema == nil {
			out = append(out, Finding{Error, "signet", fmt.Sprintf("owned CRD %s %s has no schema in the bundle", owned.Name, owned.Version)})
			continue
		}
		if owned.DisplayName == "" || owned.Description == "" || len(owned.Resources) == 0 {
			out = append(out, Finding{Error, "signet", fmt.Sprintf("owned CRD %s needs displayName, description and resources", owned.Name)})
		}
		for _, part := range []struct {
			name  string
			paths []string
		}{
			{"spec", specPaths(owned.SpecDescriptors)},
			{"status", statusPaths(owned.StatusDescriptors)},
		} {
			root, ok := schema.Properties[part.name]
			if !ok {
				continue
			}
			have := map[string]bool{}
			for _, p := range part.paths {
				have[p] = true
				if schemaAt(&root, p) == nil {
					out = append(out, Finding{Error, "signet", fmt.Sprintf("%s descriptor %q of %s does not exist in the CRD schema", part.name, p, owned.Kind)})
				}
			}
			var missing []string
			for field := range root.Properties {
				if !have[field] {
					missing = append(missing, field)
				}
			}
			sort.Strings(missing)
			for _, m := range missing {
				out = append(out, Finding{Error, "signet", fmt.Sprintf("%s.%s of %s has no %s descriptor (the OLM console would not show it)", part.name, m, owned.Kind, part.name)})
			}
		}
	}
	return out
}

func specPaths(ds []v1alpha1.SpecDescriptor) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.Path)
	}
	return out
}

func statusPaths(ds []v1alpha1.StatusDescriptor) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.Path)
	}
	return out
}

// imageFindings checks that the operator image is one and the same in the Deployment, the
// containerImage annotation and relatedImages (disconnected mirroring).
func imageFindings(csv *v1alpha1.ClusterServiceVersion) []Finding {
	var out []Finding
	want := csv.Annotations["containerImage"]
	if want == "" {
		return []Finding{{Error, "signet", "CSV has no containerImage annotation"}}
	}
	for _, d := range csv.Spec.InstallStrategy.StrategySpec.DeploymentSpecs {
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Image != want {
				out = append(out, Finding{Error, "signet", fmt.Sprintf("container %s of %s runs %q, containerImage is %q", c.Name, d.Name, c.Image, want)})
			}
		}
	}
	found := false
	for _, r := range csv.Spec.RelatedImages {
		found = found || r.Image == want
	}
	if !found {
		out = append(out, Finding{Error, "signet", fmt.Sprintf("relatedImages does not list %q", want)})
	}
	return out
}
