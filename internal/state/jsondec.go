package state

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"
)

// JSONDecoder reads entities, deltas and keys as JSONEncoder writes them,
// into what github.com/go-json-experiment/json's Unmarshal (default
// options) makes of the same JSON, without reflection (FuzzJSONDecoder
// checks both on the encoder's output and on arbitrary input): a fresh
// instance restores a journal's snapshot and log tail this way, tens of
// megabytes of JSON holding a few kinds of strings (rules, groups, input
// streams, values) over and over. So strings are interned: one copy of
// each per decoder, up to a bound.
//
// Members the types do not name are skipped; null leaves a field at its
// zero value. Read with JSONDecodeOptions, a member named twice keeps its
// last value.
//
// The zero value is ready; one must not be used by two goroutines at once.
type JSONDecoder struct {
	strs map[string]string
	buf  []byte
}

// Interning bounds: strings kept (past it the table starts again) and the
// longest string worth keeping.
const (
	internMax    = 1 << 16
	internMaxLen = 256
)

var errJSONKind = errors.New("unexpected JSON kind")

// JSONDecodeOptions are the options of the jsontext.Decoder a JSONDecoder
// reads from. Duplicate names are allowed: the encoder (as encoding/json)
// writes invalid UTF-8 as U+FFFD, so two map keys that differ only in their
// invalid bytes (log contents are not always valid UTF-8) are written as
// the same name, and a state that cannot be read back would stop every
// restore; the last of them is kept.
var JSONDecodeOptions = jsontext.AllowDuplicateNames(true)

// str returns the text of a raw JSON string value, interned.
func (x *JSONDecoder) str(v jsontext.Value) (string, error) {
	if len(v) < 2 || v[0] != '"' {
		return "", fmt.Errorf("%w: want a string, got %.20s", errJSONKind, v)
	}
	body := v[1 : len(v)-1]
	if bytes.IndexByte(body, '\\') >= 0 {
		var err error
		if x.buf, err = jsontext.AppendUnquote(x.buf[:0], v); err != nil {
			return "", err
		}
		body = x.buf
	}
	return x.intern(body), nil
}

// intern returns body as a string, one copy per decoder (up to the bounds).
func (x *JSONDecoder) intern(body []byte) string {
	if len(body) > internMaxLen {
		return string(body)
	}
	if s, ok := x.strs[string(body)]; ok {
		return s
	}
	s := string(body)
	if x.strs == nil || len(x.strs) >= internMax {
		x.strs = make(map[string]string, 1024)
	}
	x.strs[s] = s
	return s
}

// readStr reads a string, or null ("", false).
func (x *JSONDecoder) readStr(d *jsontext.Decoder) (string, bool, error) {
	v, err := d.ReadValue()
	if err != nil {
		return "", false, err
	}
	if v.Kind() == 'n' {
		return "", false, nil
	}
	s, err := x.str(v)
	return s, true, err
}

// ReadInt reads an integer (null: 0).
func ReadInt(d *jsontext.Decoder) (int64, error) {
	v, err := d.ReadValue()
	if err != nil {
		return 0, err
	}
	switch v.Kind() {
	case 'n':
		return 0, nil
	case '0':
		return parseInt(v)
	}
	return 0, fmt.Errorf("%w: want an integer, got %.20s", errJSONKind, v)
}

// ReadBool reads a boolean (null: false).
func ReadBool(d *jsontext.Decoder) (bool, error) {
	v, err := d.ReadValue()
	if err != nil {
		return false, err
	}
	switch v.Kind() {
	case 'n', 'f':
		return false, nil
	case 't':
		return true, nil
	}
	return false, fmt.Errorf("%w: want a boolean, got %.20s", errJSONKind, v)
}

// ReadObject reads an object (null: false, nothing read), calling member
// with each member's name, unquoted, valid until the next read: the
// JSONDecoder's and its users' documents (tablestore's log entries and
// snapshots) are read with it.
func ReadObject(d *jsontext.Decoder, member func(name []byte) error) (bool, error) {
	switch d.PeekKind() {
	case 'n':
		_, err := d.ReadToken()
		return false, err
	case '{':
	default:
		v, err := d.ReadValue()
		if err != nil {
			return false, err
		}
		return false, fmt.Errorf("%w: want an object, got %.20s", errJSONKind, v)
	}
	if _, err := d.ReadToken(); err != nil {
		return false, err
	}
	for d.PeekKind() != '}' {
		name, err := d.ReadValue()
		if err != nil {
			return false, err
		}
		if len(name) < 2 || name[0] != '"' {
			return false, fmt.Errorf("%w: member name %.20s", errJSONKind, name)
		}
		if bytes.IndexByte(name, '\\') >= 0 {
			if name, err = jsontext.AppendUnquote(nil, name); err != nil {
				return false, err
			}
		} else {
			name = name[1 : len(name)-1]
		}
		if err := member(name); err != nil {
			return false, err
		}
	}
	_, err := d.ReadToken()
	return true, err
}

