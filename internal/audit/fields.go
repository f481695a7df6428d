package audit

import (
	"net/netip"
	"strconv"
	"strings"
)

// FieldNames lists the event fields rules can group by, count distinct
// values of, or remember as new values, in the names kvwatch.yaml uses.
var FieldNames = []string{
	"vault", "subscription", "resource_group", "operation", "family", "kind",
	"outcome", "status", "caller", "caller_upn", "object_id", "app_id", "tenant",
	"ip", "ip_prefix", "object", "object_type", "object_name", "vault_object", "client_info", "tls_version",
}

// IsField reports whether name is one of FieldNames.
func IsField(name string) bool {
	for _, f := range FieldNames {
		if f == name {
			return true
		}
	}
	return false
}

// Field returns the value of the named field of e ("" when the event has
// none). "caller" is Caller.Key; "object" is "type/name".
func (e *Event) Field(name string) string {
	switch name {
	case "vault":
		return e.Vault
	case "subscription":
		return e.SubscriptionID
	case "resource_group":
		return e.ResourceGroup
	case "operation":
		return e.Operation
	case "family":
		return string(e.Family)
	case "kind":
		return string(e.Kind)
	case "outcome":
		return string(e.Outcome)
	case "status":
		if e.HTTPStatus == 0 {
			return ""
		}
		return strconv.Itoa(e.HTTPStatus)
	case "caller":
		return e.Caller.Key
	case "caller_upn":
		return e.Caller.UPN
	case "object_id":
		return e.Caller.ObjectID
	case "app_id":
		return e.Caller.AppID
	case "tenant":
		return e.Caller.TenantID
	case "ip":
		return e.CallerIP
	case "ip_prefix":
		return IPPrefix(e.CallerIP)
	case "object":
		if e.ObjectName == "" {
			return ""
		}
		return e.ObjectType + "/" + e.ObjectName
	case "vault_object":
		if e.ObjectName == "" {
			return ""
		}
		return e.Vault + "/" + e.ObjectType + "/" + e.ObjectName
	case "object_type":
		return e.ObjectType
	case "object_name":
		return e.ObjectName
	case "client_info":
		return e.ClientInfo
	case "tls_version":
		return e.TLSVersion
	}
	return ""
}

// IPPrefix returns the network an address belongs to for grouping: its /24
// for IPv4, its /48 for IPv6 (an address with a port counts as the
// address); "" when ip is not an address.
func IPPrefix(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		ap, err2 := netip.ParseAddrPort(ip)
		if err2 != nil {
			return ""
		}
		a = ap.Addr()
	}
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ""
	}
	return strings.ToLower(p.String())
}
