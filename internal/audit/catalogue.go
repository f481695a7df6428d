package audit

import "strings"

// Family is the group of operations an operation name belongs to.
type Family string

// Families of Key Vault operations.
const (
	FamilyVault          Family = "vault"          // vault management through ARM
	FamilyKey            Family = "key"            // key data plane
	FamilySecret         Family = "secret"         // secret data plane
	FamilyCertificate    Family = "certificate"    // certificate data plane
	FamilyAuthentication Family = "authentication" // the Authentication pseudo-operation
	FamilyNotification   Family = "notification"   // near-expiry / expired Event Grid notifications
	FamilyOther          Family = "other"          // a name kvwatch does not recognise
)

// Kind is what an operation does, across families.
type Kind string

// Kinds of operations.
const (
	KindRead    Kind = "read"
	KindList    Kind = "list"
	KindWrite   Kind = "write"
	KindDelete  Kind = "delete"
	KindPurge   Kind = "purge"
	KindBackup  Kind = "backup"
	KindRestore Kind = "restore"
	KindRecover Kind = "recover"
	KindCrypto  Kind = "crypto"
	KindPolicy  Kind = "policy"
	KindAuth    Kind = "auth"
	KindNotify  Kind = "notify"
	KindOther   Kind = "other"
)

// Families lists every Family, for validation and documentation.
var Families = []Family{FamilyVault, FamilyKey, FamilySecret, FamilyCertificate,
	FamilyAuthentication, FamilyNotification, FamilyOther}

// Kinds lists every Kind, for validation and documentation.
var Kinds = []Kind{KindRead, KindList, KindWrite, KindDelete, KindPurge, KindBackup,
	KindRestore, KindRecover, KindCrypto, KindPolicy, KindAuth, KindNotify, KindOther}

// Classify returns the family and kind of an operation name. Documented
// names are classified exactly; unknown ones by their prefix (family) and
// verb (kind), so new operations Azure adds are still usable by rules.
func Classify(op string) (Family, Kind) {
	switch op {
	case "Authentication":
		return FamilyAuthentication, KindAuth
	case "VaultAccessPolicyChangedEventGridNotification":
		return FamilyVault, KindPolicy
	}
	if strings.HasSuffix(op, "EventGridNotification") {
		return FamilyNotification, KindNotify
	}
	fam, rest := FamilyOther, op
	for _, p := range familyPrefixes {
		if strings.HasPrefix(op, p.prefix) {
			fam, rest = p.family, op[len(p.prefix):]
			break
		}
	}
	if k, ok := verbs[rest]; ok {
		return fam, k
	}
	return fam, guessKind(rest)
}

// Reportable reports whether an operation is one every distinct one of
// which reaches the user: the delete, purge, backup, restore, policy and
// recover kinds in any family, and a vault's writes (VaultPut, VaultPatch).
// Delivery sends an incident's new one as an update; a routine group's
// finding that carries one its routine did not is alerted.
func Reportable(op string) bool {
	fam, kind := Classify(op)
	switch kind {
	case KindDelete, KindPurge, KindBackup, KindRestore, KindPolicy, KindRecover:
		return true
	case KindWrite:
		return fam == FamilyVault
	}
	return false
}

var familyPrefixes = []struct {
	prefix string
	family Family
}{
	{"Certificate", FamilyCertificate},
	{"Secret", FamilySecret},
	{"Vault", FamilyVault},
	{"Key", FamilyKey},
}

