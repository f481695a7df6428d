// Package statstest computes digest figures straight from raw AuditEvent
// records (JSON lines as Azure archives them), with encoding/json and none
// of kvwatch's decoding or normalization, so tests can check the
// statistics and digests against an independent computation.
package statstest

import (
	"bytes"
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Record is the part of a raw record the figures need.
type Record struct {
	Time       time.Time
	Vault      string // lower-case
	Operation  string
	Status     int
	DurationMs int64
	Anonymous  bool // no identity claim at all
	Caller     string
}

// Figures are totals over a set of records.
type Figures struct {
	Requests   int64
	Success    int64
	Denied     int64 // 401/403 but the anonymous 401 challenges
	Challenges int64
	LatencySum int64
	Latencies  []int64
}

// SuccessRatio is Success over Requests less Challenges.
func (f *Figures) SuccessRatio() float64 {
	n := f.Requests - f.Challenges
	if n <= 0 {
		return 0
	}
	return float64(f.Success) / float64(n)
}

// AvgLatency is the mean duration in milliseconds.
func (f *Figures) AvgLatency() float64 {
	if f.Requests == 0 {
		return 0
	}
	return float64(f.LatencySum) / float64(f.Requests)
}

// P95 is the exact 95th percentile (nearest rank).
func (f *Figures) P95() float64 {
	if len(f.Latencies) == 0 {
		return 0
	}
	s := append([]int64(nil), f.Latencies...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(0.95*float64(len(s)))) - 1
	return float64(s[max(i, 0)])
}

type raw struct {
	Time          string          `json:"time"`
	ResourceID    string          `json:"resourceId"`
	OperationName string          `json:"operationName"`
	Category      string          `json:"category"`
	MetricName    string          `json:"metricName"`
	DurationMs    json.RawMessage `json:"durationMs"`
	Identity      *struct {
		Claim map[string]any `json:"claim"`
	} `json:"identity"`
	Properties struct {
		HTTPStatusCode int `json:"httpStatusCode"`
	} `json:"properties"`
}

// Parse reads JSON lines of raw records. A line identical to one read
// before (Azure Monitor's double delivery) is dropped; records that are not
// Key Vault vault AuditEvents (metrics, other categories, Managed HSM) are
// skipped.
func Parse(data [][]byte) []Record {
	seen := map[string]bool{}
	var out []Record
	for _, d := range data {
		for _, line := range bytes.Split(d, []byte("\n")) {
			line = bytes.TrimSpace(line)
			if len(line) == 0 || seen[string(line)] {
				continue
			}
			seen[string(line)] = true
			var r raw
			if err := json.Unmarshal(line, &r); err != nil {
				panic(err)
			}
			if r.MetricName != "" || r.Category != "AuditEvent" {
				continue
			}
			parts := strings.Split(strings.ToLower(r.ResourceID), "/")
			if len(parts) != 9 || parts[6] != "microsoft.keyvault" || parts[7] != "vaults" {
				continue
			}
			t, err := time.Parse(time.RFC3339Nano, r.Time)
			if err != nil {
				panic(err)
			}
			var dur int64
			if s, err := strconv.Unquote(string(r.DurationMs)); err == nil {
				dur, _ = strconv.ParseInt(s, 10, 64)
			} else {
				dur, _ = strconv.ParseInt(string(r.DurationMs), 10, 64)
			}
			rec := Record{Time: t, Vault: parts[8], Operation: r.OperationName,
				Status: r.Properties.HTTPStatusCode, DurationMs: dur, Anonymous: r.Identity == nil}
			if r.Identity != nil {
				for _, k := range []string{"oid", "http://schemas.microsoft.com/identity/claims/objectidentifier", "appid", "upn"} {
					if v, ok := r.Identity.Claim[k].(string); ok && v != "" {
						rec.Caller = strings.ToLower(v)
						break
					}
				}
			}
			out = append(out, rec)
		}
	}
	return out
}

// Notification reports whether a record is an Event Grid notification
// (not a request; the access-policy change notice is an administrative
// record and counts).
func (r *Record) Notification() bool {
	return strings.HasSuffix(r.Operation, "EventGridNotification") &&
		r.Operation != "VaultAccessPolicyChangedEventGridNotification"
}

// Tally adds up the records in [from, to) for which keep returns true (nil
// keeps all).
func Tally(rs []Record, from, to time.Time, keep func(*Record) bool) Figures {
	var f Figures
	for i := range rs {
		r := &rs[i]
		if r.Notification() || r.Time.Before(from) || !r.Time.Before(to) || (keep != nil && !keep(r)) {
			continue
		}
		f.Requests++
		switch {
		case r.Status >= 100 && r.Status < 400:
			f.Success++
		case r.Status == 401 && r.Anonymous:
			f.Challenges++
		case r.Status == 401 || r.Status == 403:
			f.Denied++
		}
		f.LatencySum += r.DurationMs
		f.Latencies = append(f.Latencies, r.DurationMs)
	}
	return f
}
