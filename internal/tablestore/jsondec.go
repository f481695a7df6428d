package tablestore

import (
	"bytes"
	"errors"
	"fmt"
	"io"

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
	return r.resetFrom(&r.src)
}

// resetFrom points the decoder at src.
func (r *reader) resetFrom(src io.Reader) *jsontext.Decoder {
	if r.d == nil {
		r.d = jsontext.NewDecoder(src, state.JSONDecodeOptions)
	} else {
		r.d.Reset(src, state.JSONDecodeOptions)
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
	out, err := state.ReadList(d, func() (journalItem, error) {
		var it journalItem
		_, err := state.ReadObject(d, func(name []byte) error {
			var err error
			switch string(name) {
			case "k":
				it.K, err = r.x.ReadKey(d)
			case "d":
				it.D, err = r.x.ReadDelta(d)
			case "x":
				it.Drop, err = state.ReadBool(d)
			default:
				err = d.SkipValue()
			}
			return err
		})
		return it, err
	})
	if err == nil {
		err = end(d)
	}
	if err != nil {
		return nil, fmt.Errorf("log entry: %w", err)
	}
	return out, nil
}

// snapshot reads a snapshot's JSON (snapshotData) from src as it goes: a
// restore decodes a snapshot while it inflates it, never holding the whole
// JSON (tens of megabytes from three compressed) at once.
func (r *reader) snapshot(src io.Reader) (snapshotData, error) {
	d := r.resetFrom(src)
	var sd snapshotData
	_, err := state.ReadObject(d, func(name []byte) error {
		var err error
		switch string(name) {
		case "cut":
			sd.Cut, err = r.x.ReadStringInts(d)
		case "items":
			sd.Items, err = state.ReadList(d, func() (snapshotItem, error) {
				var it snapshotItem
				_, err := state.ReadObject(d, func(name []byte) error {
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
				return it, err
			})
		case "tombs":
			sd.Tombs, err = state.ReadList(d, func() (snapshotTomb, error) {
				var t snapshotTomb
				_, err := state.ReadObject(d, func(name []byte) error {
					var err error
					switch string(name) {
					case "k":
						t.K, err = r.x.ReadKey(d)
					case "t":
						t.At, err = state.ReadInt(d)
					default:
						err = d.SkipValue()
					}
					return err
				})
				return t, err
			})
		default:
			err = d.SkipValue()
		}
		return err
	})
	if err == nil {
		err = end(d)
	}
	if err != nil {
		return snapshotData{}, fmt.Errorf("snapshot: %w", err)
	}
	return sd, nil
}
