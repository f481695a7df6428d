package email

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
)

// message is one rendered alert mail.
type message struct {
	Subject   string // one line, not encoded
	Text      string
	HTML      string
	MessageID string // with angle brackets
	AlertID   string // token-safe
	Rule      string // header-safe
	Severity  string
}

func (n *Notifier) newMessage(a *alert.Alert) (*message, error) {
	subject, text, html, err := render(a, n.cfg.SubjectPrefix)
	if err != nil {
		return nil, err
	}
	return &message{
		Subject: subject, Text: text, HTML: html,
		MessageID: messageID(a, n.cfg.From),
		AlertID:   token(a.ID, 64),
		Rule:      headerText(a.Rule, 120),
		Severity:  a.Severity.String(),
	}, nil
}

// messageID is <alertID.created@kvwatch.from-domain>: stable for an alert,
// so a resend of the same alert carries the same Message-ID and mail
// clients and archives can tell it is the same message.
func messageID(a *alert.Alert, from string) string {
	id := token(a.ID, 64)
	if id == "" {
		h := sha256.Sum256([]byte(a.Key + "\x00" + a.Created.String()))
		id = hex.EncodeToString(h[:12])
	}
	domain := token(domainOf(from), 200)
	if domain == "" {
		domain = "localhost"
	}
	return "<" + id + "." + strconv.FormatInt(a.Created.Unix(), 10) + "@kvwatch." + domain + ">"
}

// bytes renders the message as RFC 5322 with CRLF line ends: headers,
// then multipart/alternative with a quoted-printable text part and HTML
// part. The boundary contains "=_", which quoted-printable content can
// never contain.
func (m *message) bytes(from, fromName string, to, cc []string, date time.Time) ([]byte, error) {
	var b bytes.Buffer
	fromAddr := (&mail.Address{Name: headerText(fromName, 120), Address: from}).String()
	writeHeader(&b, "Date", date.Format(time.RFC1123Z))
	writeHeader(&b, "From", fromAddr)
	writeHeader(&b, "To", addressList(to))
	if len(cc) > 0 {
		writeHeader(&b, "Cc", addressList(cc))
	}
	writeHeader(&b, "Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	writeHeader(&b, "Message-ID", m.MessageID)
	writeHeader(&b, "MIME-Version", "1.0")
	h := sha256.Sum256([]byte(m.MessageID))
	boundary := "=_kvwatch_" + hex.EncodeToString(h[:10])
	writeHeader(&b, "Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": boundary}))
	writeHeader(&b, "X-Kvwatch-Alert-Id", m.AlertID)
	writeHeader(&b, "X-Kvwatch-Rule", mime.QEncoding.Encode("utf-8", m.Rule))
	writeHeader(&b, "X-Kvwatch-Severity", m.Severity)
	// RFC 3834: no auto-replies to alerts; Exchange's own header likewise.
	writeHeader(&b, "Auto-Submitted", "auto-generated")
	writeHeader(&b, "X-Auto-Response-Suppress", "All")
	b.WriteString("\r\n")

	mw := multipart.NewWriter(&b)
	if err := mw.SetBoundary(boundary); err != nil {
		return nil, err
	}
	for _, p := range []struct{ ctype, body string }{
		{"text/plain; charset=utf-8", m.Text},
		{"text/html; charset=utf-8", m.HTML},
	} {
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {p.ctype},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, err
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write([]byte(p.body)); err != nil {
			return nil, err
		}
		if err := qp.Close(); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	b.WriteString("\r\n")
	return b.Bytes(), nil
}

func addressList(addrs []string) string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = (&mail.Address{Address: a}).String()
	}
	return strings.Join(out, ", ")
}

// writeHeader writes "Name: value" folded at spaces so lines stay under 78
// characters where they can. value never holds CR or LF: everything
// passed here went through headerText, token, mail.Address or mime
// encoding, and config addresses are validated.
func writeHeader(b *bytes.Buffer, name, value string) {
	value = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, value)
	line := len(name) + 2
	b.WriteString(name)
	b.WriteString(":")
	for i, word := range strings.Split(value, " ") {
		if i > 0 && line+1+len(word) > 78 {
			b.WriteString("\r\n")
			line = 0
		}
		b.WriteByte(' ')
		b.WriteString(word)
		line += 1 + len(word)
	}
	b.WriteString("\r\n")
}