// verbs maps the remainder of every documented operation name, after its
// family prefix, to its kind.
var verbs = map[string]Kind{
	"Get": KindRead, "GetDeleted": KindRead, "PendingGet": KindRead,
	"RotationPolicyGet": KindRead, "PolicyGet": KindRead, "ContactsGet": KindRead, "IssuerGet": KindRead,
	"List": KindList, "ListVersions": KindList, "ListDeleted": KindList, "IssuersList": KindList,
	"Put": KindWrite, "Patch": KindWrite, "Set": KindWrite, "Create": KindWrite, "Import": KindWrite,
	"Update": KindWrite, "Rotate": KindWrite, "RotateIfDue": KindWrite, "Enroll": KindWrite, "Renew": KindWrite,
	"PendingMerge": KindWrite, "PendingUpdate": KindWrite, "ContactsSet": KindWrite,
	"IssuerSet": KindWrite, "IssuerUpdate": KindWrite,
	"Delete": KindDelete, "PendingDelete": KindDelete, "ContactsDelete": KindDelete, "IssuerDelete": KindDelete,
	"Purge":   KindPurge,
	"Backup":  KindBackup,
	"Restore": KindRestore,
	"Recover": KindRecover,
	"Sign":    KindCrypto, "Verify": KindCrypto, "Wrap": KindCrypto, "Unwrap": KindCrypto,
	"Encrypt": KindCrypto, "Decrypt": KindCrypto,
	"RotationPolicySet": KindPolicy, "PolicySet": KindPolicy, "PolicyUpdate": KindPolicy,
}

// guessKind classifies an unknown operation's verb by the words it ends or
// starts with, most specific first.
func guessKind(rest string) Kind {
	switch {
	case rest == "":
		return KindOther
	case strings.Contains(rest, "Policy") && (strings.HasSuffix(rest, "Set") || strings.HasSuffix(rest, "Update") || strings.HasSuffix(rest, "Changed")):
		return KindPolicy
	case strings.HasSuffix(rest, "Purge"):
		return KindPurge
	case strings.HasSuffix(rest, "Backup"):
		return KindBackup
	case strings.HasSuffix(rest, "Restore"):
		return KindRestore
	case strings.HasSuffix(rest, "Recover"):
		return KindRecover
	case strings.HasSuffix(rest, "Delete"):
		return KindDelete
	case strings.HasSuffix(rest, "List") || strings.Contains(rest, "List"):
		return KindList
	case strings.HasSuffix(rest, "Get"):
		return KindRead
	case strings.HasSuffix(rest, "Set"), strings.HasSuffix(rest, "Update"), strings.HasSuffix(rest, "Create"),
		strings.HasSuffix(rest, "Import"), strings.HasSuffix(rest, "Put"), strings.HasSuffix(rest, "Patch"):
		return KindWrite
	case strings.HasSuffix(rest, "Sign"), strings.HasSuffix(rest, "Verify"), strings.HasSuffix(rest, "Wrap"),
		strings.HasSuffix(rest, "Unwrap"), strings.HasSuffix(rest, "Encrypt"), strings.HasSuffix(rest, "Decrypt"),
		strings.HasSuffix(rest, "Release"):
		return KindCrypto
	}
	return KindOther
}

// Outcome is what became of a request.
type Outcome string

// Outcomes, from the HTTP status.
const (
	OutcomeSuccess   Outcome = "success"   // 1xx-3xx
	OutcomeDenied    Outcome = "denied"    // 401, 403
	OutcomeNotFound  Outcome = "notfound"  // 404
	OutcomeThrottled Outcome = "throttled" // 429
	OutcomeFailed    Outcome = "failed"    // any other 4xx
	OutcomeError     Outcome = "error"     // 5xx
	OutcomeUnknown   Outcome = "unknown"   // neither status nor signature said
)

// Outcomes lists every Outcome.
var Outcomes = []Outcome{OutcomeSuccess, OutcomeDenied, OutcomeNotFound, OutcomeThrottled,
	OutcomeFailed, OutcomeError, OutcomeUnknown}

// OutcomeOf maps an HTTP status to an Outcome.
func OutcomeOf(status int) Outcome {
	switch {
	case status >= 100 && status < 400:
		return OutcomeSuccess
	case status == 401 || status == 403:
		return OutcomeDenied
	case status == 404:
		return OutcomeNotFound
	case status == 429:
		return OutcomeThrottled
	case status >= 400 && status < 500:
		return OutcomeFailed
	case status >= 500 && status < 600:
		return OutcomeError
	}
	return OutcomeUnknown
}

