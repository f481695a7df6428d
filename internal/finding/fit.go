package finding

import (
	"encoding"
	"encoding/json"
	"reflect"
	"time"
)

// MaxBodyBytes bounds a finding's JSON encoding, which is stored as one
// entity (the findings table) and sent as one alert. A finding keeps one
// example event, five values of each top list and ten correlation ids, so
// only worst-case strings (every field of its events at the ~2 KiB
// normalization allows, escaped six-fold) come near it; past it Fit leaves
// out, in turn, the correlation ids and all but the first of each top
// list, then the example event, and says so in Trimmed.
const MaxBodyBytes = 512 << 10

// Fit trims f until its encoding is at most MaxBodyBytes, in the order
// MaxBodyBytes gives, and reports whether it trimmed anything.
func (f *Finding) Fit() bool {
	if sizeUpper(reflect.ValueOf(f)) <= MaxBodyBytes || size(f) <= MaxBodyBytes {
		return false
	}
	f.CorrelationIDs = nil
	f.TopObjects, f.TopIPs, f.TopOperations = firstOf(f.TopObjects), firstOf(f.TopIPs), firstOf(f.TopOperations)
	f.Operations = shortOnly(f.Operations)
	f.Trimmed = "correlation ids, operation names over 128 bytes and all but the first top value left out: the finding was over 512 KiB"
	if size(f) <= MaxBodyBytes {
		return true
	}
	f.Example = nil
	f.Trimmed = "example event, correlation ids, operation names over 128 bytes and all but the first top value left out: the finding was over 512 KiB"
	return true
}

// Encode returns f's JSON encoding after fitting it (see Fit): f is
// trimmed in place when it is over MaxBodyBytes. A finding that fits is
// encoded once.
func (f *Finding) Encode() ([]byte, error) {
	b, err := json.Marshal(f)
	if err != nil || len(b) <= MaxBodyBytes {
		return b, err
	}
	f.Fit()
	return json.Marshal(f)
}

// shortOnly keeps the operation names of at most 128 bytes (Key Vault's
// are under 64): a hostile record's cut-off name is left out.
func shortOnly(ops []string) []string {
	var out []string
	for _, op := range ops {
		if len(op) <= 128 {
			out = append(out, op)
		}
	}
	return out
}

func firstOf(c []Count) []Count {
	if len(c) > 1 {
		return c[:1]
	}
	return c
}

func size(f *Finding) int {
	b, err := json.Marshal(f)
	if err != nil {
		return 0
	}
	return len(b)
}

// sizeUpper bounds the length of v's JSON encoding from above without
// encoding it: six bytes a string byte (the most escaping costs), 32 bytes
// of name and punctuation a struct field or element, 40 a time, 64 a
// value that encodes itself (a Severity's name). Most findings are far
// under MaxBodyBytes and are not encoded to learn so (encoding one cost
// 6% of the default pack's CPU on a tenant's traffic, where a batch
// re-builds hundreds of findings whose incidents grew). Walking v by
// reflection counts every field, those added later too.
func sizeUpper(v reflect.Value) int {
	switch v.Kind() {
	case reflect.String:
		return 6*v.Len() + 2
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return 4
		}
		return sizeUpper(v.Elem())
	case reflect.Struct:
		if v.Type() == timeType {
			return 40
		}
		n := 2
		for i := range v.NumField() {
			n += 32 + sizeUpper(v.Field(i))
		}
		return n
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return 4*v.Len()/3 + 6 // base64
		}
		n := 2
		for i := range v.Len() {
			n += 32 + sizeUpper(v.Index(i))
		}
		return n
	case reflect.Map:
		n := 2
		for it := v.MapRange(); it.Next(); {
			n += 32 + sizeUpper(it.Key()) + sizeUpper(it.Value())
		}
		return n
	}
	if v.Type().Implements(textMarshaler) || v.Type().Implements(jsonMarshaler) {
		return 64
	}
	return 32 // numbers and booleans
}

var (
	timeType      = reflect.TypeFor[time.Time]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
)
