package state_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/kvwatch/kvwatch/internal/state"
)

// decodeAll reads one value with read and requires the input to end there.
func decodeAll[T any](x *state.JSONDecoder, data []byte, read func(*state.JSONDecoder, *jsontext.Decoder) (T, error)) (T, error) {
	d := jsontext.NewDecoder(bytes.NewReader(data), state.JSONDecodeOptions)
	v, err := read(x, d)
	if err != nil {
		return v, err
	}
	if _, err := d.ReadToken(); !errors.Is(err, io.EOF) {
		var zero T
		return zero, errors.New("data after the value")
	}
	return v, nil
}

// checkDecoded decodes data with the JSONDecoder and with jsonv2.Unmarshal
// as an entity, a delta and a key: when both succeed, they must agree; the
// kind named by must (the encoder's output of it) must be read by both,
// but for names the encoder wrote twice (invalid UTF-8 replaced), which
// Unmarshal refuses and the JSONDecoder reads.
func checkDecoded(t *testing.T, x *state.JSONDecoder, data []byte, must string) {
	t.Helper()
	check := func(what string, got any, err error, want any, werr error) {
		t.Helper()
		if must == what && (err != nil || (werr != nil && !errors.Is(werr, jsontext.ErrDuplicateName))) {
			t.Fatalf("%s %s: JSONDecoder: %v; Unmarshal: %v", what, data, err, werr)
		}
		if err == nil && werr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%s %s:\nJSONDecoder %#v\nUnmarshal   %#v", what, data, got, want)
		}
	}
	e, err := decodeAll(x, data, (*state.JSONDecoder).ReadEntity)
	var we *state.Entity
	werr := jsonv2.Unmarshal(data, &we)
	check("entity", e, err, we, werr)
	dl, err := decodeAll(x, data, (*state.JSONDecoder).ReadDelta)
	var wd *state.Delta
	werr = jsonv2.Unmarshal(data, &wd)
	check("delta", dl, err, wd, werr)
	k, err := decodeAll(x, data, (*state.JSONDecoder).ReadKey)
	var wk state.Key
	werr = jsonv2.Unmarshal(data, &wk)
	check("key", k, err, wk, werr)
}

func checkJSONDecoder(t *testing.T, seed uint64, a, b string, k1, k2 int64, raw []byte) {
	r := rand.New(rand.NewPCG(seed, uint64(k1)))
	strs := []string{a, b, a + b, "", "p:ns/hub/0", "kv1\x1fcaller-7", `q"\<>&`, "ü\u2028", "\xff"}
	ints := []int64{k1, k2, -k1, 0, 1, -1, 9, 10, 29923740, 29923741, -29923740, 1 << 62, -1 << 63}
	var enc state.JSONEncoder
	var x state.JSONDecoder
	for range 4 {
		k, e, d := jsonSample(r, strs, ints)
		checkDecoded(t, &x, enc.AppendEntity(nil, e), "entity")
		checkDecoded(t, &x, enc.AppendDelta(nil, d), "delta")
		checkDecoded(t, &x, enc.AppendKey(nil, k), "key")
	}
	checkDecoded(t, &x, raw, "")
}

// The JSON decoder reads what the encoder writes, whatever its strings and
// keys, into exactly what jsonv2.Unmarshal makes of it; and on any input
// it either fails or agrees with Unmarshal.
func TestJSONDecoder(t *testing.T) {
	raws := []string{`null`, `{}`, `{"a":null,"c":{},"v":{"5":null,"6":[]},"fs":null}`, `{"fs":0,"s":{"x":{"f":1,"l":2,"r":true}}}`,
		`{"A":{"x":1}}`, `{"c":{"01":1}}`, `{"c":{"+1":1}}`, `{"f":1.0}`, `{"f":1e2}`, `{"f":-0}`, `{"zz":[1,{"a":2}],"f":3}`,
		`{"v":{"1":{"+":["a"],"o":true,"x":false}}}`, `{"a":{"\u0041":1}}`, `{"Rule":"r","Group":"g\u001f","Block":-3}`,
		`{"f":1,"f":2}`, `{"c":{"1":1,"1":2}}`, `{"t":{"x":"1"}}`, `[]`, `"x"`, `{"f":9223372036854775808}`}
	for seed := range uint64(300) {
		checkJSONDecoder(t, seed, "a", "b\x00\n\t\"", int64(seed)-150, int64(seed)*1000, []byte(raws[int(seed)%len(raws)]))
	}
}

func FuzzJSONDecoder(f *testing.F) {
	f.Add(uint64(1), "a", "b", int64(3), int64(-12), []byte(`{"c":{"1":2},"a":{"p":3}}`))
	f.Add(uint64(2), "kv\x1fc<&>", "\xe2\x80", int64(100), int64(99), []byte(`{"v":{"-1":{"+":["x"],"=":null}}}`))
	f.Add(uint64(3), "\b\f\r\x7f", "ü\u2029", int64(-5), int64(-50), []byte(`{"Rule":"a","Block":1}`))
	f.Fuzz(checkJSONDecoder)
}