// StatusFromSignature reads an HTTP status from a resultSignature: the
// reason phrase compared ignoring case and spaces ("Not Found",
// "TooManyRequests"), or the number itself. It returns 0 when it can't tell.
func StatusFromSignature(sig string) int {
	if sig == "" {
		return 0
	}
	var b [32]byte
	n := 0
	digits := true
	for i := 0; i < len(sig) && n < len(b); i++ {
		c := sig[i]
		switch {
		case c == ' ' || c == '_' || c == '-' || c == '\t':
			continue
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
			digits = false
		case c >= '0' && c <= '9':
		default:
			digits = false
		}
		b[n] = c
		n++
	}
	key := string(b[:n])
	if digits && n == 3 {
		return int(key[0]-'0')*100 + int(key[1]-'0')*10 + int(key[2]-'0')
	}
	return reasons[key]
}

var reasons = map[string]int{
	"ok": 200, "created": 201, "accepted": 202, "nocontent": 204,
	"badrequest": 400, "unauthorized": 401, "forbidden": 403, "notfound": 404,
	"methodnotallowed": 405, "conflict": 409, "gone": 410, "preconditionfailed": 412,
	"requestentitytoolarge": 413, "toomanyrequests": 429,
	"internalservererror": 500, "notimplemented": 501, "badgateway": 502,
	"serviceunavailable": 503, "gatewaytimeout": 504,
}

// Operations lists the 82 documented Key Vault AuditEvent operation names.
var Operations = []string{
	"Authentication", "VaultGet", "VaultPut", "VaultDelete", "VaultPatch", "VaultList", "VaultPurge",
	"VaultRecover", "VaultGetDeleted", "VaultListDeleted",
	"VaultAccessPolicyChangedEventGridNotification", "KeyCreate", "KeyGet", "KeyImport", "KeyDelete",
	"KeySign", "KeyVerify", "KeyWrap", "KeyUnwrap", "KeyEncrypt", "KeyDecrypt", "KeyUpdate",
	"KeyList", "KeyListVersions", "KeyPurge", "KeyBackup", "KeyRestore", "KeyRecover",
	"KeyGetDeleted", "KeyListDeleted", "KeyNearExpiryEventGridNotification",
	"KeyExpiredEventGridNotification", "KeyRotate", "KeyRotateIfDue", "KeyRotationPolicyGet",
	"KeyRotationPolicySet", "SecretSet", "SecretGet", "SecretUpdate", "SecretDelete", "SecretList",
	"SecretListVersions", "SecretPurge", "SecretBackup", "SecretRestore", "SecretRecover",
	"SecretGetDeleted", "SecretListDeleted", "SecretNearExpiryEventGridNotification",
	"SecretExpiredEventGridNotification", "CertificateGet", "CertificateCreate", "CertificateImport",
	"CertificateUpdate", "CertificateList", "CertificateListVersions", "CertificateDelete",
	"CertificatePurge", "CertificateBackup", "CertificateRestore", "CertificateRecover",
	"CertificateGetDeleted", "CertificateListDeleted", "CertificatePolicyGet",
	"CertificatePolicyUpdate", "CertificatePolicySet", "CertificateContactsGet",
	"CertificateContactsSet", "CertificateContactsDelete", "CertificateIssuerGet",
	"CertificateIssuerSet", "CertificateIssuerUpdate", "CertificateIssuerDelete",
	"CertificateIssuersList", "CertificateEnroll", "CertificateRenew", "CertificatePendingGet",
	"CertificatePendingMerge", "CertificatePendingUpdate", "CertificatePendingDelete",
	"CertificateNearExpiryEventGridNotification", "CertificateExpiredEventGridNotification",
}
