package render

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CEL snippets shared by both engines. Everything here uses core CEL, optional field
// selection (.?f.orValue()) and the strings extension functions available in every
// Kubernetes (>= 1.28) and Kyverno CEL environment: no cel.bind, no list extensions.

// celString quotes s as a single-quoted CEL string literal.
func celString(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\'':
			b.WriteString(`\'`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r > 0x7e:
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// celRawString writes a regular expression as a raw CEL string (no escape processing), or
// as a quoted one when it cannot be raw.
func celRawString(s string) string {
	if strings.ContainsAny(s, "'\n\r") {
		return celString(s)
	}
	return "r'" + s + "'"
}

func celStringList(ss []string) string {
	q := make([]string, 0, len(ss))
	for _, s := range ss {
		q = append(q, celString(s))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// celPodImages lists the image of every container, init container and ephemeral container
// of the Pod in `object`.
const celPodImages = "(object.spec.?containers.orValue([]) + object.spec.?initContainers.orValue([]) + object.spec.?ephemeralContainers.orValue([])).map(c, c.image)"

// celImagesUnchanged is true for an UPDATE that leaves every image of the Pod as it was
// (a label, annotation or finalizer edit). Such an update is not judged again: a Pod that
// predates the policy must stay manageable (its controllers remove finalizers, relabel it),
// and nothing about what it runs changes. Adding an ephemeral container, or any image
// change, is judged in full. It needs the variable named by varPodImages.
func celImagesUnchanged(varPodImages string) string {
	return "has(request.operation) && request.operation == 'UPDATE' && oldObject != null && " +
		"(oldObject.spec.?containers.orValue([]) + oldObject.spec.?initContainers.orValue([]) + oldObject.spec.?ephemeralContainers.orValue([])).map(c, c.image)" +
		" == variables." + varPodImages
}

// celSelector is a CEL condition over namespaceObject that holds exactly when the
// namespace's labels match the (valid, non-empty) label selector.
func celSelector(sel *metav1.LabelSelector) string {
	const labels = "namespaceObject.metadata.labels"
	const has = "has(" + labels + ")"
	var terms []string
	keys := make([]string, 0, len(sel.MatchLabels))
	for k := range sel.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		terms = append(terms, fmt.Sprintf("(%s && %s in %s && %s[%s] == %s)",
			has, celString(k), labels, labels, celString(k), celString(sel.MatchLabels[k])))
	}
	for _, e := range sel.MatchExpressions {
		k := celString(e.Key)
		switch e.Operator {
		case metav1.LabelSelectorOpIn:
			terms = append(terms, fmt.Sprintf("(%s && %s in %s && %s[%s] in %s)", has, k, labels, labels, k, celStringList(e.Values)))
		case metav1.LabelSelectorOpNotIn:
			terms = append(terms, fmt.Sprintf("(!%s || !(%s in %s) || !(%s[%s] in %s))", has, k, labels, labels, k, celStringList(e.Values)))
		case metav1.LabelSelectorOpExists:
			terms = append(terms, fmt.Sprintf("(%s && %s in %s)", has, k, labels))
		case metav1.LabelSelectorOpDoesNotExist:
			terms = append(terms, fmt.Sprintf("(!%s || !(%s in %s))", has, k, labels))
		default:
			// resolveNamespaces validated the selector; never reached
			terms = append(terms, "false")
		}
	}
	return strings.Join(terms, " && ")
}
