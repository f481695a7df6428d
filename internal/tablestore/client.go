package tablestore

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/kvwatch/kvwatch/internal/secret"
)

// Environment variables ClientFromEnv reads.
const (
	EnvConnectionString = "KVWATCH_TABLE_CONNECTION_STRING"
	EnvEndpoint         = "KVWATCH_TABLE_ENDPOINT"
	EnvWebJobsStorage   = "AzureWebJobsStorage"
	// Identity-based host storage (Azure Functions): the Table endpoint,
	// or the account name it is derived from, and optionally
	// credential=managedidentity with the clientId of a user-assigned one.
	EnvWebJobsTableURI   = "AzureWebJobsStorage__tableServiceUri"
	EnvWebJobsAccount    = "AzureWebJobsStorage__accountName"
	EnvWebJobsCredential = "AzureWebJobsStorage__credential"
	EnvWebJobsClientID   = "AzureWebJobsStorage__clientId"
)

// The development storage account (Azurite, and the emulator before it):
// public, documented values, not secrets.
const (
	devAccount  = "devstoreaccount1"
	devKey      = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	devEndpoint = "http://127.0.0.1:10002/devstoreaccount1"
)

// ClientOptions are the options ClientFromEnv builds clients with. The
// SDK's retries are left at its defaults here; the store turns them off
// per request and retries itself, within its budget.
func ClientOptions() *aztables.ClientOptions {
	return &aztables.ClientOptions{ClientOptions: azcore.ClientOptions{
		Retry:     policy.RetryOptions{TryTimeout: 15 * time.Second},
		Telemetry: policy.TelemetryOptions{ApplicationID: "kvwatch"},
	}}
}

// auth is how a resolved connection authenticates.
type auth int

const (
	authSharedKey auth = iota + 1
	authSAS
	authIdentity
)

// resolved is what ClientFromEnv found, before it builds a client.
type resolved struct {
	source   string // the variable it came from
	endpoint string // the Table service URL, without a SAS
	auth     auth
	account  string
	key      string // shared key
	sas      string // shared access signature (query string)
	// identity: a user-assigned managed identity's client ID; managed
	// whether to use ManagedIdentityCredential (else DefaultAzureCredential).
	clientID string
	managed  bool
}

func (r *resolved) description() string {
	var how string
	switch r.auth {
	case authSharedKey:
		how = "shared key of account " + r.account
	case authSAS:
		how = "shared access signature"
	case authIdentity:
		switch {
		case r.managed && r.clientID != "":
			how = "managed identity " + r.clientID
		case r.managed:
			how = "system-assigned managed identity"
		default:
			how = "DefaultAzureCredential"
		}
	}
	return fmt.Sprintf("Table Storage at %s (%s, from %s)", secret.Redact(r.endpoint), how, r.source)
}

// ClientFromEnv builds a Table service client from the environment, the
// first of these that is set winning:
//
//  1. KVWATCH_TABLE_CONNECTION_STRING: a connection string;
//  2. KVWATCH_TABLE_ENDPOINT: the Table endpoint, with an identity
//     (ManagedIdentityCredential where the host provides one, with
//     AZURE_CLIENT_ID for a user-assigned identity; DefaultAzureCredential
//     elsewhere, e.g. a developer's Azure CLI login);
//  3. AzureWebJobsStorage, when it is a connection string (including
//     UseDevelopmentStorage=true, Azurite on its default port);
//  4. AzureWebJobsStorage__tableServiceUri, or AzureWebJobsStorage__accountName,
//     with AzureWebJobsStorage__credential and __clientId as the Functions
//     host reads them (managedidentity: ManagedIdentityCredential;
//     otherwise DefaultAzureCredential).
//
// With none of them it returns a nil client and no error: the caller runs
// on memory and says so. The description names the endpoint, the way of
// authenticating and the variable, never a key or a signature; errors
// never quote a connection string.
func ClientFromEnv(getenv func(string) string) (client *aztables.ServiceClient, description string, err error) {
	r, err := resolve(getenv)
	if err != nil || r == nil {
		return nil, "", err
	}
	opts := ClientOptions()
	switch r.auth {
	case authSharedKey:
		cred, err := aztables.NewSharedKeyCredential(r.account, r.key)
		if err != nil {
			return nil, "", fmt.Errorf("%s: the account key is not valid", r.source)
		}
		client, err = aztables.NewServiceClientWithSharedKey(r.endpoint, cred, opts)
		if err != nil {
			return nil, "", secret.Error(fmt.Errorf("%s: %w", r.source, err))
		}
	case authSAS:
		client, err = aztables.NewServiceClientWithNoCredential(r.endpoint+"?"+r.sas, opts)
		if err != nil {
			return nil, "", secret.Error(fmt.Errorf("%s: %w", r.source, err))
		}
	case authIdentity:
		var cred azcore.TokenCredential
		if r.managed {
			o := &azidentity.ManagedIdentityCredentialOptions{}
			if r.clientID != "" {
				o.ID = azidentity.ClientID(r.clientID)
			}
			cred, err = azidentity.NewManagedIdentityCredential(o)
		} else {
			cred, err = azidentity.NewDefaultAzureCredential(nil)
		}
		if err != nil {
			return nil, "", fmt.Errorf("%s: credential: %w", r.source, err)
		}
		client, err = aztables.NewServiceClient(r.endpoint, cred, opts)
		if err != nil {
			return nil, "", secret.Error(fmt.Errorf("%s: %w", r.source, err))
		}
	}
	return client, r.description(), nil
}

