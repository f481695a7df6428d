package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/handlers"
	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/digest"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/notify"
	"github.com/kvwatch/kvwatch/internal/notify/email"
	stdoutnotify "github.com/kvwatch/kvwatch/internal/notify/stdout"
	"github.com/kvwatch/kvwatch/internal/notify/teams"
	"github.com/kvwatch/kvwatch/internal/notify/webhook"
	"github.com/kvwatch/kvwatch/internal/state"
)

// Digests are routed as a synthetic alert: rule "digest", severity info,
// tag "digest", no vault. A route with rules: [digest] or tags: [digest]
// picks the receivers of digests; with no routes, every receiver gets
// them.
const (
	digestRule = "digest"
	digestTag  = "digest"
)

// digestHour is the local hour from which a period's digest is due: every
// day for the daily digest, Mondays for the weekly, the 1st for the
// monthly. A run later that day catches up.
const digestHour = 8

// digestSentRule keys the state entity that records, per period, the
// receivers a digest reached: a retry after a partial failure sends only
// to the others.
const digestSentRule = "_digest_sent"

// digestSender is a receiver that takes digests.
type digestSender interface {
	SendDigest(ctx context.Context, r *digest.Report) error
}

// digestSendFunc adapts a function to digestSender.
type digestSendFunc func(ctx context.Context, r *digest.Report) error

func (f digestSendFunc) SendDigest(ctx context.Context, r *digest.Report) error { return f(ctx, r) }

// digestID names a digest: period and the local date it starts, e.g.
// "daily-2026-11-23".
func digestID(r *digest.Report) string {
	return string(r.Period) + "-" + r.Start.Format(time.DateOnly)
}

// digestSenderOf returns how a receiver takes digests, if it does. The
// receivers take the digest rendered (internal/digest depends on their
// packages through delivery and config); this is where it is rendered
// for each.
func digestSenderOf(n delivery.Notifier) (digestSender, bool) {
	switch x := n.(type) {
	case digestSender:
		return x, true
	case *teams.Notifier:
		return digestSendFunc(func(ctx context.Context, r *digest.Report) error {
			return x.SendDigest(ctx, teams.Digest{ID: digestID(r), Card: digest.Card(r)})
		}), true
	case *email.Notifier:
		return digestSendFunc(func(ctx context.Context, r *digest.Report) error {
			html, err := digest.HTML(r)
			if err != nil {
				return notify.Wrap("email "+x.Name(), notify.Permanent(fmt.Errorf("render digest %s: %w", digestID(r), err)))
			}
			png, err := digest.ChartPNG(r)
			if err != nil {
				return notify.Wrap("email "+x.Name(), notify.Permanent(fmt.Errorf("draw digest %s chart: %w", digestID(r), err)))
			}
			return x.SendDigest(ctx, email.Digest{ID: digestID(r), Period: string(r.Period), Label: digest.PeriodLabel(r),
				Text: digest.Text(r), HTML: html, Chart: png, ChartCID: digest.ChartCID})
		}), true
	case *webhook.Notifier:
		return digestSendFunc(func(ctx context.Context, r *digest.Report) error {
			b, err := digestJSON(r)
			if err != nil {
				return notify.Permanent(fmt.Errorf("encode digest %s: %w", digestID(r), err))
			}
			return x.SendDigest(ctx, webhook.Digest{ID: digestID(r), JSON: b})
		}), true
	case *stdoutnotify.Notifier:
		return digestSendFunc(func(ctx context.Context, r *digest.Report) error {
			b, err := digestJSON(r)
			if err != nil {
				return notify.Permanent(fmt.Errorf("encode digest %s: %w", digestID(r), err))
			}
			return x.SendDigest(ctx, stdoutnotify.Digest{Text: digest.Text(r), JSON: b})
		}), true
	}
	return nil, false
}

// digestAlert is what routes see of a digest.
func digestAlert() *alert.Alert {
	return &alert.Alert{Schema: alert.SchemaVersion, Rule: digestRule, Title: "kvwatch digest", Severity: finding.Info,
		Tags: []string{digestTag}}
}

// digestTarget is a routed receiver that takes digests.
type digestTarget struct {
	Name   string
	Sender digestSender
}

