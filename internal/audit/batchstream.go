package audit

// BatchStream returns the input stream of a batch: that of its first event
// with a position ("" if none has one). A store that logs state per stream
// (tablestore.Journal) writes a batch's changes to that stream's log.
func BatchStream(events []Event) string {
	for i := range events {
		if s, _ := events[i].Source.Position(); s != "" {
			return s
		}
	}
	return ""
}
