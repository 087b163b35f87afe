package render

import "k8s.io/utils/ptr"

// buildSharedClusterPolicy renders one ClusterPolicy holding the rules of many registries:
// the registry restrictions it hosts (restrict-registries with failureAction Enforce,
// restrict-registries-audit with Audit; restrict.go); the denial of host spellings Kyverno
// cannot verify for all its registries of each action (deny-respelled-hosts,
// deny-respelled-hosts-audit: one CEL rule each, since Kyverno validates every CEL rule of a
// policy on each write and one per registry outlasted its webhook timeout); then for each
// registry, in name order, the signature check (verify.<name>), exactly the rule Render
// would give it alone, renamed so that reports and events name the registry.
func buildSharedClusterPolicy(bs []*branch, host hosted) cpSpec {
	spec := cpSpec{Background: ptr.To(true), FailurePolicy: "Fail"}
	for _, h := range []struct {
		name, action string
		rs           *restriction
	}{{cpRuleRestrict, "Enforce", host.enforce}, {cpRuleRestrict + "-audit", "Audit", host.audit}} {
		if h.rs == nil {
			continue
		}
		spec.Rules = append(spec.Rules, cpRestrictRule(h.name, cpMatchNamespaces(namespaceUnion(h.rs.appliesTo())), h.action, h.rs))
	}
	var enforce, audit []*settings
	for _, b := range bs {
		if b.s.enforce {
			enforce = append(enforce, b.s)
		} else {
			audit = append(audit, b.s)
		}
	}
	for _, g := range []struct {
		name, action string
		entries      []*settings
	}{{cpRuleRespelled, "Enforce", enforce}, {cpRuleRespelled + "-audit", "Audit", audit}} {
		if len(g.entries) > 0 {
			spec.Rules = append(spec.Rules, withPreconditions(cpRespelledPrecondition,
				cpRestrictRule(g.name, cpMatchNamespaces(namespaceUnion(g.entries)), g.action, respelledRestriction(g.entries, g.action == "Audit"))))
		}
	}
	for _, b := range bs {
		for _, rule := range buildClusterPolicy(b.s, nil).Rules {
			if rule.Name == cpRuleRespelled {
				continue
			}
			rule.Name = cpSharedVerifyPrefix + b.s.name
			spec.Rules = append(spec.Rules, rule)
		}
	}
	return spec
}

// sharedRespelledRule names the shared ClusterPolicy rule that denies s's respelled hosts.
func sharedRespelledRule(s *settings) string {
	if s.enforce {
		return cpRuleRespelled
	}
	return cpRuleRespelled + "-audit"
}

// RegistryOfSharedRule returns the registry a rule of a shared ClusterPolicy belongs to.
func RegistryOfSharedRule(rule string) (string, bool) {
	for _, p := range []string{cpSharedVerifyPrefix, cpSharedLegacyRestrictPrefix} {
		if len(rule) > len(p) && rule[:len(p)] == p {
			return rule[len(p):], true
		}
	}
	return "", false
}
