package render

import "k8s.io/utils/ptr"

// buildSharedClusterPolicy renders one ClusterPolicy holding the rules of many registries:
// the registry restrictions it hosts (restrict-registries with failureAction Enforce,
// restrict-registries-audit with Audit; restrict.go), then for each registry, in name
// order, the denial of host spellings Kyverno cannot verify (allow.<name>) and the signature
// check (verify.<name>), exactly the rules Render would give it alone, renamed so that
// reports and events name the registry.
func buildSharedClusterPolicy(bs []*branch, host hosted) cpSpec {
	spec := cpSpec{Background: ptr.To(true), FailurePolicy: "Fail"}
	for _, h := range []struct {
		name, action string
		rs           *restriction
	}{{cpRuleRestrict, "Enforce", host.enforce}, {cpRuleRestrict + "-audit", "Audit", host.audit}} {
		if h.rs == nil {
			continue
		}
		match := cpMatchNamespaces(namespaceUnion(h.rs.appliesTo()))
		spec.Rules = append(spec.Rules, cpRestrictRule(h.name, match, h.action, h.rs))
	}
	for _, b := range bs {
		for _, rule := range buildClusterPolicy(b.s, nil).Rules {
			switch rule.Name {
			case cpRuleRespelled:
				rule.Name = cpSharedRestrictPrefix + b.s.name
			default:
				rule.Name = cpSharedVerifyPrefix + b.s.name
			}
			spec.Rules = append(spec.Rules, rule)
		}
	}
	return spec
}

// RegistryOfSharedRule returns the registry a rule of a shared ClusterPolicy belongs to.
func RegistryOfSharedRule(rule string) (string, bool) {
	for _, p := range []string{cpSharedVerifyPrefix, cpSharedRestrictPrefix} {
		if len(rule) > len(p) && rule[:len(p)] == p {
			return rule[len(p):], true
		}
	}
	return "", false
}
