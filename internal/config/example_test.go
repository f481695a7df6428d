package config_test

import (
	"errors"
	"fmt"

	"github.com/kvwatch/kvwatch/internal/config"
)

func ExampleParse() {
	src := []byte(`settings:
  bucket: 1m
rules:
  - id: secret-burst
    kind: threshold
    window: 90s
    count: lots
    runbook: ${RUNBOOK_URL}
  - id: secret-burst
    kind: each
    severity: urgent
`)
	env := func(name string) string { return "" } // nothing set
	_, err := config.Parse("kvwatch.yaml", src, config.Options{Getenv: env})
	var errs *config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs.List {
			fmt.Println(e)
		}
	}
	// Output:
	// kvwatch.yaml:6:5: rules[0].window: window 1m30s is not a whole number of buckets (settings.bucket is 1m)
	// kvwatch.yaml:7:5: rules[0].count: expected an integer, got "lots"
	// kvwatch.yaml:8:5: rules[0].runbook: environment variable RUNBOOK_URL is not set (write ${RUNBOOK_URL:-default} to give a default)
	// kvwatch.yaml:9:5: rules[1].id: duplicate rule id "secret-burst" (first defined at kvwatch.yaml:4:5)
	// kvwatch.yaml:11:5: rules[1].severity: unknown severity "urgent"; one of info, low, medium, high, critical
}
