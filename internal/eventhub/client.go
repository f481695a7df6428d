package eventhub

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/kvwatch/kvwatch/internal/secret"
)

// Environment variables ClientFromEnv reads.
const (
	EnvConnectionString = "KVWATCH_EVENTHUB_CONNECTION_STRING"
	EnvNamespace        = "KVWATCH_EVENTHUB_NAMESPACE"
	EnvName             = "KVWATCH_EVENTHUB_NAME"
	EnvConsumerGroup    = "KVWATCH_CONSUMER_GROUP"
)

// Hub names the event hub and consumer group a client reads.
type Hub struct {
	Namespace     string // fully qualified: <name>.servicebus.windows.net
	EventHub      string
	ConsumerGroup string
}

// hubConfig is what ClientFromEnv found, before it builds a client.
type hubConfig struct {
	Hub
	source   string // the variable the connection came from
	connStr  string // a connection string (EnvConnectionString), else identity
	entity   bool   // the connection string names the hub (EntityPath)
	clientID string // user-assigned managed identity
	managed  bool   // ManagedIdentityCredential, else DefaultAzureCredential
}

func (h *hubConfig) description() string {
	var how string
	switch {
	case h.connStr != "":
		how = "connection string"
	case h.managed && h.clientID != "":
		how = "managed identity " + h.clientID
	case h.managed:
		how = "system-assigned managed identity"
	default:
		how = "DefaultAzureCredential"
	}
	return fmt.Sprintf("event hub %s in %s, consumer group %s (%s, from %s)",
		h.EventHub, h.Namespace, h.ConsumerGroup, how, h.source)
}

// ClientFromEnv builds an Event Hubs consumer client from the environment:
//
//   - KVWATCH_EVENTHUB_CONNECTION_STRING: a connection string (with a
//     shared access key or signature; its EntityPath, if any, names the
//     hub, else KVWATCH_EVENTHUB_NAME does); or
//   - KVWATCH_EVENTHUB_NAMESPACE (<name>, <name>.servicebus.windows.net or
//     sb://<name>.servicebus.windows.net/) and KVWATCH_EVENTHUB_NAME, with
//     an identity: ManagedIdentityCredential where the platform provides
//     one (IDENTITY_ENDPOINT or MSI_ENDPOINT set; AZURE_CLIENT_ID for a
//     user-assigned identity), DefaultAzureCredential elsewhere (workload
//     identity on AKS, environment credentials, a developer's Azure CLI).
//
// KVWATCH_CONSUMER_GROUP names the consumer group ($Default when unset).
// The description names the hub, the namespace and how it authenticates,
// never a key or a signature; errors never quote a connection string.
func ClientFromEnv(getenv func(string) string) (client *azeventhubs.ConsumerClient, hub Hub, description string, err error) {
	h, err := resolveHub(getenv)
	if err != nil {
		return nil, Hub{}, "", err
	}
	opts := &azeventhubs.ConsumerClientOptions{ApplicationID: "kvwatch"}
	if h.connStr != "" {
		name := h.EventHub
		if h.entity {
			name = "" // the SDK takes the hub from EntityPath
		}
		client, err = azeventhubs.NewConsumerClientFromConnectionString(h.connStr, name, h.ConsumerGroup, opts)
		if err != nil {
			return nil, Hub{}, "", secret.Error(fmt.Errorf("%s: %w", h.source, err))
		}
		return client, h.Hub, h.description(), nil
	}
	var cred azcore.TokenCredential
	if h.managed {
		o := &azidentity.ManagedIdentityCredentialOptions{}
		if h.clientID != "" {
			o.ID = azidentity.ClientID(h.clientID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(o)
	} else {
		cred, err = azidentity.NewDefaultAzureCredential(nil)
	}
	if err != nil {
		return nil, Hub{}, "", fmt.Errorf("%s: credential: %w", h.source, err)
	}
	client, err = azeventhubs.NewConsumerClient(h.Namespace, h.EventHub, h.ConsumerGroup, cred, opts)
	if err != nil {
		return nil, Hub{}, "", secret.Error(fmt.Errorf("%s: %w", h.source, err))
	}
	return client, h.Hub, h.description(), nil
}

// resolveHub reads the environment ClientFromEnv uses.
func resolveHub(getenv func(string) string) (*hubConfig, error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	h := &hubConfig{Hub: Hub{EventHub: get(EnvName), ConsumerGroup: get(EnvConsumerGroup)}}
	if h.ConsumerGroup == "" {
		h.ConsumerGroup = azeventhubs.DefaultConsumerGroup
	}
	if cs := get(EnvConnectionString); cs != "" {
		h.source, h.connStr = EnvConnectionString, cs
		props, err := azeventhubs.ParseConnectionString(cs)
		if err != nil {
			// The parser's messages may quote parts of the string: say
			// only which rule it broke, redacted.
			return nil, secret.Error(fmt.Errorf("%s: not a valid Event Hubs connection string: %w", EnvConnectionString, err))
		}
		h.Namespace = props.FullyQualifiedNamespace
		if props.EntityPath != nil && *props.EntityPath != "" {
			if h.EventHub != "" && !strings.EqualFold(h.EventHub, *props.EntityPath) {
				return nil, fmt.Errorf("%s names event hub %q (EntityPath) but %s says %q",
					EnvConnectionString, *props.EntityPath, EnvName, h.EventHub)
			}
			h.EventHub, h.entity = *props.EntityPath, true
		}
		if h.EventHub == "" {
			return nil, fmt.Errorf("%s has no EntityPath: set %s to the event hub's name", EnvConnectionString, EnvName)
		}
		return h, nil
	}
	ns := get(EnvNamespace)
	if ns == "" {
		return nil, fmt.Errorf("no event hub configured: set %s (with an identity) and %s, or %s",
			EnvNamespace, EnvName, EnvConnectionString)
	}
	fq, err := namespaceHost(ns)
	if err != nil {
		return nil, err
	}
	if h.EventHub == "" {
		return nil, fmt.Errorf("%s is set but %s is not: name the event hub", EnvNamespace, EnvName)
	}
	h.Namespace, h.source = fq, EnvNamespace
	h.managed = get("IDENTITY_ENDPOINT") != "" || get("MSI_ENDPOINT") != ""
	h.clientID = get("AZURE_CLIENT_ID")
	return h, nil
}

// namespaceHost returns the fully qualified namespace a setting names.
func namespaceHost(s string) (string, error) {
	host := s
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" {
			return "", fmt.Errorf("%s: not a namespace (want <name>.servicebus.windows.net)", EnvNamespace)
		}
		host = u.Host
	}
	host = strings.TrimSuffix(host, "/")
	if host == "" || strings.ContainsAny(host, "/?#@;= ") {
		return "", errors.New(EnvNamespace + ": not a namespace (want <name>.servicebus.windows.net)")
	}
	if !strings.Contains(host, ".") {
		host += ".servicebus.windows.net"
	}
	return strings.ToLower(host), nil
}
