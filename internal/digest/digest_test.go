package digest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/digest"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
	"github.com/kvwatch/kvwatch/internal/stats/statstest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func TestBounds(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	cases := []struct {
		p          digest.Period
		at         time.Time
		zone       *time.Location
		start, end string
	}{
		{digest.Daily, time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC), time.UTC, "2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z"},
		{digest.Daily, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), time.UTC, "2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z"},
		{digest.Weekly, time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC), time.UTC, "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z"},
		{digest.Weekly, time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), time.UTC, "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z"},
		{digest.Weekly, time.Date(2026, 11, 29, 23, 59, 0, 0, time.UTC), time.UTC, "2026-11-16T00:00:00Z", "2026-11-23T00:00:00Z"},
		{digest.Monthly, time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC), time.UTC, "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
		{digest.Monthly, time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC), time.UTC, "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		// 23:30 UTC on 30 Nov is already 1 Dec in Berlin.
		{digest.Daily, time.Date(2026, 11, 30, 23, 30, 0, 0, time.UTC), berlin, "2026-11-30T00:00:00+01:00", "2026-12-01T00:00:00+01:00"},
		// The spring-forward day has 23 hours, the fall-back day 25.
		{digest.Daily, time.Date(2026, 3, 30, 12, 0, 0, 0, berlin), berlin, "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"},
		{digest.Daily, time.Date(2026, 10, 26, 12, 0, 0, 0, berlin), berlin, "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"},
		{digest.Monthly, time.Date(2026, 4, 2, 0, 0, 0, 0, berlin), berlin, "2026-03-01T00:00:00+01:00", "2026-04-01T00:00:00+02:00"},
	}
	for _, c := range cases {
		s, e := digest.Bounds(c.p, c.at, c.zone)
		if s.Format(time.RFC3339) != c.start || e.Format(time.RFC3339) != c.end {
			t.Errorf("%s at %s: [%s, %s), want [%s, %s)", c.p, c.at, s.Format(time.RFC3339), e.Format(time.RFC3339), c.start, c.end)
		}
		// The period Following gives for an instant inside is the same.
		if s2, _ := digest.Bounds(c.p, digest.Following(c.p, s.Add(time.Hour), c.zone), c.zone); !s2.Equal(s) {
			t.Errorf("%s: Following(%s) leads to %s", c.p, s, s2)
		}
	}
	if _, err := digest.ParsePeriod("hourly"); err == nil {
		t.Error("hourly accepted")
	}
}

// The days of the multi-day world: Oct 30 is in the month before, Nov 22
// the Sunday before the week, Nov 23 and 29 the week's Monday and Sunday,
// Nov 30 the day, Dec 1 after everything.
var worldDays = []time.Time{day(2026, 10, 30), day(2026, 11, 22), day(2026, 11, 23), day(2026, 11, 29), day(2026, 11, 30), day(2026, 12, 1)}

var worldOnce struct {
	sync.Once
	w    *world
	recs []statstest.Record
}

func multiDay(t *testing.T) (*world, []statstest.Record) {
	worldOnce.Do(func() {
		worldOnce.w = build(t, worldDays...)
		worldOnce.recs = statstest.Parse(worldOnce.w.raw)
	})
	return worldOnce.w, worldOnce.recs
}

func checkFigures(t *testing.T, what string, s *digest.Summary, want statstest.Figures) {
	t.Helper()
	if s.Requests != want.Requests || s.Success != want.Success || s.Denied != want.Denied || s.Challenges != want.Challenges {
		t.Errorf("%s: requests %d success %d denied %d challenges %d; raw records: %d, %d, %d, %d", what,
			s.Requests, s.Success, s.Denied, s.Challenges, want.Requests, want.Success, want.Denied, want.Challenges)
	}
	if math.Abs(s.SuccessRatio-want.SuccessRatio()) > 1e-12 {
		t.Errorf("%s: success ratio %v, raw records %v", what, s.SuccessRatio, want.SuccessRatio())
	}
	if math.Abs(s.AvgLatencyMs-want.AvgLatency()) > 1e-9 {
		t.Errorf("%s: average latency %v, raw records %v", what, s.AvgLatencyMs, want.AvgLatency())
	}
}

