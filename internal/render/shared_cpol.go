package render

import "k8s.io/utils/ptr"

// buildSharedClusterPolicy renders one ClusterPolicy holding the rules of many registries:
// for each, in name order, the registry restriction (allow.<name>, with restrictRegistries)
// and the signature check (verify.<name>), exactly the rules Render would give it alone,
// renamed so that reports and events name the registry.
func buildSharedClusterPolicy(bs []*branch) cpSpec {
	spec := cpSpec{Background: ptr.To(true), FailurePolicy: "Fail"}
	for _, b := range bs {
		for _, rule := range buildClusterPolicy(b.s).Rules {
			switch rule.Name {
			case cpRuleRestrict:
				rule.Name = cpSharedRestrictPrefix + b.s.name
			case cpRuleVerify:
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
