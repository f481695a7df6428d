package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/kvwatch/kvwatch/internal/notify"
)

// sendSMTP delivers m in one SMTP conversation bounded by smtp.timeout.
func (n *Notifier) sendSMTP(ctx context.Context, m *message) error {
	s := &n.cfg.SMTP
	ctx, cancel := context.WithTimeout(ctx, n.smtpTimeout)
	defer cancel()

	data, err := m.bytes(n.cfg.From, n.cfg.FromName, n.cfg.To, n.cfg.CC, n.now())
	if err != nil {
		return notify.Permanent(fmt.Errorf("build message: %w", err))
	}

	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	dialer := &net.Dialer{Timeout: n.smtpTimeout}
	var conn net.Conn
	if s.TLS == TLSImplicit {
		conn, err = (&tls.Dialer{NetDialer: dialer, Config: n.tlsConfig}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = dialer.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return classifySMTP(ctx, "connect to "+addr, err)
	}
	// go-smtp sets per-command deadlines; closing the connection when the
	// context ends bounds the whole conversation.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var c *smtp.Client
	if s.TLS == TLSStartTLS {
		c, err = smtp.NewClientStartTLS(conn, n.tlsConfig)
		if err != nil {
			conn.Close()
			return classifySMTP(ctx, "STARTTLS with "+addr, err)
		}
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	c.CommandTimeout = n.smtpTimeout
	c.SubmissionTimeout = n.smtpTimeout
	// EHLO now (again after STARTTLS) so a refusal is reported as such.
	if err := c.Hello(localName()); err != nil {
		return classifySMTP(ctx, "EHLO", err)
	}

	if s.Username != "" {
		if ok, mechs := c.Extension("AUTH"); !ok {
			return classifySMTP(ctx, "auth", notify.Permanent(fmt.Errorf("server %s offers no AUTH (credentials are configured)", addr)))
		} else if mech := strings.ToUpper(s.Auth); !c.SupportsAuth(mech) {
			return classifySMTP(ctx, "auth", notify.Permanent(fmt.Errorf("server %s offers AUTH %s, not %s", addr, headerText(mechs, 100), mech)))
		}
		var client sasl.Client
		if s.Auth == AuthLogin {
			client = sasl.NewLoginClient(s.Username, s.Password)
		} else {
			client = sasl.NewPlainClient("", s.Username, s.Password)
		}
		if err := c.Auth(client); err != nil {
			return classifySMTP(ctx, "AUTH "+strings.ToUpper(s.Auth), err)
		}
	}

	if err := c.Mail(n.cfg.From, nil); err != nil {
		return classifySMTP(ctx, "MAIL FROM", err)
	}
	// A temporary refusal of any recipient aborts the transaction, so the
	// retry reaches everyone exactly once; permanent refusals are reported
	// after the others got the mail.
	var rejected []string
	accepted := 0
	for _, rcpt := range append(append([]string(nil), n.cfg.To...), n.cfg.CC...) {
		err := c.Rcpt(rcpt, nil)
		if err == nil {
			accepted++
			continue
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code/100 == 5 {
			rejected = append(rejected, fmt.Sprintf("%s (%v)", rcpt, err))
			continue
		}
		_ = c.Reset()
		return classifySMTP(ctx, "RCPT TO "+rcpt, err)
	}
	if accepted == 0 {
		return notify.Permanent(fmt.Errorf("every recipient refused: %s", strings.Join(rejected, "; ")))
	}
	w, err := c.Data()
	if err != nil {
		return classifySMTP(ctx, "DATA", err)
	}
	if _, err := w.Write(data); err != nil {
		return classifySMTP(ctx, "DATA", err)
	}
	if err := w.Close(); err != nil {
		return classifySMTP(ctx, "end of DATA", err)
	}
	_ = c.Quit()
	if len(rejected) > 0 {
		return notify.Permanent(fmt.Errorf("sent to %d recipient(s), refused: %s", accepted, strings.Join(rejected, "; ")))
	}
	return nil
}

// localName is the name given in EHLO: the host name when it looks like
// a domain name, else "localhost" (what go-smtp says by default).
func localName() string {
	h, err := os.Hostname()
	if err != nil || !strings.Contains(h, ".") || token(h, 255) != h {
		return "localhost"
	}
	return h
}

// classifySMTP turns an SMTP conversation error into a notify error: 4xx
// replies, network errors and timeouts are temporary; 5xx replies,
// certificate failures and a missing STARTTLS are permanent.
func classifySMTP(ctx context.Context, step string, err error) error {
	var ne *notify.Error
	if errors.As(err, &ne) {
		return err
	}
	wrapped := fmt.Errorf("smtp %s: %w", step, err)
	if ctx.Err() != nil {
		// The connection was closed under us: report the deadline or the
		// cancellation rather than "use of closed network connection".
		return notify.Temporary(fmt.Errorf("smtp %s: %w (%v)", step, ctx.Err(), err), 0)
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		if se.Code/100 == 4 {
			return notify.Temporary(wrapped, 0)
		}
		return notify.Permanent(wrapped)
	}
	var (
		unknownCA *x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &invalid) || errors.As(err, &verify) {
		return notify.Permanent(wrapped)
	}
	if strings.Contains(err.Error(), "doesn't support STARTTLS") {
		return notify.Permanent(wrapped)
	}
	return notify.Temporary(wrapped, 0)
}
