// Package deadletter keeps the input kvwatch could not use, with where it
// came from, so that nothing is silently lost: a record that does not parse,
// an event body that is not JSON, an invocation that is not one.
package deadletter

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"
)

// MaxRaw bounds the raw bytes kept in one letter; longer input is cut and
// Truncated says how long it was.
const MaxRaw = 1 << 20

// Letter is one piece of input that could not be used.
type Letter struct {
	At     time.Time `json:"at"`     // when it was dead-lettered
	Reason string    `json:"reason"` // why, one line

	// Where it came from: Event Hubs partition and sequence number, or a
	// file and line; Event and Record index within the invocation/file and
	// the event body (-1 when the letter covers more than one).
	Partition   string `json:"partition,omitempty"`
	Sequence    int64  `json:"sequence,omitempty"`
	HasSequence bool   `json:"hasSequence,omitempty"`
	File        string `json:"file,omitempty"`
	Line        int    `json:"line,omitempty"`
	Event       int    `json:"event"`
	Record      int    `json:"record"`

	// Raw is the input itself, as text when it is valid UTF-8 and base64 in
	// RawBase64 when it is not.
	Raw       string `json:"raw,omitempty"`
	RawBase64 []byte `json:"rawBase64,omitempty"`
	// Size is the length of the original input; when it exceeds MaxRaw the
	// raw bytes kept are its beginning and Truncated is set.
	Size      int  `json:"size"`
	Truncated bool `json:"truncated,omitempty"`
}

// SetRaw stores raw input in the letter, cut to MaxRaw.
func (l *Letter) SetRaw(b []byte) {
	l.Size = len(b)
	if len(b) > MaxRaw {
		b = b[:MaxRaw]
		l.Truncated = true
	}
	if utf8.Valid(b) {
		l.Raw = string(b)
		return
	}
	l.RawBase64 = append([]byte(nil), b...)
}

// Bytes returns the raw input the letter holds.
func (l *Letter) Bytes() []byte {
	if l.RawBase64 != nil {
		return l.RawBase64
	}
	return []byte(l.Raw)
}

// Sink stores letters. Put either stores all of them or returns an error.
type Sink interface {
	Put(ctx context.Context, letters []Letter) error
}

// File appends letters as JSON Lines to a local file.
type File struct {
	mu   sync.Mutex
	path string
}

// NewFile returns a sink appending to path; the file and its directory are
// created on the first letter.
func NewFile(path string) *File { return &File{path: path} }

// Put implements Sink.
func (f *File) Put(_ context.Context, letters []Letter) error {
	if len(letters) == 0 {
		return nil
	}
	var buf []byte
	for i := range letters {
		b, err := json.Marshal(&letters[i])
		if err != nil {
			return fmt.Errorf("dead letter: encode: %w", err)
		}
		buf = append(append(buf, b...), '\n')
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if dir := filepath.Dir(f.path); dir != "." {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("dead letter: %w", err)
		}
	}
	fh, err := os.OpenFile(f.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	if _, err := fh.Write(buf); err != nil {
		fh.Close()
		return fmt.Errorf("dead letter: write %s: %w", f.path, err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("dead letter: close %s: %w", f.path, err)
	}
	return nil
}

// Memory keeps letters in memory (tests, replay without a file).
type Memory struct {
	mu      sync.Mutex
	letters []Letter
}

// Put implements Sink.
func (m *Memory) Put(_ context.Context, letters []Letter) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.letters = append(m.letters, letters...)
	return nil
}

// Letters returns a copy of what was put so far.
func (m *Memory) Letters() []Letter {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Letter(nil), m.letters...)
}
