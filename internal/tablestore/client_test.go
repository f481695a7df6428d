package tablestore

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
)

const (
	testKey = "c2VjcmV0LWtleS1zaG91bGQtbmV2ZXItYmUtcHJpbnRlZA=="
	testSig = "TOPSECRETSIGNATURE"
)

func TestClientFromEnv(t *testing.T) {
	keyCS := "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + testKey + ";EndpointSuffix=core.windows.net"
	sasCS := "TableEndpoint=https://sas.table.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=t&sig=" + testSig
	for _, tc := range []struct {
		name     string
		env      map[string]string
		source   string // "" for no client
		endpoint string
		auth     auth
		managed  bool
		clientID string
		err      string
	}{
		{name: "nothing: memory", env: nil},
		{name: "not a connection string: memory", env: map[string]string{EnvWebJobsStorage: "just-a-name"}},
		{name: "kvwatch connection string first",
			env:    map[string]string{EnvConnectionString: keyCS, EnvEndpoint: "https://other.table.core.windows.net", EnvWebJobsStorage: sasCS},
			source: EnvConnectionString, endpoint: "https://acct.table.core.windows.net", auth: authSharedKey},
		{name: "kvwatch endpoint before the host's storage",
			env:    map[string]string{EnvEndpoint: "https://mine.table.core.windows.net/", EnvWebJobsStorage: keyCS},
			source: EnvEndpoint, endpoint: "https://mine.table.core.windows.net", auth: authIdentity},
		{name: "kvwatch endpoint on a managed host with a user-assigned identity",
			env:    map[string]string{EnvEndpoint: "https://mine.table.core.windows.net", "IDENTITY_ENDPOINT": "http://localhost:8081/msi/token", "AZURE_CLIENT_ID": "1111-2222"},
			source: EnvEndpoint, endpoint: "https://mine.table.core.windows.net", auth: authIdentity, managed: true, clientID: "1111-2222"},
		{name: "host storage connection string",
			env:    map[string]string{EnvWebJobsStorage: keyCS, EnvWebJobsTableURI: "https://x.table.core.windows.net"},
			source: EnvWebJobsStorage, endpoint: "https://acct.table.core.windows.net", auth: authSharedKey},
		{name: "development storage",
			env:    map[string]string{EnvWebJobsStorage: "UseDevelopmentStorage=true"},
			source: EnvWebJobsStorage, endpoint: "http://127.0.0.1:10002/devstoreaccount1", auth: authSharedKey},
		{name: "SAS connection string",
			env:    map[string]string{EnvConnectionString: sasCS},
			source: EnvConnectionString, endpoint: "https://sas.table.core.windows.net", auth: authSAS},
		{name: "explicit table endpoint in a key connection string",
			env:    map[string]string{EnvConnectionString: "AccountName=devstoreaccount1;AccountKey=" + testKey + ";TableEndpoint=http://127.0.0.1:9999/devstoreaccount1"},
			source: EnvConnectionString, endpoint: "http://127.0.0.1:9999/devstoreaccount1", auth: authSharedKey},
		{name: "identity-based host storage",
			env:    map[string]string{EnvWebJobsTableURI: "https://host.table.core.windows.net"},
			source: EnvWebJobsTableURI, endpoint: "https://host.table.core.windows.net", auth: authIdentity},
		{name: "identity-based host storage, managed identity with client ID",
			env: map[string]string{EnvWebJobsTableURI: "https://host.table.core.windows.net", EnvWebJobsCredential: "managedidentity",
				EnvWebJobsClientID: "3333-4444"},
			source: EnvWebJobsTableURI, endpoint: "https://host.table.core.windows.net", auth: authIdentity, managed: true, clientID: "3333-4444"},
		{name: "identity-based host storage by account name",
			env:    map[string]string{EnvWebJobsAccount: "hostacct"},
			source: EnvWebJobsAccount, endpoint: "https://hostacct.table.core.windows.net", auth: authIdentity},
		{name: "key without account", env: map[string]string{EnvConnectionString: "TableEndpoint=https://a.table.core.windows.net;AccountKey=" + testKey},
			err: "AccountKey but no AccountName"},
		{name: "no credential", env: map[string]string{EnvConnectionString: "AccountName=acct"},
			err: "neither AccountKey nor SharedAccessSignature"},
		{name: "broken part", env: map[string]string{EnvConnectionString: "AccountName=acct;AccountKey" + testSig},
			err: "not a connection string"},
		{name: "endpoint with a SAS", env: map[string]string{EnvEndpoint: "https://a.table.core.windows.net/?sv=1&sig=" + testSig},
			err: "must not carry credentials"},
		{name: "bad shared key", env: map[string]string{EnvConnectionString: "AccountName=acct;AccountKey=not base64!" + testSig},
			err: "account key is not valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			r, rerr := resolve(getenv)
			client, desc, err := ClientFromEnv(getenv)
			for _, s := range []string{desc, errString(err), errString(rerr)} {
				if strings.Contains(s, testKey) || strings.Contains(s, testSig) {
					t.Fatalf("a secret leaked: %q", s)
				}
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.source == "" {
				if client != nil || r != nil || desc != "" {
					t.Fatalf("got a client (%q) with nothing configured", desc)
				}
				return
			}
			if client == nil {
				t.Fatal("no client")
			}
			if r.source != tc.source || r.endpoint != tc.endpoint || r.auth != tc.auth || r.managed != tc.managed || r.clientID != tc.clientID {
				t.Fatalf("resolved %+v", *r)
			}
			if !strings.Contains(desc, tc.endpoint) || !strings.Contains(desc, tc.source) {
				t.Fatalf("description %q should name %s and %s", desc, tc.endpoint, tc.source)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestTransient(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{&url.Error{Op: "Post", URL: "https://x", Err: &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}}, false},
		{&url.Error{Op: "Post", URL: "https://x", Err: &net.DNSError{Err: "timeout", Name: "x", IsTimeout: true}}, true},
		{&txFailure{status: 503}, true},
		{&txFailure{status: 412}, false},
		{errors.New("other"), false},
	} {
		if got := transient(ctx, tc.err); got != tc.want {
			t.Errorf("transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
