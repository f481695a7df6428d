package audit

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Record is a raw AuditEvent record as Azure Monitor writes it. Only the
// fields kvwatch uses are materialized; unknown members are skipped by the
// decoder without allocating.
type Record struct {
	Time              string     `json:"time"`
	ResourceID        string     `json:"resourceId"`
	OperationName     string     `json:"operationName"`
	OperationVersion  string     `json:"operationVersion"`
	Category          string     `json:"category"`
	ResultType        string     `json:"resultType"`
	ResultSignature   string     `json:"resultSignature"`
	DurationMs        Number     `json:"durationMs"`
	CallerIPAddress   string     `json:"callerIpAddress"`
	CorrelationID     string     `json:"correlationId"`
	Identity          Identity   `json:"identity"`
	Properties        Properties `json:"properties"`
	MetricName        string     `json:"metricName"`
	ResultDescription string     `json:"-"` // not used; kept out of the hot path
}

// Properties is the part of a record's properties object kvwatch uses.
type Properties struct {
	ID                  string       `json:"id"`
	RequestURI          string       `json:"requestUri"`
	HTTPStatusCode      Number       `json:"httpStatusCode"`
	ClientInfo          string       `json:"clientInfo"`
	TLSVersion          string       `json:"tlsVersion"`
	IsAccessPolicyMatch *bool        `json:"isAccessPolicyMatch"`
	IsRbacAuthorized    *bool        `json:"isRbacAuthorized"`
	Properties          *VaultRecord `json:"properties"`
}

// VaultRecord is the vault configuration VaultPut and VaultPatch records
// carry under properties.properties.
type VaultRecord struct {
	NetworkAcls struct {
		DefaultAction string `json:"defaultAction"`
	} `json:"networkAcls"`
	PublicNetworkAccess       string `json:"publicNetworkAccess"`
	EnableRbacAuthorization   *bool  `json:"enableRbacAuthorization"`
	EnablePurgeProtection     *bool  `json:"enablePurgeProtection"`
	EnableSoftDelete          *bool  `json:"enableSoftDelete"`
	SoftDeleteRetentionInDays Number `json:"softDeleteRetentionInDays"`
	AccessPolicies            Count  `json:"accessPolicies"`
}

// DecodeOptions are the options every record decode uses: member names
// matched ignoring case, duplicate names and invalid UTF-8 tolerated (the
// latter replaced), unknown members skipped.
var DecodeOptions = json.JoinOptions(
	json.MatchCaseInsensitiveNames(true),
	jsontext.AllowDuplicateNames(true),
	jsontext.AllowInvalidUTF8(true),
)

// Number is a JSON number that real records sometimes write as a string
// ("durationMs": "12"). Anything that isn't a number leaves it unset.
type Number struct {
	Value float64
	Set   bool
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom.
func (n *Number) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	switch dec.PeekKind() {
	case '0':
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		f, err := tok.Float()
		if err != nil {
			return nil // out of range: leave unset
		}
		n.Value, n.Set = f, true
		return nil
	case '"':
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(tok.String()), 64); err == nil {
			n.Value, n.Set = f, true
		}
		return nil
	default:
		return dec.SkipValue()
	}
}

// Count is the number of elements of a JSON array; anything else is unset.
type Count struct {
	N   int
	Set bool
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom.
func (c *Count) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() != '[' {
		return dec.SkipValue()
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	n := 0
	for dec.PeekKind() != ']' {
		if err := dec.SkipValue(); err != nil {
			return err
		}
		n++
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	c.N, c.Set = n, true
	return nil
}

// Identity holds the claims kvwatch reads from identity.claim, in either of
// the two shapes Key Vault writes: short names (data plane) or claim URIs
// (management through ARM). A claim may be a string or an array of strings;
// the first string is kept.
type Identity struct {
	ObjectID   string
	AppID      string
	UPN        string
	UniqueName string
	Name       string
	IPAddr     string
	TenantID   string
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom: it reads
// {"claim": {...}} and ignores everything else.
func (id *Identity) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() != '{' {
		return dec.SkipValue()
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return err
		}
		if !strings.EqualFold(name.String(), "claim") || dec.PeekKind() != '{' {
			if err := dec.SkipValue(); err != nil {
				return err
			}
			continue
		}
		if err := id.readClaims(dec); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

func (id *Identity) readClaims(dec *jsontext.Decoder) error {
	if _, err := dec.ReadToken(); err != nil { // {
		return err
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return err
		}
		dst := id.field(name.String())
		if dst == nil {
			if err := dec.SkipValue(); err != nil {
				return err
			}
			continue
		}
		v, err := firstString(dec)
		if err != nil {
			return err
		}
		if *dst == "" {
			*dst = v
		}
	}
	_, err := dec.ReadToken() // }
	return err
}

// Claim names, short and URI forms.
const (
	claimOIDURI    = "http://schemas.microsoft.com/identity/claims/objectidentifier"
	claimTenantURI = "http://schemas.microsoft.com/identity/claims/tenantid"
	claimUPNURI    = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
	claimNameURI   = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
	claimAppIDURI  = "http://schemas.microsoft.com/identity/claims/appid"
)

func (id *Identity) field(name string) *string {
	switch {
	case strings.EqualFold(name, "oid"), strings.EqualFold(name, claimOIDURI):
		return &id.ObjectID
	case strings.EqualFold(name, "appid"), strings.EqualFold(name, "azp"), strings.EqualFold(name, claimAppIDURI):
		return &id.AppID
	case strings.EqualFold(name, "upn"), strings.EqualFold(name, claimUPNURI):
		return &id.UPN
	case strings.EqualFold(name, "unique_name"):
		return &id.UniqueName
	case strings.EqualFold(name, "name"), strings.EqualFold(name, claimNameURI):
		return &id.Name
	case strings.EqualFold(name, "ipaddr"):
		return &id.IPAddr
	case strings.EqualFold(name, "tid"), strings.EqualFold(name, claimTenantURI):
		return &id.TenantID
	}
	return nil
}

// firstString reads a string, or the first string of an array, or a scalar
// written as text; objects and nulls give "".
func firstString(dec *jsontext.Decoder) (string, error) {
	switch dec.PeekKind() {
	case '"':
		tok, err := dec.ReadToken()
		if err != nil {
			return "", err
		}
		return tok.String(), nil
	case '0':
		v, err := dec.ReadValue()
		if err != nil {
			return "", err
		}
		return string(v), nil
	case '[':
		if _, err := dec.ReadToken(); err != nil {
			return "", err
		}
		var first string
		for dec.PeekKind() != ']' {
			if first == "" && dec.PeekKind() == '"' {
				tok, err := dec.ReadToken()
				if err != nil {
					return "", err
				}
				first = tok.String()
				continue
			}
			if err := dec.SkipValue(); err != nil {
				return "", err
			}
		}
		_, err := dec.ReadToken()
		return first, err
	default:
		return "", dec.SkipValue()
	}
}

// DecodeRecord decodes one record from its JSON text.
func DecodeRecord(data []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(data, &r, DecodeOptions); err != nil {
		return Record{}, fmt.Errorf("decode record: %w", err)
	}
	return r, nil
}
