package digest

import (
	"encoding/json"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/notify/webhook"
)

// The JSON form of a digest, webhook.DigestSchemaVersion. Values from log
// records are as logged.
type (
	jsonDoc struct {
		Schema            string        `json:"schema"`
		ID                string        `json:"id"`
		Period            string        `json:"period"`
		Title             string        `json:"title"`
		Start             time.Time     `json:"start"`
		End               time.Time     `json:"end"`
		Zone              string        `json:"zone"`
		Generated         time.Time     `json:"generated"`
		Overall           jsonSummary   `json:"overall"`
		Vaults            []jsonSummary `json:"vaults"`
		Findings          []jsonFinding `json:"findings"`
		FindingsTruncated bool          `json:"findingsTruncated,omitempty"`
		// Routine: findings learned as routine and not alerted, per rule
		// and group (additive to kvwatch.digest/v1).
		Routine          []jsonRoutine `json:"routine,omitempty"`
		RoutineCount     int           `json:"routineCount"`
		RoutineTruncated bool          `json:"routineTruncated,omitempty"`
		Chart            jsonChart     `json:"chart"`
		Trend            *jsonTrend    `json:"trend,omitempty"`
		Compliance       []jsonCompl   `json:"compliance,omitempty"`
		Notes            []string      `json:"notes,omitempty"`
	}
	jsonSummary struct {
		Vault              string         `json:"vault,omitempty"`
		Requests           int64          `json:"requests"`
		Success            int64          `json:"success"`
		Denied             int64          `json:"denied"`
		Challenges         int64          `json:"challenges"`
		SuccessRatio       float64        `json:"successRatio"`
		AvgLatencyMs       float64        `json:"avgLatencyMs"`
		P95LatencyMs       float64        `json:"p95LatencyMs"`
		Families           []jsonFamily   `json:"families,omitempty"`
		DistinctCallers    int            `json:"distinctCallers"`
		CallersAtLeast     bool           `json:"callersAtLeast,omitempty"`
		NewIdentities      []jsonIdentity `json:"newIdentities,omitempty"`
		NewIdentitiesCount int            `json:"newIdentitiesCount"`
		WatchedSince       time.Time      `json:"watchedSince,omitzero"`
		DeniedCallers      []jsonTop      `json:"deniedCallers,omitempty"`
		DeniedIPs          []jsonTop      `json:"deniedIps,omitempty"`
		SecretReads        int64          `json:"secretReads"`
		Secrets            []jsonSecret   `json:"secrets,omitempty"`
		Changes            []jsonChange   `json:"changes,omitempty"`
		ChangesCount       int64          `json:"changesCount"`
		FindingsBySeverity map[string]int `json:"findingsBySeverity,omitempty"`
		FindingsCount      int            `json:"findingsCount"`
	}
	jsonFamily struct {
		Family   string `json:"family"`
		Requests int64  `json:"requests"`
		Success  int64  `json:"success"`
		Denied   int64  `json:"denied"`
	}
	jsonTop struct {
		Key    string   `json:"key"`
		Name   string   `json:"name,omitempty"`
		Vault  string   `json:"vault,omitempty"`
		Vaults []string `json:"vaults,omitempty"`
		Count  int64    `json:"count"`
	}
	jsonSecret struct {
		Vault   string    `json:"vault"`
		Name    string    `json:"name"`
		Reads   int64     `json:"reads"`
		Readers []jsonTop `json:"readers,omitempty"`
	}
	jsonIdentity struct {
		Vault string    `json:"vault"`
		Key   string    `json:"key"`
		Name  string    `json:"name,omitempty"`
		First time.Time `json:"first"`
	}
	jsonChange struct {
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
	jsonFinding struct {
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
		Delivery   []jsonDelivery   `json:"delivery,omitempty"`
	}
	jsonRoutine struct {
		Rule       string           `json:"rule,omitempty"`
		Severity   finding.Severity `json:"severity"`
		Vault      string           `json:"vault,omitempty"`
		Group      []finding.Pair   `json:"group,omitempty"`
		Caller     string           `json:"caller,omitempty"`
		CallerName string           `json:"callerName,omitempty"`
		Findings   int              `json:"findings"`
		Events     int64            `json:"events"`
		First      time.Time        `json:"first,omitzero"`
		Last       time.Time        `json:"last,omitzero"`
	}
	jsonDelivery struct {
		Receiver  string `json:"receiver"`
		State     string `json:"state"`
		Attempts  int    `json:"attempts,omitempty"`
		LastError string `json:"lastError,omitempty"`
	}
	jsonChart struct {
		Unit   string            `json:"unit"`
		Slots  []time.Time       `json:"slots"`
		Series []jsonChartSeries `json:"series"`
	}
	jsonChartSeries struct {
		Vault  string  `json:"vault"`
		Counts []int64 `json:"counts"`
	}
	jsonTrend struct {
		PrevStart time.Time        `json:"prevStart"`
		PrevEnd   time.Time        `json:"prevEnd"`
		Previous  jsonSummary      `json:"previous"`
		Vaults    []jsonVaultTrend `json:"vaults,omitempty"`
	}
	jsonVaultTrend struct {
		Vault        string `json:"vault"`
		Requests     int64  `json:"requests"`
		PrevRequests int64  `json:"prevRequests"`
		Denied       int64  `json:"denied"`
		PrevDenied   int64  `json:"prevDenied"`
	}
	jsonCompl struct {
		Vault    string             `json:"vault"`
		Known    bool               `json:"known"`
		AsOf     time.Time          `json:"asOf,omitzero"`
		By       string             `json:"by,omitempty"`
		Config   *audit.VaultConfig `json:"config,omitempty"`
		Problems []string           `json:"problems,omitempty"`
	}
)

// JSON encodes a digest in its JSON form, webhook.DigestSchemaVersion:
// the webhook body, and what the stdout receiver writes in json format.
func JSON(r *Report) ([]byte, error) {
	d := jsonDoc{
		Schema: webhook.DigestSchemaVersion, ID: ID(r), Period: string(r.Period), Title: Title(r),
		Start: r.Start, End: r.End, Zone: r.Zone, Generated: r.Generated,
		Overall: summaryDoc(&r.Overall), FindingsTruncated: r.FindingsTruncated, Notes: r.Notes,
		Vaults: []jsonSummary{}, Findings: []jsonFinding{},
		Chart: jsonChart{Unit: r.Chart.Unit, Slots: r.Chart.Slots, Series: []jsonChartSeries{}},
	}
	for i := range r.Vaults {
		d.Vaults = append(d.Vaults, summaryDoc(&r.Vaults[i]))
	}
	for _, f := range r.Findings {
		df := jsonFinding{Raised: f.Raised, FirstEvent: f.FirstEvent, Severity: f.Severity, Rule: f.Rule, Title: f.Title,
			Vault: f.Vault, Summary: f.Summary, Count: f.Count, AlertID: f.AlertID, MutedBy: f.MutedBy}
		for _, dl := range f.Delivery {
			df.Delivery = append(df.Delivery, jsonDelivery{Receiver: dl.Receiver, State: string(dl.State), Attempts: dl.Attempts, LastError: dl.LastError})
		}
		d.Findings = append(d.Findings, df)
	}
	d.RoutineCount, d.RoutineTruncated = r.RoutineCount, r.RoutineTruncated
	for _, g := range r.Routine {
		d.Routine = append(d.Routine, jsonRoutine{Rule: g.Rule, Severity: g.Severity, Vault: g.Vault, Group: g.Group, Caller: g.Caller,
			CallerName: g.CallerName, Findings: g.Findings, Events: g.Events, First: g.First, Last: g.Last})
	}
	for _, s := range r.Chart.Series {
		d.Chart.Series = append(d.Chart.Series, jsonChartSeries{Vault: s.Vault, Counts: s.Counts})
	}
	if t := r.Trend; t != nil {
		dt := &jsonTrend{PrevStart: t.PrevStart, PrevEnd: t.PrevEnd, Previous: summaryDoc(&t.Previous)}
		for _, v := range t.Vaults {
			dt.Vaults = append(dt.Vaults, jsonVaultTrend{Vault: v.Vault, Requests: v.Requests, PrevRequests: v.PrevRequests,
				Denied: v.Denied, PrevDenied: v.PrevDenied})
		}
		d.Trend = dt
	}
	for _, c := range r.Compliance {
		dc := jsonCompl{Vault: c.Vault, Known: c.Known, AsOf: c.AsOf, By: c.By, Problems: c.Problems}
		if c.Known {
			cfg := c.Config
			dc.Config = &cfg
		}
		d.Compliance = append(d.Compliance, dc)
	}
	return json.Marshal(d)
}

func summaryDoc(s *Summary) jsonSummary {
	d := jsonSummary{Vault: s.Vault, Requests: s.Requests, Success: s.Success, Denied: s.Denied, Challenges: s.Challenges,
		SuccessRatio: s.SuccessRatio, AvgLatencyMs: s.AvgLatencyMs, P95LatencyMs: s.P95LatencyMs,
		DistinctCallers: s.DistinctCallers, CallersAtLeast: s.CallersAtLeast, NewIdentitiesCount: s.NewIdentitiesCount,
		WatchedSince: s.WatchedSince, SecretReads: s.SecretReads, ChangesCount: s.ChangesCount, FindingsCount: s.FindingsCount}
	for _, f := range s.Families {
		d.Families = append(d.Families, jsonFamily{Family: string(f.Family), Requests: f.Requests, Success: f.Success, Denied: f.Denied})
	}
	for _, id := range s.NewIdentities {
		d.NewIdentities = append(d.NewIdentities, jsonIdentity{Vault: id.Vault, Key: id.Key, Name: id.Name, First: id.First})
	}
	d.DeniedCallers = topsDoc(s.DeniedCallers)
	d.DeniedIPs = topsDoc(s.DeniedIPs)
	for _, sec := range s.Secrets {
		d.Secrets = append(d.Secrets, jsonSecret{Vault: sec.Vault, Name: sec.Name, Reads: sec.Reads, Readers: topsDoc(sec.Readers)})
	}
	for _, c := range s.Changes {
		dc := jsonChange{Vault: c.Vault, Time: c.Time, Operation: c.Operation, What: c.What, Outcome: string(c.Outcome),
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

func topsDoc(ts []Top) []jsonTop {
	var out []jsonTop
	for _, t := range ts {
		out = append(out, jsonTop{Key: t.Key, Name: t.Name, Vault: t.Vault, Vaults: t.Vaults, Count: t.Count})
	}
	return out
}
