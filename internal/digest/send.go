package digest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/notify"
)

// Sender is a receiver that takes digests. The receivers built from the
// configuration (internal/receiver) implement it beside
// delivery.Notifier, each rendering the report in its own form (card,
// HTML mail, JSON, text); a receiver that does not is skipped.
type Sender interface {
	SendDigest(ctx context.Context, r *Report) error
}

// Digests are routed as a synthetic alert: rule "digest", severity info,
// tag "digest", no vault. A route with rules: [digest] or tags: [digest]
// picks the receivers of digests; with no routes, every receiver gets
// them.
const (
	RouteRule = "digest"
	RouteTag  = "digest"
)

// ID names a digest: period and the local date it starts, e.g.
// "daily-2026-11-23". Receivers send it as an idempotency key.
func ID(r *Report) string { return id(r.Period, r.Start) }

func id(p Period, start time.Time) string { return string(p) + "-" + start.Format(time.DateOnly) }

// RouteAlert is what routes see of a digest.
func RouteAlert() *alert.Alert {
	return &alert.Alert{Schema: alert.SchemaVersion, Rule: RouteRule, Title: "kvwatch digest", Severity: finding.Info,
		Tags: []string{RouteTag}}
}

// Target is a routed receiver that takes digests.
type Target struct {
	Name   string
	Sender Sender
}

// Targets returns the receivers routes pick for digests: those that take
// digests (implement Sender), in route order, and the names of those that
// do not.
func Targets(routes []delivery.Route, receivers map[string]delivery.Notifier) (targets []Target, skipped []string) {
	all := slices.Sorted(maps.Keys(receivers))
	for _, name := range delivery.Routes(routes, RouteAlert(), all) {
		s, ok := receivers[name].(Sender)
		if !ok {
			skipped = append(skipped, name)
			continue
		}
		targets = append(targets, Target{Name: name, Sender: s})
	}
	return targets, skipped
}

// SendNow sends a digest at once (kvwatch digest --send) to the receivers
// routes pick for digests, once each, with no claim, and says on w what
// each answered. Receivers that cannot take digests are skipped; no
// receiver at all, or a failed send, is an error.
func SendNow(ctx context.Context, r *Report, routes []delivery.Route, receivers map[string]delivery.Notifier, w io.Writer) error {
	id := ID(r)
	targets, skipped := Targets(routes, receivers)
	for _, name := range skipped {
		fmt.Fprintf(w, "digest %s: receiver %s does not take digests, skipped\n", id, name)
	}
	if len(targets) == 0 {
		return fmt.Errorf("digest %s: no receiver takes digests (route them with rules: [digest] or tags: [digest])", id)
	}
	var errs []error
	for _, t := range targets {
		if err := t.Sender.SendDigest(ctx, r); err != nil {
			msg := notify.Redact(err.Error())
			fmt.Fprintf(w, "digest %s: sending to %s failed: %s\n", id, t.Name, msg)
			errs = append(errs, fmt.Errorf("%s: %s", t.Name, msg))
			continue
		}
		fmt.Fprintf(w, "digest %s: sent to %s\n", id, t.Name)
	}
	if len(errs) > 0 {
		return fmt.Errorf("digest %s not sent everywhere: %w", id, errors.Join(errs...))
	}
	return nil
}