// ReadArray reads an array (null: false, nothing read), calling elem for
// each element.
func ReadArray(d *jsontext.Decoder, elem func() error) (bool, error) {
	switch d.PeekKind() {
	case 'n':
		_, err := d.ReadToken()
		return false, err
	case '[':
	default:
		v, err := d.ReadValue()
		if err != nil {
			return false, err
		}
		return false, fmt.Errorf("%w: want an array, got %.20s", errJSONKind, v)
	}
	if _, err := d.ReadToken(); err != nil {
		return false, err
	}
	for d.PeekKind() != ']' {
		if err := elem(); err != nil {
			return false, err
		}
	}
	_, err := d.ReadToken()
	return true, err
}

func skip(d *jsontext.Decoder) error { return d.SkipValue() }

// ReadKey reads a Key.
func (x *JSONDecoder) ReadKey(d *jsontext.Decoder) (Key, error) {
	var k Key
	_, err := ReadObject(d, func(name []byte) error {
		var err error
		switch string(name) {
		case "Rule":
			k.Rule, _, err = x.readStr(d)
		case "Group":
			k.Group, _, err = x.readStr(d)
		case "Block":
			k.Block, err = ReadInt(d)
		default:
			err = skip(d)
		}
		return err
	})
	if err != nil {
		return Key{}, fmt.Errorf("key: %w", err)
	}
	return k, nil
}

