package handlers

import (
	"net/http"
	"sync"
)

// Starting is the process's handler from the moment the listener opens:
// it answers the host's readiness probe (GET /) at once, while the runtime
// (configuration, rules, Table Storage clients and tables) is still being
// wired, and holds invocations until it is ready, then hands every request
// to it. The host waits at most 30 s for the first answer and every
// scale-out pays this wait, so nothing is on that path that need not be.
// Only loopback callers are served, as by Handler.
type Starting struct {
	ready chan struct{}
	once  sync.Once
	h     http.Handler // set before ready closes; nil: the start failed
}

// NewStarting returns a Starting handler that holds invocations until
// Ready or Fail is called.
func NewStarting() *Starting { return &Starting{ready: make(chan struct{})} }

// Ready hands every request from now on, and those waiting, to h.
func (s *Starting) Ready(h http.Handler) {
	s.once.Do(func() { s.h = h; close(s.ready) })
}

// Fail answers the invocations waiting, and any that come until the
// process exits, with 503: the runtime could not be wired.
func (s *Starting) Fail() { s.once.Do(func() { close(s.ready) }) }

// ServeHTTP implements http.Handler.
func (s *Starting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !fromLoopback(r.RemoteAddr) {
		writeError(w, http.StatusForbidden, "only the local Functions host may call this handler")
		return
	}
	select {
	case <-s.ready:
	default:
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.URL.Path == "/" {
			writeReady(w)
			return
		}
		select {
		case <-s.ready:
		case <-r.Context().Done():
			writeError(w, http.StatusServiceUnavailable, "kvwatch is still starting")
			return
		}
	}
	if s.h == nil {
		writeError(w, http.StatusServiceUnavailable, "kvwatch could not start; see its log")
		return
	}
	s.h.ServeHTTP(w, r)
}
