// Package crdvalidate runs, offline, what the kube-apiserver does with a custom resource
// on create: decode (unknown fields are reported as with fieldValidation=Strict, which
// kubectl uses by default), prune, default, then validate: metadata, the OpenAPI schema,
// list-type (set/map) uniqueness and the CEL x-kubernetes-validations rules. It uses the
// same k8s.io/apiextensions-apiserver libraries in the same order
// (pkg/apiserver/customresource_handler.go and pkg/registry/customresource/strategy.go,
// validator.go), so its messages are the apiserver's.
package crdvalidate

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structurallisttype "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/api/operation"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/features"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"sigs.k8s.io/yaml"
)

// Validator validates and defaults objects of one CRD.
type Validator struct {
	group, kind string
	namespaced  bool
	versions    map[string]*version
	served      []string
}

type version struct {
	structural *structuralschema.Structural
	schema     apiservervalidation.SchemaValidator
	cel        *cel.Validator
	status     bool
}

// New builds a Validator from a CustomResourceDefinition manifest (apiextensions.k8s.io/v1).
func New(crdYAML []byte) (*Validator, error) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(crdYAML, crd); err != nil {
		return nil, fmt.Errorf("crdvalidate: parsing the CRD: %w", err)
	}
	if crd.Kind != "CustomResourceDefinition" {
		return nil, fmt.Errorf("crdvalidate: %q is not a CustomResourceDefinition", crd.Kind)
	}
	v := &Validator{
		group:      crd.Spec.Group,
		kind:       crd.Spec.Names.Kind,
		namespaced: crd.Spec.Scope == apiextensionsv1.NamespaceScoped,
		versions:   map[string]*version{},
	}
	for i := range crd.Spec.Versions {
		cv := &crd.Spec.Versions[i]
		if !cv.Served {
			continue
		}
		if cv.Schema == nil || cv.Schema.OpenAPIV3Schema == nil {
			return nil, fmt.Errorf("crdvalidate: version %s has no schema", cv.Name)
		}
		internal := &apiextensions.CustomResourceValidation{}
		if err := apiextensionsv1.Convert_v1_CustomResourceValidation_To_apiextensions_CustomResourceValidation(cv.Schema, internal, nil); err != nil {
			return nil, fmt.Errorf("crdvalidate: converting the schema of %s: %w", cv.Name, err)
		}
		s, err := structuralschema.NewStructural(internal.OpenAPIV3Schema)
		if err != nil {
			return nil, fmt.Errorf("crdvalidate: the schema of %s is not structural: %w", cv.Name, err)
		}
		s = s.DeepCopy()
		if err := structuraldefaulting.PruneDefaults(s); err != nil {
			return nil, fmt.Errorf("crdvalidate: pruning defaults of %s: %w", cv.Name, err)
		}
		sv, _, err := apiservervalidation.NewSchemaValidator(internal.OpenAPIV3Schema)
		if err != nil {
			return nil, fmt.Errorf("crdvalidate: the schema of %s: %w", cv.Name, err)
		}
		v.versions[cv.Name] = &version{
			structural: s,
			schema:     sv,
			cel:        cel.NewValidator(s, true, celconfig.PerCallLimit),
			status:     cv.Subresources != nil && cv.Subresources.Status != nil,
		}
		v.served = append(v.served, cv.Name)
	}
	if len(v.versions) == 0 {
		return nil, errors.New("crdvalidate: the CRD serves no version")
	}
	return v, nil
}

// Result is what the apiserver would do with an object on create.
type Result struct {
	// Object is the object as the apiserver would store it: unknown fields pruned, defaults
	// applied (status dropped, namespace cleared for a cluster-scoped kind). It is set even
	// when there are errors, as far as decoding got.
	Object map[string]any
	// UnknownFields are the paths of fields the schema does not declare. With
	// fieldValidation=Strict (kubectl's default) the apiserver refuses the object with
	// `strict decoding error: unknown field "<path>"`; otherwise it drops them.
	UnknownFields []string
	// Errors are the apiserver's validation causes, in its order (except that the CEL rule
	// errors, which the apiserver reports in map iteration order, are sorted by field): each
	// Error() is the cause's field, ": " and message.
	Errors field.ErrorList
}

// Messages lists every problem as the apiserver words it: the unknown fields first (as in a
// strict decoding error), then the validation causes.
func (r Result) Messages() []string {
	out := make([]string, 0, len(r.UnknownFields)+len(r.Errors))
	for _, f := range r.UnknownFields {
		out = append(out, fmt.Sprintf("unknown field %q", f))
	}
	for _, e := range r.Errors {
		out = append(out, e.Error())
	}
	return out
}

// OK reports whether the apiserver would accept the object (with strict field validation).
func (r Result) OK() bool { return len(r.UnknownFields) == 0 && len(r.Errors) == 0 }

// Kind returns the group and kind the Validator handles.
func (v *Validator) Kind() schema.GroupKind { return schema.GroupKind{Group: v.group, Kind: v.kind} }

// Handles reports whether obj claims to be of this CRD's group or kind (so that a wrong
// version or a typo in the kind is reported rather than skipped).
func (v *Validator) Handles(obj map[string]any) bool {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	gv, _ := schema.ParseGroupVersion(apiVersion)
	return gv.Group == v.group || kind == v.kind
}

