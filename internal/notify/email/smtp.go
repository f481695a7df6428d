package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/kvwatch/kvwatch/internal/notify"
)

// sendSMTP delivers m in one SMTP conversation bounded by smtp.timeout.
func (n *Notifier) sendSMTP(ctx context.Context, m *message) error {
	data, err := m.bytes(n.cfg.From, n.cfg.FromName, n.cfg.To, n.cfg.CC, n.now())
	if err != nil {
		return notify.Permanent(fmt.Errorf("build message: %w", err))
	}
	return n.submitSMTP(ctx, data)
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
