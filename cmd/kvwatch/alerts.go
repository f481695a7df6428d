package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/logger"
)

// alertsCmd: `kvwatch alerts test` sends one test alert to every receiver
// the routes would choose for a high-severity alert, and says what each
// answered.
func alertsCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "test" {
		return usageError{errors.New("usage: kvwatch alerts test [--config FILE]")}
	}
	fs := flag.NewFlagSet("alerts test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "kvwatch.yaml (default: $KVWATCH_CONFIG, else the embedded pack)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err}
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	log := logger.New(logger.Options{Level: "warn", Console: true, Err: stderr})
	receivers, err := buildReceivers(cfg, &http.Client{Timeout: 30 * time.Second}, stdout, log)
	if err != nil {
		return err
	}
	if len(receivers) == 0 {
		return errors.New("no receivers configured in kvwatch.yaml: nothing to test")
	}
	c, err := delivery.Compile(cfg)
	if err != nil {
		return fmt.Errorf("delivery configuration: %w", err)
	}
	now := time.Now().UTC()
	f := finding.Finding{Rule: "kvwatch-test", Title: "kvwatch test alert", Severity: finding.High, Kind: "test",
		Summary:     "This is a test alert from kvwatch: if you can read it, this receiver works.",
		Description: "Sent by `kvwatch alerts test`.", FirstEvent: now, LastEvent: now, WindowStart: now, WindowEnd: now,
		Group: []finding.Pair{{Field: "vault", Value: "kv-example"}}, Vault: "kv-example", Count: 1}
	f.ID = finding.NewID(f.Rule, "", now, "")
	a := alert.New([]finding.Finding{f}, now)
	a.Test = true
	names := make([]string, 0, len(receivers))
	for n := range receivers {
		names = append(names, n)
	}
	slices.Sort(names)
	routed := delivery.Routes(c.Routes, a, names)
	failed := 0
	for _, name := range routed {
		err := receivers[name].Notify(ctx, a)
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "%-20s FAILED: %v\n", name, err)
			continue
		}
		fmt.Fprintf(stdout, "%-20s accepted\n", name)
	}
	for _, name := range names {
		if !slices.Contains(routed, name) {
			fmt.Fprintf(stdout, "%-20s not routed for a high-severity alert\n", name)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d receivers failed", failed, len(routed))
	}
	return nil
}
