// Package demo generates a deterministic, realistic demo day of Azure Key
// Vault AuditEvent records, as archived PT1H.json blobs, for `kvwatch replay`
// with no arguments and for tests.
//
// The day (00:00–24:00 UTC) covers four vaults in two subscriptions:
//
//   - kv-payments-prod, kv-web-prod (subscription 3f8a1c52-…, rg-prod-apps);
//   - kv-data-dev, kv-shared-infra (subscription b92e4d07-…, rg-platform-shared).
//
// Background traffic: managed identities and service principals reading a
// few fixed secrets every few minutes (with the SDK's anonymous 401
// challenge when a client starts, a missing secret giving 404s, occasional
// 429s and one throttling episode), one app doing KeyUnwrap/KeyDecrypt,
// Azure Resource Graph and Policy Insights VaultGet noise on every vault,
// people at work (08:00–18:00 UTC) listing, reading and setting secrets,
// one benign access-policy change, and near-expiry notifications. Platform
// identities that list and read many secrets by design, which the demo
// tenant excepts by identity (kvwatch.yaml in this directory): a .NET
// configuration provider loading all of kv-payments-prod at each start
// (three instances at about 10:30, one at 15:10), an Azure DevOps release
// pipeline's Key Vault task (09:00, 13:00, 16:00) and terraform plans
// refreshing three vaults (11:40, 14:55).
//
// Planted on top, and listed by Incidents: a mass secret read after a
// listing, a denied burst that then spreads to other vaults, a secret purge
// at 02:13, a vault opened to public networks, a secret backup by a
// service principal seen nowhere else, and an escalation: a fifth vault,
// kv-legacy-archive, patched at 16:05 then deleted and purged at 16:40 by
// the same service principal.
//
// Records are written as Azure writes them: fixed field order, upper-cased
// resourceId, time with 7 fractional digits, durationMs as a string,
// resultType "Success" whatever the status, short claim names on the data
// plane and claim URIs through ARM. Within a blob records are mostly, not
// strictly, in time order, and a few noise records are delivered twice.
// One extra blob, ".../h=12/m=00/mixed/PT1H.json" under kv-data-dev, holds
// only records kvwatch must skip (another category, metrics, a Managed HSM).
//
// Output depends only on Options: the same options give byte-identical
// blobs. Randomness comes from PCG sources seeded from Options.Seed, one per
// part of the scenario, so parts do not shift each other.
package demo

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Options configures Generate; the zero value gives the defaults: Seed 1,
// Day 2026-11-23 UTC, the standard scenario.
type Options struct {
	// Seed drives every random choice; 0 means 1.
	Seed int64
	// Day is the day to generate; only its calendar date (as written, in
	// Day's own location) is used, and the day always runs 00:00–24:00 UTC.
	// The zero time means 2026-11-23.
	Day time.Time
}

// Blob is one archived PT1H.json blob: Path like
// "resourceId=/SUBSCRIPTIONS/<SUB>/RESOURCEGROUPS/<RG>/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/<NAME>/y=2026/m=11/d=23/h=09/m=00/PT1H.json"
// (slash-separated, relative) and Data = JSON Lines, one record per line, in
// the exact field layout Azure writes.
type Blob struct {
	Path string
	Data []byte
}

// Incident is one planted incident. Every record of it has
// Start <= time <= End; Caller is the principal's Caller.Key as kvwatch's
// normalizer derives it (the lower-case object id); Vault is the lower-case
// vault name, or "" when the incident spans several vaults.
type Incident struct {
	Name, Vault, Caller string
	Start, End          time.Time
	Description         string
}

// Generate returns the demo day's blobs, sorted by Path.
func Generate(opts Options) []Blob {
	g := newGen(opts)
	g.background()
	g.incidents()
	return g.blobs()
}

// Incidents lists what Generate(opts) plants, in time order.
func Incidents(opts Options) []Incident {
	g := newGen(opts)
	g.incidents()
	out := slices.Clone(g.planted)
	slices.SortStableFunc(out, func(a, b Incident) int { return a.Start.Compare(b.Start) })
	return out
}

