// Package stdout "sends" alerts by writing them: text for people (replay's
// default), or one JSON object per line.
package stdout

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/printer"
)

// Config configures the stdout receiver.
type Config struct {
	// Format is "text" (default) or "json".
	Format string `yaml:"format"`
}

// Defaults fills in unset values.
func (c *Config) Defaults() {
	if c.Format == "" {
		c.Format = "text"
	}
}

// Validate reports problems.
func (c Config) Validate() error {
	if c.Format != "" && c.Format != "text" && c.Format != "json" {
		return fmt.Errorf("format %q: want text or json", c.Format)
	}
	return nil
}

// Notifier writes alerts to w.
type Notifier struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
}

// New returns a notifier writing to w.
func New(cfg Config, w io.Writer) *Notifier {
	cfg.Defaults()
	return &Notifier{w: w, json: cfg.Format == "json"}
}

// Notify implements delivery's Notifier.
func (n *Notifier) Notify(_ context.Context, a *alert.Alert) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.json {
		b, err := json.Marshal(a)
		if err != nil {
			return err
		}
		_, err = n.w.Write(append(b, '\n'))
		return err
	}
	var b strings.Builder
	head := "ALERT"
	if a.Repeat > 0 {
		head = fmt.Sprintf("ALERT (reminder %d)", a.Repeat)
	}
	if a.IsUpdate() {
		head = fmt.Sprintf("UPDATE %d (%s)", a.Version-1, printer.Safe(strings.Join(a.Changes, ", ")))
	}
	if a.Test {
		head = "TEST ALERT"
	}
	fmt.Fprintf(&b, "%s %s", head, printer.FindingText(a.Lead()))
	for _, r := range a.Related {
		fmt.Fprintf(&b, "    also fired on the same evidence: %s (%s) %s\n", r.Rule, r.Severity, printer.Clean(r.Summary))
	}
	if n := len(a.Findings); n > 1 {
		fmt.Fprintf(&b, "    and %d more findings of this rule on this vault\n", n-1)
	}
	if a.Suppressed > 0 {
		fmt.Fprintf(&b, "    %d findings held back by the cooldown since the last alert\n", a.Suppressed)
	}
	_, err := io.WriteString(n.w, b.String())
	return err
}