func TestDigestsMatchRawRecords(t *testing.T) {
	w, recs := multiDay(t)
	ctx := context.Background()
	at := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	for _, c := range []struct {
		p    digest.Period
		zone *time.Location
		days int // demo days inside the period (UTC)
	}{
		{digest.Daily, time.UTC, 1}, {digest.Weekly, time.UTC, 2}, {digest.Monthly, time.UTC, 4},
		{digest.Daily, berlin, 1}, {digest.Weekly, berlin, 2}, {digest.Monthly, berlin, 4},
	} {
		name := fmt.Sprintf("%s %s", c.p, c.zone)
		r, err := digest.Compute(ctx, w.store, w.outbox, c.p, at, c.zone)
		if err != nil {
			t.Fatal(err)
		}
		all := statstest.Tally(recs, r.Start, r.End, nil)
		if all.Requests < int64(c.days)*16000 {
			t.Errorf("%s: only %d raw requests in [%s, %s): the world is not what the test thinks", name, all.Requests, r.Start, r.End)
		}
		checkFigures(t, name+" overall", &r.Overall, all)
		if len(r.Vaults) != 5 { // four with traffic, and kv-legacy-archive (deleted at 16:40)
			t.Fatalf("%s: %d vaults", name, len(r.Vaults))
		}
		var chart int64
		for _, s := range r.Chart.Series {
			for _, n := range s.Counts {
				chart += n
			}
		}
		if chart != all.Requests {
			t.Errorf("%s: chart adds up to %d, want %d", name, chart, all.Requests)
		}
		for i := range r.Vaults {
			s := &r.Vaults[i]
			want := statstest.Tally(recs, r.Start, r.End, func(rec *statstest.Record) bool { return rec.Vault == s.Vault })
			checkFigures(t, name+" "+s.Vault, s, want)
		}
		if c.zone == time.UTC {
			// Breakdowns are by UTC day: exact here.
			if p95, exact := r.Overall.P95LatencyMs, all.P95(); math.Abs(p95-exact) > 0.125*exact+1 {
				t.Errorf("%s: p95 %.1f, raw records %.0f", name, p95, exact)
			}
			var fam int64
			for _, f := range r.Overall.Families {
				fam += f.Requests
			}
			if fam != all.Requests {
				t.Errorf("%s: families add up to %d, want %d", name, fam, all.Requests)
			}
			if len(r.Notes) != 0 {
				t.Errorf("%s: notes %v", name, r.Notes)
			}
		} else if len(r.Notes) == 0 {
			t.Errorf("%s: no note that breakdowns are by UTC day", name)
		}
		// Findings: those of the alerts raised in the period, each day's
		// planted incidents among them.
		if len(r.Findings) < 10*c.days {
			t.Errorf("%s: %d findings", name, len(r.Findings))
		}
		for _, f := range r.Findings {
			if f.Raised.Before(r.Start) || !f.Raised.Before(r.End) || len(f.Delivery) == 0 {
				t.Errorf("%s: finding %s raised %s, delivery %v", name, f.Rule, f.Raised, f.Delivery)
			}
		}
		// 4 a day, and kv-legacy-archive's VaultPatch, VaultDelete and VaultPurge.
		if r.Overall.ChangesCount != int64(7*c.days) {
			t.Errorf("%s: %d changes, want %d", name, r.Overall.ChangesCount, 7*c.days)
		}
		// Identities are new only the first time the world saw them (Oct 30),
		// but for the intruder and the backup tool... who are in every demo
		// day: nobody is new after the first day.
		if r.Overall.NewIdentitiesCount != 0 {
			t.Errorf("%s: %d new identities after the first day", name, r.Overall.NewIdentitiesCount)
		}
		if c.p == digest.Monthly {
			if r.Trend == nil || len(r.Compliance) != 5 {
				t.Fatalf("%s: no trend or compliance", name)
			}
			prev := statstest.Tally(recs, r.Trend.PrevStart, r.Trend.PrevEnd, nil)
			checkFigures(t, name+" previous month", &r.Trend.Previous, prev)
			if r.Trend.Previous.NewIdentitiesCount == 0 {
				t.Errorf("%s: the first month has no new identities", name)
			}
			problems := map[string]string{}
			for _, cp := range r.Compliance {
				problems[cp.Vault] = strings.Join(cp.Problems, "; ")
				if cp.Vault != "kv-payments-prod" && !cp.Known {
					t.Errorf("%s: %s has no configuration", name, cp.Vault)
				}
			}
			want := map[string]string{
				"kv-data-dev":      "purge protection off; public network access enabled, open to every network; access policies instead of RBAC",
				"kv-payments-prod": "",
				"kv-shared-infra":  "purge protection off",
				"kv-web-prod":      "access policies instead of RBAC",
			}
			for v, p := range want {
				if problems[v] != p {
					t.Errorf("%s: compliance of %s: %q, want %q", name, v, problems[v], p)
				}
			}
		} else if r.Trend != nil || r.Compliance != nil {
			t.Errorf("%s: trend or compliance outside a monthly digest", name)
		}
	}
}

