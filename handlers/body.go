package handlers

import (
	"io"
	"net/http"
	"time"

	"github.com/kvwatch/kvwatch/internal/deadletter"
)

// DefaultBodyTimeout bounds reading one invocation body. The host sends
// over loopback: even DefaultMaxBody takes well under a second.
const DefaultBodyTimeout = time.Minute

// firstChunk is the most readBody allocates before any byte has arrived,
// whatever length the request announces.
const firstChunk = 64 << 10

// readBody reads the body as it arrives, the buffer growing with what was
// read, never with what Content-Length announces (a client announcing 64
// MiB and sending a byte a second holds a few kilobytes, and only until
// the read deadline, timeout from now, ends the read). A body announced
// larger than the limit is not read beyond what a dead letter keeps; the
// connection is closed after the answer.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, timeout time.Duration) ([]byte, error) {
	if timeout > 0 {
		// Not every ResponseWriter can (a test recorder): then there is
		// no connection to hold either.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
	}
	if r.ContentLength > limit {
		head, _ := io.ReadAll(io.LimitReader(r.Body, deadletter.MaxRaw))
		w.Header().Set("Connection", "close")
		return head, &http.MaxBytesError{Limit: limit}
	}
	size := int64(firstChunk)
	if r.ContentLength >= 0 && r.ContentLength < size {
		size = r.ContentLength + 1 // +1: room to see EOF without growing
	}
	buf := make([]byte, 0, size)
	body := http.MaxBytesReader(w, r.Body, limit)
	for {
		if len(buf) == cap(buf) {
			// Double: append grows a slice this large by a quarter, and a
			// 2 MB body cost some 10 MB allocated, cleared and copied (6% of
			// a Table-state handler's CPU, profiled). The buffer stays
			// within twice what has arrived.
			nb := make([]byte, len(buf), 2*cap(buf))
			copy(nb, buf)
			buf = nb
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
