package handlers

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/pipeline"
)

// trickle yields a few bytes and then ends, however much was announced.
type trickle struct{ left int }

func (t *trickle) Read(p []byte) (int, error) {
	if t.left == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n := min(len(p), t.left)
	for i := range n {
		p[i] = 'x'
	}
	t.left -= n
	return n, nil
}

// The buffer grows with what arrives, never with the announced length.
func TestReadBodyAllocatesWhatArrives(t *testing.T) {
	for _, c := range []struct {
		announced int64
		sent      int
		maxCap    int
	}{
		{64 << 20, 10, firstChunk},       // announces 64 MiB, sends 10 bytes
		{64 << 20, 200 << 10, 512 << 10}, // sends 200 KiB: the buffer doubles as it fills
		{-1, 10, firstChunk},             // no length announced
		{100, 100, 101},                  // small and honest: one small allocation
	} {
		r := httptest.NewRequest(http.MethodPost, "/AuditEvents", &trickle{left: c.sent})
		r.ContentLength = c.announced
		body, err := readBody(httptest.NewRecorder(), r, DefaultMaxBody, time.Second)
		if len(body) != c.sent {
			t.Errorf("announced %d, sent %d: read %d (%v)", c.announced, c.sent, len(body), err)
		}
		if cap(body) > c.maxCap {
			t.Errorf("announced %d, sent %d: buffer of %d bytes, want at most %d", c.announced, c.sent, cap(body), c.maxCap)
		}
	}
}

type nopProc struct{}

func (nopProc) Process(context.Context, *ingest.Batch) (pipeline.Summary, error) {
	return pipeline.Summary{}, nil
}

// A client that announces a large body and stalls is cut off at the read
// deadline: it holds neither a goroutine nor memory beyond it.
func TestSlowClientHitsTheReadDeadline(t *testing.T) {
	h := New(Config{BodyTimeout: 300 * time.Millisecond}, nopProc{}, zerolog.Nop())
	srv := httptest.NewServer(h)
	defer srv.Close()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "POST /AuditEvents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"Data\":", 64<<20)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError {
			t.Errorf("status %d, want 500 (retry)", resp.StatusCode)
		}
	}
	// Answered or closed: either way, not held.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the stalled body was waited for %s", d)
	}
}
