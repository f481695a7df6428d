// Package audit holds kvwatch's one normalized event model and the
// normalization of raw Key Vault AuditEvent records into it.
//
// Everything downstream (rules, state, delivery, digests) sees only Event:
// no other package reads raw records.
package audit

import (
	"strings"
	"time"
)

// Event is one normalized Key Vault audit record.
//
// All string values except the enums come from the log record and are
// attacker-controlled: escape them wherever they are shown.
type Event struct {
	// Time is the record's event time (UTC), which drives every window.
	Time time.Time `json:"time"`

	// ResourceID is the vault's ARM id as the record gave it.
	ResourceID     string `json:"resourceId"`
	SubscriptionID string `json:"subscriptionId,omitempty"` // lower-case
	ResourceGroup  string `json:"resourceGroup,omitempty"`  // lower-case
	Vault          string `json:"vault"`                    // lower-case vault name

	Operation        string `json:"operation"`
	OperationVersion string `json:"operationVersion,omitempty"`
	Family           Family `json:"family"`
	Kind             Kind   `json:"kind"`

	// ObjectType is "secret", "key", "certificate", "storage" or empty,
	// taken from properties.id or requestUri.
	ObjectType    string `json:"objectType,omitempty"`
	ObjectName    string `json:"objectName,omitempty"`
	ObjectVersion string `json:"objectVersion,omitempty"`
	RequestURI    string `json:"requestUri,omitempty"`

	// Outcome is read from properties.httpStatusCode, then resultSignature;
	// never from resultType, which says Success for denied requests.
	Outcome    Outcome `json:"outcome"`
	HTTPStatus int     `json:"httpStatus,omitempty"`
	ResultType string  `json:"resultType,omitempty"` // as logged, for display only
	// ResultDescription is Azure's text about the result; on a 403 it
	// names the action and the reason for the denial.
	ResultDescription string `json:"resultDescription,omitempty"`

	DurationMs int64 `json:"durationMs"`

	CallerIP   string `json:"callerIp,omitempty"`
	Caller     Caller `json:"caller"`
	ClientInfo string `json:"clientInfo,omitempty"`
	TLSVersion string `json:"tlsVersion,omitempty"`

	CorrelationID string `json:"correlationId,omitempty"`

	// Config is the vault configuration a VaultPut or VaultPatch left
	// behind, or a VaultGet returned; nil for every other operation and when
	// the record carries none.
	Config *VaultConfig `json:"config,omitempty"`

	// Source says where the record came from: Event Hubs partition and
	// sequence number, or file and line. It is what makes processing
	// idempotent.
	Source Source `json:"source"`

	// Truncated names the fields (by their JSON names, "caller.upn" for a
	// caller's) that normalization cut to their bound (audit/bound.go): their
	// values end in "…#" and a hash of the whole value. Nil when none was.
	Truncated []string `json:"truncated,omitempty"`
}

// Caller is who made the request, read from either claim shape.
type Caller struct {
	ObjectID string `json:"objectId,omitempty"`
	AppID    string `json:"appId,omitempty"`
	UPN      string `json:"upn,omitempty"`  // upn, else unique_name
	Name     string `json:"name,omitempty"` // the name claim: a display name on the data plane, often the UPN through ARM
	TenantID string `json:"tenantId,omitempty"`

	// Key is one stable identifier for the principal: object id, else app
	// id, else UPN, else name, else the caller IP; lower-case. The same principal gets
	// the same key from data-plane and management records.
	Key string `json:"key"`
	// KeyFrom says which claim Key was taken from: "oid", "appid", "upn",
	// "name", "ip", or "" when the record named no caller at all.
	KeyFrom string `json:"keyFrom,omitempty"`
}

// VaultConfig is the configuration of a vault after a VaultPut/VaultPatch,
// or as a VaultGet returned it. Pointer fields are nil when the record did
// not say.
type VaultConfig struct {
	NetworkDefaultAction    string `json:"networkDefaultAction,omitempty"` // "Allow" or "Deny"
	PublicNetworkAccess     string `json:"publicNetworkAccess,omitempty"`  // "Enabled" or "Disabled"
	RBACAuthorization       *bool  `json:"rbacAuthorization,omitempty"`
	PurgeProtection         *bool  `json:"purgeProtection,omitempty"`
	SoftDelete              *bool  `json:"softDelete,omitempty"`
	SoftDeleteRetentionDays *int   `json:"softDeleteRetentionDays,omitempty"`
	AccessPolicies          *int   `json:"accessPolicies,omitempty"` // number of entries
	// IPRules are the firewall's allowed addresses and CIDRs (at most
	// MaxConfigList); nil when the record did not say.
	IPRules []string `json:"ipRules"` // null: not said; []: none
	// EnabledFor*: Azure Virtual Machines (deployment), Resource Manager
	// templates and Azure Disk Encryption may retrieve secrets.
	EnabledForDeployment         *bool `json:"enabledForDeployment,omitempty"`
	EnabledForTemplateDeployment *bool `json:"enabledForTemplateDeployment,omitempty"`
	EnabledForDiskEncryption     *bool `json:"enabledForDiskEncryption,omitempty"`
	// PolicyObjectIDs are the object ids the access policies grant (at most
	// MaxConfigList, lower-case, in the record's order).
	PolicyObjectIDs []string `json:"policyObjectIds,omitempty"`
}

// Source is the position a record was read from.
type Source struct {
	// Event Hubs: the namespace (its fully qualified name) and event hub
	// the partition belongs to, when the input said (the host's
	// Metadata.PartitionContext, the consumer's client), the partition id
	// and the event's sequence number.
	Namespace   string    `json:"namespace,omitempty"`
	Hub         string    `json:"hub,omitempty"`
	Partition   string    `json:"partition,omitempty"`
	Sequence    int64     `json:"sequence"`
	HasSequence bool      `json:"hasSequence,omitempty"`
	Enqueued    time.Time `json:"enqueued,omitzero"`

	// Files: path and 1-based line (JSON Lines) or 0 for whole-file bodies.
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`

	// Event is the index of the event within its invocation or file, and
	// Record the index of the record within its event body.
	Event  int `json:"event"`
	Record int `json:"record"`
}

// IsApp reports whether the caller is an application identity (a service
// principal or a managed identity) rather than a person: its token names
// an application (the appid claim) and no user (no upn or unique_name
// claim, and no name claim that is an address, as a person's is through
// Resource Manager). A person's token carries the app id of the client
// they used (Azure CLI, the portal) beside their UPN, so it is not one; a
// caller known only by name or address is not one either. Routine
// learning (detect) applies to application identities only.
func (c *Caller) IsApp() bool {
	return c.AppID != "" && c.UPN == "" && !strings.Contains(c.Name, "@")
}

// Display returns the most readable name of the caller: UPN, else name,
// else the key.
func (c *Caller) Display() string {
	switch {
	case c.UPN != "":
		return c.UPN
	case c.Name != "":
		return c.Name
	}
	return c.Key
}