// Write writes blobs under dir, creating folders as needed.
func Write(dir string, blobs []Blob) error {
	for _, b := range blobs {
		rel := filepath.FromSlash(b.Path)
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("demo: blob path %q is not a local path", b.Path)
		}
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if err := os.WriteFile(p, b.Data, 0o644); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Record layout (field order is the order Azure writes).

type record struct {
	Time              string      `json:"time"`
	ResourceID        string      `json:"resourceId"`
	OperationName     string      `json:"operationName"`
	OperationVersion  string      `json:"operationVersion"`
	Category          string      `json:"category"`
	ResultType        string      `json:"resultType"`
	ResultSignature   string      `json:"resultSignature"`
	ResultDescription string      `json:"resultDescription"`
	DurationMs        string      `json:"durationMs"`
	CallerIPAddress   string      `json:"callerIpAddress"`
	CorrelationID     string      `json:"correlationId"`
	Identity          *identity   `json:"identity,omitempty"`
	Properties        *properties `json:"properties"`
}

type identity struct {
	Claim any `json:"claim"` // *shortClaims or *uriClaims
}

// shortClaims is the data-plane claim shape. Values are strings, or arrays
// (amr), nil when absent.
type shortClaims struct {
	OID        any `json:"oid,omitempty"`
	TID        any `json:"tid,omitempty"`
	AppID      any `json:"appid,omitempty"`
	AppIDACR   any `json:"appidacr,omitempty"`
	IDTyp      any `json:"idtyp,omitempty"`
	XMSMirID   any `json:"xms_mirid,omitempty"`
	UPN        any `json:"upn,omitempty"`
	UniqueName any `json:"unique_name,omitempty"`
	IPAddr     any `json:"ipaddr,omitempty"`
	SCP        any `json:"scp,omitempty"`
	AMR        any `json:"amr,omitempty"`
}

// uriClaims is the claim shape of management calls through ARM.
type uriClaims struct {
	OID      any `json:"http://schemas.microsoft.com/identity/claims/objectidentifier,omitempty"`
	UPN      any `json:"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn,omitempty"`
	Name     any `json:"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name,omitempty"`
	TID      any `json:"http://schemas.microsoft.com/identity/claims/tenantid,omitempty"`
	AMR      any `json:"http://schemas.microsoft.com/claims/authnmethodsreferences,omitempty"`
	AppID    any `json:"appid,omitempty"`
	AppIDACR any `json:"appidacr,omitempty"`
	IDTyp    any `json:"idtyp,omitempty"`
	IPAddr   any `json:"ipaddr,omitempty"`
}

type properties struct {
	ID                    string      `json:"id,omitempty"`
	ClientInfo            string      `json:"clientInfo,omitempty"`
	HTTPStatusCode        int         `json:"httpStatusCode"`
	RequestURI            string      `json:"requestUri,omitempty"`
	IsAccessPolicyMatch   *bool       `json:"isAccessPolicyMatch,omitempty"`
	IsRbacAuthorized      *bool       `json:"isRbacAuthorized,omitempty"`
	TLSVersion            string      `json:"tlsVersion,omitempty"`
	SecretProperties      *objProps   `json:"secretProperties,omitempty"`
	KeyProperties         *objProps   `json:"keyProperties,omitempty"`
	CertificateProperties *objProps   `json:"certificateProperties,omitempty"`
	Properties            *vaultProps `json:"properties,omitempty"`
}

type objProps struct {
	Attributes attributes `json:"attributes"`
}

type attributes struct {
	Enabled       bool   `json:"enabled"`
	Created       int64  `json:"created"`
	Updated       int64  `json:"updated"`
	Exp           int64  `json:"exp,omitempty"`
	RecoveryLevel string `json:"recoveryLevel"`
}

// vaultProps is a vault's configuration as VaultPut/VaultPatch log it.
type vaultProps struct {
	Sku                          sku            `json:"sku"`
	TenantID                     string         `json:"tenantId"`
	NetworkAcls                  networkAcls    `json:"networkAcls"`
	AccessPolicies               []accessPolicy `json:"accessPolicies"`
	EnabledForDeployment         bool           `json:"enabledForDeployment"`
	EnabledForDiskEncryption     bool           `json:"enabledForDiskEncryption"`
	EnabledForTemplateDeployment bool           `json:"enabledForTemplateDeployment"`
	EnableSoftDelete             bool           `json:"enableSoftDelete"`
	SoftDeleteRetentionInDays    int            `json:"softDeleteRetentionInDays"`
	EnableRbacAuthorization      bool           `json:"enableRbacAuthorization"`
	EnablePurgeProtection        *bool          `json:"enablePurgeProtection"` // null when never enabled
	VaultURI                     string         `json:"vaultUri"`
	ProvisioningState            string         `json:"provisioningState"`
	PublicNetworkAccess          string         `json:"publicNetworkAccess"`
}

type sku struct {
	Family string `json:"family"`
	Name   string `json:"name"`
}

type networkAcls struct {
	Bypass              string   `json:"bypass"`
	DefaultAction       string   `json:"defaultAction"`
	IPRules             []ipRule `json:"ipRules"`
	VirtualNetworkRules []vnet   `json:"virtualNetworkRules"`
}

type ipRule struct {
	Value string `json:"value"`
}

type vnet struct {
	ID                               string `json:"id"`
	IgnoreMissingVnetServiceEndpoint bool   `json:"ignoreMissingVnetServiceEndpoint"`
}

type accessPolicy struct {
	TenantID    string      `json:"tenantId"`
	ObjectID    string      `json:"objectId"`
	Permissions permissions `json:"permissions"`
}

type permissions struct {
	Keys         []string `json:"keys"`
	Secrets      []string `json:"secrets"`
	Certificates []string `json:"certificates"`
}

// Records kvwatch must skip.

type metricRecord struct {
	Count      int     `json:"count"`
	Total      float64 `json:"total"`
	Minimum    float64 `json:"minimum"`
	Maximum    float64 `json:"maximum"`
	Average    float64 `json:"average"`
	ResourceID string  `json:"resourceId"`
	Time       string  `json:"time"`
	MetricName string  `json:"metricName"`
	TimeGrain  string  `json:"timeGrain"`
}

type policyRecord struct {
	Time          string      `json:"time"`
	ResourceID    string      `json:"resourceId"`
	OperationName string      `json:"operationName"`
	Category      string      `json:"category"`
	ResultType    string      `json:"resultType"`
	CorrelationID string      `json:"correlationId"`
	Properties    policyProps `json:"properties"`
}

type policyProps struct {
	IsComplianceCheck string `json:"isComplianceCheck"`
	ResourceLocation  string `json:"resourceLocation"`
	Ancestors         string `json:"ancestors"`
	Policies          string `json:"policies"`
}

// ---------------------------------------------------------------------------
// The world: tenant, vaults, principals, clients.

const (
	tenantID   = "4c2b9e71-3f0d-4e8a-b6c5-9d1a7e2f8c34"
	subProd    = "3f8a1c52-7d4e-4b9a-8c21-6e5f0a9d2b17"
	subPlat    = "b92e4d07-1c6a-45f3-9e80-d4a7c3f1e926"
	rgProd     = "rg-prod-apps"
	rgPlat     = "rg-platform-shared"
	region     = "westeurope"
	armHost    = "control-prod-weu.vaultcore.azure.net"
	timeLayout = "2006-01-02T15:04:05.0000000Z"

	appResourceGraph  = "509e4652-da8d-478d-a730-e9d4a1996ca4"
	appPolicyInsights = "8cae6e77-e04e-42ce-b5cb-50d82bce26b1"
	appAzureCLI       = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
	appAzurePortal    = "c44b4083-3bb0-49c1-b47d-974e53cbdf3c"

	mixedHour = 12 // hour of the blob of records to skip
)

var defaultDay = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

// nonAuditRecords is how many records of the mixed blob kvwatch must skip.
const nonAuditRecords = 6

type vault struct {
	name, sub, rg   string
	rid             string // upper-cased ARM id
	rbac            bool
	purgeProtection bool
	secrets, keys   []string
	certs           []string
	policies        []accessPolicy
	ipRules         []string
	ver             map[string]string // "secrets/name" -> current version
	created         map[string]int64  // "secrets/name" -> unix created
}

func (v *vault) resourceID() string {
	if v.rid != "" {
		return v.rid
	}
	return strings.ToUpper("/subscriptions/" + v.sub + "/resourceGroups/" + v.rg +
		"/providers/Microsoft.KeyVault/vaults/" + v.name)
}

func (v *vault) base() string { return "https://" + v.name + ".vault.azure.net" }

func (v *vault) recoveryLevel() string {
	if v.purgeProtection {
		return "Recoverable"
	}
	return "Recoverable+Purgeable"
}

// config is the vault's configuration as ARM reports it.
func (v *vault) config() *vaultProps {
	c := &vaultProps{
		Sku:      sku{Family: "A", Name: "standard"},
		TenantID: tenantID,
		NetworkAcls: networkAcls{
			Bypass:              "AzureServices",
			DefaultAction:       "Deny",
			IPRules:             []ipRule{},
			VirtualNetworkRules: []vnet{},
		},
		AccessPolicies:            slices.Clone(v.policies),
		EnableSoftDelete:          true,
		SoftDeleteRetentionInDays: 90,
		EnableRbacAuthorization:   v.rbac,
		VaultURI:                  v.base() + "/",
		ProvisioningState:         "Succeeded",
		PublicNetworkAccess:       "Disabled",
	}
	if c.AccessPolicies == nil {
		c.AccessPolicies = []accessPolicy{}
	}
	for _, r := range v.ipRules {
		c.NetworkAcls.IPRules = append(c.NetworkAcls.IPRules, ipRule{Value: r})
	}
	if v.purgeProtection {
		t := true
		c.EnablePurgeProtection = &t
	}
	if v.name == "kv-payments-prod" {
		c.Sku.Name = "premium"
	}
	return c
}

type principal struct {
	name     string // for descriptions
	oid      string
	appid    string // service principals; people take it from their client
	acr      string // appidacr
	mirid    string // managed identities
	upn      string // people
	human    bool
	external bool
}

type client struct {
	ua    string
	api   string // data-plane api-version
	tls   string
	appid string // the tool's app id, for people
	anon  bool   // starts with the SDK's anonymous 401 challenge
}

var clients = map[string]*client{
	"net48":    {ua: "FxVersion/4.8.9282.0 azsdk-net-Security.KeyVault.Secrets/4.5.0 (.NET Framework 4.8.9282.0; Microsoft Windows 10.0.20348 )", api: "7.4", tls: "TLS1_2", anon: true},
	"net8":     {ua: "azsdk-net-Security.KeyVault.Secrets/4.6.0 (.NET 8.0.11; Ubuntu 22.04.5 LTS)", api: "7.5", tls: "TLS1_3", anon: true},
	"java":     {ua: "azsdk-java-azure-security-keyvault-keys/4.8.3 (17.0.12; Linux; 5.15.0-1073-azure)", api: "7.5", tls: "TLS1_3", anon: true},
	"csi":      {ua: "akvsecretsprovider/v1.6.0 azsdk-go-azsecrets/v1.1.0 (go1.22.8; linux)", api: "7.5", tls: "TLS1_3", anon: true},
	"adf":      {ua: "Microsoft.DataFactory/1.0 azsdk-net-Security.KeyVault.Secrets/4.6.0 (.NET 8.0.11; Microsoft Windows 10.0.20348)", api: "7.4", tls: "TLS1_2", anon: true},
	"python":   {ua: "azsdk-python-keyvault-secrets/4.7.0 Python/3.11.9 (Linux-6.8.0-1017-azure-x86_64-with-glibc2.39)", api: "7.4", tls: "TLS1_3", appid: appAzureCLI, anon: true},
	"cli":      {ua: "Azure-CLI/2.67.0 (AAZ) azsdk-python-keyvault-secrets/4.7.0 Python/3.12.8 (Windows-11-10.0.26100-SP0)", api: "7.4", tls: "TLS1_2", appid: appAzureCLI, anon: true},
	"cli-gha":  {ua: "Azure-CLI/2.66.0 (AAZ) azsdk-python-keyvault-secrets/4.7.0 Python/3.12.7 (Linux-6.5.0-1025-azure-x86_64-with-glibc2.35)", api: "7.4", tls: "TLS1_2", anon: true},
	"portal":   {ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", api: "7.4", tls: "TLS1_3", appid: appAzurePortal},
	"requests": {ua: "python-requests/2.32.3", api: "7.4", tls: "TLS1_3"},
	"arg":      {ua: "AzureResourceGraph.IngestionWorkerService.global/1.23.1.630"},
	"policy":   {ua: appPolicyInsights},
	// Azure DevOps' Key Vault task (AzureKeyVault@2) on a self-hosted agent:
	// the agent's user agent (VSTS_<collection>_<hosttype>_<definition>_<run>)
	// and the task. It asks for its token up front: no anonymous challenge.
	"ado": {ua: "VSTS_6c1f8e2a-4b7d-4a39-9e05-3d2c1b0a9f87_release_14_1187 AzureKeyVault/2.247.1", api: "7.4", tls: "TLS1_2"},
	// Terraform's azurerm provider (go-autorest and the Key Vault track-1 SDK).
	"terraform": {ua: "Go/go1.22.7 (amd64-linux) go-autorest/v14.2.1 Azure-SDK-For-Go/v68.0.0 keyvault/7.4 HashiCorp Terraform/1.9.8 (+https://www.terraform.io) Terraform Plugin SDK/2.10.1 terraform-provider-azurerm/3.117.0 pid-222c6c49-1b0a-5959-a213-6608f9eb8820", api: "7.4", tls: "TLS1_2", anon: true},
}

func miid(sub, rg, provider string) string {
	return "/subscriptions/" + sub + "/resourcegroups/" + rg + "/providers/" + provider
}

var principals = map[string]*principal{
	"payments-api": {name: "managed identity id-payments-api", oid: "6f1d2c3b-8a47-4e59-9b1c-2d7e3f4a5b61", appid: "0c9e8d7f-1a2b-4c3d-8e5f-6a7b8c9d0e1f", acr: "2",
		mirid: miid(subProd, rgProd, "Microsoft.ManagedIdentity/userAssignedIdentities/id-payments-api")},
	"web-frontend": {name: "app-web-prod (system-assigned identity)", oid: "b7e2a9c4-3d15-4f68-a0b2-9c8d7e6f5a43", appid: "e4d3c2b1-a098-4765-b432-10fedcba9876", acr: "2",
		mirid: miid(subProd, rgProd, "Microsoft.Web/sites/app-web-prod")},
	"orders-worker": {name: "service principal sp-orders-worker", oid: "2a4c6e8f-0b1d-4f3a-95c7-e9f1a3b5c7d9", appid: "5b7d9f1a-3c5e-4a7b-8d9f-1b3d5f7a9c2e", acr: "1"},
	"aks-csi": {name: "managed identity id-aks-kv-csi", oid: "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f", appid: "f0e1d2c3-b4a5-4697-8879-6a5b4c3d2e1f", acr: "2",
		mirid: miid(subPlat, "mc_rg-platform-shared_aks-platform_westeurope", "Microsoft.ManagedIdentity/userAssignedIdentities/id-aks-kv-csi")},
	"adf": {name: "adf-data-dev (system-assigned identity)", oid: "9e8d7c6b-5a49-4382-b1a0-f9e8d7c6b5a4", appid: "1f2e3d4c-5b6a-4798-a6b5-c4d3e2f1a0b9", acr: "2",
		mirid: miid(subPlat, rgPlat, "Microsoft.DataFactory/factories/adf-data-dev")},
	// Platform identities that list and read many secrets by design; the
	// demo tenant excepts them by identity (internal/demo/kvwatch.yaml).
	"orders-api": {name: "app-orders-api (system-assigned identity)", oid: "4b5c6d7e-8f90-4a1b-92c3-d4e5f6a7b8c9", appid: "7d8e9f0a-1b2c-4d3e-8f4a-5b6c7d8e9f0a", acr: "2",
		mirid: miid(subProd, rgProd, "Microsoft.Web/sites/app-orders-api")},
	"ado-release":     {name: "service principal sp-ado-release (Azure DevOps service connection)", oid: "3d4e5f6a-7b8c-4d9e-a0f1-b2c3d4e5f6a7", appid: "9e0f1a2b-3c4d-4e5f-96a7-b8c9d0e1f2a3", acr: "2"},
	"terraform":       {name: "service principal sp-terraform (Terraform's ARM_CLIENT_ID)", oid: "8b9c0d1e-2f3a-4b4c-95d6-e7f8a9b0c1d2", appid: "0f1a2b3c-4d5e-4f6a-87b8-c9d0e1f2a3b4", acr: "1"},
	"gha-deploy":      {name: "service principal gha-platform-deploy", oid: "7c8d9e0f-1a2b-4c3d-9e4f-5a6b7c8d9e0f", appid: "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7", acr: "2"},
	"resource-graph":  {name: "Azure Resource Graph", oid: "0d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a", appid: appResourceGraph, acr: "2"},
	"policy-insights": {name: "Policy Insights", oid: "8a9b0c1d-2e3f-4a5b-9c6d-7e8f9a0b1c2d", appid: appPolicyInsights, acr: "2"},

	"alice":  {name: "alice.nguyen@contoso.com", oid: "11a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8", upn: "alice.nguyen@contoso.com", human: true},
	"bob":    {name: "bob.kowalski@contoso.com", oid: "22b3c4d5-e6f7-4081-92a3-b4c5d6e7f809", upn: "bob.kowalski@contoso.com", human: true},
	"ravi":   {name: "ravi.patel@contoso.com", oid: "33c4d5e6-f708-4192-a3b4-c5d6e7f8091a", upn: "ravi.patel@contoso.com", human: true},
	"carol":  {name: "carol.mendes@contoso.com", oid: "44d5e6f7-0819-42a3-b4c5-d6e7f8091a2b", upn: "carol.mendes@contoso.com", human: true},
	"dave":   {name: "dave.okafor@contoso.com", oid: "55e6f708-192a-43b4-85d6-e7f8091a2b3c", upn: "dave.okafor@contoso.com", human: true},
	"jordan": {name: "jordan.miles@contoso.com", oid: "66f70819-2a3b-44c5-96e7-f8091a2b3c4d", upn: "jordan.miles@contoso.com", human: true},

	"intruder":       {name: "service principal legacy-reporting-app", oid: "d4c3b2a1-9f8e-4d7c-b6a5-948372615f0e", appid: "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", acr: "1", external: true},
	"ops-automation": {name: "service principal sp-ops-automation", oid: "f7a8b9c0-d1e2-4f3a-84b5-c6d7e8f9a0b1", appid: "a8b9c0d1-e2f3-4a4b-95c6-d7e8f9a0b1c2", acr: "1"},
	"backup-tool":    {name: "service principal kv-backup-tool", oid: "e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a8b9", appid: "f6a7b8c9-d0e1-4f2a-b3c4-d5e6f7a8b9c0", acr: "1"},
}

// IP addresses: private endpoint traffic from apps, documentation ranges
// for people and the outside world.
const (
	ipOffice1 = "198.51.100.23"
	ipOffice2 = "198.51.100.24"
	ipVPN     = "198.51.100.40"
	ipHome    = "192.0.2.57"
	ipIntrude = "203.0.113.66"
	ipBackup  = "203.0.113.145"
	ipGHA     = "20.57.79.114"
	ipOpsAuto = "203.0.113.88"
	ipADO     = "10.60.0.21" // self-hosted Azure DevOps agents in the platform VNet
	ipTF      = "10.60.0.22"
)

var argIPs = []string{"20.50.2.81", "20.50.2.83", "20.103.83.21"}
var policyIPs = []string{"20.61.102.14", "20.61.102.17"}

func newVaults(r *rand.Rand, day time.Time) map[string]*vault {
	ap := func(oid string, keys, secrets, certs []string) accessPolicy {
		if keys == nil {
			keys = []string{}
		}
		if secrets == nil {
			secrets = []string{}
		}
		if certs == nil {
			certs = []string{}
		}
		return accessPolicy{TenantID: tenantID, ObjectID: oid, Permissions: permissions{Keys: keys, Secrets: secrets, Certificates: certs}}
	}
	all := []string{"get", "list", "set", "delete", "recover", "backup", "restore"}
	vs := map[string]*vault{
		"kv-payments-prod": {
			name: "kv-payments-prod", sub: subProd, rg: rgProd, rbac: true, purgeProtection: true,
			ipRules: []string{"198.51.100.0/24"},
			secrets: []string{
				"db-payments-connection", "stripe-api-key", "payments-signing-secret", "db-ledger-connection",
				"db-ledger-readonly", "stripe-webhook-secret", "adyen-api-key", "adyen-hmac-key",
				"paypal-client-secret", "klarna-api-secret", "psp-webhook-secret", "settlement-sftp-password",
				"settlement-pgp-passphrase", "fraud-model-api-key", "fraud-feed-token", "ledger-export-sas",
				"reporting-db-password", "redis-payments-password", "servicebus-payments-conn", "eventhub-payments-conn",
				"storage-receipts-key", "appinsights-payments-key", "sendgrid-api-key", "twilio-auth-token",
				"swift-gateway-cert-password", "sepa-batch-signing-key", "card-vault-api-key", "tokenizer-hmac-secret",
				"chargeback-portal-password", "bank-api-client-secret", "fx-rates-api-key", "tax-service-api-key",
				"invoice-service-secret", "refunds-worker-secret", "payouts-api-key", "kyc-provider-token",
				"aml-screening-key", "merchant-portal-jwt-key", "partner-api-secret", "backoffice-admin-password",
				"datadog-api-key", "pagerduty-routing-key", "github-deploy-token", "terraform-sp-secret",
			},
			keys:  []string{"payments-cmk", "card-data-kek"},
			certs: []string{"payments-api-tls", "swift-client-auth"},
		},
		"kv-web-prod": {
			name: "kv-web-prod", sub: subProd, rg: rgProd, purgeProtection: true,
			ipRules: []string{"198.51.100.0/24"},
			secrets: []string{"web-session-key", "cdn-signing-key", "redis-web-password", "b2c-client-secret",
				"smtp-relay-password", "recaptcha-secret", "search-api-key", "feature-flags-conn"},
			certs: []string{"www-contoso-com"},
			policies: []accessPolicy{
				ap(principals["web-frontend"].oid, nil, []string{"get", "list"}, nil),
				ap(principals["alice"].oid, nil, all, []string{"get", "list", "import", "update"}),
				ap(principals["dave"].oid, nil, []string{"get", "list"}, nil),
				ap(principals["gha-deploy"].oid, nil, []string{"get", "list", "set"}, []string{"get", "import"}),
				ap(principals["ado-release"].oid, nil, []string{"get", "list"}, nil),
				ap(principals["terraform"].oid, nil, all, nil),
			},
		},
		"kv-data-dev": {
			name: "kv-data-dev", sub: subPlat, rg: rgPlat,
			secrets: []string{"sql-dev-password", "storage-dev-key", "databricks-token", "synapse-sql-admin",
				"airflow-fernet-key", "snowflake-dev-password"},
			policies: []accessPolicy{
				ap(principals["adf"].oid, nil, []string{"get", "list"}, nil),
				ap(principals["ravi"].oid, []string{"get", "list"}, all, nil),
				ap(principals["bob"].oid, nil, all, nil),
				ap(principals["terraform"].oid, nil, all, nil),
			},
		},
		"kv-shared-infra": {
			name: "kv-shared-infra", sub: subPlat, rg: rgPlat, rbac: true,
			ipRules: []string{"198.51.100.0/24"},
			secrets: []string{"acr-pull-token", "grafana-admin-password", "wildcard-contoso-com", "vpn-psk-weu",
				"ldap-bind-password", "legacy-sftp-password", "sonar-token"},
			keys:  []string{"sops-key"},
			certs: []string{"wildcard-contoso-com", "internal-ca"},
		},
	}
	for _, name := range []string{"kv-payments-prod", "kv-web-prod", "kv-data-dev", "kv-shared-infra"} {
		v := vs[name]
		v.rid = v.resourceID()
		v.ver = map[string]string{}
		v.created = map[string]int64{}
		add := func(typ string, names []string) {
			for _, n := range names {
				k := typ + "/" + n
				v.ver[k] = hex32(r)
				v.created[k] = day.Add(-time.Duration(30+r.IntN(400)) * 24 * time.Hour).
					Add(time.Duration(r.Int64N(int64(24 * time.Hour)))).Unix()
			}
		}
		add("secrets", v.secrets)
		add("keys", v.keys)
		add("certificates", v.certs)
	}
	return vs
}

// ---------------------------------------------------------------------------
// Generator state.

type entry struct {
	t   time.Time
	v   *vault
	rec record
}

type gen struct {
	seed    uint64
	day     time.Time
	span    time.Duration // how long after day records may be; 0 means a day
	vaults  map[string]*vault
	entries []entry
	planted []Incident
}

func newGen(opts Options) *gen {
	seed := opts.Seed
	if seed == 0 {
		seed = 1
	}
	day := defaultDay
	if !opts.Day.IsZero() {
		y, m, d := opts.Day.Date()
		day = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	}
	g := &gen{seed: uint64(seed), day: day}
	g.vaults = newVaults(g.rng("world"), day)
	return g
}

// rng returns the random source of one part of the scenario.
func (g *gen) rng(part string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(part))
	return rand.New(rand.NewPCG(g.seed, h.Sum64()))
}

func (g *gen) end() time.Time {
	if g.span > 0 {
		return g.day.Add(g.span)
	}
	return g.day.Add(24 * time.Hour)
}

func (g *gen) at(h, m, s int) time.Time {
	return g.day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second)
}

