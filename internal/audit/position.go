package audit

import "strings"

// Position returns the input stream a record was read from and its
// position in that stream: what state uses to apply input exactly once.
// It is the only place a stream key is made; detect, stats, the
// duplicate filter and the stores all call it (or Streams.Position, which
// returns the same and allocates less).
//
// An Event Hubs record's stream is its partition of one event hub:
// "p:<namespace>/<hub>/<partition>" (namespace and hub lower-cased, since
// Event Hubs names are case-insensitive), its position the event's
// sequence number; the consumer group is not part of it, since every
// group reads the same events. When the input did not name the namespace
// and hub, the stream is "p:<partition>". State written by versions
// before the namespace and hub were part of the key holds "p:<partition>"
// marks, which the new key does not match: a redelivery spanning that
// upgrade may be counted once more.
//
// A file's stream is "f:<path>", its position the 1-based line (JSON
// Lines) or the event's index in the file. Records of one event share a
// position: an event is always applied whole. A source with neither
// gives ("", 0).
func (s *Source) Position() (stream string, pos int64) {
	k, pos := s.kind()
	return s.stream(k), pos
}

func (s *Source) kind() (byte, int64) {
	switch {
	case s.HasSequence:
		return 'p', s.Sequence
	case s.File != "" && s.Line > 0:
		return 'f', int64(s.Line)
	case s.File != "":
		return 'f', int64(s.Event)
	}
	return 0, 0
}

func (s *Source) stream(kind byte) string {
	switch kind {
	case 'p':
		if s.Namespace == "" && s.Hub == "" {
			return "p:" + s.Partition
		}
		return "p:" + strings.ToLower(s.Namespace) + "/" + strings.ToLower(s.Hub) + "/" + s.Partition
	case 'f':
		return "f:" + s.File
	}
	return ""
}

// Streams returns what Source.Position returns, reusing the stream string
// while consecutive sources name the same stream (a batch is one
// partition or one file), so that a batch makes it once. Its zero value
// is ready; it is not safe for concurrent use.
type Streams struct {
	kind                 byte
	namespace, hub, name string
	stream               string
}

// Position returns s.Position().
func (c *Streams) Position(s *Source) (stream string, pos int64) {
	k, pos := s.kind()
	if k == 0 {
		return "", 0
	}
	name := s.Partition
	if k == 'f' {
		name = s.File
	}
	if k != c.kind || name != c.name || s.Namespace != c.namespace || s.Hub != c.hub || c.stream == "" {
		c.kind, c.name, c.namespace, c.hub = k, name, s.Namespace, s.Hub
		c.stream = s.stream(k)
	}
	return c.stream, pos
}