// ReadEntity reads an Entity (null: nil).
func (x *JSONDecoder) ReadEntity(d *jsontext.Decoder) (*Entity, error) {
	e := &Entity{}
	ok, err := ReadObject(d, func(name []byte) error {
		var err error
		switch string(name) {
		case "a":
			e.Applied, err = x.ReadStringInts(d)
		case "c":
			e.Counts, err = readIntInts(d)
		case "c2":
			e.Counts2, err = readIntInts(d)
		case "v":
			e.Values, err = readIntMap(d, func() ([]string, error) { return x.readStrings(d) })
		case "s":
			e.Seen, err = readStringMap(x, d, func() (Span, error) {
				sd, err := x.readSpan(d)
				return sd.Span, err
			})
		case "f":
			e.First, err = ReadInt(d)
		case "t":
			e.Tally, err = x.ReadStringInts(d)
		default:
			err = skip(d)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("entity: %w", err)
	}
	if !ok {
		return nil, nil
	}
	return e, nil
}

// ReadDelta reads a Delta (null: nil).
func (x *JSONDecoder) ReadDelta(d *jsontext.Decoder) (*Delta, error) {
	dl := &Delta{}
	ok, err := ReadObject(d, func(name []byte) error {
		var err error
		switch string(name) {
		case "a":
			dl.Applied, err = x.ReadStringInts(d)
		case "as":
			dl.AppliedSet, err = x.ReadStringInts(d)
		case "ag":
			dl.AppliedGone, err = x.readStrings(d)
		case "c":
			dl.Counts, err = readIntInts(d)
		case "cg":
			dl.CountsGone, err = readInts(d)
		case "c2":
			dl.Counts2, err = readIntInts(d)
		case "c2g":
			dl.Counts2Gone, err = readInts(d)
		case "t":
			dl.Tally, err = x.ReadStringInts(d)
		case "tg":
			dl.TallyGone, err = x.readStrings(d)
		case "v":
			dl.Values, err = readIntMap(d, func() (SlotDelta, error) { return x.readSlotDelta(d) })
		case "s":
			dl.Seen, err = readStringMap(x, d, func() (SpanDelta, error) { return x.readSpan(d) })
		case "sg":
			dl.SeenGone, err = x.readStrings(d)
		case "f":
			dl.First, err = ReadInt(d)
		case "fs":
			if d.PeekKind() == 'n' {
				dl.FirstSet, err = nil, skip(d)
				break
			}
			var v int64
			if v, err = ReadInt(d); err == nil {
				dl.FirstSet = &v
			}
		default:
			err = skip(d)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	if !ok {
		return nil, nil
	}
	return dl, nil
}

func (x *JSONDecoder) readSlotDelta(d *jsontext.Decoder) (SlotDelta, error) {
	var sd SlotDelta
	_, err := ReadObject(d, func(name []byte) error {
		var err error
		switch string(name) {
		case "+":
			sd.Added, err = x.readStrings(d)
		case "-":
			sd.Removed, err = x.readStrings(d)
		case "o":
			sd.Sorted, err = ReadBool(d)
		case "x":
			sd.Drop, err = ReadBool(d)
		case "=":
			sd.Set, err = x.readStrings(d)
		default:
			err = skip(d)
		}
		return err
	})
	return sd, err
}

func (x *JSONDecoder) readSpan(d *jsontext.Decoder) (SpanDelta, error) {
	var sd SpanDelta
	_, err := ReadObject(d, func(name []byte) error {
		var err error
		switch string(name) {
		case "f":
			sd.First, err = ReadInt(d)
		case "l":
			sd.Last, err = ReadInt(d)
		case "r":
			sd.Restart, err = ReadBool(d)
		default:
			err = skip(d)
		}
		return err
	})
	return sd, err
}

// ReadList reads an array into a slice, each element by elem: null is
// nil, [] an empty slice (as Unmarshal makes them).
func ReadList[T any](d *jsontext.Decoder, elem func() (T, error)) ([]T, error) {
	out := []T{}
	ok, err := ReadArray(d, func() error {
		v, err := elem()
		out = append(out, v)
		return err
	})
	if !ok || err != nil {
		return nil, err
	}
	return out, nil
}

// readStrings reads a []string.
func (x *JSONDecoder) readStrings(d *jsontext.Decoder) ([]string, error) {
	return ReadList(d, func() (string, error) {
		s, _, err := x.readStr(d)
		return s, err
	})
}

func readInts(d *jsontext.Decoder) ([]int64, error) {
	return ReadList(d, func() (int64, error) { return ReadInt(d) })
}

// ReadStringInts reads a map[string]int64 (null: nil).
func (x *JSONDecoder) ReadStringInts(d *jsontext.Decoder) (map[string]int64, error) {
	return readStringMap(x, d, func() (int64, error) { return ReadInt(d) })
}

func readIntInts(d *jsontext.Decoder) (map[int64]int64, error) {
	return readIntMap(d, func() (int64, error) { return ReadInt(d) })
}

// member is a map member read, before the map is made at its size.
type member[K comparable, V any] struct {
	k K
	v V
}

// readStringMap reads an object into a map (null: nil), each value by val.
func readStringMap[V any](x *JSONDecoder, d *jsontext.Decoder, val func() (V, error)) (map[string]V, error) {
	if d.PeekKind() == 'n' {
		return nil, skip(d)
	}
	var stack [16]member[string, V]
	ms := stack[:0]
	_, err := ReadObject(d, func(name []byte) error {
		k := x.intern(name)
		v, err := val()
		ms = append(ms, member[string, V]{k, v})
		return err
	})
	if err != nil {
		return nil, err
	}
	m := make(map[string]V, len(ms))
	for _, kv := range ms {
		m[kv.k] = kv.v
	}
	return m, nil
}

// readIntMap reads an object whose names are integers into a map (null:
// nil), each value by val.
func readIntMap[V any](d *jsontext.Decoder, val func() (V, error)) (map[int64]V, error) {
	if d.PeekKind() == 'n' {
		return nil, skip(d)
	}
	var stack [64]member[int64, V]
	ms := stack[:0]
	_, err := ReadObject(d, func(name []byte) error {
		k, err := parseInt(name)
		if err != nil {
			return fmt.Errorf("map key: %w", err)
		}
		v, err := val()
		ms = append(ms, member[int64, V]{k, v})
		return err
	})
	if err != nil {
		return nil, err
	}
	m := make(map[int64]V, len(ms))
	for _, kv := range ms {
		m[kv.k] = kv.v
	}
	return m, nil
}

// parseInt parses a decimal integer: digits, after a '-' for a negative
// one, in int64's range (what the encoder writes; strconv.ParseInt, which
// also takes a '+', costs a third of reading a snapshot's counts).
func parseInt(b []byte) (int64, error) {
	neg := len(b) > 0 && b[0] == '-'
	digits := b
	if neg {
		digits = b[1:]
	}
	if len(digits) == 0 || len(digits) > 19 {
		return slowParseInt(b)
	}
	var u uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("integer %.30q: %w", b, strconv.ErrSyntax)
		}
		u = u*10 + uint64(c-'0')
	}
	switch {
	case !neg && u <= 1<<63-1:
		return int64(u), nil
	case neg && u <= 1<<63:
		return -int64(u), nil
	}
	return 0, fmt.Errorf("integer %.30q: %w", b, strconv.ErrRange)
}

func slowParseInt(b []byte) (int64, error) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("integer %.30q: %w", b, err)
	}
	return n, nil
}
