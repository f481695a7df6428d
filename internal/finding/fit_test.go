package finding

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
)

// fill sets every string reachable from v to s, gives every nil pointer a
// value and every slice and map n elements, recursively: a finding whose
// every field is as long as the test makes it.
func fill(v reflect.Value, s string, n int) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		fill(v.Elem(), s, n)
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", -12*3600-59*60))))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), s, n)
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			fill(v.Index(i), s, n)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		for i := range n {
			k := reflect.New(v.Type().Key()).Elem()
			fill(k, s+strings.Repeat("k", i), n)
			e := reflect.New(v.Type().Elem()).Elem()
			fill(e, s, n)
			v.SetMapIndex(k, e)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(-1 << (v.Type().Bits() - 1))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(-1.2345678901234567e-300)
	case reflect.Bool:
		v.SetBool(true)
	}
}

// TestSizeUpperBounds checks that the bound Fit trusts to skip encoding a
// finding is never below the encoding's length, whatever the finding's
// fields hold: the costliest bytes to escape, in every field (those added
// later too: fill walks them all), at several lengths.
func TestSizeUpperBounds(t *testing.T) {
	for _, s := range []string{"", "a", "<", "\x00", "\xff", "\u2028", `"\`, strings.Repeat("<>&\x01\xfe", 400)} {
		for _, n := range []int{0, 1, 5} {
			var f Finding
			fill(reflect.ValueOf(&f).Elem(), s, n)
			b, err := json.Marshal(&f)
			if err != nil {
				t.Fatal(err)
			}
			if up := sizeUpper(reflect.ValueOf(&f)); up < len(b) {
				t.Errorf("string %q, %d elements: bound %d under the encoding's %d bytes", s[:min(len(s), 8)], n, up, len(b))
			}
		}
	}
}

// TestFitTrimsOnlyWhatIsOver checks Fit on both sides of MaxBodyBytes:
// an ordinary finding is left whole; one over the limit is trimmed, says
// so, and encodes within it.
func TestFitTrimsOnlyWhatIsOver(t *testing.T) {
	ordinary := Finding{ID: "x", Rule: "r", Summary: "s", Operations: []string{"SecretGet"},
		CorrelationIDs: []string{"c"}, Example: &audit.Event{Vault: "v", Operation: "SecretGet"}}
	if ordinary.Fit() || ordinary.Trimmed != "" || ordinary.Example == nil || len(ordinary.CorrelationIDs) != 1 {
		t.Errorf("an ordinary finding was trimmed: %+v", ordinary)
	}
	long := strings.Repeat("<", 2048)
	// Every field of the example event at the length normalization
	// allows, and full top lists and correlation ids of the same.
	big := Finding{ID: "x", Rule: "r", Summary: "s", Example: &audit.Event{}}
	fill(reflect.ValueOf(big.Example).Elem(), long, 5)
	for range 5 {
		big.TopObjects = append(big.TopObjects, Count{Value: long, Count: 1})
		big.TopIPs = append(big.TopIPs, Count{Value: long, Count: 1})
		big.TopOperations = append(big.TopOperations, Count{Value: long, Count: 1})
	}
	for range 10 {
		big.CorrelationIDs = append(big.CorrelationIDs, long)
	}
	if n := size(&big); n <= MaxBodyBytes {
		t.Fatalf("the test's big finding is only %d bytes", n)
	}
	if !big.Fit() || big.Trimmed == "" {
		t.Fatalf("a finding over %d bytes was not trimmed", MaxBodyBytes)
	}
	b, err := big.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxBodyBytes {
		t.Errorf("a fitted finding encodes to %d bytes, over %d", len(b), MaxBodyBytes)
	}
}