// digestTargets returns the receivers routes pick for digests: those that
// take digests, in route order, and the names of those that do not.
func digestTargets(routes []delivery.Route, receivers map[string]delivery.Notifier) (targets []digestTarget, skipped []string) {
	all := slices.Sorted(maps.Keys(receivers))
	for _, name := range delivery.Routes(routes, digestAlert(), all) {
		n, ok := receivers[name]
		if !ok {
			skipped = append(skipped, name)
			continue
		}
		s, ok := digestSenderOf(n)
		if !ok {
			skipped = append(skipped, name)
			continue
		}
		targets = append(targets, digestTarget{Name: name, Sender: s})
	}
	return targets, skipped
}

// digestDue reports whether a period's digest is due at local (a time in
// the configured zone): from digestHour, every day (daily), on Mondays
// (weekly), on the 1st (monthly).
func digestDue(p digest.Period, local time.Time) bool {
	if local.Hour() < digestHour {
		return false
	}
	switch p {
	case digest.Weekly:
		return local.Weekday() == time.Monday
	case digest.Monthly:
		return local.Day() == 1
	}
	return true
}

func digestSentKey(p digest.Period, start time.Time) state.Key {
	return state.Key{Rule: digestSentRule, Group: string(p), Block: start.Unix()}
}

// digestSentTo returns the receivers a period's digest already reached.
func digestSentTo(ctx context.Context, store state.Store, p digest.Period, start time.Time) (map[string]bool, error) {
	k := digestSentKey(p, start)
	got, err := store.Get(ctx, []state.Key{k})
	if err != nil {
		return nil, err
	}
	done := map[string]bool{}
	if e := got[k]; e != nil {
		for name := range e.Tally {
			done[name] = true
		}
	}
	return done, nil
}

// markDigestSent records that a period's digest reached a receiver.
func markDigestSent(ctx context.Context, store state.Store, p digest.Period, start time.Time, name string) error {
	_, err := store.Update(ctx, []state.Key{digestSentKey(p, start)}, func(_ state.Key, e *state.Entity) bool {
		if e.Tally[name] > 0 {
			return false
		}
		if e.Tally == nil {
			e.Tally = map[string]int64{}
		}
		e.Tally[name] = 1
		return true
	})
	return err
}

// digestTimer is the Digest timer function. It runs hourly; in zone, the
// daily digest (of the previous day) is due every day from 08:00, the
// weekly (of the previous Monday–Sunday) on Mondays from 08:00, the
// monthly (of the previous month) on the 1st from 08:00; a run missed at
// 08:00 catches up later that day. For each digest due, digest.OnceAt
// claims it with a lease (however many timers and instances run at once,
// one sends; a run that dies holding it leaves it to a run after the
// lease) and digest.Done records it sent;
// it is computed and sent to the receivers routes pick for digests
// (receivers that cannot take digests are skipped, and said so). When a
// send fails, the claim is released so the next run retries, and only to
// the receivers that did not get it. The lines returned say what was
// sent.
func digestTimer(store state.Store, outbox delivery.Outbox, receivers map[string]delivery.Notifier, routes []delivery.Route,
	zone *time.Location, now func() time.Time, log zerolog.Logger) handlers.TimerFunc {
	if zone == nil {
		zone = time.UTC
	}
	if now == nil {
		now = time.Now
	}
	return func(ctx context.Context, _ handlers.TimerInfo) ([]string, error) {
		at := now()
		local := at.In(zone)
		var lines []string
		var errs []error
		for _, p := range []digest.Period{digest.Daily, digest.Weekly, digest.Monthly} {
			if !digestDue(p, local) {
				continue
			}
			l, err := runDigest(ctx, store, outbox, receivers, routes, zone, p, at, log)
			lines = append(lines, l...)
			if err != nil {
				errs = append(errs, err)
			}
		}
		if len(lines) == 0 && len(errs) == 0 {
			lines = append(lines, fmt.Sprintf("kvwatch: digest: nothing due at %s %s (daily from %02d:00, weekly on Mondays, monthly on the 1st)",
				local.Format("Mon 2006-01-02 15:04"), zone, digestHour))
		}
		return lines, errors.Join(errs...)
	}
}

