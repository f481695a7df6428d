package tablestore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/kvwatch/kvwatch/internal/state"
)

// Log entries and snapshots are read by hand too (state.JSONDecoder): a
// fresh instance's restore is mostly decoding them, and every catch-up
// decodes the other streams' entries. What is read is what
// jsonv2.Unmarshal made of them before (TestJournalDecoders), with one
// copy of each repeated string.

// reader reads state JSON: a jsontext.Decoder reset for each document and
// a JSONDecoder whose interned strings outlive them.
type reader struct {
	x   state.JSONDecoder
	src bytes.Reader
	d   *jsontext.Decoder
}

func (r *reader) reset(js []byte) *jsontext.Decoder {
	r.src.Reset(js)
	if r.d == nil {
		r.d = jsontext.NewDecoder(&r.src, state.JSONDecodeOptions)
	} else {
		r.d.Reset(&r.src, state.JSONDecodeOptions)
	}
	return r.d
}

// end checks that nothing follows the document's value.
func end(d *jsontext.Decoder) error {
	if _, err := d.ReadToken(); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("data after the value")
		}
		return err
	}
	return nil
}

// items reads a log entry: a JSON array of journalItem.
func (r *reader) items(js []byte) ([]journalItem, error) {
	d := r.reset(js)
	var out []journalItem
	if d.PeekKind() == '[' {
		out = []journalItem{}
	}
	err := readArray(d, func() error {
		var it journalItem
		err := readObject(d, func(name []byte) error {
			var err error
			switch string(name) {
			case "k":
				it.K, err = r.x.ReadKey(d)
			case "d":
				it.D, err = r.x.ReadDelta(d)
			case "x":
				it.Drop, err = readBool(d)
			default:
				err = d.SkipValue()
			}
			return err
		})
		out = append(out, it)
		return err
	})
	if err == nil {
		err = end(d)
	}
	if err != nil {
		return nil, fmt.Errorf("log entry: %w", err)
	}
	return out, nil
}

// snapshot reads a snapshot's JSON (snapshotData).
func (r *reader) snapshot(js []byte) (snapshotData, error) {
	d := r.reset(js)
	var sd snapshotData
	err := readObject(d, func(name []byte) error {
		switch string(name) {
		case "cut":
			if d.PeekKind() == 'n' {
				sd.Cut = nil
				return d.SkipValue()
			}
			sd.Cut = map[string]int64{}
			return readObject(d, func(stream []byte) error {
				v, err := d.ReadValue()
				if err != nil {
					return err
				}
				n, err := strconv.ParseInt(string(v), 10, 64)
				if err != nil {
					return fmt.Errorf("cut of %q: %w", stream, err)
				}
				sd.Cut[string(stream)] = n
				return nil
			})
		case "items":
			sd.Items = nil
			if d.PeekKind() == '[' {
				sd.Items = []snapshotItem{}
			}
			return readArray(d, func() error {
				var it snapshotItem
				err := readObject(d, func(name []byte) error {
					var err error
					switch string(name) {
					case "k":
						it.K, err = r.x.ReadKey(d)
					case "e":
						it.E, err = r.x.ReadEntity(d)
					default:
						err = d.SkipValue()
					}
					return err
				})
				sd.Items = append(sd.Items, it)
				return err
			})
		}
		return d.SkipValue()
	})
	if err == nil {
		err = end(d)
	}
	if err != nil {
		return snapshotData{}, fmt.Errorf("snapshot: %w", err)
	}
	return sd, nil
}

// readObject reads an object (null: nothing), calling member with each
// member's name, which is valid only until the next member.
func readObject(d *jsontext.Decoder, member func(name []byte) error) error {
	tok, err := d.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		return nil
	case '{':
	default:
		return fmt.Errorf("want an object, got %v", tok.Kind())
	}
	var buf []byte
	for d.PeekKind() != '}' {
		name, err := d.ReadValue()
		if err != nil {
			return err
		}
		if bytes.IndexByte(name, '\\') >= 0 {
			if buf, err = jsontext.AppendUnquote(buf[:0], name); err != nil {
				return err
			}
		} else {
			buf = append(buf[:0], name[1:len(name)-1]...)
		}
		if err := member(buf); err != nil {
			return err
		}
	}
	_, err = d.ReadToken()
	return err
}

// readArray reads an array (null: nothing), calling elem for each element.
func readArray(d *jsontext.Decoder, elem func() error) error {
	tok, err := d.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		return nil
	case '[':
	default:
		return fmt.Errorf("want an array, got %v", tok.Kind())
	}
	for d.PeekKind() != ']' {
		if err := elem(); err != nil {
			return err
		}
	}
	_, err = d.ReadToken()
	return err
}

func readBool(d *jsontext.Decoder) (bool, error) {
	tok, err := d.ReadToken()
	if err != nil {
		return false, err
	}
	switch tok.Kind() {
	case 'n', 'f':
		return false, nil
	case 't':
		return true, nil
	}
	return false, fmt.Errorf("want a boolean, got %v", tok.Kind())
}
