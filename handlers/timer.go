package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// TimerInfo is what the host says about a timer invocation: Data.<binding>
// = {"Schedule": {"AdjustForDST": bool}, "ScheduleStatus": {"Last", "Next",
// "LastUpdated"} or null, "IsPastDue": bool}.
type TimerInfo struct {
	Schedule struct {
		AdjustForDST bool `json:"AdjustForDST"`
	} `json:"Schedule"`
	ScheduleStatus *struct {
		Last        time.Time `json:"Last"`
		Next        time.Time `json:"Next"`
		LastUpdated time.Time `json:"LastUpdated"`
	} `json:"ScheduleStatus"`
	IsPastDue bool `json:"IsPastDue"`
}

// TimerFunc runs a timer function; its lines go to the host's Logs. An
// error answers 500 (the host logs a failed run; the next tick tries again).
type TimerFunc func(ctx context.Context, info TimerInfo) (logs []string, err error)

func (h *Handler) timer(name string, fn TimerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		log := h.log.With().Str("function", name).
			Str("invocation_id", r.Header.Get("X-Azure-Functions-InvocationId")).Logger()
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, "timer invocation body too large")
			return
		}
		var inv struct {
			Data map[string]json.RawMessage `json:"Data"`
		}
		var info TimerInfo
		var problems []string
		if err := json.Unmarshal(body, &inv); err != nil {
			problems = append(problems, "kvwatch: timer invocation body is not JSON; running anyway")
		}
		for _, v := range inv.Data { // one binding: "timer"
			if err := json.Unmarshal(v, &info); err != nil {
				problems = append(problems, "kvwatch: timer info unreadable; running anyway")
			}
		}
		if info.IsPastDue {
			log.Warn().Msg("timer is past due")
		}
		start := h.cfg.Now()
		logs, err := fn(r.Context(), info)
		if err != nil {
			log.Error().Err(err).Msg("timer function failed")
			writeError(w, http.StatusInternalServerError, name+" failed; see the log")
			return
		}
		logs = append(append(problems, logs...), fmt.Sprintf("kvwatch: %s done in %s", name, h.cfg.Now().Sub(start).Round(time.Millisecond)))
		writeResponse(w, logs)
	}
}