func TestChangesCompareWithPreviousConfiguration(t *testing.T) {
	w, _ := multiDay(t)
	r, err := digest.Compute(context.Background(), w.store, w.outbox, digest.Daily, time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range r.Overall.Changes {
		got[c.Vault+" "+c.Operation] = strings.Join(c.Details, "; ")
	}
	// Every demo day starts from the same configuration: kv-data-dev is
	// opened again (after being open since the day before, the record says
	// so), kv-web-prod's patch adds the same access policy again.
	for k, want := range map[string]string{
		"kv-data-dev VaultPatch":                                    "no change to the recorded settings",
		"kv-shared-infra VaultPut":                                  "no change to the recorded settings",
		"kv-web-prod VaultPatch":                                    "no change to the recorded settings",
		"kv-web-prod VaultAccessPolicyChangedEventGridNotification": "",
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s: %q, want %q (all: %v)", k, v, want, got)
		}
	}
}

func TestGolden(t *testing.T) {
	w := build(t, time.Time{})
	r, err := digest.Compute(context.Background(), w.store, w.outbox, digest.Daily, time.Date(2026, 11, 24, 6, 0, 0, 0, time.UTC), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	card, err := json.MarshalIndent(digest.Card(r), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]byte{"daily.txt": []byte(digest.Text(r)), "daily.card.json": append(card, '\n')} {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./internal/digest -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the golden file (go test ./internal/digest -update rewrites it):\n%s", name, firstDiff(string(want), string(got)))
		}
	}
	// The demo day's planted incidents show in the digest.
	text := digest.Text(r)
	for _, s := range []string{"16,833", "vault-protection-weakened", "secops pending after 5 attempts",
		"network default action Allow", "203.0.113.66", "dave.okafor@contoso.com"} {
		if !strings.Contains(text, s) {
			t.Errorf("text digest lacks %q", s)
		}
	}
	if b, _ := json.Marshal(digest.Card(r)); len(b) > digest.CardMaxBytes {
		t.Errorf("card of %d bytes", len(b))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  want %q\n  got  %q", i+1, x, y)
		}
	}
	return ""
}

func TestChartPNG(t *testing.T) {
	w, _ := multiDay(t)
	for _, p := range []digest.Period{digest.Daily, digest.Weekly, digest.Monthly} {
		r, err := digest.Compute(context.Background(), w.store, w.outbox, p, time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC), time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		b, err := digest.ChartPNG(r)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if sz := img.Bounds().Size(); sz.X != digest.ChartWidth || sz.Y != digest.ChartHeight {
			t.Fatalf("%s: chart is %v", p, sz)
		}
		// Every vault's colour is painted, over a real area (the bars), and
		// text is drawn (dark pixels).
		legend := digest.Legend(r)
		if len(legend) != 5 {
			t.Fatalf("%s: legend %v", p, legend)
		}
		painted := map[string]int{}
		dark := 0
		for y := 0; y < digest.ChartHeight; y++ {
			for x := 0; x < digest.ChartWidth; x++ {
				cr, cg, cb, _ := img.At(x, y).RGBA()
				c := fmt.Sprintf("#%02x%02x%02x", cr>>8, cg>>8, cb>>8)
				painted[c]++
				if cr>>8 < 0x40 && cg>>8 < 0x40 && cb>>8 < 0x40 {
					dark++
				}
			}
		}
		for _, l := range legend {
			// A vault of a handful of requests (kv-legacy-archive, 4 a
			// day) shows in the legend's swatch more than in its bars.
			if least := 200; painted[l.Color] < least && (l.Total >= 100 || painted[l.Color] < least/4) {
				t.Errorf("%s: %s (%s) painted on %d pixels", p, l.Name, l.Color, painted[l.Color])
			}
		}
		if dark < 1000 {
			t.Errorf("%s: %d dark pixels: no axes or labels", p, dark)
		}
		if painted["#ffffff"] > digest.ChartWidth*digest.ChartHeight*97/100 {
			t.Errorf("%s: chart nearly blank", p)
		}
	}
}

