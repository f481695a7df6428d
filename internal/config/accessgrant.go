package config

import "slices"

// accessGrant checks an access_grant rule: it groups by vault only (the
// grantee is the finding's value), and its count needs then.
func (v *validator) accessGrant(r *RuleSpec, p string) {
	if len(r.GroupBy) > 0 && !slices.Equal(r.GroupBy, []string{"vault"}) {
		v.errf(p+".group_by", "access_grant rules group by vault (the principal granted is the finding's value): group_by: [vault] or nothing")
	}
	cp := p + ".count"
	if r.Count < 0 || (r.Count == 0 && v.m.given(v.file, cp)) {
		v.errf(cp, "count must be at least 1")
	}
	if r.Then == nil && r.Count > 1 {
		v.errf(cp, "count counts the grantee's then events: an access_grant rule without then (a grant removed within the window) takes no count")
	}
}
