package email

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestDefaults(t *testing.T) {
	c := Config{From: "a@b.com", To: []string{"c@d.com"}, SMTP: SMTPConfig{Host: "smtp.example.com"}}
	c.Defaults()
	if c.Transport != "smtp" || c.SubjectPrefix != "[kvwatch]" || c.SMTP.Port != 587 || c.SMTP.TLS != "starttls" ||
		c.SMTP.Auth != "plain" || c.SMTP.Timeout != "15s" || c.ACS.APIVersion != "2025-09-01" {
		t.Errorf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}

	c = Config{SMTP: SMTPConfig{Port: 465}}
	c.Defaults()
	if c.SMTP.TLS != "implicit" {
		t.Errorf("port 465 → tls %q, want implicit", c.SMTP.TLS)
	}
	c = Config{SMTP: SMTPConfig{TLS: "implicit"}}
	c.Defaults()
	if c.SMTP.Port != 465 {
		t.Errorf("tls implicit → port %d, want 465", c.SMTP.Port)
	}
	c = Config{ACS: ACSConfig{Endpoint: "https://x.communication.azure.com"}}
	c.Defaults()
	if c.Transport != "acs" || c.ACS.PollInterval != "2s" || c.ACS.PollTimeout != "2m" {
		t.Errorf("acs defaults: %+v", c)
	}
}

func TestValidateACSSMTPExamples(t *testing.T) {
	for name, c := range map[string]Config{
		"acs smtp": {From: "DoNotReply@contoso.com", To: []string{"secops@contoso.com"},
			SMTP: SMTPConfig{Host: "smtp.azurecomm.net", Auth: "login", Username: "res.appid.tenant", Password: "x"}},
		"acs key": {From: "DoNotReply@contoso.com", To: []string{"secops@contoso.com"},
			ACS: ACSConfig{Endpoint: "https://kv-alerts.unitedstates.communication.azure.com/", AccessKey: testKey}},
		"acs identity": {From: "DoNotReply@contoso.com", To: []string{"secops@contoso.com"},
			ACS: ACSConfig{Endpoint: "https://kv-alerts.communication.azure.com", UseIdentity: true}},
		"loopback relay": {From: "kvwatch@contoso.com", To: []string{"secops@contoso.com"},
			SMTP: SMTPConfig{Host: "127.0.0.1", Port: 25, TLS: "none"}},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestValidateReportsEverything(t *testing.T) {
	c := Config{
		Transport: "smtp", From: "Alerts <kvwatch@contoso.com>", FromName: "a\r\nBcc: x@y",
		To: []string{"not an address", "ok@contoso.com\r\nBcc: victim@evil"}, CC: []string{"@"},
		SubjectPrefix: strings.Repeat("x", 65),
		SMTP: SMTPConfig{Host: "smtp.example.com:587", Port: 70000, TLS: "none", Auth: "cram-md5",
			Username: "u", Timeout: "soon", InsecureSkipVerify: true},
		ACS: ACSConfig{Endpoint: "https://x.communication.azure.com"},
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"from: ", "from_name:", "to[0]:", "to[1]:", "cc[0]:", "subject_prefix:",
		"smtp.host:", "smtp.port:", "smtp.tls: none is allowed only", "smtp.insecure_skip_verify:",
		"smtp.auth:", "smtp.username, password:", "smtp.timeout:", "acs: set, but transport is smtp",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Count(err.Error(), "\n") < 13 {
		t.Errorf("want one line per problem:\n%v", err)
	}
}

func TestValidateACS(t *testing.T) {
	secret := "bm90LWEtcmVhbC1rZXk=!!"
	c := Config{From: "a@contoso.com", To: []string{"b@contoso.com"},
		ACS: ACSConfig{Endpoint: "http://x.communication.azure.com/path?q=1", AccessKey: secret, UseIdentity: true,
			APIVersion: "latest", PollInterval: "5m", PollTimeout: "1m"},
		SMTP: SMTPConfig{Host: "smtp.example.com", Password: "hunter2-password"},
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"acs.endpoint: must be https", "acs.access_key, use_identity: give only one", "acs.api_version:",
		"acs.poll_interval: 5m0s is longer than poll_timeout", "smtp: set, but transport is acs",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	c.ACS.UseIdentity = false
	c.ACS.Endpoint = "https://x.communication.azure.com"
	err = c.Validate()
	if err == nil || !strings.Contains(err.Error(), "acs.access_key: not valid base64 (value not shown)") {
		t.Errorf("bad key not reported: %v", err)
	}
	for _, s := range []string{secret, "hunter2-password"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error quotes a secret: %v", err)
		}
	}
	c.ACS.AccessKey = ""
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "give one") {
		t.Errorf("missing credentials not reported: %v", err)
	}
	c.ACS.Endpoint = "https://x.communication.azure.com/emails"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "acs.endpoint: must be only scheme and host") {
		t.Errorf("endpoint with a path: %v", err)
	}
}

func TestConfigYAML(t *testing.T) {
	src := `
transport: smtp
from: kvwatch@alerts.contoso.com
from_name: kvwatch
to: [secops@contoso.com]
cc: [audit@contoso.com]
subject_prefix: "[kv]"
smtp:
  host: smtp.azurecomm.net
  port: 587
  tls: starttls
  username: kvres.11111111-2222-3333-4444-555555555555.66666666-7777-8888-9999-000000000000
  password: from-env
  auth: login
  timeout: 20s
acs:
  api_version: 2025-09-01
  poll_interval: 1s
  poll_timeout: 1m
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.SMTP.Auth != "login" || c.SMTP.Timeout != "20s" || c.FromName != "kvwatch" || c.SubjectPrefix != "[kv]" || c.CC[0] != "audit@contoso.com" {
		t.Errorf("decoded %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

func TestNewRefusesInvalid(t *testing.T) {
	_, err := New("mail", Config{}, Deps{})
	if err == nil || !strings.Contains(err.Error(), `email receiver "mail"`) {
		t.Errorf("New with an empty config: %v", err)
	}
}
