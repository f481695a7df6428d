package teams

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kvwatch/kvwatch/internal/notify"
)

// Text that reaches a card comes in two kinds:
//
//   - hostile: anything read from a log record (UPNs, client info, request
//     URIs, object names, IPs, group values, the summary that quotes them).
//     Whoever can make a request to a vault writes it.
//   - config: rule ids and runbooks written by whoever edits kvwatch.yaml.
//     Trusted, but still escaped, so that a stray "*" or "_" in a runbook
//     shows as itself; not defanged, so a runbook's link reads as written
//     (and gets an "Open runbook" button). Rule titles and descriptions are
//     config too but are handled as hostile: they share the header with the
//     summary and nothing is lost by defanging them.
//
// Both go through the same steps, in this order:
//
//  1. invalid UTF-8 becomes U+FFFD; ANSI escape sequences (CSI and OSC) are
//     removed whole;
//  2. control characters (Cc: C0, DEL, C1) and format characters (Cf:
//     zero-width space/joiners, bidi embeddings and overrides such as U+202E,
//     isolates, BOM, tag characters, soft hyphen) are removed; tabs, line
//     breaks, U+2028/U+2029 and every other Unicode space become one ASCII
//     space, runs of spaces collapse and the ends are trimmed: a value is one
//     line, so it can never start a Markdown block (heading, list, quote,
//     indented code) on a line of its own;
//  3. the value is cut to a maximum number of characters and "…" appended;
//  4. hostile values only: URL schemes are defanged — "http://" becomes
//     "hxxp://", "https://" "hxxps://", any other "scheme://" "scheme[:]//" —
//     the notation security teams use for indicators. Teams does not autolink
//     bare URLs in cards (links come only from Markdown, which step 5
//     disables), but other hosts and markdown-it's linkify key on
//     "scheme://", so a value from a log never reads as a live address;
//  5. every character CommonMark gives a meaning to in the subset Adaptive
//     Cards render (or that could open an autolink, entity, HTML tag or
//     <at> mention) is backslash-escaped: \ ` * _ { } [ ] ( ) # + - . ! | < > ~ &.
//     CommonMark lets any ASCII punctuation be escaped and shows it as
//     itself, so escaped text reads exactly like the input. "&" is escaped
//     because an entity such as "&#x202E;" would otherwise bring back, at
//     render time, a character step 2 removed.

const (
	hostileMax = 200 // characters kept of one value from a log record
	longMax    = 400 // summaries and descriptions
	configMax  = 1000
	ellipsis   = "…"
)

// mdSpecial are the characters escaped with a backslash.
const mdSpecial = "\\`*_{}[]()#+-.!|<>~&"

var (
	ansiSeq = regexp.MustCompile(`\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])`)
)

// clean does steps 1–3: one line of visible text at most max characters
// long (max <= 0: no limit).
func clean(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0x1b) >= 0 {
		s = ansiSeq.ReplaceAllString(s, "")
	}
	var b strings.Builder
	b.Grow(min(len(s), 4*max+8))
	n, space := 0, false
	for _, r := range s {
		switch {
		case r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f' ||
			r == '\u2028' || r == '\u2029' || r == '\u0085' || unicode.IsSpace(r):
			space = n > 0
			continue
		case unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r):
			continue
		}
		if max > 0 && n >= max {
			b.WriteString(ellipsis)
			return b.String()
		}
		if space {
			b.WriteByte(' ')
			n++
			space = false
			if max > 0 && n >= max {
				b.WriteString(ellipsis)
				return b.String()
			}
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// defang does step 4, as every receiver does (notify.Defang).
func defang(s string) string { return notify.Defang(s) }

// escapeMarkdown does step 5.
func escapeMarkdown(s string) string {
	if !strings.ContainsAny(s, mdSpecial) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + len(s)/4)
	for _, r := range s {
		if r < utf8.RuneSelf && strings.IndexByte(mdSpecial, byte(r)) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Hostile renders a value taken from a log record for a card: cleaned, cut
// to max characters, defanged and escaped.
func Hostile(s string, max int) string { return escapeMarkdown(defang(clean(s, max))) }

// Plain renders configuration text (rule titles, runbooks): cleaned, cut
// and escaped, not defanged.
func Plain(s string, max int) string { return escapeMarkdown(clean(s, max)) }

// h and p are the short forms the card builder uses, with the limit the
// current trim level allows.
func (v *view) h(s string) string { return Hostile(s, v.valueMax) }
func (v *view) p(s string) string { return Plain(s, v.valueMax) }
