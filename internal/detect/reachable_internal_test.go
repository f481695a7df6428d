package detect

import "testing"

// A distinct group's windows are skipped only when no n consecutive
// buckets hold count values between them: count values over exactly n
// buckets can make a window, the same spread over n+1 cannot.
func TestReachable(t *testing.T) {
	b := func(vs ...string) []string { return vs }
	for _, tc := range []struct {
		name   string
		values [][]string
		n      int64
		count  int64
		want   bool
	}{
		{"empty", nil, 3, 1, false},
		{"one value, count 1", [][]string{nil, b("a"), nil}, 3, 1, true},
		{"count values within n buckets", [][]string{b("a"), nil, b("b", "c"), nil}, 3, 3, true},
		{"the same spread over n+1 buckets", [][]string{b("a"), nil, nil, b("b", "c")}, 3, 3, false},
		{"at the end of the range", [][]string{nil, nil, nil, b("a"), b("b"), b("c")}, 3, 3, true},
		{"a value again counts again (a bound, not a set)", [][]string{b("a"), b("a"), b("a")}, 3, 3, true},
		{"one short", [][]string{b("a", "b"), nil, nil, b("c", "d")}, 3, 3, false},
	} {
		if got := reachable(tc.values, tc.n, tc.count); got != tc.want {
			t.Errorf("%s: reachable = %v, want %v", tc.name, got, tc.want)
		}
	}
}