func TestOnceWithTimersFiringTogether(t *testing.T) {
	for name, store := range map[string]state.Store{"memory": state.NewMemory(), "retrying": &retrying{Memory: state.NewMemory()}} {
		start := day(2026, 11, 23)
		for round := 0; round < 20; round++ {
			p := digest.Daily
			ps := start.AddDate(0, 0, round)
			const n = 8
			var wg sync.WaitGroup
			firsts := make([]bool, n)
			errs := make([]error, n)
			ready := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-ready
					firsts[i], errs[i] = digest.Once(context.Background(), store, p, ps)
				}()
			}
			close(ready)
			wg.Wait()
			count := 0
			for i := range n {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				if firsts[i] {
					count++
				}
			}
			if count != 1 {
				t.Fatalf("%s round %d: %d timers got first", name, round, count)
			}
			// Another period, another claim; the same again, none.
			if first, _ := digest.Once(context.Background(), store, digest.Weekly, ps); !first {
				t.Fatalf("%s: weekly digest of %s not claimed", name, ps)
			}
			if first, _ := digest.Once(context.Background(), store, p, ps); first {
				t.Fatalf("%s: claimed twice", name)
			}
		}
		// Released (the digest could not be sent): claimable again, once.
		ps := start
		if err := digest.Release(context.Background(), store, digest.Daily, ps); err != nil {
			t.Fatal(err)
		}
		if first, _ := digest.Once(context.Background(), store, digest.Daily, ps); !first {
			t.Errorf("%s: released digest not claimed", name)
		}
		if first, _ := digest.Once(context.Background(), store, digest.Daily, ps); first {
			t.Errorf("%s: released digest claimed twice", name)
		}
	}
}

// retrying is a store that, like a durable one after a lost answer, runs
// every update twice: the write happens, then the function runs again on
// what was written, and the second answer is returned.
type retrying struct {
	*state.Memory
}

func (r *retrying) Update(ctx context.Context, keys []state.Key, fn state.ApplyFunc) (map[state.Key]*state.Entity, error) {
	if _, err := r.Memory.Update(ctx, keys, fn); err != nil {
		return nil, err
	}
	return r.Memory.Update(ctx, keys, fn)
}

