package audit

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Skip says why a well-formed record is not a Key Vault audit event. Skipped
// records are counted, not dead-lettered: the same hub may carry other
// categories, resource types and metrics.
type Skip string

// Reasons for skipping a record.
const (
	SkipNone         Skip = ""
	SkipMetric       Skip = "metric"        // a metrics record (metricName)
	SkipCategory     Skip = "category"      // a log category other than AuditEvent
	SkipResourceType Skip = "resource_type" // not a Microsoft.KeyVault/vaults resource
)

// ErrInvalid marks a record that claims to be a Key Vault audit record but
// can't be used (no time, no operation); such records are dead-lettered.
var ErrInvalid = errors.New("invalid audit record")

// Normalize turns a raw record into an Event. It returns a Skip reason for
// records that are not Key Vault AuditEvents, and an error wrapping
// ErrInvalid for ones that are but can't be read.
func Normalize(r *Record, src Source) (Event, Skip, error) {
	var n Normalizer
	return n.Normalize(r, src)
}

// Normalizer normalizes records like Normalize, keeping small caches of
// parsed resource ids and lower-cased identifiers so a stream of records
// from a few vaults and callers allocates less. Its zero value is ready;
// it is not safe for concurrent use.
type Normalizer struct {
	vaults map[string]vaultID
	lower  map[string]string
}

type vaultID struct {
	sub, rg, vault string
	ok             bool
}

// cacheMax bounds each cache; when full it is dropped and refilled. Only
// strings up to cacheKeyMax bytes are cached, so a cache holds at most a
// few MiB whatever the records say.
const (
	cacheMax    = 4096
	cacheKeyMax = 512
)

func (n *Normalizer) vaultID(id string) (string, string, string, bool) {
	if v, ok := n.vaults[id]; ok {
		return v.sub, v.rg, v.vault, v.ok
	}
	sub, rg, vault, ok := ParseVaultID(id)
	if len(id) > cacheKeyMax {
		return sub, rg, vault, ok // hostile lengths are not kept
	}
	if n.vaults == nil || len(n.vaults) >= cacheMax {
		n.vaults = make(map[string]vaultID, 16)
	}
	n.vaults[id] = vaultID{sub, rg, vault, ok}
	return sub, rg, vault, ok
}

// toLower lower-cases identifiers (GUIDs, names) through the cache.
func (n *Normalizer) toLower(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := n.lower[s]; ok {
		return v
	}
	v := strings.ToLower(s)
	if len(s) > cacheKeyMax {
		return v
	}
	if n.lower == nil || len(n.lower) >= cacheMax {
		n.lower = make(map[string]string, 64)
	}
	n.lower[s] = v
	return v
}

// Normalize is the function Normalize, with caches.
func (n *Normalizer) Normalize(r *Record, src Source) (Event, Skip, error) {
	if r.MetricName != "" {
		return Event{}, SkipMetric, nil
	}
	if r.Category != "" && !strings.EqualFold(r.Category, "AuditEvent") {
		return Event{}, SkipCategory, nil
	}
	sub, rg, vault, ok := n.vaultID(r.ResourceID)
	if !ok && r.ResourceID != "" {
		return Event{}, SkipResourceType, nil
	}
	if r.OperationName == "" {
		return Event{}, SkipNone, fmt.Errorf("%w: no operationName", ErrInvalid)
	}
	t, err := ParseTime(r.Time)
	if err != nil {
		return Event{}, SkipNone, fmt.Errorf("%w: time: %w", ErrInvalid, err)
	}

	e := Event{
		Time:              t,
		ResourceID:        r.ResourceID,
		SubscriptionID:    sub,
		ResourceGroup:     rg,
		Vault:             vault,
		Operation:         r.OperationName,
		OperationVersion:  r.OperationVersion,
		RequestURI:        r.Properties.RequestURI,
		ResultType:        r.ResultType,
		ResultDescription: r.ResultDescription,
		CallerIP:          r.CallerIPAddress,
		ClientInfo:        r.Properties.ClientInfo,
		TLSVersion:        r.Properties.TLSVersion,
		CorrelationID:     r.CorrelationID,
		Source:            src,
	}
	e.Family, e.Kind = Classify(r.OperationName)

	// Outcome: the HTTP status, then the result signature; never resultType.
	if r.Properties.HTTPStatusCode.Set {
		e.HTTPStatus = int(r.Properties.HTTPStatusCode.Value)
	}
	if e.HTTPStatus < 100 || e.HTTPStatus > 599 {
		e.HTTPStatus = StatusFromSignature(r.ResultSignature)
	}
	e.Outcome = OutcomeOf(e.HTTPStatus)

	if r.DurationMs.Set && r.DurationMs.Value >= 0 && r.DurationMs.Value < 1e12 {
		e.DurationMs = int64(r.DurationMs.Value)
	}

	// The object touched: properties.id, else requestUri.
	vaultHost := ""
	for _, u := range [...]string{r.Properties.ID, r.Properties.RequestURI} {
		if u == "" {
			continue
		}
		host, typ, name, version := parseObjectURI(u)
		// Only a data-plane host names the vault (<vault>.vault.azure.net
		// and the sovereign clouds' vault.* domains): management records
		// carry the ARM host (control-<region>.vaultcore.azure.net) in
		// requestUri. The first found, properties.id's, wins.
		if vaultHost == "" && strings.Contains(strings.ToLower(host), ".vault.") {
			vaultHost = host
		}
		if typ != "" {
			e.ObjectType, e.ObjectName, e.ObjectVersion = typ, name, version
			break
		}
	}
	if e.Vault == "" && vaultHost != "" {
		if i := strings.IndexByte(vaultHost, '.'); i > 0 {
			e.Vault = strings.ToLower(vaultHost[:i])
		}
	}

	e.Caller = n.callerOf(&r.Identity, r.CallerIPAddress)

	if (e.Operation == "VaultPut" || e.Operation == "VaultPatch" || e.Operation == "VaultGet") && r.Properties.Properties != nil {
		e.Config = configOf(r.Properties.Properties)
	}
	// Last, once every field is derived from the whole values (the vault
	// from the full id, the key from the full claim): every string bounded.
	bound(&e)
	return e, SkipNone, nil
}