func (g *gen) emit(t time.Time, v *vault, rec record) {
	t = t.Truncate(100 * time.Nanosecond)
	if t.Before(g.day) || !t.Before(g.end()) {
		return
	}
	g.entries = append(g.entries, entry{t: t, v: v, rec: rec})
}

func guid(r *rand.Rand) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], r.Uint64())
	binary.BigEndian.PutUint64(b[8:], r.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func hex32(r *rand.Rand) string { return fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64()) }

// between returns a duration in [lo, hi).
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

func opt(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func ptr[T any](v T) *T { return &v }

// ---------------------------------------------------------------------------
// Record builders.

// call is one data-plane request.
type call struct {
	t      time.Time
	v      *vault
	p      *principal // nil: anonymous (no identity)
	cl     *client
	ip     string
	op     string
	obj    string // object name; "" for lists
	status int
	corr   string // "" draws a new correlation id
}

var reasons = map[int]string{
	200: "OK", 204: "No Content", 401: "Unauthorized", 403: "Forbidden",
	404: "Not Found", 429: "Too Many Requests",
}

func objectType(op string) string {
	switch {
	case strings.HasPrefix(op, "Secret"):
		return "secrets"
	case strings.HasPrefix(op, "Key"):
		return "keys"
	case strings.HasPrefix(op, "Certificate"):
		return "certificates"
	}
	return ""
}

var cryptoPaths = map[string]string{
	"KeyUnwrap": "unwrapkey", "KeyWrap": "wrapkey", "KeyDecrypt": "decrypt",
	"KeyEncrypt": "encrypt", "KeySign": "sign", "KeyVerify": "verify",
}

// data emits one data-plane record and returns its correlation id.
func (g *gen) data(r *rand.Rand, c call) string {
	v, typ := c.v, objectType(c.op)
	base, q := v.base(), "?api-version="+c.cl.api
	key := typ + "/" + c.obj
	ver := v.ver[key]
	if ver == "" {
		ver = hex32(r)
	}
	var id, uri string
	switch {
	case strings.HasSuffix(c.op, "List"):
		id, uri = base+"/"+typ, base+"/"+typ+q
	case c.op == "SecretSet":
		ver = hex32(r)
		id, uri = base+"/secrets/"+c.obj+"/"+ver, base+"/secrets/"+c.obj+q
	case c.op == "SecretDelete":
		id, uri = base+"/secrets/"+c.obj, base+"/secrets/"+c.obj+q
	case c.op == "SecretGetDeleted", c.op == "SecretPurge":
		id, uri = base+"/deletedsecrets/"+c.obj, base+"/deletedsecrets/"+c.obj+q
	case c.op == "SecretBackup":
		id, uri = base+"/secrets/"+c.obj, base+"/secrets/"+c.obj+"/backup"+q
	case cryptoPaths[c.op] != "":
		id, uri = base+"/keys/"+c.obj+"/"+ver, base+"/keys/"+c.obj+"/"+ver+"/"+cryptoPaths[c.op]+q
	default: // Get
		id, uri = base+"/"+typ+"/"+c.obj+"/"+ver, base+"/"+typ+"/"+c.obj+"/"+q
	}
	if c.status >= 400 && strings.HasSuffix(c.op, "Get") {
		id = base + "/" + typ + "/" + c.obj
	}
	if c.corr == "" {
		c.corr = guid(r)
	}

	p := &properties{
		ID: id, ClientInfo: c.cl.ua, HTTPStatusCode: c.status, RequestURI: uri, TLSVersion: c.cl.tls,
	}
	if c.status != 401 {
		ok := c.status != 403
		if v.rbac {
			p.IsRbacAuthorized = &ok
		} else {
			p.IsAccessPolicyMatch = &ok
		}
	}
	if c.status == 200 && (strings.HasSuffix(c.op, "Get") || c.op == "SecretSet") {
		a := &objProps{Attributes: attributes{Enabled: true, Created: v.created[key], RecoveryLevel: v.recoveryLevel()}}
		if a.Attributes.Created == 0 {
			a.Attributes.Created = c.t.Add(-90 * 24 * time.Hour).Unix()
		}
		a.Attributes.Updated = a.Attributes.Created
		if c.op == "SecretSet" {
			a.Attributes.Updated = c.t.Unix()
		}
		switch typ {
		case "secrets":
			p.SecretProperties = a
		case "keys":
			p.KeyProperties = a
		case "certificates":
			p.CertificateProperties = a
		}
	}

	var dur int
	switch {
	case c.status == 401, c.status == 403, c.status == 429:
		dur = 1 + r.IntN(6)
	case cryptoPaths[c.op] != "":
		dur = 8 + r.IntN(45)
	default:
		dur = 3 + r.IntN(22)
		if r.IntN(50) == 0 {
			dur += 100 + r.IntN(400) // the odd slow one
		}
	}

	rec := record{
		ResourceID:        v.resourceID(),
		OperationName:     c.op,
		OperationVersion:  c.cl.api,
		Category:          "AuditEvent",
		ResultType:        "Success", // even for 401/403/404/429: that is what Azure writes
		ResultSignature:   reasons[c.status],
		ResultDescription: g.description(c),
		DurationMs:        strconv.Itoa(dur),
		CallerIPAddress:   c.ip,
		CorrelationID:     c.corr,
		Properties:        p,
	}
	if c.p != nil && c.status != 401 {
		rec.Identity = &identity{Claim: shortOf(c.p, c.cl, c.ip)}
	}
	g.emit(c.t, v, rec)
	return c.corr
}

func shortOf(p *principal, cl *client, ip string) *shortClaims {
	c := &shortClaims{OID: p.oid, TID: tenantID}
	if p.human {
		c.AppID, c.AppIDACR = opt(cl.appid), "0"
		c.UPN, c.UniqueName, c.IPAddr = p.upn, p.upn, ip
		c.SCP = "user_impersonation"
		c.AMR = []string{"pwd", "mfa"}
		return c
	}
	c.AppID, c.AppIDACR, c.IDTyp, c.XMSMirID = p.appid, p.acr, "app", opt(p.mirid)
	return c
}

func uriOf(p *principal, cl *client, ip string) *uriClaims {
	c := &uriClaims{OID: p.oid, TID: tenantID}
	if p.human {
		c.UPN, c.Name, c.AMR = p.upn, p.upn, "pwd,mfa"
		c.AppID, c.AppIDACR, c.IPAddr = opt(cl.appid), "0", ip
		return c
	}
	c.AppID, c.AppIDACR, c.IDTyp = p.appid, p.acr, "app"
	return c
}

var secretPerm = map[string]string{
	"SecretGet": "get", "SecretList": "list", "SecretSet": "set", "SecretDelete": "delete",
	"SecretBackup": "backup", "SecretPurge": "purge", "SecretGetDeleted": "get",
}

var rbacAction = map[string]string{
	"SecretGet": "secrets/getSecret/action", "SecretList": "secrets/readMetadata/action",
	"SecretSet": "secrets/setSecret/action", "SecretDelete": "secrets/delete",
	"SecretBackup": "secrets/backup/action", "SecretPurge": "deletedsecrets/delete",
}

func (g *gen) description(c call) string {
	switch c.status {
	case 401:
		return "Request is missing a Bearer or PoP token."
	case 404:
		return "A secret with (name/id) " + c.obj + " was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
	case 429:
		return "Rate limit is exceeded. Try again in 3 seconds."
	case 403:
		who := "appid=" + c.p.appid + ";oid=" + c.p.oid + ";iss=https://sts.windows.net/" + tenantID + "/"
		if c.v.rbac {
			res := "/subscriptions/" + c.v.sub + "/resourcegroups/" + c.v.rg + "/providers/microsoft.keyvault/vaults/" + c.v.name
			if c.obj != "" {
				res += "/secrets/" + c.obj
			}
			return "Caller is not authorized to perform action on resource.\r\n" +
				"If role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\n" +
				"Caller: " + who + "\r\n" +
				"Action: 'Microsoft.KeyVault/vaults/" + rbacAction[c.op] + "'\r\n" +
				"Resource: '" + res + "'\r\n" +
				"Assignment: (not found)\r\n" +
				"DenyAssignmentId: null\r\n" +
				"DecisionReason: null \r\n" +
				"Vault: " + c.v.name + ";location=" + region + "\r\n"
		}
		return "The user, group or application '" + who + "' does not have secrets " + secretPerm[c.op] +
			" permission on key vault '" + c.v.name + ";location=" + region +
			"'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287"
	}
	return ""
}

// arm emits one management record (VaultGet/VaultPut/VaultPatch through ARM).
func (g *gen) arm(r *rand.Rand, t time.Time, v *vault, p *principal, cl *client, ip, op, api string, cfg *vaultProps) {
	uri := "https://" + armHost + "/subscriptions/" + v.sub + "/resourceGroups/" + v.rg +
		"/providers/Microsoft.KeyVault/vaults/" + v.name + "?api-version=" + api
	dur := 20 + r.IntN(120)
	if op != "VaultGet" {
		dur = 180 + r.IntN(900)
	}
	g.emit(t, v, record{
		ResourceID:       v.resourceID(),
		OperationName:    op,
		OperationVersion: api,
		Category:         "AuditEvent",
		ResultType:       "Success",
		ResultSignature:  "OK",
		DurationMs:       strconv.Itoa(dur),
		CallerIPAddress:  ip,
		CorrelationID:    guid(r),
		Identity:         &identity{Claim: uriOf(p, cl, ip)},
		Properties: &properties{
			ID: v.base() + "/", ClientInfo: cl.ua, HTTPStatusCode: 200, RequestURI: uri,
			Properties: cfg,
		},
	})
}

// notify emits an Event Grid notification record (no caller).
func (g *gen) notify(r *rand.Rand, t time.Time, v *vault, op, typ, obj string) {
	key := typ + "/" + obj
	p := &properties{HTTPStatusCode: 200}
	if obj != "" {
		p.ID = v.base() + "/" + typ + "/" + obj + "/" + v.ver[key]
		a := &objProps{Attributes: attributes{Enabled: true, Created: v.created[key], Updated: v.created[key],
			Exp: g.day.Add(time.Duration(20+r.IntN(10)) * 24 * time.Hour).Unix(), RecoveryLevel: v.recoveryLevel()}}
		if typ == "certificates" {
			p.CertificateProperties = a
		} else {
			p.SecretProperties = a
		}
	} else {
		p.ID = v.base() + "/"
	}
	g.emit(t, v, record{
		ResourceID:       v.resourceID(),
		OperationName:    op,
		OperationVersion: "",
		Category:         "AuditEvent",
		ResultType:       "Success",
		ResultSignature:  "OK",
		DurationMs:       "0",
		CorrelationID:    guid(r),
		Properties:       p,
	})
}

// challenged emits the SDK's anonymous 401 first when fresh is set, then
// the call itself with the same correlation id, and returns the time after.
func (g *gen) challenged(r *rand.Rand, c call, fresh bool) time.Time {
	if fresh && c.cl.anon {
		a := c
		a.p, a.status = nil, 401
		c.corr = g.data(r, a)
		c.t = c.t.Add(between(r, 15*time.Millisecond, 55*time.Millisecond))
	}
	g.data(r, c)
	if c.status == 429 { // the SDK retries after the advertised delay
		c.status = 200
		c.t = c.t.Add(between(r, 3*time.Second, 4*time.Second))
		g.data(r, c)
	}
	return c.t
}

// ---------------------------------------------------------------------------
// Schedules.

// every calls fn at phase + k*period (+ jitter in [0, jitter)) over the day.
func (g *gen) every(r *rand.Rand, period, jitter time.Duration, fn func(t time.Time)) {
	for t := g.day.Add(between(r, 0, period)); t.Before(g.end()); t = t.Add(period) {
		fn(t.Add(between(r, 0, jitter)))
	}
}

// poisson calls fn at random arrivals with the mean gap mean(t).
func (g *gen) poisson(r *rand.Rand, mean func(time.Time) time.Duration, fn func(t time.Time)) {
	t := g.day
	for {
		t = t.Add(time.Duration(r.ExpFloat64() * float64(mean(t))))
		if !t.Before(g.end()) {
			return
		}
		fn(t)
	}
}

// restarts says when a client instance starts (and so does the 401
// challenge again): at the start of the day and n random moments.
type restarts struct {
	at []time.Time
}

func (g *gen) restarts(r *rand.Rand, n int) *restarts {
	rs := &restarts{at: []time.Time{g.day}}
	for range n {
		rs.at = append(rs.at, g.day.Add(between(r, 0, 24*time.Hour)))
	}
	slices.SortFunc(rs.at, func(a, b time.Time) int { return a.Compare(b) })
	return rs
}

// due reports whether a restart happened at or before t since the last call.
func (rs *restarts) due(t time.Time) bool {
	fresh := false
	for len(rs.at) > 0 && !t.Before(rs.at[0]) {
		rs.at = rs.at[1:]
		fresh = true
	}
	return fresh
}

func workHours(t time.Time) bool { h := t.UTC().Hour(); return h >= 8 && h < 18 }

func (g *gen) background() {
	g.paymentsAPI()
	g.ordersWorker()
	g.webFrontend()
	g.aksCSI()
	g.dataFactory()
	g.ciPipeline()
	g.resourceGraph()
	g.policyInsights()
	g.people()
	g.adminChanges()
	g.notifications()
	g.configProvider()
	g.releasePipeline()
	g.terraformPlans()
}

// paymentsAPI: two replicas reading three secrets every two minutes.
func (g *gen) paymentsAPI() {
	r := g.rng("payments-api")
	v, p, cl := g.vaults["kv-payments-prod"], principals["payments-api"], clients["net48"]
	for _, ip := range []string{"10.1.2.14", "10.1.2.15"} {
		rs := g.restarts(r, 2)
		g.every(r, 2*time.Minute, 20*time.Second, func(t time.Time) {
			fresh := rs.due(t)
			for _, s := range []string{"db-payments-connection", "stripe-api-key", "payments-signing-secret"} {
				status := 200
				if r.IntN(1000) < 2 {
					status = 429
				}
				t = g.challenged(r, call{t: t, v: v, p: p, cl: cl, ip: ip, op: "SecretGet", obj: s, status: status}, fresh)
				fresh = false
				t = t.Add(between(r, 4*time.Millisecond, 34*time.Millisecond))
			}
		})
	}
}

// ordersWorker: envelope decryption with the payments keys.
func (g *gen) ordersWorker() {
	r := g.rng("orders-worker")
	v, p, cl := g.vaults["kv-payments-prod"], principals["orders-worker"], clients["java"]
	ips := []string{"10.1.3.21", "10.1.3.22"}
	rs := g.restarts(r, 1)
	g.poisson(r, func(time.Time) time.Duration { return 90 * time.Second }, func(t time.Time) {
		g.challenged(r, call{t: t, v: v, p: p, cl: cl, ip: ips[r.IntN(2)], op: "KeyUnwrap", obj: "payments-cmk", status: 200}, rs.due(t))
	})
	g.poisson(r, func(t time.Time) time.Duration {
		if h := t.Hour(); h >= 7 && h < 22 {
			return 75 * time.Second
		}
		return 8 * time.Minute
	}, func(t time.Time) {
		g.data(r, call{t: t, v: v, p: p, cl: cl, ip: ips[r.IntN(2)], op: "KeyDecrypt", obj: "card-data-kek", status: 200})
	})
}

// webFrontend: four instances reading four secrets every five minutes, and
// a stale setting asking for a secret that no longer exists.
func (g *gen) webFrontend() {
	r := g.rng("web-frontend")
	v, p, cl := g.vaults["kv-web-prod"], principals["web-frontend"], clients["net8"]
	ips := []string{"10.2.0.4", "10.2.0.5", "10.2.0.6", "10.2.0.7"}
	for _, ip := range ips {
		rs := g.restarts(r, 1)
		g.every(r, 5*time.Minute, 30*time.Second, func(t time.Time) {
			fresh := rs.due(t)
			for _, s := range []string{"web-session-key", "cdn-signing-key", "redis-web-password", "b2c-client-secret"} {
				t = g.challenged(r, call{t: t, v: v, p: p, cl: cl, ip: ip, op: "SecretGet", obj: s, status: 200}, fresh)
				fresh = false
				t = t.Add(between(r, 3*time.Millisecond, 23*time.Millisecond))
			}
		})
	}
	g.every(r, 10*time.Minute, 4*time.Minute, func(t time.Time) {
		g.data(r, call{t: t, v: v, p: p, cl: cl, ip: ips[r.IntN(len(ips))], op: "SecretGet", obj: "feature-flags-legacy", status: 404})
	})
}

// aksCSI: the Secrets Store CSI driver polling for rotation on three nodes,
// and one rollout at about 14:20 that gets throttled.
func (g *gen) aksCSI() {
	r := g.rng("aks-csi")
	v, p, cl := g.vaults["kv-shared-infra"], principals["aks-csi"], clients["csi"]
	objs := []struct{ op, name string }{
		{"SecretGet", "acr-pull-token"}, {"SecretGet", "grafana-admin-password"},
		{"CertificateGet", "wildcard-contoso-com"}, {"SecretGet", "wildcard-contoso-com"},
	}
	nodes := []string{"10.240.0.4", "10.240.0.5", "10.240.0.6"}
	for _, ip := range nodes {
		rs := g.restarts(r, 0)
		g.every(r, 5*time.Minute, 10*time.Second, func(t time.Time) {
			fresh := rs.due(t)
			for _, o := range objs {
				t = g.challenged(r, call{t: t, v: v, p: p, cl: cl, ip: ip, op: o.op, obj: o.name, status: 200}, fresh)
				fresh = false
				t = t.Add(between(r, 2*time.Millisecond, 17*time.Millisecond))
			}
		})
	}
	// Rollout: 60 pods mounting at once; Key Vault throttles part of it.
	t := g.at(14, 20, 0).Add(between(r, 0, 5*time.Minute))
	for i := range 60 {
		o := objs[i%len(objs)]
		status := 200
		if i > 15 && r.IntN(3) == 0 {
			status = 429
		}
		g.challenged(r, call{t: t, v: v, p: p, cl: cl, ip: nodes[r.IntN(len(nodes))], op: o.op, obj: o.name, status: status}, false)
		t = t.Add(between(r, 200*time.Millisecond, 600*time.Millisecond))
	}
}

// dataFactory: pipeline runs reading connection secrets.
func (g *gen) dataFactory() {
	r := g.rng("adf")
	v, p, cl := g.vaults["kv-data-dev"], principals["adf"], clients["adf"]
	g.every(r, 15*time.Minute, 2*time.Minute, func(t time.Time) {
		ip := "10.30.1." + strconv.Itoa(10+r.IntN(20))
		fresh := true // each activity run builds a new client
		for _, s := range []string{"sql-dev-password", "storage-dev-key"} {
			t = g.challenged(r, call{t: t, v: v, p: p, cl: cl, ip: ip, op: "SecretGet", obj: s, status: 200}, fresh)
			fresh = false
			t = t.Add(between(r, 10*time.Millisecond, 110*time.Millisecond))
		}
	})
}

// ciPipeline: GitHub Actions deployments during the day.
func (g *gen) ciPipeline() {
	r := g.rng("ci")
	v, p, cl := g.vaults["kv-shared-infra"], principals["gha-deploy"], clients["cli-gha"]
	g.poisson(r, func(t time.Time) time.Duration {
		if workHours(t) {
			return 15 * time.Minute
		}
		return 3 * time.Hour
	}, func(t time.Time) {
		fresh := true
		for _, s := range []string{"acr-pull-token", "sonar-token"} {
			t = g.challenged(r, call{t: t, v: v, p: p, cl: cl, ip: ipGHA, op: "SecretGet", obj: s, status: 200}, fresh)
			fresh = false
			t = t.Add(between(r, 800*time.Millisecond, 3*time.Second))
		}
	})
}

// resourceGraph: Azure Resource Graph reading every vault every few minutes;
// now and then a record is delivered twice.
func (g *gen) resourceGraph() {
	r := g.rng("resource-graph")
	p, cl := principals["resource-graph"], clients["arg"]
	for _, name := range []string{"kv-payments-prod", "kv-web-prod", "kv-data-dev", "kv-shared-infra"} {
		v := g.vaults[name]
		g.every(r, 5*time.Minute, 90*time.Second, func(t time.Time) {
			g.arm(r, t, v, p, cl, argIPs[r.IntN(len(argIPs))], "VaultGet", "2022-07-01", nil)
			if r.IntN(250) == 0 && len(g.entries) > 0 { // delivered twice
				e := g.entries[len(g.entries)-1]
				g.entries = append(g.entries, e)
			}
		})
	}
}

// policyInsights: Azure Policy compliance scans of every vault.
func (g *gen) policyInsights() {
	r := g.rng("policy-insights")
	p, cl := principals["policy-insights"], clients["policy"]
	for _, name := range []string{"kv-payments-prod", "kv-web-prod", "kv-data-dev", "kv-shared-infra"} {
		v := g.vaults[name]
		g.every(r, 12*time.Minute, 3*time.Minute, func(t time.Time) {
			g.arm(r, t, v, p, cl, policyIPs[r.IntN(len(policyIPs))], "VaultGet", "2023-02-01", nil)
		})
	}
}

// configProvider: app-orders-api's .NET configuration provider
// (AddAzureKeyVault) loads all of kv-payments-prod at every start of every
// instance: it lists the vault's secrets, then gets each one. A deployment
// at about 10:30 starts three instances within a minute; one instance
// restarts at about 15:10.
func (g *gen) configProvider() {
	r := g.rng("orders-api")
	v, p, cl := g.vaults["kv-payments-prod"], principals["orders-api"], clients["net8"]
	type start struct {
		t  time.Time
		ip string
	}
	var starts []start
	t := g.at(10, 30, 0).Add(between(r, 0, 15*time.Second))
	for _, ip := range []string{"10.1.4.11", "10.1.4.12", "10.1.4.13"} {
		starts = append(starts, start{t, ip})
		t = t.Add(between(r, 5*time.Second, 20*time.Second))
	}
	starts = append(starts, start{g.at(15, 10, 0).Add(between(r, 0, time.Minute)), "10.1.4.12"})
	for _, s := range starts {
		t := g.challenged(r, call{t: s.t, v: v, p: p, cl: cl, ip: s.ip, op: "SecretList", status: 200}, true)
		for _, name := range v.secrets { // loaded in parallel: a second or two
			t = t.Add(between(r, 5*time.Millisecond, 45*time.Millisecond))
			g.data(r, call{t: t, v: v, p: p, cl: cl, ip: s.ip, op: "SecretGet", obj: name, status: 200})
		}
	}
}

// releasePipeline: an Azure DevOps release of the web app at about 09:00,
// 13:00 and 16:00; its Key Vault task lists kv-web-prod's secrets, then gets
// the handful the release maps to variables.
func (g *gen) releasePipeline() {
	r := g.rng("ado-release")
	v, p, cl := g.vaults["kv-web-prod"], principals["ado-release"], clients["ado"]
	for _, h := range []int{9, 13, 16} {
		t := g.at(h, 0, 0).Add(between(r, 0, 8*time.Minute))
		g.data(r, call{t: t, v: v, p: p, cl: cl, ip: ipADO, op: "SecretList", status: 200})
		names := slices.Clone(v.secrets)
		r.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		for _, name := range names[:4+r.IntN(3)] {
			t = t.Add(between(r, 150*time.Millisecond, 900*time.Millisecond))
			g.data(r, call{t: t, v: v, p: p, cl: cl, ip: ipADO, op: "SecretGet", obj: name, status: 200})
		}
	}
}

// terraformPlans: a terraform plan at about 11:40 and 14:55 refreshes the
// state of three vaults: the vault through ARM (VaultGet), then its secrets
// on the data plane, a listing (an azurerm_key_vault_secrets data source)
// and a read of every secret it manages.
func (g *gen) terraformPlans() {
	r := g.rng("terraform")
	p, cl := principals["terraform"], clients["terraform"]
	for _, at := range []time.Time{g.at(11, 40, 0), g.at(14, 55, 0)} {
		t := at.Add(between(r, 0, 2*time.Minute))
		for _, name := range []string{"kv-web-prod", "kv-data-dev", "kv-shared-infra"} {
			v := g.vaults[name]
			g.arm(r, t, v, p, cl, ipTF, "VaultGet", "2023-02-01", nil)
			t = t.Add(between(r, 300*time.Millisecond, 2*time.Second))
			t = g.challenged(r, call{t: t, v: v, p: p, cl: cl, ip: ipTF, op: "SecretList", status: 200}, true)
			for _, s := range v.secrets {
				if s == "legacy-sftp-password" { // never in its state (and purged at 02:13)
					continue
				}
				t = t.Add(between(r, 50*time.Millisecond, 400*time.Millisecond))
				g.data(r, call{t: t, v: v, p: p, cl: cl, ip: ipTF, op: "SecretGet", obj: s, status: 200})
			}
			t = t.Add(between(r, time.Second, 4*time.Second))
		}
	}
}

// people at work.
func (g *gen) people() {
	type plan struct {
		who, client, ip string
		vaults          []string
		sessions        int
		list, portalARM bool
		readFrom        int // read among the first readFrom secrets (0: all)
		certs           bool
	}
	plans := []plan{
		{who: "alice", client: "portal", ip: ipOffice1, vaults: []string{"kv-web-prod", "kv-shared-infra"}, sessions: 5, list: true, portalARM: true, certs: true},
		{who: "bob", client: "cli", ip: ipOffice2, vaults: []string{"kv-data-dev"}, sessions: 6, list: true},
		{who: "ravi", client: "python", ip: ipVPN, vaults: []string{"kv-data-dev"}, sessions: 6},
		{who: "carol", client: "portal", ip: ipOffice1, vaults: []string{"kv-payments-prod"}, sessions: 3, list: true, portalARM: true, readFrom: 8, certs: true},
		{who: "dave", client: "cli", ip: ipOffice2, vaults: []string{"kv-web-prod"}, sessions: 1, list: true},
		{who: "jordan", client: "cli", ip: ipOffice1, vaults: []string{"kv-shared-infra"}, sessions: 3, list: true, certs: true},
	}
	for _, pl := range plans {
		r := g.rng("person/" + pl.who)
		p, cl := principals[pl.who], clients[pl.client]
		for i := range pl.sessions {
			v := g.vaults[pl.vaults[i%len(pl.vaults)]]
			t := g.at(8, 0, 0).Add(between(r, 0, 9*time.Hour+30*time.Minute))
			if pl.portalARM {
				g.arm(r, t, v, p, cl, pl.ip, "VaultGet", "2023-07-01", nil)
				t = t.Add(between(r, 2*time.Second, 6*time.Second))
			}
			fresh := true
			step := func(op, obj string, status int) {
				t = g.challenged(r, call{t: t, v: v, p: p, cl: cl, ip: pl.ip, op: op, obj: obj, status: status}, fresh)
				fresh = false
				t = t.Add(between(r, 4*time.Second, 40*time.Second))
			}
			if pl.list {
				step("SecretList", "", 200)
			}
			pool := v.secrets
			if pl.readFrom > 0 {
				pool = pool[:pl.readFrom]
			}
			for range 1 + r.IntN(4) {
				step("SecretGet", pool[r.IntN(len(pool))], 200)
			}
			if r.IntN(6) == 0 { // a typo
				step("SecretGet", pool[r.IntN(len(pool))]+"s", 404)
			}
			if r.IntN(3) == 0 {
				step("SecretSet", pool[r.IntN(len(pool))], 200)
			}
			if pl.certs && len(v.certs) > 0 && r.IntN(2) == 0 {
				step("CertificateGet", v.certs[r.IntN(len(v.certs))], 200)
			}
		}
	}
}

// adminChanges: a benign access-policy change on kv-web-prod (portal) and
// an idempotent redeployment of kv-shared-infra (pipeline).
func (g *gen) adminChanges() {
	r := g.rng("admin")
	alice, portal := principals["alice"], clients["portal"]
	v := g.vaults["kv-web-prod"]
	t := g.at(10, 15, 0).Add(between(r, 0, 10*time.Minute))
	// The portal reads the vault first: the VaultGet returns its configuration.
	g.arm(r, t, v, alice, portal, ipOffice1, "VaultGet", "2023-07-01", v.config())
	t = t.Add(between(r, 20*time.Second, 90*time.Second))
	cfg := v.config()
	cfg.AccessPolicies = append(cfg.AccessPolicies, accessPolicy{
		TenantID: tenantID, ObjectID: principals["carol"].oid,
		Permissions: permissions{Keys: []string{}, Secrets: []string{"get", "list"}, Certificates: []string{}},
	})
	g.arm(r, t, v, alice, portal, ipOffice1, "VaultPatch", "2023-07-01", cfg)
	g.notify(r, t.Add(between(r, 2*time.Second, 8*time.Second)), v, "VaultAccessPolicyChangedEventGridNotification", "", "")

	gha := principals["gha-deploy"]
	s := g.vaults["kv-shared-infra"]
	t = g.at(11, 0, 0).Add(between(r, 0, 30*time.Minute))
	g.arm(r, t, s, gha, clients["cli-gha"], ipGHA, "VaultPut", "2023-07-01", s.config())
}

func (g *gen) notifications() {
	r := g.rng("notifications")
	t := g.at(6, 0, 0)
	g.notify(r, t.Add(between(r, 0, 5*time.Minute)), g.vaults["kv-web-prod"], "SecretNearExpiryEventGridNotification", "secrets", "smtp-relay-password")
	g.notify(r, t.Add(between(r, 0, 5*time.Minute)), g.vaults["kv-data-dev"], "SecretNearExpiryEventGridNotification", "secrets", "sql-dev-password")
	g.notify(r, t.Add(between(r, 0, 5*time.Minute)), g.vaults["kv-shared-infra"], "CertificateNearExpiryEventGridNotification", "certificates", "wildcard-contoso-com")
}

// ---------------------------------------------------------------------------
// Incidents.

func (g *gen) incidents() {
	g.massSecretRead()
	g.deniedBurst()
	g.secretPurge()
	g.vaultMadePublic()
	g.secretBackup()
	g.vaultDestroyed()
}

// plant records an incident covering the entries emitted since from.
func (g *gen) plant(from int, name, vault string, p *principal, desc string) {
	var start, end time.Time
	for i, e := range g.entries[from:] {
		if i == 0 || e.t.Before(start) {
			start = e.t
		}
		if i == 0 || e.t.After(end) {
			end = e.t
		}
	}
	g.planted = append(g.planted, Incident{Name: name, Vault: vault, Caller: strings.ToLower(p.oid),
		Start: start, End: end, Description: desc})
}

// (1) one person lists secrets on kv-payments-prod, then reads 40 of them
// in about four minutes.
func (g *gen) massSecretRead() {
	r := g.rng("incident/mass-secret-read")
	v, p, cl := g.vaults["kv-payments-prod"], principals["dave"], clients["cli"]
	from := len(g.entries)
	t := g.at(13, 37, 0).Add(between(r, 0, time.Minute))
	names := slices.Clone(v.secrets)
	r.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	g.data(r, call{t: t, v: v, p: p, cl: cl, ip: ipOffice2, op: "SecretList", status: 200})
	t = t.Add(between(r, 3*time.Second, 6*time.Second))
	for _, n := range names[:40] {
		g.data(r, call{t: t, v: v, p: p, cl: cl, ip: ipOffice2, op: "SecretGet", obj: n, status: 200})
		t = t.Add(between(r, 4500*time.Millisecond, 7*time.Second))
	}
	g.plant(from, "mass-secret-read", v.name, p,
		p.upn+" lists the secrets of kv-payments-prod, then reads 40 distinct secrets in about 4 minutes with the Azure CLI")
}

// (2) an unknown principal denied 30 times in 3 minutes on kv-web-prod from
// an outside address, then on two more vaults within the hour.
func (g *gen) deniedBurst() {
	r := g.rng("incident/denied-burst")
	p, cl := principals["intruder"], clients["requests"]
	guesses := []string{"db-password", "admin-password", "connectionstrings", "sql-admin", "storage-key",
		"api-key", "jwt-secret", "web-session-key", "b2c-client-secret", "redis-web-password",
		"smtp-relay-password", "sendgrid-api-key", "stripe-api-key", "aws-access-key", "azure-client-secret",
		"github-token", "prod-db-connection", "cdn-signing-key", "search-api-key", "recaptcha-secret",
		"backup-encryption-key", "root-password", "vpn-psk", "ssh-private-key", "terraform-state-key",
		"service-principal-secret", "master-key", "feature-flags-conn", "oauth-client-secret"}
	from := len(g.entries)
	v := g.vaults["kv-web-prod"]
	t0 := g.at(21, 5, 0).Add(between(r, 0, time.Minute))
	t := t0
	g.data(r, call{t: t, v: v, p: p, cl: cl, ip: ipIntrude, op: "SecretList", status: 403})
	for _, n := range guesses { // 29 more: 30 denials
		t = t.Add(between(r, 4*time.Second, 6*time.Second))
		g.data(r, call{t: t, v: v, p: p, cl: cl, ip: ipIntrude, op: "SecretGet", obj: n, status: 403})
	}
	g.plant(from, "denied-burst", v.name, p,
		"unknown service principal legacy-reporting-app denied 30 times (SecretList, SecretGet) in under 3 minutes on kv-web-prod from "+ipIntrude)

	for i, step := range []struct {
		vault string
		after time.Duration
		n     int
	}{{"kv-payments-prod", 22 * time.Minute, 5}, {"kv-shared-infra", 41 * time.Minute, 4}} {
		v := g.vaults[step.vault]
		t = t0.Add(step.after).Add(between(r, 0, time.Minute))
		g.data(r, call{t: t, v: v, p: p, cl: cl, ip: ipIntrude, op: "SecretList", status: 403})
		for _, n := range guesses[i*7 : i*7+step.n] {
			t = t.Add(between(r, 3*time.Second, 9*time.Second))
			g.data(r, call{t: t, v: v, p: p, cl: cl, ip: ipIntrude, op: "SecretGet", obj: n, status: 403})
		}
	}
	g.plant(from, "denied-across-vaults", "", p,
		"the same principal, from the same address, is then denied on kv-payments-prod and kv-shared-infra: denials on 3 vaults within the hour")
}

// (3) a secret deleted and purged at 02:13 by a person from home.
func (g *gen) secretPurge() {
	r := g.rng("incident/secret-purge")
	v, p, cl := g.vaults["kv-shared-infra"], principals["jordan"], clients["cli"]
	from := len(g.entries)
	t := g.at(2, 13, 0).Add(between(r, 0, 10*time.Second))
	const name = "legacy-sftp-password"
	t = g.challenged(r, call{t: t, v: v, p: p, cl: cl, ip: ipHome, op: "SecretGet", obj: name, status: 200}, true)
	t = t.Add(between(r, 6*time.Second, 10*time.Second))
	g.data(r, call{t: t, v: v, p: p, cl: cl, ip: ipHome, op: "SecretDelete", obj: name, status: 200})
	t = t.Add(between(r, 8*time.Second, 12*time.Second))
	g.data(r, call{t: t, v: v, p: p, cl: cl, ip: ipHome, op: "SecretGetDeleted", obj: name, status: 200})
	t = t.Add(between(r, 10*time.Second, 15*time.Second))
	g.data(r, call{t: t, v: v, p: p, cl: cl, ip: ipHome, op: "SecretPurge", obj: name, status: 204})
	g.plant(from, "secret-purge", v.name, p,
		p.upn+" deletes then purges secret "+name+" on kv-shared-infra at 02:13 UTC, from a home address")
}

// (4) kv-data-dev opened to public networks through ARM.
func (g *gen) vaultMadePublic() {
	r := g.rng("incident/vault-made-public")
	v, p, cl := g.vaults["kv-data-dev"], principals["ravi"], clients["cli"]
	from := len(g.entries)
	t := g.at(15, 42, 0).Add(between(r, 0, 30*time.Second))
	// az keyvault show: the configuration before the change.
	g.arm(r, t, v, p, cl, ipVPN, "VaultGet", "2023-07-01", v.config())
	t = t.Add(between(r, 4*time.Second, 8*time.Second))
	cfg := v.config()
	cfg.NetworkAcls.DefaultAction = "Allow"
	cfg.PublicNetworkAccess = "Enabled"
	g.arm(r, t, v, p, cl, ipVPN, "VaultPatch", "2023-07-01", cfg)
	g.plant(from, "vault-made-public", v.name, p,
		p.upn+" patches kv-data-dev through ARM: networkAcls.defaultAction Allow, publicNetworkAccess Enabled")
}

// (5) a service principal seen nowhere else backs up several secrets.
func (g *gen) secretBackup() {
	r := g.rng("incident/secret-backup")
	v, p, cl := g.vaults["kv-payments-prod"], principals["backup-tool"], clients["python"]
	from := len(g.entries)
	t := g.at(19, 31, 0).Add(between(r, 0, time.Minute))
	t = g.challenged(r, call{t: t, v: v, p: p, cl: cl, ip: ipBackup, op: "SecretList", status: 200}, true)
	names := slices.Clone(v.secrets[:12])
	r.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	for _, n := range names[:6] {
		t = t.Add(between(r, 8*time.Second, 15*time.Second))
		g.data(r, call{t: t, v: v, p: p, cl: cl, ip: ipBackup, op: "SecretBackup", obj: n, status: 200})
	}
	g.plant(from, "secret-backup", v.name, p,
		"service principal kv-backup-tool, never seen before, lists and backs up 6 secrets of kv-payments-prod")
}

// (6) an escalation: a service principal patches kv-legacy-archive (a
// fifth vault, with no traffic of its own) at 16:05, then, 35 minutes
// later in the same hour, deletes and purges it. The patch is alerted at
// once; the deletion and purge reach detection in a later batch and are
// sent as an update of the same incident ("+VaultDelete, +VaultPurge").
func (g *gen) vaultDestroyed() {
	r := g.rng("incident/vault-destroyed")
	v := &vault{name: "kv-legacy-archive", sub: subPlat, rg: rgPlat, rbac: true}
	p, cl := principals["ops-automation"], clients["cli-gha"]
	from := len(g.entries)
	t := g.at(16, 5, 0).Add(between(r, 0, time.Minute))
	g.arm(r, t, v, p, cl, ipOpsAuto, "VaultGet", "2023-07-01", v.config())
	t = t.Add(between(r, 5*time.Second, 15*time.Second))
	g.arm(r, t, v, p, cl, ipOpsAuto, "VaultPatch", "2023-07-01", v.config())
	t = g.at(16, 40, 0).Add(between(r, 0, time.Minute))
	g.arm(r, t, v, p, cl, ipOpsAuto, "VaultDelete", "2023-07-01", nil)
	t = t.Add(between(r, 20*time.Second, 40*time.Second))
	g.arm(r, t, v, p, cl, ipOpsAuto, "VaultPurge", "2023-07-01", nil)
	g.plant(from, "vault-destroyed", v.name, p,
		"service principal sp-ops-automation patches kv-legacy-archive at 16:05, then deletes and purges it at 16:40: an update of the same incident, +VaultDelete, +VaultPurge")
}

// ---------------------------------------------------------------------------
// Blobs.

func blobDir(v *vault, t time.Time) string {
	return fmt.Sprintf("resourceId=%s/y=%04d/m=%02d/d=%02d/h=%02d/m=00", v.resourceID(), t.Year(), int(t.Month()), t.Day(), t.Hour())
}

func (g *gen) blobs() []Blob {
	slices.SortStableFunc(g.entries, func(a, b entry) int { return a.t.Compare(b.t) })
	groups := map[string][]entry{}
	for _, e := range g.entries {
		p := blobDir(e.v, e.t) + "/PT1H.json"
		groups[p] = append(groups[p], e)
	}
	out := make([]Blob, 0, len(groups)+1)
	for path, es := range groups {
		// Not strictly in order: now and then two neighbours swap.
		r := g.rng("order/" + path)
		for i := 0; i+1 < len(es); i++ {
			if r.IntN(60) == 0 {
				es[i], es[i+1] = es[i+1], es[i]
				i++
			}
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		for _, e := range es {
			rec := e.rec
			rec.Time = e.t.Format(timeLayout)
			must(enc.Encode(&rec))
		}
		out = append(out, Blob{Path: path, Data: buf.Bytes()})
	}
	out = append(out, g.mixedBlob())
	slices.SortFunc(out, func(a, b Blob) int { return strings.Compare(a.Path, b.Path) })
	return out
}

func must(err error) {
	if err != nil {
		panic("demo: " + err.Error())
	}
}

// mixedBlob holds records a shared hub carries that kvwatch must skip:
// another log category, metrics, and an AuditEvent of a Managed HSM.
func (g *gen) mixedBlob() Blob {
	r := g.rng("mixed")
	v := g.vaults["kv-data-dev"]
	t := g.at(mixedHour, 0, 0)
	ts := func(d time.Duration) string { return t.Add(d).Format(timeLayout) }
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	policy := func(d time.Duration, state string) {
		must(enc.Encode(&policyRecord{
			Time: ts(d), ResourceID: v.resourceID(),
			OperationName: "Microsoft.Authorization/policies/audit/action",
			Category:      "AzurePolicyEvaluationDetails", ResultType: state, CorrelationID: guid(r),
			Properties: policyProps{
				IsComplianceCheck: "True", ResourceLocation: region,
				Ancestors: "contoso-root," + tenantID,
				Policies: `[{"policyDefinitionId":"/providers/Microsoft.Authorization/policyDefinitions/55615ac9-af46-4a59-874e-391cc3dfb490",` +
					`"policyDefinitionEffect":"Audit","policyAssignmentName":"kv-firewall-enabled","policyDefinitionName":"55615ac9-af46-4a59-874e-391cc3dfb490"}]`,
			},
		}))
	}
	metric := func(d time.Duration, name string, n int, unit float64) {
		tot := float64(n) * unit
		must(enc.Encode(&metricRecord{Count: n, Total: tot, Minimum: unit, Maximum: unit, Average: unit,
			ResourceID: v.resourceID(), Time: ts(d), MetricName: name, TimeGrain: "PT1M"}))
	}
	policy(2*time.Minute+between(r, 0, time.Second), "Succeeded")
	metric(0, "ServiceApiHit", 9+r.IntN(6), 1)
	metric(0, "ServiceApiLatency", 9+r.IntN(6), 14)
	metric(time.Minute, "Availability", 1, 100)
	hsm := "/SUBSCRIPTIONS/" + strings.ToUpper(subPlat) + "/RESOURCEGROUPS/" + strings.ToUpper(rgPlat) +
		"/PROVIDERS/MICROSOFT.KEYVAULT/MANAGEDHSMS/HSM-PLATFORM"
	must(enc.Encode(&record{
		Time: ts(3*time.Minute + between(r, 0, time.Minute)), ResourceID: hsm, OperationName: "KeyGet",
		OperationVersion: "7.4", Category: "AuditEvent", ResultType: "Success", ResultSignature: "OK",
		DurationMs: "9", CallerIPAddress: "10.40.0.9", CorrelationID: guid(r),
		Identity: &identity{Claim: &shortClaims{OID: principals["aks-csi"].oid, TID: tenantID,
			AppID: principals["aks-csi"].appid, AppIDACR: "2", IDTyp: "app"}},
		Properties: &properties{ID: "https://hsm-platform.managedhsm.azure.net/keys/root-kek", HTTPStatusCode: 200,
			RequestURI: "https://hsm-platform.managedhsm.azure.net/keys/root-kek/?api-version=7.4",
			ClientInfo: clients["csi"].ua, TLSVersion: "TLS1_3"},
	}))
	policy(4*time.Minute+between(r, 0, time.Second), "Succeeded")
	return Blob{Path: blobDir(v, t) + "/mixed/PT1H.json", Data: buf.Bytes()}
}