// TestHostileValues puts markup, Markdown, terminal escapes and bidi
// overrides in every value a log record controls, and checks that no
// renderer lets them through.
func TestHostileValues(t *testing.T) {
	st := state.NewMemory()
	c := stats.New(st)
	at := day(2026, 11, 23).Add(10 * time.Hour)
	evil := "<script>alert(1)</script> **bold** [x](https://evil.example) \x1b[31mred\u202egnp.exe\u200b\r\nforged line"
	f := false
	cfg := &audit.VaultConfig{NetworkDefaultAction: evil, PublicNetworkAccess: "Enabled", PurgeProtection: &f}
	var evs []audit.Event
	for i, op := range []string{"SecretGet", "SecretGet", "VaultPatch"} {
		e := audit.Event{Time: at.Add(time.Duration(i) * time.Second), Vault: "kv-" + evil, Operation: op,
			Family: audit.FamilySecret, Kind: audit.KindRead, Outcome: audit.OutcomeSuccess, HTTPStatus: 200,
			ObjectType: "secret", ObjectName: evil, DurationMs: 5, CallerIP: evil,
			Caller: audit.Caller{Key: "key-" + evil, KeyFrom: "upn", UPN: evil}, Source: audit.Source{File: "f", Line: i + 1}}
		if op == "VaultPatch" {
			e.Family, e.Kind, e.Config, e.ObjectName = audit.FamilyVault, audit.KindWrite, cfg, ""
		}
		if i == 1 {
			e.Outcome, e.HTTPStatus = audit.OutcomeDenied, 403
		}
		evs = append(evs, e)
	}
	if err := c.Collect(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	r, err := digest.Compute(context.Background(), st, nil, digest.Monthly, day(2026, 12, 1), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	r.Findings = []digest.Finding{{Raised: at, FirstEvent: at, Severity: finding.High, Rule: "r", Vault: evil, Summary: evil,
		Delivery: []digest.Delivery{{Receiver: "x", State: "pending", LastError: evil}}}}
	// A routine group: its vault, caller and name from the log.
	r.Routine, r.RoutineCount = []digest.RoutineGroup{{Rule: "listing-then-read-burst", Vault: evil, Caller: "key-" + evil, CallerName: evil,
		Group: []finding.Pair{{Field: "caller", Value: evil}}, Findings: 3, First: at, Last: at}}, 3
	if r.Overall.Denied != 1 || len(r.Overall.Changes) != 1 || len(r.Overall.Secrets) != 1 || len(r.Compliance) != 1 {
		t.Fatalf("the hostile records did not make it into the report: %+v", r.Overall)
	}

	text := digest.Text(r)
	for _, bad := range []string{"\x1b", "\u202e", "\u200b", "\r", "\nforged line"} {
		if strings.Contains(text, bad) {
			t.Errorf("text digest holds %q", bad)
		}
	}
	html, err := digest.HTML(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script>", "\x1b", "\u202e", "\u200b", `href="https://evil`} {
		if strings.Contains(html, bad) {
			t.Errorf("html digest holds %q", bad)
		}
	}
	if !strings.Contains(text, "Learned as routine, not alerted: 3 findings (listing-then-read-burst: ") || !strings.Contains(html, "Learned as routine") {
		t.Error("the hostile routine group is not in the text and html digests")
	}
	if !strings.Contains(html, "&lt;script&gt;") || !strings.Contains(html, `src="cid:`+digest.ChartCID+`"`) {
		t.Error("html digest: values not escaped, or the chart not referenced by cid")
	}
	card := digest.Card(r)
	var texts []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, y := range x {
				if s, ok := y.(string); ok && (k == "text" || k == "title" || k == "value") {
					texts = append(texts, s)
				}
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		case []map[string]any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(card)
	found := false
	for _, s := range texts {
		for i, r := range s {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				t.Errorf("card text holds %U: %q", r, s)
			}
			if strings.ContainsRune("*_[]()<>`#|~!", r) && (i == 0 || s[i-1] != '\\') {
				t.Errorf("card text holds an unescaped %q: %q", r, s)
			}
		}
		if strings.Contains(s, `\<script\>`) {
			found = true
		}
	}
	if !found {
		t.Error("the hostile value is not in the card, escaped")
	}
	if got := digest.MD("a*b_c\\d.e\x07f\u202eg\nh"); got != `a\*b\_c\\d\.efg h` {
		t.Errorf("MD: %q", got)
	}
}

// TestCardFitsWhateverTheReport builds a huge report and checks the card
// stays under the limit, shortened.
func TestCardFitsWhateverTheReport(t *testing.T) {
	now := day(2026, 11, 23)
	r := &digest.Report{Period: digest.Daily, Start: now, End: now.AddDate(0, 0, 1), Zone: "UTC", Generated: now.AddDate(0, 0, 1)}
	long := strings.Repeat("very-long-name-", 12)
	for i := range 300 {
		s := digest.Summary{Vault: fmt.Sprintf("kv-%03d-%s", i, long), Requests: int64(i * 1000)}
		r.Vaults = append(r.Vaults, s)
		r.Overall.NewIdentities = append(r.Overall.NewIdentities, digest.Identity{Vault: s.Vault, Key: long + long, First: now})
		r.Overall.Changes = append(r.Overall.Changes, digest.Change{Vault: s.Vault, Time: now, Operation: "VaultPatch", Caller: long,
			Details: []string{long, long, long}})
		r.Findings = append(r.Findings, digest.Finding{Raised: now, FirstEvent: now, Rule: "rule-" + long, Vault: s.Vault, Summary: long + long + long,
			Delivery: []digest.Delivery{{Receiver: "a", State: "delivered"}, {Receiver: "b", State: "pending", LastError: long}}})
		r.Routine = append(r.Routine, digest.RoutineGroup{Rule: "rule-" + long, Vault: s.Vault, Caller: long + long, CallerName: long,
			Findings: 24, First: now, Last: now.Add(23 * time.Hour)})
		r.RoutineCount += 24
	}
	r.Overall.NewIdentitiesCount, r.Overall.ChangesCount = 300, 300
	b, err := json.Marshal(digest.Card(r))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > digest.CardMaxBytes {
		t.Errorf("card of %d bytes, limit %d", len(b), digest.CardMaxBytes)
	}
	if !bytes.Contains(b, []byte("more")) {
		t.Error("a shortened card does not say that more was left out")
	}
}