func (n *Normalizer) callerOf(id *Identity, ip string) Caller {
	c := Caller{
		ObjectID: n.toLower(id.ObjectID),
		AppID:    n.toLower(id.AppID),
		TenantID: n.toLower(id.TenantID),
		UPN:      id.UPN,
		Name:     id.Name,
	}
	if c.UPN == "" {
		c.UPN = id.UniqueName
	}
	switch {
	case c.ObjectID != "":
		c.Key, c.KeyFrom = c.ObjectID, "oid"
	case c.AppID != "":
		c.Key, c.KeyFrom = c.AppID, "appid"
	case c.UPN != "":
		c.Key, c.KeyFrom = n.toLower(c.UPN), "upn"
	case c.Name != "":
		c.Key, c.KeyFrom = n.toLower(c.Name), "name"
	case ip != "":
		c.Key, c.KeyFrom = strings.ToLower(ip), "ip"
	case id.IPAddr != "":
		c.Key, c.KeyFrom = strings.ToLower(id.IPAddr), "ip"
	}
	return c
}

func configOf(v *VaultRecord) *VaultConfig {
	c := &VaultConfig{
		NetworkDefaultAction: v.NetworkAcls.DefaultAction,
		PublicNetworkAccess:  v.PublicNetworkAccess,
		RBACAuthorization:    v.EnableRbacAuthorization,
		PurgeProtection:      v.EnablePurgeProtection,
		SoftDelete:           v.EnableSoftDelete,
	}
	if v.SoftDeleteRetentionInDays.Set {
		d := int(v.SoftDeleteRetentionInDays.Value)
		c.SoftDeleteRetentionDays = &d
	}
	if v.AccessPolicies.Set {
		n := v.AccessPolicies.N
		c.AccessPolicies = &n
	}
	c.EnabledForDeployment = v.EnabledForDeployment
	c.EnabledForTemplateDeployment = v.EnabledForTemplateDeployment
	c.EnabledForDiskEncryption = v.EnabledForDiskEncryption
	if v.NetworkAcls.IPRulesSet {
		c.IPRules = append([]string{}, v.NetworkAcls.IPRules...)
	}
	for _, id := range v.PolicyObjectIDs {
		c.PolicyObjectIDs = append(c.PolicyObjectIDs, strings.ToLower(id))
	}
	return c
}

// ParseVaultID reads subscription, resource group and vault name (all
// lower-case) from a vault's ARM id, matching case-insensitively. ok is
// false unless the id names a Microsoft.KeyVault/vaults resource.
func ParseVaultID(id string) (sub, rg, vault string, ok bool) {
	// /SUBSCRIPTIONS/<sub>/RESOURCEGROUPS/<rg>/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/<name>
	rest := strings.TrimPrefix(id, "/")
	rest = strings.TrimSuffix(rest, "/") // ".../vaults/<name>/" is the same vault
	var parts [9]string
	n := 0
	for n < len(parts) {
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			parts[n] = rest
			n++
			rest = ""
			break
		}
		parts[n] = rest[:i]
		n++
		rest = rest[i+1:]
	}
	if n != 8 || rest != "" ||
		!strings.EqualFold(parts[0], "subscriptions") ||
		!strings.EqualFold(parts[2], "resourcegroups") ||
		!strings.EqualFold(parts[4], "providers") ||
		!strings.EqualFold(parts[5], "microsoft.keyvault") ||
		!strings.EqualFold(parts[6], "vaults") ||
		parts[7] == "" {
		return "", "", "", false
	}
	return strings.ToLower(parts[1]), strings.ToLower(parts[3]), strings.ToLower(parts[7]), true
}

