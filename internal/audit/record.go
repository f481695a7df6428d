package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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
	ResultDescription string     `json:"resultDescription"`
}

// Properties is the part of a record's properties object kvwatch uses.
type Properties struct {
	ID             string       `json:"id"`
	RequestURI     string       `json:"requestUri"`
	HTTPStatusCode Number       `json:"httpStatusCode"`
	ClientInfo     string       `json:"clientInfo"`
	TLSVersion     string       `json:"tlsVersion"`
	Properties     *VaultRecord `json:"properties"`
}

// VaultRecord is the vault configuration VaultGet, VaultPut and VaultPatch
// records carry under properties.properties.
type VaultRecord struct {
	NetworkAcls struct {
		DefaultAction string `json:"defaultAction"`
		// IPRules are the ipRules' values (addresses or CIDRs), the first
		// MaxConfigList of them.
		IPRules    []string `json:"ipRules"`
		IPRulesSet bool     `json:"-"`
	} `json:"networkAcls"`
	PublicNetworkAccess          string `json:"publicNetworkAccess"`
	EnableRbacAuthorization      *bool  `json:"enableRbacAuthorization"`
	EnablePurgeProtection        *bool  `json:"enablePurgeProtection"`
	EnableSoftDelete             *bool  `json:"enableSoftDelete"`
	EnabledForDeployment         *bool  `json:"enabledForDeployment"`
	EnabledForTemplateDeployment *bool  `json:"enabledForTemplateDeployment"`
	EnabledForDiskEncryption     *bool  `json:"enabledForDiskEncryption"`
	SoftDeleteRetentionInDays    Number `json:"softDeleteRetentionInDays"`
	AccessPolicies               Count  `json:"accessPolicies"`
	// PolicyObjectIDs are the accessPolicies' objectIds (the principals
	// granted), the first MaxConfigList of them.
	PolicyObjectIDs []string `json:"-"`
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
	return id.decodeFrom(dec, nil)
}