// runDigest claims, computes and sends one period's digest.
func runDigest(ctx context.Context, store state.Store, outbox delivery.Outbox, receivers map[string]delivery.Notifier,
	routes []delivery.Route, zone *time.Location, p digest.Period, at time.Time, log zerolog.Logger) ([]string, error) {
	start, _ := digest.Bounds(p, at, zone)
	id := string(p) + "-" + start.Format(time.DateOnly)
	prefix := "kvwatch: digest " + id + ": "
	// The claim is leased: a run that dies before it sends or releases
	// holds the period only until the lease runs out, then a later run
	// sends it.
	first, err := digest.OnceAt(ctx, store, p, start, at, digest.DefaultLease)
	if err != nil {
		return nil, err
	}
	if !first {
		return []string{prefix + "already sent (or being sent by another run)"}, nil
	}
	var lines []string
	targets, skipped := digestTargets(routes, receivers)
	for _, name := range skipped {
		lines = append(lines, prefix+"receiver "+name+" does not take digests, skipped")
		log.Warn().Str("digest", id).Str("receiver", name).Msg("receiver does not take digests, skipped")
	}
	if len(targets) == 0 {
		lines = append(lines, prefix+"no receiver takes digests (route them with rules: [digest] or tags: [digest]); not sent")
		log.Warn().Str("digest", id).Msg("no receiver takes digests; not sent")
		return lines, digest.Done(ctx, store, p, start)
	}
	release := func(cause error) error {
		if err := digest.Release(ctx, store, p, start); err != nil {
			return errors.Join(cause, err)
		}
		return cause
	}
	r, err := digest.Compute(ctx, store, outbox, p, at, zone)
	if err != nil {
		return lines, release(err)
	}
	done, err := digestSentTo(ctx, store, p, start)
	if err != nil {
		return lines, release(fmt.Errorf("digest %s: read the receivers it reached: %w", id, err))
	}
	var failed []error
	for _, t := range targets {
		if done[t.Name] {
			lines = append(lines, prefix+"already sent to "+t.Name)
			continue
		}
		if err := t.Sender.SendDigest(ctx, r); err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", t.Name, err))
			lines = append(lines, prefix+"sending to "+t.Name+" failed: "+notify.Redact(err.Error()))
			log.Error().Str("digest", id).Str("receiver", t.Name).Str("error", notify.Redact(err.Error())).Msg("digest not sent; the next run retries")
			continue
		}
		lines = append(lines, prefix+"sent to "+t.Name)
		log.Info().Str("digest", id).Str("receiver", t.Name).Msg("digest sent")
		if err := markDigestSent(ctx, store, p, start, t.Name); err != nil {
			// Sent, but not recorded: a retry could send it to this
			// receiver again.
			failed = append(failed, fmt.Errorf("%s: sent, but not recorded: %w", t.Name, err))
		}
	}
	if len(failed) > 0 {
		return lines, release(fmt.Errorf("digest %s: released for the next run: %w", id, errors.Join(failed...)))
	}
	return lines, digest.Done(ctx, store, p, start)
}

// --- the JSON form (webhook body, stdout json) ----------------------------

