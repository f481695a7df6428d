package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"unicode/utf8"
)

// Every string of an Event comes from a log record, and a record can say
// anything: a 40,000-character UPN, a megabyte of clientInfo. Whatever
// normalization keeps is stored (state group keys, distinct values,
// statistics, a finding's example event, alerts in the outbox), and Table
// Storage refuses a string property over 32 K characters and an entity
// over 1 MiB. So normalization bounds each string field to the length
// below, in bytes of UTF-8 (never more UTF-16 characters than that).
//
// A longer value is cut at a character boundary and ends in "…#" and the
// first 16 hex digits of the SHA-256 of the whole value (TruncSuffixLen
// bytes in all, within the bound), so two long values that differ anywhere
// stay different, and the same value always gives the same result. The
// event's Truncated field names the fields that were cut; printers,
// alerts and dead letters show it.
//
// The bounds leave real values alone with room to spare: a vault name is
// 3–24 characters, a resource group at most 90, an ARM id of a vault about
// 200, ids are GUIDs (36), a UPN at most 113 in Entra ID, an IP at most 45,
// secret, key and certificate names at most 127. Free text (request URI,
// result description, client info, display names) gets 1–2 KiB. All of
// them together stay under 11 KiB, so a group key made of every field
// rules can group by stays under 6 KiB and an example event under 12 KiB
// of JSON before escaping.
const (
	MaxVault             = 64
	MaxSubscription      = 64
	MaxResourceGroup     = 128
	MaxResourceID        = 512
	MaxOperation         = 128
	MaxOperationVersion  = 64
	MaxObjectName        = 512
	MaxObjectVersion     = 64
	MaxRequestURI        = 2048
	MaxResultType        = 64
	MaxResultDescription = 2048
	MaxIP                = 64
	MaxClientInfo        = 1024
	MaxTLSVersion        = 32
	MaxCorrelationID     = 128
	MaxID                = 128  // caller object id, app id, tenant id
	MaxUPN               = 1024 // caller UPN and name
	MaxConfigValue       = 64   // vault configuration enums
)

// TruncSuffixLen is the length of what Truncate appends: "…#" and 16 hex
// digits.
const TruncSuffixLen = len("…#") + 16

// Truncate returns s unchanged when it is at most max bytes long, else its
// longest prefix that leaves room for "…#" and 16 hex digits of the
// SHA-256 of s, followed by those; ok reports whether it cut. max must be
// larger than TruncSuffixLen.
func Truncate(s string, max int) (string, bool) {
	if len(s) <= max {
		return s, false
	}
	sum := sha256.Sum256([]byte(s))
	cut := max - TruncSuffixLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	b := make([]byte, 0, cut+TruncSuffixLen)
	b = append(b, s[:cut]...)
	b = append(b, "…#"...)
	b = hex.AppendEncode(b, sum[:8])
	return string(b), true
}

// bounds lists every string field of an Event an input can set, with its
// JSON name and bound. Caller.Key is bounded as the field it was taken
// from, so a key from an object id equals the (bounded) object id.
var bounds = [...]struct {
	name string
	max  int
	f    func(*Event) *string
}{
	{"resourceId", MaxResourceID, func(e *Event) *string { return &e.ResourceID }},
	{"subscriptionId", MaxSubscription, func(e *Event) *string { return &e.SubscriptionID }},
	{"resourceGroup", MaxResourceGroup, func(e *Event) *string { return &e.ResourceGroup }},
	{"vault", MaxVault, func(e *Event) *string { return &e.Vault }},
	{"operation", MaxOperation, func(e *Event) *string { return &e.Operation }},
	{"operationVersion", MaxOperationVersion, func(e *Event) *string { return &e.OperationVersion }},
	{"objectName", MaxObjectName, func(e *Event) *string { return &e.ObjectName }},
	{"objectVersion", MaxObjectVersion, func(e *Event) *string { return &e.ObjectVersion }},
	{"requestUri", MaxRequestURI, func(e *Event) *string { return &e.RequestURI }},
	{"resultType", MaxResultType, func(e *Event) *string { return &e.ResultType }},
	{"resultDescription", MaxResultDescription, func(e *Event) *string { return &e.ResultDescription }},
	{"callerIp", MaxIP, func(e *Event) *string { return &e.CallerIP }},
	{"clientInfo", MaxClientInfo, func(e *Event) *string { return &e.ClientInfo }},
	{"tlsVersion", MaxTLSVersion, func(e *Event) *string { return &e.TLSVersion }},
	{"correlationId", MaxCorrelationID, func(e *Event) *string { return &e.CorrelationID }},
	{"caller.objectId", MaxID, func(e *Event) *string { return &e.Caller.ObjectID }},
	{"caller.appId", MaxID, func(e *Event) *string { return &e.Caller.AppID }},
	{"caller.upn", MaxUPN, func(e *Event) *string { return &e.Caller.UPN }},
	{"caller.name", MaxUPN, func(e *Event) *string { return &e.Caller.Name }},
	{"caller.tenantId", MaxID, func(e *Event) *string { return &e.Caller.TenantID }},
}

// keyBound is the bound of Caller.Key by the claim it came from.
func keyBound(from string) int {
	switch from {
	case "oid", "appid":
		return MaxID
	case "ip":
		return MaxIP
	}
	return MaxUPN
}

// bound cuts e's strings to their bounds and records which were cut.
func bound(e *Event) {
	for i := range bounds {
		b := &bounds[i]
		p := b.f(e)
		if len(*p) <= b.max {
			continue
		}
		*p, _ = Truncate(*p, b.max)
		e.Truncated = append(e.Truncated, b.name)
	}
	if v, cut := Truncate(e.Caller.Key, keyBound(e.Caller.KeyFrom)); cut {
		e.Caller.Key = v
		e.Truncated = append(e.Truncated, "caller.key")
	}
	if c := e.Config; c != nil {
		if v, cut := Truncate(c.NetworkDefaultAction, MaxConfigValue); cut {
			c.NetworkDefaultAction = v
			e.Truncated = append(e.Truncated, "config.networkDefaultAction")
		}
		if v, cut := Truncate(c.PublicNetworkAccess, MaxConfigValue); cut {
			c.PublicNetworkAccess = v
			e.Truncated = append(e.Truncated, "config.publicNetworkAccess")
		}
		for i, r := range c.IPRules {
			if v, cut := Truncate(r, MaxIP); cut {
				c.IPRules[i] = v
				e.Truncated = append(e.Truncated, "config.ipRules")
			}
		}
		for i, id := range c.PolicyObjectIDs {
			if v, cut := Truncate(id, MaxID); cut {
				c.PolicyObjectIDs[i] = v
				e.Truncated = append(e.Truncated, "config.policyObjectIds")
			}
		}
	}
}