func (id *Identity) decodeFrom(dec *jsontext.Decoder, in *Interner) error {
	if dec.PeekKind() != '{' {
		return dec.SkipValue()
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil {
			return err
		}
		if !nameIs(name, "claim") || dec.PeekKind() != '{' {
			if err := dec.SkipValue(); err != nil {
				return err
			}
			continue
		}
		if err := id.readClaims(dec, in); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

func (id *Identity) readClaims(dec *jsontext.Decoder, in *Interner) error {
	if _, err := dec.ReadToken(); err != nil { // {
		return err
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil {
			return err
		}
		dst := id.field(name)
		if dst == nil {
			if err := dec.SkipValue(); err != nil {
				return err
			}
			continue
		}
		v, err := firstString(dec, in)
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

// Claim names, short and URI forms (lower-case).
const (
	claimOIDURI    = "http://schemas.microsoft.com/identity/claims/objectidentifier"
	claimTenantURI = "http://schemas.microsoft.com/identity/claims/tenantid"
	claimUPNURI    = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
	claimNameURI   = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
	claimAppIDURI  = "http://schemas.microsoft.com/identity/claims/appid"
)

// field returns where a claim goes, or nil for claims kvwatch ignores.
func (id *Identity) field(name jsontext.Value) *string {
	switch {
	case nameIs(name, "oid"), nameIs(name, claimOIDURI):
		return &id.ObjectID
	case nameIs(name, "appid"), nameIs(name, "azp"), nameIs(name, claimAppIDURI):
		return &id.AppID
	case nameIs(name, "upn"), nameIs(name, claimUPNURI):
		return &id.UPN
	case nameIs(name, "unique_name"):
		return &id.UniqueName
	case nameIs(name, "name"), nameIs(name, claimNameURI):
		return &id.Name
	case nameIs(name, "ipaddr"):
		return &id.IPAddr
	case nameIs(name, "tid"), nameIs(name, claimTenantURI):
		return &id.TenantID
	}
	return nil
}

// firstString reads a string, or the first string of an array, or a scalar
// written as text; objects and nulls give "".
func firstString(dec *jsontext.Decoder, in *Interner) (string, error) {
	switch dec.PeekKind() {
	case '"':
		v, err := dec.ReadValue()
		if err != nil {
			return "", err
		}
		return in.unquote(v), nil
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
				v, err := dec.ReadValue()
				if err != nil {
					return "", err
				}
				first = in.unquote(v)
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
	dec := jsontext.NewDecoder(bytes.NewBuffer(data), DecodeOptions)
	if err := r.DecodeFrom(dec); err != nil {
		return Record{}, fmt.Errorf("decode record: %w", err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return Record{}, errors.New("decode record: data after the record")
	}
	return r, nil
}

// FieldError says which member of a record had the wrong type. The whole
// record was consumed, so a decoder reading a stream of records can go on.
type FieldError struct {
	Field string // JSON pointer-like path, e.g. "properties.httpStatusCode"
	Want  string // what was expected
	Got   jsontext.Kind
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: want %s, got %s", e.Field, e.Want, kindName(e.Got))
}

func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "nothing"
}

// DecodeFrom reads one record object from dec. It is a hand-written
// decoder: it materializes only the members kvwatch uses, matches their
// names ignoring case without allocating, and always consumes the whole
// value when the JSON is well-formed, so that one record of the wrong shape
// (reported as a *FieldError) does not stop the records after it. A syntax
// error is returned as is and leaves dec unusable.
func (r *Record) DecodeFrom(dec *jsontext.Decoder) error {
	return r.DecodeInterned(dec, nil)
}

// DecodeInterned is DecodeFrom sharing the strings that repeat from record
// to record (resource ids, operation names, callers, client info) through
// in, which saves most of a record's allocations. in may be nil.
func (r *Record) DecodeInterned(dec *jsontext.Decoder, in *Interner) error {
	if k := dec.PeekKind(); k != '{' {
		if err := dec.SkipValue(); err != nil {
			return err
		}
		return &FieldError{Field: "record", Want: "an object", Got: k}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	var first error
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil {
			return err
		}
		var ferr error
		switch {
		case nameIs(name, "time"):
			r.Time, ferr = readString(dec, "time", nil)
		case nameIs(name, "resourceid"):
			r.ResourceID, ferr = readString(dec, "resourceId", in)
		case nameIs(name, "operationname"):
			r.OperationName, ferr = readString(dec, "operationName", in)
		case nameIs(name, "operationversion"):
			r.OperationVersion, ferr = readString(dec, "operationVersion", in)
		case nameIs(name, "category"):
			r.Category, ferr = readString(dec, "category", in)
		case nameIs(name, "resulttype"):
			r.ResultType, ferr = readString(dec, "resultType", in)
		case nameIs(name, "resultdescription"):
			r.ResultDescription, ferr = readString(dec, "resultDescription", in)
		case nameIs(name, "resultsignature"):
			r.ResultSignature, ferr = readString(dec, "resultSignature", in)
		case nameIs(name, "durationms"):
			ferr = r.DurationMs.UnmarshalJSONFrom(dec)
		case nameIs(name, "calleripaddress"):
			r.CallerIPAddress, ferr = readString(dec, "callerIpAddress", in)
		case nameIs(name, "correlationid"):
			r.CorrelationID, ferr = readString(dec, "correlationId", nil)
		case nameIs(name, "identity"):
			ferr = r.Identity.decodeFrom(dec, in)
		case nameIs(name, "properties"):
			ferr = r.Properties.decodeFrom(dec, in)
		case nameIs(name, "metricname"):
			r.MetricName, ferr = readString(dec, "metricName", in)
		default:
			ferr = dec.SkipValue()
		}
		if ferr != nil {
			if _, ok := ferr.(*FieldError); !ok {
				return ferr // syntax or I/O: stop
			}
			if first == nil {
				first = ferr
			}
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	return first
}

func (p *Properties) decodeFrom(dec *jsontext.Decoder, in *Interner) error {
	if k := dec.PeekKind(); k != '{' {
		if err := dec.SkipValue(); err != nil {
			return err
		}
		if k == 'n' {
			return nil
		}
		return &FieldError{Field: "properties", Want: "an object", Got: k}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	var first error
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil {
			return err
		}
		var ferr error
		switch {
		case nameIs(name, "id"):
			p.ID, ferr = readString(dec, "properties.id", nil)
		case nameIs(name, "requesturi"):
			p.RequestURI, ferr = readString(dec, "properties.requestUri", nil)
		case nameIs(name, "httpstatuscode"):
			ferr = p.HTTPStatusCode.UnmarshalJSONFrom(dec)
		case nameIs(name, "clientinfo"):
			p.ClientInfo, ferr = readString(dec, "properties.clientInfo", in)
		case nameIs(name, "tlsversion"):
			p.TLSVersion, ferr = readString(dec, "properties.tlsVersion", in)
		case nameIs(name, "properties") && dec.PeekKind() == '{':
			v := new(VaultRecord)
			if ferr = v.decodeFrom(dec); ferr == nil {
				p.Properties = v
			}
		default:
			ferr = dec.SkipValue()
		}
		if ferr != nil {
			if _, ok := ferr.(*FieldError); !ok {
				return ferr
			}
			if first == nil {
				first = ferr
			}
		}
	}
	_, err := dec.ReadToken()
	if err != nil {
		return err
	}
	return first
}

func (v *VaultRecord) decodeFrom(dec *jsontext.Decoder) error {
	if _, err := dec.ReadToken(); err != nil { // {
		return err
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil {
			return err
		}
		switch {
		case nameIs(name, "networkacls") && dec.PeekKind() == '{':
			if _, err := dec.ReadToken(); err != nil {
				return err
			}
			for dec.PeekKind() != '}' {
				n, err := dec.ReadValue()
				if err != nil {
					return err
				}
				switch {
				case nameIs(n, "defaultaction"):
					v.NetworkAcls.DefaultAction, err = readLenient(dec)
				case nameIs(n, "iprules") && dec.PeekKind() == '[':
					v.NetworkAcls.IPRulesSet = true
					err = readObjectsField(dec, "value", &v.NetworkAcls.IPRules)
				default:
					err = dec.SkipValue()
				}
				if err != nil {
					return err
				}
			}
			if _, err := dec.ReadToken(); err != nil {
				return err
			}
			continue
		case nameIs(name, "publicnetworkaccess"):
			v.PublicNetworkAccess, err = readLenient(dec)
		case nameIs(name, "enablerbacauthorization"):
			v.EnableRbacAuthorization, err = readBool(dec)
		case nameIs(name, "enablepurgeprotection"):
			v.EnablePurgeProtection, err = readBool(dec)
		case nameIs(name, "enablesoftdelete"):
			v.EnableSoftDelete, err = readBool(dec)
		case nameIs(name, "softdeleteretentionindays"):
			err = v.SoftDeleteRetentionInDays.UnmarshalJSONFrom(dec)
		case nameIs(name, "enabledfordeployment"):
			v.EnabledForDeployment, err = readBool(dec)
		case nameIs(name, "enabledfortemplatedeployment"):
			v.EnabledForTemplateDeployment, err = readBool(dec)
		case nameIs(name, "enabledfordiskencryption"):
			v.EnabledForDiskEncryption, err = readBool(dec)
		case nameIs(name, "accesspolicies") && dec.PeekKind() == '[':
			n := 0
			err = readObjectsFieldCount(dec, "objectid", &v.PolicyObjectIDs, &n)
			v.AccessPolicies = Count{N: n, Set: true}
		case nameIs(name, "accesspolicies"):
			err = v.AccessPolicies.UnmarshalJSONFrom(dec)
		default:
			err = dec.SkipValue()
		}
		if err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

// MaxConfigList bounds the IP rules and access-policy object ids kept from
// one vault configuration (a vault allows 1,024 access policies and 1,000 IP
// rules; past the bound the rest are counted, not kept).
const MaxConfigList = 64

// readObjectsField reads an array of objects, keeping the string member
// field (lower-case name) of each, up to MaxConfigList.
func readObjectsField(dec *jsontext.Decoder, field string, out *[]string) error {
	n := 0
	return readObjectsFieldCount(dec, field, out, &n)
}

// readObjectsFieldCount is readObjectsField that also counts the elements.
func readObjectsFieldCount(dec *jsontext.Decoder, field string, out *[]string, n *int) error {
	if _, err := dec.ReadToken(); err != nil { // [
		return err
	}
	for dec.PeekKind() != ']' {
		*n++
		if dec.PeekKind() != '{' {
			if err := dec.SkipValue(); err != nil {
				return err
			}
			continue
		}
		if _, err := dec.ReadToken(); err != nil {
			return err
		}
		for dec.PeekKind() != '}' {
			name, err := dec.ReadValue()
			if err != nil {
				return err
			}
			if nameIs(name, field) {
				v, err := readLenient(dec)
				if err != nil {
					return err
				}
				if v != "" && len(*out) < MaxConfigList {
					*out = append(*out, v)
				}
				continue
			}
			if err := dec.SkipValue(); err != nil {
				return err
			}
		}
		if _, err := dec.ReadToken(); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

// nameIs reports whether the raw JSON string name equals lower, ignoring
// ASCII case, without allocating. Names with escapes are unquoted first.
func nameIs(raw jsontext.Value, lower string) bool {
	if len(raw) != len(lower)+2 {
		if bytes.IndexByte(raw, '\\') < 0 {
			return false
		}
		u, err := jsontext.AppendUnquote(nil, raw)
		if err != nil {
			return false
		}
		return strings.EqualFold(string(u), lower)
	}
	for i := 0; i < len(lower); i++ {
		c := raw[i+1]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// readString reads a string member; null reads as "". Anything else is
// skipped and reported as a *FieldError.
func readString(dec *jsontext.Decoder, field string, in *Interner) (string, error) {
	switch k := dec.PeekKind(); k {
	case '"':
		v, err := dec.ReadValue()
		if err != nil {
			return "", err
		}
		return in.unquote(v), nil
	case 'n':
		_, err := dec.ReadToken()
		return "", err
	default:
		if err := dec.SkipValue(); err != nil {
			return "", err
		}
		return "", &FieldError{Field: field, Want: "a string", Got: k}
	}
}

// readLenient reads a string, or a scalar as its text; objects and arrays
// read as "".
func readLenient(dec *jsontext.Decoder) (string, error) {
	switch dec.PeekKind() {
	case '"':
		v, err := dec.ReadValue()
		if err != nil {
			return "", err
		}
		return unquote(v), nil
	case '0', 't', 'f':
		v, err := dec.ReadValue()
		if err != nil {
			return "", err
		}
		return string(v), nil
	default:
		return "", dec.SkipValue()
	}
}

// readBool reads true or false (also as the strings "true"/"false"); other
// values leave it nil.
func readBool(dec *jsontext.Decoder) (*bool, error) {
	v, err := readLenient(dec)
	if err != nil {
		return nil, err
	}
	var b bool
	switch {
	case strings.EqualFold(v, "true"):
		b = true
	case strings.EqualFold(v, "false"):
	default:
		return nil, nil
	}
	return &b, nil
}

// Interner shares equal strings. The zero value is ready; a nil *Interner
// shares nothing. Not safe for concurrent use.
type Interner struct {
	m map[string]string
}

// internMax bounds the strings kept and the length of a string worth keeping.
const (
	internMax    = 8192
	internMaxLen = 512
)

// unquote is the package's unquote through the interner.
func (in *Interner) unquote(v jsontext.Value) string {
	if in == nil || len(v) > internMaxLen+2 || bytes.IndexByte(v, '\\') >= 0 {
		return unquote(v)
	}
	body := v[1 : len(v)-1]
	if s, ok := in.m[string(body)]; ok {
		return s
	}
	s := string(body)
	if in.m == nil || len(in.m) >= internMax {
		in.m = make(map[string]string, 256)
	}
	in.m[s] = s
	return s
}

// unquote returns the text of a raw JSON string with one allocation when it
// has no escapes. Invalid UTF-8 is kept as it is in the fast path and
// replaced in the slow one; later JSON output replaces it anyway.
func unquote(v jsontext.Value) string {
	if len(v) >= 2 && bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1])
	}
	u, _ := jsontext.AppendUnquote(nil, v)
	return string(u)
}