// The JSON form of a digest, webhook.DigestSchemaVersion. Values from log
// records are as logged.
type (
	digestDoc struct {
		Schema            string          `json:"schema"`
		ID                string          `json:"id"`
		Period            string          `json:"period"`
		Title             string          `json:"title"`
		Start             time.Time       `json:"start"`
		End               time.Time       `json:"end"`
		Zone              string          `json:"zone"`
		Generated         time.Time       `json:"generated"`
		Overall           digestSummary   `json:"overall"`
		Vaults            []digestSummary `json:"vaults"`
		Findings          []digestFinding `json:"findings"`
		FindingsTruncated bool            `json:"findingsTruncated,omitempty"`
		Chart             digestChart     `json:"chart"`
		Trend             *digestTrend    `json:"trend,omitempty"`
		Compliance        []digestCompl   `json:"compliance,omitempty"`
		Notes             []string        `json:"notes,omitempty"`
	}
	digestSummary struct {
		Vault              string           `json:"vault,omitempty"`
		Requests           int64            `json:"requests"`
		Success            int64            `json:"success"`
		Denied             int64            `json:"denied"`
		Challenges         int64            `json:"challenges"`
		SuccessRatio       float64          `json:"successRatio"`
		AvgLatencyMs       float64          `json:"avgLatencyMs"`
		P95LatencyMs       float64          `json:"p95LatencyMs"`
		Families           []digestFamily   `json:"families,omitempty"`
		DistinctCallers    int              `json:"distinctCallers"`
		CallersAtLeast     bool             `json:"callersAtLeast,omitempty"`
		NewIdentities      []digestIdentity `json:"newIdentities,omitempty"`
		NewIdentitiesCount int              `json:"newIdentitiesCount"`
		WatchedSince       time.Time        `json:"watchedSince,omitzero"`
		DeniedCallers      []digestTop      `json:"deniedCallers,omitempty"`
		DeniedIPs          []digestTop      `json:"deniedIps,omitempty"`
		SecretReads        int64            `json:"secretReads"`
		Secrets            []digestSecret   `json:"secrets,omitempty"`
		Changes            []digestChange   `json:"changes,omitempty"`
		ChangesCount       int64            `json:"changesCount"`
		FindingsBySeverity map[string]int   `json:"findingsBySeverity,omitempty"`
		FindingsCount      int              `json:"findingsCount"`
	}
	digestFamily struct {
		Family   string `json:"family"`
		Requests int64  `json:"requests"`
		Success  int64  `json:"success"`
		Denied   int64  `json:"denied"`
	}
	digestTop struct {
		Key    string   `json:"key"`
		Name   string   `json:"name,omitempty"`
		Vault  string   `json:"vault,omitempty"`
		Vaults []string `json:"vaults,omitempty"`
		Count  int64    `json:"count"`
	}
	digestSecret struct {
		Vault   string      `json:"vault"`
		Name    string      `json:"name"`
		Reads   int64       `json:"reads"`
		Readers []digestTop `json:"readers,omitempty"`
	}
	digestIdentity struct {
		Vault string    `json:"vault"`
		Key   string    `json:"key"`
		Name  string    `json:"name,omitempty"`
		First time.Time `json:"first"`
	}
	digestChange struct {
		Vault      string             `json:"vault"`
		Time       time.Time          `json:"time"`
		Operation  string             `json:"operation"`
		What       string             `json:"what"`
		Outcome    string             `json:"outcome"`
		Caller     string             `json:"caller,omitempty"`
		CallerName string             `json:"callerName,omitempty"`
		IP         string             `json:"ip,omitempty"`
		Config     *audit.VaultConfig `json:"config,omitempty"`
		Details    []string           `json:"details,omitempty"`
	}
	digestFinding struct {
		Raised     time.Time        `json:"raised"`
		FirstEvent time.Time        `json:"firstEvent"`
		Severity   finding.Severity `json:"severity"`
		Rule       string           `json:"rule"`
		Title      string           `json:"title"`
		Vault      string           `json:"vault,omitempty"`
		Summary    string           `json:"summary"`
		Count      int64            `json:"count"`
		AlertID    string           `json:"alertId,omitempty"`
		MutedBy    string           `json:"mutedBy,omitempty"`
		Delivery   []digestDelivery `json:"delivery,omitempty"`
	}
	digestDelivery struct {
		Receiver  string `json:"receiver"`
		State     string `json:"state"`
		Attempts  int    `json:"attempts,omitempty"`
		LastError string `json:"lastError,omitempty"`
	}
	digestChart struct {
		Unit   string              `json:"unit"`
		Slots  []time.Time         `json:"slots"`
		Series []digestChartSeries `json:"series"`
	}
	digestChartSeries struct {
		Vault  string  `json:"vault"`
		Counts []int64 `json:"counts"`
	}
	digestTrend struct {
		PrevStart time.Time          `json:"prevStart"`
		PrevEnd   time.Time          `json:"prevEnd"`
		Previous  digestSummary      `json:"previous"`
		Vaults    []digestVaultTrend `json:"vaults,omitempty"`
	}
	digestVaultTrend struct {
		Vault        string `json:"vault"`
		Requests     int64  `json:"requests"`
		PrevRequests int64  `json:"prevRequests"`
		Denied       int64  `json:"denied"`
		PrevDenied   int64  `json:"prevDenied"`
	}
	digestCompl struct {
		Vault    string             `json:"vault"`
		Known    bool               `json:"known"`
		AsOf     time.Time          `json:"asOf,omitzero"`
		By       string             `json:"by,omitempty"`
		Config   *audit.VaultConfig `json:"config,omitempty"`
		Problems []string           `json:"problems,omitempty"`
	}
)