// Create runs the apiserver's create path on a copy of obj (a decoded JSON or YAML object,
// integers as int64 as from k8s.io/apimachinery/pkg/util/json).
func (v *Validator) Create(ctx context.Context, obj map[string]any) Result {
	u := runtime.DeepCopyJSON(obj)
	res := Result{Object: u}

	apiVersion, _ := u["apiVersion"].(string)
	kind, _ := u["kind"].(string)
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil || gv.Group != v.group || kind != v.kind {
		// ValidateTypeMeta's words; the apiserver would not even route such a request here
		if kind != v.kind {
			res.Errors = append(res.Errors, field.Invalid(field.NewPath("kind"), kind, fmt.Sprintf("must be %v", v.kind)))
		}
		if err != nil || gv.Group != v.group {
			res.Errors = append(res.Errors, field.Invalid(field.NewPath("apiVersion"), apiVersion,
				fmt.Sprintf("must be %s/<version> (served: %s)", v.group, strings.Join(v.served, ", "))))
		}
		return res
	}
	ver, ok := v.versions[gv.Version]
	if !ok {
		res.Errors = append(res.Errors, field.Invalid(field.NewPath("apiVersion"), apiVersion,
			fmt.Sprintf("version %q is not served (served: %s)", gv.Version, strings.Join(v.served, ", "))))
		return res
	}

	// decoding: unstructuredSchemaCoercer.apply
	objectMeta, foundMeta, metaUnknown, err := schemaobjectmeta.GetObjectMetaWithOptions(u, schemaobjectmeta.ObjectMetaOptions{ReturnUnknownFieldPaths: true})
	if err != nil {
		res.Errors = append(res.Errors, field.Invalid(field.NewPath("metadata"), nil, err.Error()))
		return res
	}
	res.UnknownFields = append(res.UnknownFields, metaUnknown...)
	res.UnknownFields = append(res.UnknownFields,
		structuralpruning.PruneWithOptions(u, ver.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})...)
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(u, ver.structural)
	ferr, paths := schemaobjectmeta.CoerceWithOptions(nil, u, ver.structural, false, schemaobjectmeta.CoerceOptions{ReturnUnknownFieldPaths: true})
	if ferr != nil {
		res.Errors = append(res.Errors, ferr)
		return res
	}
	res.UnknownFields = append(res.UnknownFields, paths...)
	u["apiVersion"], u["kind"] = apiVersion, kind
	if foundMeta {
		if err := schemaobjectmeta.SetObjectMeta(u, objectMeta); err != nil {
			res.Errors = append(res.Errors, field.Invalid(field.NewPath("metadata"), nil, err.Error()))
			return res
		}
	}
	// the codec's defaulter
	structuraldefaulting.Default(u, ver.structural)

	// rest.BeforeCreate: a cluster-scoped object loses its namespace; PrepareForCreate
	// drops status when the status subresource is enabled
	if !v.namespaced {
		if md, ok := u["metadata"].(map[string]any); ok {
			delete(md, "namespace")
		}
	}
	if ver.status {
		delete(u, "status")
	}

	// customResourceStrategy.Validate
	errs := v.validateObjectMeta(ctx, u)
	errs = append(errs, apiservervalidation.ValidateCustomResource(nil, u, ver.schema)...)
	errs = append(errs, schemaobjectmeta.Validate(ctx, nil, u, ver.structural, false)...)
	errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, ver.structural, u)...)
	if blocking, note := hasBlockingErr(errs); blocking {
		errs = append(errs, note)
	} else {
		celErrs, _ := ver.cel.Validate(ctx, nil, ver.structural, u, nil, celconfig.RuntimeCELCostBudget)
		// the apiserver evaluates rules while ranging over maps, so their order varies from
		// request to request; sort them (by field, then message) for stable output
		sort.SliceStable(celErrs, func(i, j int) bool {
			if celErrs[i].Field != celErrs[j].Field {
				return celErrs[i].Field < celErrs[j].Field
			}
			return celErrs[i].ErrorBody() < celErrs[j].ErrorBody()
		})
		errs = append(errs, celErrs...)
	}
	res.Errors = append(res.Errors, errs...)
	return res
}

func (v *Validator) validateObjectMeta(ctx context.Context, u map[string]any) field.ErrorList {
	meta := &metav1.ObjectMeta{}
	if raw, ok := u["metadata"].(map[string]any); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, meta); err != nil {
			return field.ErrorList{field.Invalid(field.NewPath("metadata"), raw, err.Error())}
		}
	}
	return apivalidation.ValidateObjectMetaDeclaratively(ctx, operation.Create, meta, nil, v.namespaced,
		apivalidation.NameIsDNSSubdomain, field.NewPath("metadata"), utilfeature.DefaultFeatureGate.Enabled(features.DeclarativeValidationBeta))
}

// hasBlockingErr is the apiserver's rule (registry/customresource/strategy.go): after these
// schema errors the CEL rules are not evaluated, and a note says so.
func hasBlockingErr(errs field.ErrorList) (bool, *field.Error) {
	for _, err := range errs {
		switch err.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return true, field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation")
		}
	}
	return false, nil
}

// IsNotCheckedNote reports whether msg is the apiserver's note that CEL rules were skipped.
func IsNotCheckedNote(msg string) bool {
	return strings.Contains(msg, "some validation rules were not checked")
}
