package email

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Transports.
const (
	TransportSMTP = "smtp"
	TransportACS  = "acs"
)

// SMTP TLS modes.
const (
	TLSStartTLS = "starttls" // port 587: plain connect, then STARTTLS (required)
	TLSImplicit = "implicit" // port 465: TLS from the first byte
	TLSNone     = "none"     // cleartext; loopback relays only
)

// SMTP AUTH mechanisms.
const (
	AuthPlain = "plain"
	AuthLogin = "login" // Azure Communication Services SMTP wants LOGIN
)

// Defaults.
const (
	DefaultSubjectPrefix = "[kvwatch]"
	DefaultSMTPPort      = 587
	DefaultSMTPTimeout   = "15s"
	DefaultAPIVersion    = "2025-09-01"
	DefaultPollInterval  = "2s"
	DefaultPollTimeout   = "2m"
)

// Config is one email receiver.
type Config struct {
	// Transport is "smtp" or "acs" (Azure Communication Services Email
	// REST). Empty means "acs" when acs.endpoint is set, else "smtp".
	Transport string `yaml:"transport"`
	// From is the sender address (bare: user@domain). With ACS it must
	// belong to a verified domain connected to the resource.
	From string `yaml:"from"`
	// FromName is the display name shown with From (SMTP only: ACS takes
	// the display name configured on the sender in the resource).
	FromName string   `yaml:"from_name"`
	To       []string `yaml:"to"`
	CC       []string `yaml:"cc"`
	// SubjectPrefix starts every subject; default "[kvwatch]".
	SubjectPrefix string `yaml:"subject_prefix"`

	SMTP SMTPConfig `yaml:"smtp"`
	ACS  ACSConfig  `yaml:"acs"`
}

