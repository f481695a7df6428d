package notify

import "testing"

func TestDefang(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain text", "plain text"},
		{"https://evil.example/x", "hxxps://evil.example/x"},
		{"HTTP://EVIL", "HxxP://EVIL"},
		{"see ftp://a and javascript://b", "see ftp[:]//a and javascript[:]//b"},
		{"a http://x https://y", "a hxxp://x hxxps://y"},
		{"://nothing before", "://nothing before"},
		{"9http://x", "9hxxp://x"},
		{"hxxps://already", "hxxps[:]//already"},
	} {
		if got := Defang(c.in); got != c.want {
			t.Errorf("Defang(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
