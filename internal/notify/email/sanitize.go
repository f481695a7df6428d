package email

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/kvwatch/kvwatch/internal/notify"
)

// Everything in an alert that came from a log record (caller names, UPNs,
// IPs, object names, client info, correlation ids, the vault name, the
// summary that quotes them) is attacker-controlled. Three rules keep it
// inert:
//   - headers get headerText: no control character survives, so no CR/LF
//     can start a header of its own, and "=?" cannot fake an encoded word;
//   - bodies get clean/cleanBlock: control and bidi characters are shown
//     as visible escapes (\x1b, \u202e), long values are cut;
//   - bodies and the subject defang URLs (hostile: "https://" becomes
//     "hxxps://"), as Teams cards do, so no mail client autolinks them;
//   - the HTML body is rendered by html/template, which escapes every value
//     for its context; nothing log-derived is ever marked as safe HTML.

// isCtl reports runes that must never reach a reader raw: C0 and C1
// controls, DEL, line and paragraph separators, bidi overrides and
// isolates (they reorder what is displayed), zero-width no-break space.
func isCtl(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
		return true
	case r == 0x2028, r == 0x2029, r == 0xfeff:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true
	}
	return false
}

// Limits for values in the body and the subject.
const (
	maxValue   = 512       // one log value in the body
	maxLong    = 4096      // description, summary
	maxKQL     = 16 * 1024 // the query
	maxSubject = 180       // the subject, in runes
)

// hostile makes a value from a log record, already cleaned, inert as a
// link: URLs are defanged as Teams cards do (notify.Defang), so neither
// the HTML nor the text body offers an attacker's address to click.
func hostile(s string) string { return notify.Defang(s) }

// clean renders a one-line value for a body: control characters become
// visible escapes, invalid UTF-8 bytes \xNN, and the value is cut after
// max runes.
func clean(s string, max int) string { return escapeValue(s, max, false) }

// cleanBlock is clean but keeps line breaks and tabs (descriptions, KQL).
func cleanBlock(s string, max int) string { return escapeValue(s, max, true) }

func escapeValue(s string, max int, keepLines bool) string {
	if s == "" {
		return ""
	}
	var b strings.Builder
	b.Grow(min(len(s), max*2))
	n := 0
	for i := 0; i < len(s); {
		if n >= max {
			fmt.Fprintf(&b, "… [%d more bytes]", len(s)-i)
			break
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keepLines && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case keepLines && r == '\r':
			// CRLF and lone CR become LF.
			if i+1 >= len(s) || s[i+1] != '\n' {
				b.WriteByte('\n')
			}
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80 && isCtl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case isCtl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
		i += size
		n++
	}
	return b.String()
}

// headerText makes s fit for an unstructured header such as Subject: every
// control character (CR and LF first) becomes a space, runs of spaces
// collapse, "=?" is broken so it cannot be read as an RFC 2047 encoded
// word, and the result is cut after max runes.
func headerText(s string, max int) string {
	var b strings.Builder
	space := false
	n := 0
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if isCtl(r) || r == ' ' || r == '\u00a0' {
			space = true
			continue
		}
		if n >= max {
			b.WriteString("…")
			break
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
			n++
		}
		space = false
		b.WriteRune(r)
		n++
	}
	return strings.ReplaceAll(b.String(), "=?", "= ?")
}

// token keeps only [A-Za-z0-9.-_] of s: for ids in Message-ID and X- headers.
func token(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' {
			b.WriteRune(r)
		}
	}
	return b.String()
}
