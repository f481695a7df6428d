package notify

import "strings"

// Defang makes every URL in a value taken from a log record inert, in the
// notation security teams use for indicators: "http://" becomes "hxxp://",
// "https://" "hxxps://", any other "scheme://" "scheme[:]//". Each "://" is
// looked at with the scheme before it (letters, digits, "+", ".", "-",
// starting with a letter). Teams cards and email bodies both use it, so a
// value from a log never reads, or autolinks, as a live address.
func Defang(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	done := 0 // s[:done] is written
	for i := strings.Index(s, "://"); i >= 0; {
		start := i
		for start > done && isSchemeByte(s[start-1]) {
			start--
		}
		for start < i && !isLetter(s[start]) { // a scheme starts with a letter
			start++
		}
		b.WriteString(s[done:start])
		switch scheme := s[start:i]; {
		case strings.EqualFold(scheme, "http"), strings.EqualFold(scheme, "https"):
			b.WriteString(scheme[:1] + "xx" + scheme[3:] + "://")
		case scheme != "":
			b.WriteString(scheme + "[:]//")
		default:
			b.WriteString("://")
		}
		done = i + 3
		j := strings.Index(s[done:], "://")
		if j < 0 {
			break
		}
		i = done + j
	}
	b.WriteString(s[done:])
	return b.String()
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func isSchemeByte(c byte) bool {
	return isLetter(c) || '0' <= c && c <= '9' || c == '+' || c == '.' || c == '-'
}
