package controllers

import (
	"strconv"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
)

// coverageMemo shares status.coverage, and its patch, among the registries of one flush
// of the podinsights controller. A registry's coverage depends on its patterns only
// through which of the namespaces' distinct images they match: registries that match the
// same ones (typically none but their own, which a namespace's other registries match
// neither) have the same coverage, summed, sorted and marshalled once rather than once per
// registry (docs/performance.md, "Pod insights"). The key names each aggregate by its
// sequence number, so an aggregate taken during the flush is another key.
type coverageMemo struct {
	byKey map[string]*memoCoverage
	key   []byte // (reused)
}

type memoCoverage struct {
	coverage *trustv1alpha1.CoverageSummary
	patch    []byte // coveragePatch(coverage), once a registry needs it
}

func newCoverageMemo() *coverageMemo { return &coverageMemo{byKey: map[string]*memoCoverage{}} }

// of returns what coverageOf(matcher, namespaces) returns; callers must not modify it.
func (m *coverageMemo) of(matcher *render.Matcher, namespaces []*namespacePods) *memoCoverage {
	k := m.key[:0]
	for _, ns := range namespaces {
		if ns == nil {
			k = append(k, '-', ';')
			continue
		}
		k = strconv.AppendUint(k, ns.seq, 10)
		k = append(k, ':')
		for _, c := range ns.distinct {
			if matcher.MatchCanonical(c) {
				k = append(k, '1')
			} else {
				k = append(k, '0')
			}
		}
		k = append(k, ';')
	}
	m.key = k
	if c, ok := m.byKey[string(k)]; ok {
		return c
	}
	c := &memoCoverage{coverage: coverageOf(matcher, namespaces)}
	m.byKey[string(k)] = c
	return c
}

// patchOf is the merge patch of c's coverage (coveragePatch), marshalled once.
func (c *memoCoverage) patchOf() ([]byte, error) {
	if c.patch == nil {
		p, err := coveragePatch(c.coverage)
		if err != nil {
			return nil, err
		}
		c.patch = p
	}
	return c.patch, nil
}