// parseObjectURI reads the host and the object from a Key Vault data-plane
// URI such as https://v.vault.azure.net/secrets/name/version?api-version=7.4.
func parseObjectURI(u string) (host, typ, name, version string) {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	path := ""
	if i := strings.IndexByte(u, '/'); i >= 0 {
		host, path = u[:i], u[i+1:]
	} else {
		return u, "", "", ""
	}
	if i := strings.IndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	var seg [3]string
	for i := range seg {
		j := strings.IndexByte(path, '/')
		if j < 0 {
			seg[i], path = path, ""
			break
		}
		seg[i], path = path[:j], path[j+1:]
	}
	switch strings.ToLower(seg[0]) {
	case "secrets", "deletedsecrets":
		typ = "secret"
	case "keys", "deletedkeys":
		typ = "key"
	case "certificates", "deletedcertificates":
		typ = "certificate"
	case "storage", "deletedstorage":
		typ = "storage"
	default:
		return host, "", "", ""
	}
	name, version = unescape(seg[1]), unescape(seg[2])
	// Object versions are hex strings; a word in their place is a
	// sub-resource or an action (certificates/<name>/pending,
	// keys/<name>/create, secrets/<name>/backup), not a version.
	if !isHex(version) && !(typ == "certificate" && (name == "issuers" || name == "contacts")) {
		version = ""
	}
	// certificates/contacts, certificates/issuers/<name>: the sub-resource is the object.
	if typ == "certificate" && (name == "issuers" || name == "contacts") {
		name, version = name+"/"+version, ""
		name = strings.TrimSuffix(name, "/")
	}
	return host, typ, name, version
}

// isHex reports whether s is a non-empty string of hex digits.
func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func unescape(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	if v, err := url.PathUnescape(s); err == nil {
		return v
	}
	return s
}

// ParseTime reads a record time leniently: an ISO 8601 date and time with
// 'T' or a space between them, 0 to 9 fractional digits, and a 'Z', a
// numeric offset, or no zone at all (then UTC). The result is in UTC, after
// 0001-01-01T00:00:00Z and before year 10000.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if len(s) < 19 {
		return time.Time{}, fmt.Errorf("%q is not a date and time", clip(s))
	}
	num := func(i, n int) (int, bool) {
		v := 0
		for j := i; j < i+n; j++ {
			c := s[j]
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	bad := func() (time.Time, error) {
		return time.Time{}, fmt.Errorf("%q is not a date and time", clip(s))
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 2)
	day, ok3 := num(8, 2)
	hour, ok4 := num(11, 2)
	minute, ok5 := num(14, 2)
	sec, ok6 := num(17, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || s[4] != '-' || s[7] != '-' ||
		(s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':' {
		return bad()
	}
	if month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return bad()
	}
	i := 19
	nsec := 0
	if i < len(s) && (s[i] == '.' || s[i] == ',') {
		i++
		digits := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if digits < 9 {
				nsec = nsec*10 + int(s[i]-'0')
				digits++
			}
			i++
		}
		if digits == 0 {
			return bad()
		}
		for d := digits; d < 9; d++ {
			nsec *= 10
		}
	}
	offset := 0
	switch {
	case i == len(s):
	case (s[i] == 'Z' || s[i] == 'z') && i+1 == len(s):
	case (s[i] == '+' || s[i] == '-') && (len(s)-i == 6 || len(s)-i == 5 || len(s)-i == 3):
		oh, ok := num(i+1, 2)
		om := 0
		switch len(s) - i {
		case 6:
			if s[i+3] != ':' {
				return bad()
			}
			var okm bool
			om, okm = num(i+4, 2)
			ok = ok && okm
		case 5:
			var okm bool
			om, okm = num(i+3, 2)
			ok = ok && okm
		}
		if !ok || oh > 23 || om > 59 {
			return bad()
		}
		offset = oh*3600 + om*60
		if s[i] == '-' {
			offset = -offset
		}
	default:
		return bad()
	}
	if sec == 60 { // leap second: keep the instant just before
		sec, nsec = 59, 999999999
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day { // 31 February and the like
		return bad()
	}
	t = t.Add(-time.Duration(offset) * time.Second)
	// Keep to instants that can be told from the zero Time and that
	// time.Time.MarshalJSON and RFC 3339 can write (years 1 to 9999).
	if !t.After(time.Time{}) || t.Year() > 9999 {
		return bad()
	}
	return t, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
