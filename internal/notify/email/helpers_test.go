package email

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/finding"
)

var (
	t0      = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	fixedAt = func() time.Time { return t0.Add(2 * time.Minute) }
)

const (
	resID = "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/rg-payments/providers/Microsoft.KeyVault/vaults/kv-payments-prod"
)

// realisticAlert is what mass-secret-retrieval raises for a sweep of a
// production vault.
func realisticAlert() *alert.Alert {
	f := finding.Finding{
		Rule: "mass-secret-retrieval", Title: "Many different secrets read",
		Description: "One caller read 10 or more different secrets within 15 minutes on one vault.",
		Severity:    finding.High, Tags: []string{"T1555.006"}, Kind: "distinct",
		Runbook: "Applications read a few fixed secrets; a person or identity sweeping many is collecting credentials. Disable the identity if unexpected.",
		Group: []finding.Pair{
			{Field: "vault", Value: "kv-payments-prod"},
			{Field: "caller", Value: "3f2b8c1e-7d4a-4e59-9b1a-2c6d8e0f1a7b"},
		},
		Vault: "kv-payments-prod", SubscriptionID: "0b1f6471-1bf0-4dda-aec3-cb9272f09590",
		ResourceGroup: "rg-payments", ResourceID: resID, TenantID: "72f988bf-86f1-41af-91ab-2d7cd011db47",
		Period:      t0.Truncate(time.Hour),
		WindowStart: t0, WindowEnd: t0.Add(15 * time.Minute), Window: 15 * time.Minute,
		Count: 14, Threshold: 10,
		FirstEvent: t0, LastEvent: t0.Add(4*time.Minute + 12*time.Second),
		TopObjects: []finding.Count{
			{Value: "db-admin-password", Count: 3}, {Value: "stripe-api-key", Count: 2},
			{Value: "sftp-private-key", Count: 1},
		},
		TopIPs:         []finding.Count{{Value: "203.0.113.47", Count: 14}},
		TopOperations:  []finding.Count{{Value: "SecretGet", Count: 14}},
		CorrelationIDs: []string{"8c3a1f9e-4b2d-4e7a-9f10-2b3c4d5e6f70", "0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a"},
		Example: &audit.Event{
			Time: t0.Add(4*time.Minute + 12*time.Second), ResourceID: resID, Vault: "kv-payments-prod",
			Operation: "SecretGet", Family: "secret", Kind: "read",
			ObjectType: "secret", ObjectName: "sftp-private-key",
			Outcome: audit.OutcomeSuccess, HTTPStatus: 200,
			CallerIP: "203.0.113.47",
			Caller: audit.Caller{
				ObjectID: "3f2b8c1e-7d4a-4e59-9b1a-2c6d8e0f1a7b", UPN: "jdoe@contoso.com",
				Key: "3f2b8c1e-7d4a-4e59-9b1a-2c6d8e0f1a7b", KeyFrom: "oid",
			},
			ClientInfo:    "azsdk-go-azsecrets/v1.3.0 (go1.22.1; linux)",
			CorrelationID: "8c3a1f9e-4b2d-4e7a-9f10-2b3c4d5e6f70",
		},
		Summary: "Many different secrets read: 14 distinct object names by jdoe@contoso.com on kv-payments-prod in 15m (threshold 10)",
		Raised:  t0.Add(5 * time.Minute),
	}
	f.ID = finding.NewID(f.Rule, finding.GroupString(f.Group), f.Period, "")
	f.KQL = finding.KQL(&f)
	return alert.New([]finding.Finding{f}, t0.Add(5*time.Minute))
}

const (
	hostileUPN    = "x@y\r\nBcc: victim@evil"
	hostileScript = "<script>alert(1)</script>"
	hostileAttr   = `"><img src=x onerror=alert(1)>`
	hostileCtl    = "ctl\x1b[31mred\x00nul\x07bell\u202eevil\u2028sep"
)

var hostileBig = strings.Repeat("A", 100<<10)