// SMTPConfig is how to reach a submission server.
type SMTPConfig struct {
	Host string `yaml:"host"`
	// Port defaults to 587 (465 when tls is "implicit").
	Port int `yaml:"port"`
	// TLS is "starttls" (default; 587), "implicit" (default for 465) or
	// "none" (only to 127.0.0.1, ::1 or localhost).
	TLS string `yaml:"tls"`
	// Username and Password for AUTH; both or neither. Password is a
	// secret: pass it with ${ENV}.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Auth is "plain" (default) or "login" (Azure Communication Services
	// SMTP, smtp.azurecomm.net:587).
	Auth string `yaml:"auth"`
	// Timeout bounds one whole SMTP conversation (connect, TLS, AUTH,
	// send); a Go duration, default 15s.
	Timeout string `yaml:"timeout"`
	// InsecureSkipVerify skips certificate checks; for tests against a
	// loopback server only, refused for any other host.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// ACSConfig is how to reach Azure Communication Services Email (REST).
type ACSConfig struct {
	// Endpoint is the resource, https://<resource>.communication.azure.com.
	Endpoint string `yaml:"endpoint"`
	// AccessKey is the resource's access key (base64) for HMAC-SHA256
	// request signing. A secret: pass it with ${ENV}.
	AccessKey string `yaml:"access_key"`
	// UseIdentity authenticates with Microsoft Entra ID instead
	// (DefaultAzureCredential: managed identity, workload identity,
	// environment, Azure CLI). Exactly one of access_key and use_identity.
	UseIdentity bool `yaml:"use_identity"`
	// APIVersion of the Email REST API; default 2025-09-01.
	APIVersion string `yaml:"api_version"`
	// PollInterval is the wait between two status polls when the service
	// gives no retry-after (default 2s); PollTimeout how long to wait for
	// a terminal status before giving up for now (default 2m).
	PollInterval string `yaml:"poll_interval"`
	PollTimeout  string `yaml:"poll_timeout"`
}

// Defaults fills in what was left empty.
func (c *Config) Defaults() {
	c.Transport = strings.ToLower(strings.TrimSpace(c.Transport))
	if c.Transport == "" {
		if c.ACS.Endpoint != "" {
			c.Transport = TransportACS
		} else {
			c.Transport = TransportSMTP
		}
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	s := &c.SMTP
	s.TLS = strings.ToLower(strings.TrimSpace(s.TLS))
	if s.TLS == "" {
		if s.Port == 465 {
			s.TLS = TLSImplicit
		} else {
			s.TLS = TLSStartTLS
		}
	}
	if s.Port == 0 {
		if s.TLS == TLSImplicit {
			s.Port = 465
		} else {
			s.Port = DefaultSMTPPort
		}
	}
	s.Auth = strings.ToLower(strings.TrimSpace(s.Auth))
	if s.Auth == "" {
		s.Auth = AuthPlain
	}
	if s.Timeout == "" {
		s.Timeout = DefaultSMTPTimeout
	}
	a := &c.ACS
	if a.APIVersion == "" {
		a.APIVersion = DefaultAPIVersion
	}
	if a.PollInterval == "" {
		a.PollInterval = DefaultPollInterval
	}
	if a.PollTimeout == "" {
		a.PollTimeout = DefaultPollTimeout
	}
}

var apiVersionRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(-preview)?$`)

// Validate reports every problem at once. It checks a copy with the
// defaults applied, so it may be called before or after Defaults. Secrets
// (password, access key) are never quoted.
func (c *Config) Validate() error {
	cfg := *c
	cfg.Defaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch cfg.Transport {
	case TransportSMTP, TransportACS:
	default:
		add("transport: %q is not smtp or acs", cfg.Transport)
	}

	if cfg.From == "" {
		add("from: required")
	} else if err := checkAddress(cfg.From); err != nil {
		add("from: %v", err)
	}
	if hasCtl(cfg.FromName) {
		add("from_name: must not contain control characters or line breaks")
	}
	if len(cfg.To) == 0 {
		add("to: at least one recipient required")
	}
	for i, a := range cfg.To {
		if err := checkAddress(a); err != nil {
			add("to[%d]: %v", i, err)
		}
	}
	for i, a := range cfg.CC {
		if err := checkAddress(a); err != nil {
			add("cc[%d]: %v", i, err)
		}
	}
	if hasCtl(cfg.SubjectPrefix) {
		add("subject_prefix: must not contain control characters or line breaks")
	} else if n := len([]rune(cfg.SubjectPrefix)); n > 64 {
		add("subject_prefix: %d characters, at most 64", n)
	}

	switch cfg.Transport {
	case TransportSMTP:
		errs = append(errs, cfg.SMTP.validate()...)
		if a := c.ACS; a.Endpoint != "" || a.AccessKey != "" || a.UseIdentity {
			add("acs: set, but transport is smtp")
		}
	case TransportACS:
		errs = append(errs, cfg.ACS.validate()...)
		if s := c.SMTP; s.Host != "" || s.Username != "" || s.Password != "" {
			add("smtp: set, but transport is acs")
		}
	}
	return errors.Join(errs...)
}

func (s *SMTPConfig) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("smtp."+format, args...)) }
	switch {
	case s.Host == "":
		add("host: required")
	case strings.ContainsAny(s.Host, ":/@ \t\r\n") && net.ParseIP(s.Host) == nil:
		add("host: %q is not a host name (give the port in smtp.port)", s.Host)
	}
	if s.Port < 1 || s.Port > 65535 {
		add("port: %d is not a port", s.Port)
	}
	loopback := isLoopbackHost(s.Host)
	switch s.TLS {
	case TLSStartTLS, TLSImplicit:
	case TLSNone:
		if s.Host != "" && !loopback {
			add("tls: none is allowed only for a loopback relay (127.0.0.1, ::1, localhost), not %q", s.Host)
		}
	default:
		add("tls: %q is not starttls, implicit or none", s.TLS)
	}
	if s.TLS == TLSStartTLS && s.Port == 465 {
		add("tls: port 465 is implicit TLS; set tls: implicit (or use port 587)")
	}
	if s.InsecureSkipVerify && s.Host != "" && !loopback {
		add("insecure_skip_verify: allowed only for a loopback test server, not %q", s.Host)
	}
	switch s.Auth {
	case AuthPlain, AuthLogin:
	default:
		add("auth: %q is not plain or login", s.Auth)
	}
	if (s.Username == "") != (s.Password == "") {
		add("username, password: give both or neither")
	}
	if hasCtl(s.Username) {
		add("username: must not contain control characters or line breaks")
	}
	if d, err := time.ParseDuration(s.Timeout); err != nil {
		add("timeout: %q is not a duration (e.g. 15s)", s.Timeout)
	} else if d <= 0 || d > 10*time.Minute {
		add("timeout: %s is not in (0, 10m]", d)
	}
	return errs
}

func (a *ACSConfig) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("acs."+format, args...)) }
	if a.Endpoint == "" {
		add("endpoint: required (https://<resource>.communication.azure.com)")
	} else if _, err := parseEndpoint(a.Endpoint); err != nil {
		add("endpoint: %v", err)
	}
	switch {
	case a.AccessKey == "" && !a.UseIdentity:
		add("access_key, use_identity: give one (an access key, or use_identity: true for Entra ID)")
	case a.AccessKey != "" && a.UseIdentity:
		add("access_key, use_identity: give only one")
	case a.AccessKey != "":
		if k, err := base64.StdEncoding.DecodeString(a.AccessKey); err != nil || len(k) == 0 {
			add("access_key: not valid base64 (value not shown)")
		}
	}
	if !apiVersionRE.MatchString(a.APIVersion) {
		add("api_version: %q is not YYYY-MM-DD", a.APIVersion)
	}
	iv, err1 := time.ParseDuration(a.PollInterval)
	if err1 != nil || iv <= 0 {
		add("poll_interval: %q is not a positive duration", a.PollInterval)
	}
	to, err2 := time.ParseDuration(a.PollTimeout)
	if err2 != nil || to <= 0 {
		add("poll_timeout: %q is not a positive duration", a.PollTimeout)
	}
	if err1 == nil && err2 == nil && iv > to {
		add("poll_interval: %s is longer than poll_timeout %s", iv, to)
	}
	return errs
}

// parseEndpoint checks an ACS endpoint: https (http only to loopback), a
// host, nothing else.
func parseEndpoint(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || u.Host == "" {
		return nil, errors.New("not a URL like https://<resource>.communication.azure.com")
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
		return nil, fmt.Errorf("must be https, not %q", u.Scheme)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return nil, errors.New("must be only scheme and host (no user, path, query or fragment)")
	}
	u.Path = ""
	return u, nil
}

// checkAddress accepts a bare address: user@domain, no display name.
func checkAddress(s string) error {
	if hasCtl(s) {
		return errors.New("must not contain control characters or line breaks")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return fmt.Errorf("%q is not an email address", s)
	}
	if a.Name != "" || a.Address != strings.TrimSpace(s) {
		return fmt.Errorf("%q: give the bare address (user@domain); the display name goes in from_name", s)
	}
	if domainOf(a.Address) == "" {
		return fmt.Errorf("%q has no domain", s)
	}
	return nil
}

func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || i == len(addr)-1 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

func hasCtl(s string) bool {
	for _, r := range s {
		if isCtl(r) {
			return true
		}
	}
	return false
}

func isLoopbackHost(h string) bool {
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
