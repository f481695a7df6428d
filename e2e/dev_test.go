package e2e

import (
	"bytes"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDevCommand runs `kvwatch dev` as a newcomer does (from the checkout,
// after make azurite-install): the demo day through the host double must
// reach both local receivers with the reference run's rules, each alert by
// webhook and by mail, and the silence that follows must raise
// logging-silence for every vault.
func TestDevCommand(t *testing.T) {
	cmd := exec.Command(binary, "dev", "--for", "40s", "--pace", "0", "--batch", "50",
		"--timers", "3s", "--silence-after", "10s")
	cmd.Dir = ".." // the checkout: dev finds tools/azurite from here
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kvwatch dev: %v\nstdout:\n%s\nstderr:\n%s", err, tail(out.String(), 40), tail(errb.String(), 40))
	}
	text := out.String()

	webhook := regexp.MustCompile(`(?m)^webhook  (\S+)\s+(\S+)\s+.* \(([a-z0-9-]+)\)$`)
	mail := regexp.MustCompile(`(?m)^mail     \[kvwatch\] `)
	hooks := webhook.FindAllStringSubmatch(text, -1)
	if n, m := len(hooks), len(mail.FindAllString(text, -1)); n == 0 || n != m {
		t.Fatalf("%d alerts by webhook, %d mails; want the same number, more than none\n%s", n, m, tail(text, 60))
	}
	var rules []string
	silent := map[string]bool{}
	for _, h := range hooks {
		if !slices.Contains(rules, h[3]) {
			rules = append(rules, h[3])
		}
		if h[3] == "logging-silence" {
			silent[h[2]] = true
		}
	}
	var wantRules []string
	for _, l := range want(t) {
		if r, _, _ := strings.Cut(l, " "); !slices.Contains(wantRules, r) {
			wantRules = append(wantRules, r)
		}
	}
	wantRules = append(wantRules, "logging-silence")
	slices.Sort(rules)
	slices.Sort(wantRules)
	if !slices.Equal(rules, wantRules) {
		t.Errorf("rules alerted by kvwatch dev:\n  %v\nwant (the reference run's, and logging-silence):\n  %v", rules, wantRules)
	}
	for _, v := range []string{"kv-payments-prod", "kv-web-prod", "kv-shared-infra", "kv-data-dev"} {
		if !silent[v] {
			t.Errorf("no logging-silence alert for %s after the demo day\n%s", v, tail(text, 30))
		}
	}
	if !strings.Contains(text, "kvwatch dev: stopping") {
		t.Errorf("kvwatch dev did not stop by itself after --for\n%s", tail(text, 10))
	}
}
