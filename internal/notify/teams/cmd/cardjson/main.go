// Command cardjson writes the Adaptive Card kvwatch would post to Teams for
// an alert built from a finding (JSON, as `kvwatch replay -output json`
// prints), for rendering with tools/cards. With -digest N the alert groups
// N findings of the same rule and group, as a condition that persists does,
// so the card is trimmed to the size limit.
//
//	go run ./internal/notify/teams/cmd/cardjson -finding internal/notify/teams/testdata/mass-secret-retrieval.finding.json -out /tmp/alert.card.json
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/notify/teams"
)

func main() {
	in := flag.String("finding", "internal/notify/teams/testdata/mass-secret-retrieval.finding.json", "a finding as JSON")
	out := flag.String("out", "-", "where to write the card JSON (- for stdout)")
	digest := flag.Int("digest", 0, "group this many findings into one alert (0: the finding alone)")
	maxBytes := flag.Int("max-bytes", teams.DefaultMaxBytes, "message size limit")
	flag.Parse()
	if err := run(*in, *out, *digest, *maxBytes); err != nil {
		fmt.Fprintln(os.Stderr, "cardjson:", err)
		os.Exit(1)
	}
}

func run(in, out string, digest, maxBytes int) error {
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var f finding.Finding
	if err := json.Unmarshal(raw, &f); err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	fs := []finding.Finding{f}
	if digest > 1 {
		fs = persisting(f, digest)
	}
	a := alert.New(fs, f.Raised)
	if digest > 1 {
		a.Suppressed, a.Repeat = 37, 3
	}
	msg, err := teams.Message(a, maxBytes)
	if err != nil {
		return err
	}
	// The card alone, as the renderer takes it.
	var env struct {
		Attachments []struct {
			Content json.RawMessage `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(msg, &env); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, env.Attachments[0].Content, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	fmt.Fprintf(os.Stderr, "cardjson: alert %s, %d findings, message %d bytes (limit %d)\n", a.ID, len(a.Findings), len(msg), maxBytes)
	if out == "-" {
		_, err = os.Stdout.Write(buf.Bytes())
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

var region = []string{"westeurope", "northeurope", "eastus2", "uksouth", "swedencentral"}

// persisting makes n findings of lead's rule and group in successive
// periods, each with its own secrets, IPs and correlation ids.
func persisting(lead finding.Finding, n int) []finding.Finding {
	fs := make([]finding.Finding, n)
	for i := range fs {
		f := lead
		shift := time.Duration(i) * 15 * time.Minute
		f.Period = lead.Period.Add(shift)
		f.WindowStart, f.WindowEnd = lead.WindowStart.Add(shift), lead.WindowEnd.Add(shift)
		f.FirstEvent, f.LastEvent = lead.FirstEvent.Add(shift), lead.LastEvent.Add(shift)
		f.Count = lead.Count + int64(i%7)*3
		f.ID = finding.NewID(f.Rule, finding.GroupString(f.Group), f.Period, "")
		f.Summary = strings.Replace(lead.Summary, fmt.Sprint(lead.Count), fmt.Sprint(f.Count), 1)
		// Long names, as enterprises name secrets (Key Vault allows 127
		// characters), and IPv6 callers: a digest near the size limit.
		f.TopObjects = nil
		for j := range 5 {
			f.TopObjects = append(f.TopObjects, finding.Count{Value: fmt.Sprintf("secret/payments-settlement-batch-%03d-acquirer-%s-hmac-signing-key-%d", i, region[(i+j)%len(region)], j), Count: 1 + j%2})
		}
		f.TopIPs = []finding.Count{{Value: fmt.Sprintf("2001:db8:85a3:1f00:4c2b:9e71:%04x:%04x", 0x3f0d+i%7, 0x8a2e+i), Count: int(f.Count)}}
		f.CorrelationIDs = nil
		for j := range 10 {
			f.CorrelationIDs = append(f.CorrelationIDs, fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", 0x5e1f0000+i, j, i%4096, j, 0x6a2b3c4d5e00+i*16+j))
		}
		fs[i] = f
	}
	return fs
}
