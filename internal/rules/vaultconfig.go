package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/kvwatch/kvwatch/internal/audit"
)

// Loosened lists the transitions from before to after that loosen a vault's
// protection, each as "what before → after": network default action Deny →
// Allow, public network access Disabled → Enabled, a broad IP rule added
// (more than 256 addresses, or any IPv6 /56 or wider), RBAC turned off,
// soft delete or purge protection turned off, soft-delete retention lowered,
// and access for deployments, templates or disk encryption turned on. A
// setting either side does not say is not judged. Hardening changes, and
// changes that leave a weak setting as it was, are not listed.
func Loosened(before, after *audit.VaultConfig) []string {
	if before == nil || after == nil {
		return nil
	}
	var out []string
	enum := func(name, b, a, weak string) {
		if b != "" && a != "" && strings.EqualFold(a, weak) && !strings.EqualFold(b, weak) {
			out = append(out, fmt.Sprintf("%s %s → %s", name, b, a))
		}
	}
	enum("network default action", before.NetworkDefaultAction, after.NetworkDefaultAction, "Allow")
	enum("public network access", before.PublicNetworkAccess, after.PublicNetworkAccess, "Enabled")
	if before.IPRules != nil && after.IPRules != nil {
		for _, r := range after.IPRules {
			if broadIPRule(r) && !slices.ContainsFunc(before.IPRules, func(b string) bool { return strings.EqualFold(b, r) }) {
				out = append(out, fmt.Sprintf("IP rule %s added", r))
			}
		}
	}
	off := func(name string, b, a *bool) {
		if b != nil && a != nil && *b && !*a {
			out = append(out, name+" on → off")
		}
	}
	on := func(name string, b, a *bool) {
		if b != nil && a != nil && !*b && *a {
			out = append(out, name+" off → on")
		}
	}
	off("RBAC authorization", before.RBACAuthorization, after.RBACAuthorization)
	off("soft delete", before.SoftDelete, after.SoftDelete)
	off("purge protection", before.PurgeProtection, after.PurgeProtection)
	if b, a := before.SoftDeleteRetentionDays, after.SoftDeleteRetentionDays; b != nil && a != nil && *a < *b {
		out = append(out, fmt.Sprintf("soft-delete retention %d → %d days", *b, *a))
	}
	on("access for VM deployment", before.EnabledForDeployment, after.EnabledForDeployment)
	on("access for template deployment", before.EnabledForTemplateDeployment, after.EnabledForTemplateDeployment)
	on("access for disk encryption", before.EnabledForDiskEncryption, after.EnabledForDiskEncryption)
	return out
}

// Weaknesses lists what leaves a configuration weak when it is first seen:
// what Weakened looks at, and broad IP rules. Access policies instead of
// RBAC and purge protection never enabled are how many vaults were born:
// they belong to the compliance review.
func Weaknesses(c *audit.VaultConfig) []string {
	if c == nil {
		return nil
	}
	var out []string
	if strings.EqualFold(c.NetworkDefaultAction, "Allow") {
		out = append(out, "network default action Allow")
	}
	if strings.EqualFold(c.PublicNetworkAccess, "Enabled") {
		out = append(out, "public network access Enabled")
	}
	if c.SoftDelete != nil && !*c.SoftDelete {
		out = append(out, "soft delete off")
	}
	if c.PurgeProtection != nil && !*c.PurgeProtection {
		out = append(out, "purge protection off")
	}
	if c.SoftDeleteRetentionDays != nil && *c.SoftDeleteRetentionDays < 90 {
		out = append(out, fmt.Sprintf("soft-delete retention %d days", *c.SoftDeleteRetentionDays))
	}
	for _, r := range c.IPRules {
		if broadIPRule(r) {
			out = append(out, "IP rule "+r)
		}
	}
	return out
}

// broadIPRule reports whether a firewall rule admits more than 256 IPv4
// addresses, or an IPv6 /56 or wider.
func broadIPRule(r string) bool {
	p, err := netip.ParsePrefix(r)
	if err != nil {
		return false // a single address
	}
	if p.Addr().Unmap().Is4() {
		bits := p.Bits()
		if p.Addr().Is4In6() {
			bits -= 96
		}
		return bits < 24
	}
	return p.Bits() <= 56
}