// hostileAlert carries attacker-chosen values everywhere a log record
// reaches: caller, UPN, client info, object names, IPs, correlation ids,
// the vault name, and the summary quoting them.
func hostileAlert() *alert.Alert {
	a := realisticAlert()
	f := &a.Findings[0]
	f.Vault = "kv-payments-prod\r\nBcc: victim@evil"
	f.Group = []finding.Pair{{Field: "vault", Value: f.Vault}, {Field: "caller", Value: hostileUPN}}
	f.Example.Caller.UPN = hostileUPN
	f.Example.Caller.Name = hostileScript
	f.Example.ClientInfo = hostileAttr
	f.Example.ObjectName = hostileCtl
	f.Example.ResultDescription = hostileBig
	f.Example.CallerIP = "203.0.113.47\r\nX-Injected: yes"
	f.TopObjects = []finding.Count{{Value: hostileScript, Count: 2}, {Value: hostileAttr, Count: 1}, {Value: hostileBig, Count: 1}}
	f.CorrelationIDs = []string{hostileCtl, "=?utf-8?q?=0D=0ABcc:_victim@evil?="}
	f.Summary = "Many different secrets read: 14 distinct object names by " + hostileUPN + " " + hostileScript + " on " + f.Vault
	f.KQL = finding.KQL(f)
	b := alert.New([]finding.Finding{*f}, a.Created)
	return b
}

// --- a real SMTP server -------------------------------------------------

// selfSigned makes a certificate for 127.0.0.1 and localhost, and a pool
// that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kvwatch test SMTP"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

type received struct {
	From     string
	To       []string
	Data     []byte
	TLS      bool
	User     string
	Mech     string
	Received time.Time
}

// backend records what it is sent; users are username → password;
// rcptErr makes RCPT TO of an address fail.
type backend struct {
	mu      sync.Mutex
	users   map[string]string
	rcptErr map[string]error
	msgs    []received
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	_, isTLS := c.TLSConnectionState()
	return &session{b: b, tls: isTLS}, nil
}

func (b *backend) messages() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

type session struct {
	b    *backend
	tls  bool
	user string
	mech string
	from string
	to   []string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if want, ok := s.b.users[user]; !ok || want != pass {
			return smtp.ErrAuthFailed
		}
		s.user, s.mech = user, mech
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if len(s.b.users) > 0 && s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := s.b.rcptErr[to]; err != nil {
		return err
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.msgs = append(s.b.msgs, received{From: s.from, To: s.to, Data: data, TLS: s.tls, User: s.user, Mech: s.mech, Received: time.Now()})
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN (RFC draft
// murchison-sasl-login), which go-sasl no longer ships: "Username:",
// "Password:", with or without the username as initial response.
type loginServer struct {
	step  int
	user  string
	check func(user, pass string) error
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		if resp == nil {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 1:
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(resp))
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}

type smtpServer struct {
	backend  *backend
	startTLS string // 127.0.0.1:port, STARTTLS offered
	implicit string // 127.0.0.1:port, TLS from the first byte
	pool     *x509.CertPool
}

// startSMTP runs one go-smtp server on two listeners: one offering
// STARTTLS, one speaking implicit TLS. AUTH is refused before TLS.
func startSMTP(t *testing.T, be *backend) *smtpServer {
	t.Helper()
	cert, pool := selfSigned(t)
	srv := smtp.NewServer(be)
	srv.Domain = "mx.test.local"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.MaxMessageBytes = 4 << 20
	srv.ErrorLog = log.New(io.Discard, "", 0)
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l1)
	go srv.Serve(tls.NewListener(l2, srv.TLSConfig))
	t.Cleanup(func() { srv.Close() })
	return &smtpServer{backend: be, startTLS: l1.Addr().String(), implicit: l2.Addr().String(), pool: pool}
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range p {
		n = n*10 + int(c-'0')
	}
	return n
}

// parsed is a received mail taken apart.
type parsed struct {
	Header    mail.Header
	RawHeader string
	Subject   string
	Text      string
	HTML      string
	PartTypes []string
}

func parseMail(t *testing.T, data []byte) *parsed {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("net/mail cannot read the message: %v", err)
	}
	p := &parsed{Header: msg.Header}
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		p.RawHeader = string(data[:i+2])
	}
	p.Subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("subject: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		body, err := io.ReadAll(part) // quoted-printable decoded by the reader
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")) // mail lines end in CRLF
		ct := part.Header.Get("Content-Type")
		p.PartTypes = append(p.PartTypes, ct)
		switch {
		case strings.HasPrefix(ct, "text/plain"):
			p.Text = string(body)
		case strings.HasPrefix(ct, "text/html"):
			p.HTML = string(body)
		}
	}
	return p
}
