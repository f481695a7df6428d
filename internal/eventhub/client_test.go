package eventhub

import (
	"context"
	"strings"
	"testing"
)

const secretKey = "c2VjcmV0LWtleS1kby1ub3QtbG9n="

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestClientFromEnvConnectionString(t *testing.T) {
	cs := "Endpoint=sb://kv-logs.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=" + secretKey
	for _, tc := range []struct {
		name    string
		getenv  func(string) string
		hub     Hub
		wantErr string
	}{
		{"EntityPath", env(EnvConnectionString, cs+";EntityPath=insights-logs-auditevent"),
			Hub{"kv-logs.servicebus.windows.net", "insights-logs-auditevent", "$Default"}, ""},
		{"name from env", env(EnvConnectionString, cs, EnvName, "audit", EnvConsumerGroup, "kvwatch"),
			Hub{"kv-logs.servicebus.windows.net", "audit", "kvwatch"}, ""},
		{"same name twice", env(EnvConnectionString, cs+";EntityPath=audit", EnvName, "AUDIT"),
			Hub{"kv-logs.servicebus.windows.net", "audit", "$Default"}, ""},
		{"no name", env(EnvConnectionString, cs), Hub{}, EnvName},
		{"names differ", env(EnvConnectionString, cs+";EntityPath=audit", EnvName, "other"), Hub{}, "EntityPath"},
		{"not a connection string", env(EnvConnectionString, "SharedAccessKey="+secretKey+";garbage"), Hub{}, EnvConnectionString},
		{"no key name", env(EnvConnectionString, "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKey="+secretKey+";EntityPath=a"), Hub{}, "SharedAccessKeyName"},
		{"nothing", env(), Hub{}, EnvNamespace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, hub, desc, err := ClientFromEnv(tc.getenv)
			if strings.Contains(desc, secretKey) || (err != nil && strings.Contains(err.Error(), secretKey)) {
				t.Fatalf("the key shows: %q %v", desc, err)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close(context.Background())
			if hub != tc.hub {
				t.Errorf("hub %+v, want %+v", hub, tc.hub)
			}
			if !strings.Contains(desc, "connection string") || !strings.Contains(desc, tc.hub.EventHub) {
				t.Errorf("description %q", desc)
			}
		})
	}
}

func TestResolveHubIdentity(t *testing.T) {
	for _, tc := range []struct {
		ns, want string
	}{
		{"kv-logs", "kv-logs.servicebus.windows.net"},
		{"kv-logs.servicebus.windows.net", "kv-logs.servicebus.windows.net"},
		{"sb://KV-Logs.servicebus.windows.net/", "kv-logs.servicebus.windows.net"},
		{"https://kv-logs.servicebus.usgovcloudapi.net", "kv-logs.servicebus.usgovcloudapi.net"},
	} {
		h, err := resolveHub(env(EnvNamespace, tc.ns, EnvName, "audit"))
		if err != nil {
			t.Fatalf("%s: %v", tc.ns, err)
		}
		if h.Namespace != tc.want || h.EventHub != "audit" || h.ConsumerGroup != "$Default" || h.connStr != "" || h.managed {
			t.Errorf("%s: %+v", tc.ns, h)
		}
		if d := h.description(); !strings.Contains(d, "DefaultAzureCredential") || !strings.Contains(d, EnvNamespace) {
			t.Errorf("%s: description %q", tc.ns, d)
		}
	}
	h, err := resolveHub(env(EnvNamespace, "kv-logs", EnvName, "audit", "IDENTITY_ENDPOINT", "http://localhost:42356/msi/token",
		"AZURE_CLIENT_ID", "0f0f0f0f-1111-2222-3333-444444444444"))
	if err != nil || !h.managed || h.clientID != "0f0f0f0f-1111-2222-3333-444444444444" {
		t.Errorf("managed host: %+v %v", h, err)
	}
	for _, bad := range []func(string) string{
		env(EnvNamespace, "kv-logs"),
		env(EnvNamespace, "https://kv-logs.servicebus.windows.net/?sig="+secretKey, EnvName, "audit"),
		env(EnvNamespace, "kv logs", EnvName, "audit"),
	} {
		if _, err := resolveHub(bad); err == nil || strings.Contains(err.Error(), secretKey) {
			t.Errorf("want an error without the secret, got %v", err)
		}
	}
	// A connection string wins over a namespace.
	h, err = resolveHub(env(EnvNamespace, "other", EnvConnectionString,
		"Endpoint=sb://kv-logs.servicebus.windows.net/;SharedAccessKeyName=l;SharedAccessKey=k;EntityPath=a"))
	if err != nil || h.Namespace != "kv-logs.servicebus.windows.net" {
		t.Errorf("connection string and namespace: %+v %v", h, err)
	}
}
