// Command mailpreview writes the email kvwatch sends for a finding (JSON,
// as `kvwatch replay --output json` prints it) as an HTML file and a text
// file, for docs and for looking at.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/notify/email"
)

func main() {
	in := flag.String("finding", "internal/notify/teams/testdata/mass-secret-retrieval.finding.json", "finding JSON")
	out := flag.String("o", "docs/email-alert", "output path without extension")
	flag.Parse()
	b, err := os.ReadFile(*in)
	if err != nil {
		fail(err)
	}
	var f finding.Finding
	if err := json.Unmarshal(b, &f); err != nil {
		fail(err)
	}
	a := alert.New([]finding.Finding{f}, f.WindowEnd.Add(5*time.Second))
	subject, text, html, err := email.Render(a)
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(*out+".html", []byte(html), 0o644); err != nil {
		fail(err)
	}
	if err := os.WriteFile(*out+".txt", []byte("Subject: "+subject+"\n\n"+text), 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mailpreview:", err)
	os.Exit(1)
}