// digestJSON encodes a digest as webhook.DigestSchemaVersion.
func digestJSON(r *digest.Report) ([]byte, error) {
	d := digestDoc{
		Schema: webhook.DigestSchemaVersion, ID: digestID(r), Period: string(r.Period), Title: digest.Title(r),
		Start: r.Start, End: r.End, Zone: r.Zone, Generated: r.Generated,
		Overall: summaryJSON(&r.Overall), FindingsTruncated: r.FindingsTruncated, Notes: r.Notes,
		Vaults: []digestSummary{}, Findings: []digestFinding{},
		Chart: digestChart{Unit: r.Chart.Unit, Slots: r.Chart.Slots, Series: []digestChartSeries{}},
	}
	for i := range r.Vaults {
		d.Vaults = append(d.Vaults, summaryJSON(&r.Vaults[i]))
	}
	for _, f := range r.Findings {
		df := digestFinding{Raised: f.Raised, FirstEvent: f.FirstEvent, Severity: f.Severity, Rule: f.Rule, Title: f.Title,
			Vault: f.Vault, Summary: f.Summary, Count: f.Count, AlertID: f.AlertID, MutedBy: f.MutedBy}
		for _, dl := range f.Delivery {
			df.Delivery = append(df.Delivery, digestDelivery{Receiver: dl.Receiver, State: string(dl.State), Attempts: dl.Attempts, LastError: dl.LastError})
		}
		d.Findings = append(d.Findings, df)
	}
	for _, s := range r.Chart.Series {
		d.Chart.Series = append(d.Chart.Series, digestChartSeries{Vault: s.Vault, Counts: s.Counts})
	}
	if t := r.Trend; t != nil {
		dt := &digestTrend{PrevStart: t.PrevStart, PrevEnd: t.PrevEnd, Previous: summaryJSON(&t.Previous)}
		for _, v := range t.Vaults {
			dt.Vaults = append(dt.Vaults, digestVaultTrend{Vault: v.Vault, Requests: v.Requests, PrevRequests: v.PrevRequests,
				Denied: v.Denied, PrevDenied: v.PrevDenied})
		}
		d.Trend = dt
	}
	for _, c := range r.Compliance {
		dc := digestCompl{Vault: c.Vault, Known: c.Known, AsOf: c.AsOf, By: c.By, Problems: c.Problems}
		if c.Known {
			cfg := c.Config
			dc.Config = &cfg
		}
		d.Compliance = append(d.Compliance, dc)
	}
	return json.Marshal(d)
}

func summaryJSON(s *digest.Summary) digestSummary {
	d := digestSummary{Vault: s.Vault, Requests: s.Requests, Success: s.Success, Denied: s.Denied, Challenges: s.Challenges,
		SuccessRatio: s.SuccessRatio, AvgLatencyMs: s.AvgLatencyMs, P95LatencyMs: s.P95LatencyMs,
		DistinctCallers: s.DistinctCallers, CallersAtLeast: s.CallersAtLeast, NewIdentitiesCount: s.NewIdentitiesCount,
		WatchedSince: s.WatchedSince, SecretReads: s.SecretReads, ChangesCount: s.ChangesCount, FindingsCount: s.FindingsCount}
	for _, f := range s.Families {
		d.Families = append(d.Families, digestFamily{Family: string(f.Family), Requests: f.Requests, Success: f.Success, Denied: f.Denied})
	}
	for _, id := range s.NewIdentities {
		d.NewIdentities = append(d.NewIdentities, digestIdentity{Vault: id.Vault, Key: id.Key, Name: id.Name, First: id.First})
	}
	d.DeniedCallers = topsJSON(s.DeniedCallers)
	d.DeniedIPs = topsJSON(s.DeniedIPs)
	for _, sec := range s.Secrets {
		d.Secrets = append(d.Secrets, digestSecret{Vault: sec.Vault, Name: sec.Name, Reads: sec.Reads, Readers: topsJSON(sec.Readers)})
	}
	for _, c := range s.Changes {
		dc := digestChange{Vault: c.Vault, Time: c.Time, Operation: c.Operation, What: c.What, Outcome: string(c.Outcome),
			Caller: c.Caller, CallerName: c.CallerName, IP: c.IP, Details: c.Details}
		dc.Config = c.Config
		d.Changes = append(d.Changes, dc)
	}
	for sev, n := range s.FindingsBySeverity {
		if n > 0 {
			if d.FindingsBySeverity == nil {
				d.FindingsBySeverity = map[string]int{}
			}
			d.FindingsBySeverity[finding.Severity(sev).String()] = n
		}
	}
	return d
}

func topsJSON(ts []digest.Top) []digestTop {
	var out []digestTop
	for _, t := range ts {
		out = append(out, digestTop{Key: t.Key, Name: t.Name, Vault: t.Vault, Vaults: t.Vaults, Count: t.Count})
	}
	return out
}