// resolve picks the configuration ClientFromEnv uses.
func resolve(getenv func(string) string) (*resolved, error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	if cs := get(EnvConnectionString); cs != "" {
		return parseConnectionString(EnvConnectionString, cs)
	}
	if ep := get(EnvEndpoint); ep != "" {
		u, err := endpointURL(EnvEndpoint, ep)
		if err != nil {
			return nil, err
		}
		onManagedHost := get("IDENTITY_ENDPOINT") != "" || get("MSI_ENDPOINT") != ""
		return &resolved{source: EnvEndpoint, endpoint: u, auth: authIdentity,
			managed: onManagedHost, clientID: get("AZURE_CLIENT_ID")}, nil
	}
	if cs := get(EnvWebJobsStorage); cs != "" && strings.Contains(cs, "=") {
		return parseConnectionString(EnvWebJobsStorage, cs)
	}
	uri, src := get(EnvWebJobsTableURI), EnvWebJobsTableURI
	if uri == "" {
		if acct := get(EnvWebJobsAccount); acct != "" {
			uri, src = "https://"+acct+".table.core.windows.net", EnvWebJobsAccount
		}
	}
	if uri != "" {
		u, err := endpointURL(src, uri)
		if err != nil {
			return nil, err
		}
		r := &resolved{source: src, endpoint: u, auth: authIdentity}
		if strings.EqualFold(get(EnvWebJobsCredential), "managedidentity") {
			r.managed, r.clientID = true, get(EnvWebJobsClientID)
		}
		return r, nil
	}
	return nil, nil
}

// endpointURL checks a Table endpoint; it must carry no credentials.
func endpointURL(source, s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("%s: not an http(s) URL", source)
	}
	if u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("%s: the endpoint must not carry credentials (use a connection string for a SAS)", source)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// parseConnectionString reads an Azure Storage connection string. Errors
// name the variable and the missing part, never the string's content.
func parseConnectionString(source, cs string) (*resolved, error) {
	kv := map[string]string{}
	for _, part := range strings.Split(cs, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%s: not a connection string (a part is not key=value)", source)
		}
		kv[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	if strings.EqualFold(kv["usedevelopmentstorage"], "true") {
		ep := devEndpoint
		if proxy := kv["developmentstorageproxyuri"]; proxy != "" {
			u, err := url.Parse(proxy)
			if err != nil || u.Hostname() == "" {
				return nil, fmt.Errorf("%s: DevelopmentStorageProxyUri is not a URL", source)
			}
			ep = u.Scheme + "://" + u.Hostname() + ":10002/" + devAccount
		}
		return &resolved{source: source, endpoint: ep, auth: authSharedKey, account: devAccount, key: devKey}, nil
	}
	account := kv["accountname"]
	endpoint := kv["tableendpoint"]
	if endpoint == "" {
		if account == "" {
			return nil, fmt.Errorf("%s: connection string has neither TableEndpoint nor AccountName", source)
		}
		proto := kv["defaultendpointsprotocol"]
		if proto == "" {
			proto = "https"
		}
		suffix := kv["endpointsuffix"]
		if suffix == "" {
			suffix = "core.windows.net"
		}
		endpoint = proto + "://" + account + ".table." + suffix
	}
	ep, err := endpointURL(source, endpoint)
	if err != nil {
		return nil, errors.New(source + ": the connection string's table endpoint is not valid")
	}
	r := &resolved{source: source, endpoint: ep, account: account}
	switch {
	case kv["accountkey"] != "":
		if account == "" {
			return nil, fmt.Errorf("%s: connection string has AccountKey but no AccountName", source)
		}
		r.auth, r.key = authSharedKey, kv["accountkey"]
	case kv["sharedaccesssignature"] != "":
		r.auth, r.sas = authSAS, strings.TrimPrefix(kv["sharedaccesssignature"], "?")
	default:
		return nil, fmt.Errorf("%s: connection string has neither AccountKey nor SharedAccessSignature", source)
	}
	return r, nil
}
