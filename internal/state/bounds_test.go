package state

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestJSONLengths(t *testing.T) {
	for _, s := range []string{"", "kv-prod", "a\"b\\c", "<&>", "\x00\x1f\x7f", "é€😀", "\xff\xfe", "\u2028", "\u2029x", "\b\f\n\r\t\x0b", "a\xc3", "\xed\xa0\x80", strings.Repeat("<\x01", 100)} {
		b, _ := json.Marshal(s)
		if got := JSONStringLen(s); got != len(b) {
			t.Errorf("JSONStringLen(%q) = %d, want %d", s, got, len(b))
		}
		for _, sp := range []Span{{}, {First: 1763856000, Last: 1763859600}, {First: -5, Last: math.MinInt64}, {First: math.MaxInt64}} {
			e := &Entity{Seen: map[string]Span{s: sp}}
			// {"s":{<entry without its comma>}}
			want := EncodedSize(e) - len(`{"s":{}}`) + 1
			if got := SeenEntryLen(s, sp); got != want {
				t.Errorf("SeenEntryLen(%q, %v) = %d, want %d", s, sp, got, want)
			}
		}
	}
}

func TestBoundSeen(t *testing.T) {
	seen := map[string]Span{"a": {Last: 3}, "b": {Last: 1}, "c": {Last: 2}, "d": {Last: 2}}
	if n := BoundSeen(seen, 2, 1<<20); n != 2 || len(seen) != 2 || seen["a"].Last != 3 || seen["c"].Last != 2 {
		t.Fatalf("forgot %d, kept %v", n, seen)
	}
	seen = map[string]Span{"a": {Last: 3}, "b": {Last: 1}}
	if n := BoundSeen(seen, 10, SeenEntryLen("a", Span{Last: 3})); n != 1 || len(seen) != 1 {
		t.Fatalf("forgot %d, kept %v", n, seen)
	}
}
