package main

import (
	"bufio"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// repoRoot is where README.md is, from this package's directory.
const repoRoot = "../.."

// readmeMaxBytes: the README is for a newcomer, read in five minutes;
// the internals are in docs/.
const readmeMaxBytes = 20 * 1024

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The README stays under 20 KB.
func TestReadmeSize(t *testing.T) {
	if n := len(readFile(t, "README.md")); n >= readmeMaxBytes {
		t.Errorf("README.md is %d bytes, want under %d: move internals to docs/", n, readmeMaxBytes)
	}
}

var (
	mdLink      = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading   = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`)
	codeSpan    = regexp.MustCompile("`([^`\n]+)`")
	projectPath = regexp.MustCompile(`^(docs|internal|cmd|infra|function-app|e2e|tools|testdata|handlers|\.ci)/[A-Za-z0-9_./-]*$`)
	// generated are paths make writes (make demo, make build, make
	// package), quoted as where to find the output.
	generated = []string{"testdata/demo", "bin/", "dist/"}
)

// slug is GitHub's anchor for a heading: lower case, punctuation but
// hyphens and underscores dropped, spaces as hyphens.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// checkLinks checks that every relative link of the Markdown file rel
// names a file of the project, and its #anchor a heading of that file.
func checkLinks(t *testing.T, rel string) {
	t.Helper()
	text := readFile(t, rel)
	dir := filepath.Dir(rel)
	for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
		target := m[1]
		if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		file, anchor, _ := strings.Cut(target, "#")
		path := rel
		if file != "" {
			path = filepath.Join(dir, file)
		}
		if _, err := os.Stat(filepath.Join(repoRoot, path)); err != nil {
			t.Errorf("%s links to %s, which does not exist", rel, target)
			continue
		}
		if anchor == "" {
			continue
		}
		var slugs []string
		for _, h := range mdHeading.FindAllStringSubmatch(readFile(t, path), -1) {
			slugs = append(slugs, slug(h[1]))
		}
		if !slices.Contains(slugs, anchor) {
			t.Errorf("%s links to %s: %s has no heading #%s", rel, target, path, anchor)
		}
	}
}

// Every relative link of the README and of the docs it sends a newcomer
// to names a file that exists (and a heading that exists, for #anchors),
// and every project path the README quotes (`internal/pack/kvwatch.yaml`)
// exists.
func TestReadmeReferencesExist(t *testing.T) {
	for _, f := range []string{"README.md", "docs/architecture.md", "docs/rules.md", "docs/delivery.md", "docs/testing.md", "docs/runbook.md"} {
		checkLinks(t, f)
	}
	for _, m := range codeSpan.FindAllStringSubmatch(readFile(t, "README.md"), -1) {
		p := strings.TrimSuffix(m[1], "/")
		if !projectPath.MatchString(p) || slices.ContainsFunc(generated, func(g string) bool { return strings.HasPrefix(p, g) }) {
			continue
		}
		if _, err := os.Stat(filepath.Join(repoRoot, p)); err != nil {
			t.Errorf("README.md quotes `%s`, which is not in the project", m[1])
		}
	}
	// "What was not tested live" is one click from the README.
	if !strings.Contains(readFile(t, "README.md"), "](docs/testing.md#what-was-not-tested-live)") {
		t.Error("README.md does not link to docs/testing.md#what-was-not-tested-live")
	}
}

// makeTargets returns the targets the Makefile defines.
func makeTargets(t *testing.T) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(strings.NewReader(readFile(t, "Makefile")))
	rule := regexp.MustCompile(`^([A-Za-z0-9_.-]+(?: +[A-Za-z0-9_.-]+)*) *:([^=]|$)`)
	for sc.Scan() {
		if m := rule.FindStringSubmatch(sc.Text()); m != nil {
			out = append(out, strings.Fields(m[1])...)
		}
	}
	return out
}

// Every `make TARGET` the README names is a target of the Makefile.
func TestReadmeMakeTargetsExist(t *testing.T) {
	targets := makeTargets(t)
	named := regexp.MustCompile(`\bmake ([a-z][a-z0-9-]*)`).FindAllStringSubmatch(readFile(t, "README.md"), -1)
	if len(named) < 5 {
		t.Fatalf("found %d make targets in the README; the pattern is wrong", len(named))
	}
	for _, m := range named {
		if !slices.Contains(targets, m[1]) {
			t.Errorf("README.md names `make %s`, which the Makefile does not define (it has %v)", m[1], targets)
		}
	}
}

// Every `kvwatch COMMAND [SUBCOMMAND]` the README names answers --help
// with exit 0: commands that take subcommands refuse one they do not
// know (exit 2), so a misspelt or removed one fails here. The commands
// listed as "rules check|show|test" are each tried.
func TestReadmeCommandsExist(t *testing.T) {
	text := readFile(t, "README.md")
	seen := map[string]bool{}
	var cmds [][]string
	add := func(args ...string) {
		k := strings.Join(args, " ")
		if !seen[k] {
			seen[k] = true
			cmds = append(cmds, args)
		}
	}
	// What the README shows as code: code spans and fenced blocks.
	var code strings.Builder
	for _, m := range regexp.MustCompile("(?s)```[a-z]*\n(.*?)```").FindAllStringSubmatch(text, -1) {
		code.WriteString(m[1] + "\n")
	}
	for _, m := range codeSpan.FindAllStringSubmatch(text, -1) {
		code.WriteString(m[1] + "\n")
	}
	for _, m := range regexp.MustCompile(`\bkvwatch ([a-z]+)(?: ([a-z|]+))?`).FindAllStringSubmatch(code.String(), -1) {
		cmd, sub := m[1], m[2]
		if sub == "" {
			add(cmd)
			continue
		}
		for _, s := range strings.Split(sub, "|") {
			add(cmd, s)
		}
	}
	// The commands listed as `serve`, `rules check|show|test` in "Commands".
	if i := strings.Index(text, "## Commands"); i >= 0 {
		sec := text[i:]
		if j := strings.Index(sec[3:], "\n## "); j >= 0 {
			sec = sec[:j+3]
		}
		for _, m := range regexp.MustCompile("`([a-z]+)(?: ([a-z|]+))?`").FindAllStringSubmatch(sec, -1) {
			if m[2] == "" {
				add(m[1])
				continue
			}
			for _, s := range strings.Split(m[2], "|") {
				add(m[1], s)
			}
		}
	}
	if len(cmds) < 10 {
		t.Fatalf("found %d kvwatch commands in the README; the pattern is wrong: %v", len(cmds), cmds)
	}
	t.Logf("%d commands: %v", len(cmds), cmds)
	for _, args := range cmds {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append(slices.Clone(args), "--help"), func(string) string { return "" }, &stdout, &stderr)
		if code != 0 {
			t.Errorf("README.md names `kvwatch %s`: `kvwatch %s --help` exits %d:\n%s%s",
				strings.Join(args, " "), strings.Join(args, " "), code, stdout.String(), stderr.String())
		}
	}
}

// The Teams and email example of "Configure" passes `kvwatch rules check`
// as it stands, with the variables it reads set, and so do the YAML
// snippets of "Tune" (each on its own, the pack merged in).
func TestReadmeConfigExampleChecks(t *testing.T) {
	text := readFile(t, "README.md")
	const marker = "<!-- checked by cmd/kvwatch/readme_test.go with kvwatch rules check -->\n```yaml\n"
	i := strings.Index(text, marker)
	if i < 0 {
		t.Fatal("README.md has no checked example (the marker comment before its yaml block)")
	}
	example := text[i+len(marker):]
	example = example[:strings.Index(example, "```")]
	for _, want := range []string{"teams:", "email:", "${KVWATCH_TEAMS_WEBHOOK_URL}", "routes:"} {
		if !strings.Contains(example, want) {
			t.Errorf("the checked example lacks %s", want)
		}
	}
	// The "Tune" snippet, indented in its list item.
	tune := regexp.MustCompile("(?s)## Tune.*?```yaml\n(.*?)```").FindStringSubmatch(text)
	if tune == nil {
		t.Fatal("README.md's Tune section has no yaml block")
	}
	var dedented []string
	for _, l := range strings.Split(tune[1], "\n") {
		dedented = append(dedented, strings.TrimPrefix(l, "  "))
	}
	env := map[string]string{
		"KVWATCH_TEAMS_WEBHOOK_URL": "https://prod-00.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=SECRET",
		"KVWATCH_SMTP_PASSWORD":     "SECRET",
	}
	for name, yaml := range map[string]string{"configure": example, "tune": strings.Join(dedented, "\n"), "both": example + strings.Join(dedented, "\n")} {
		path := filepath.Join(t.TempDir(), "kvwatch.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"rules", "check", path}, func(k string) string { return env[k] }, &stdout, &stderr); code != 0 {
			t.Errorf("%s: kvwatch rules check exits %d:\n%s%s\n--- the example:\n%s", name, code, stdout.String(), stderr.String(), yaml)
		}
		if strings.Contains(stdout.String()+stderr.String(), "SECRET") {
			t.Errorf("%s: a secret was shown", name)
		}
	}
	// With a variable unset, the same file is refused, naming it.
	path := filepath.Join(t.TempDir(), "kvwatch.yaml")
	os.WriteFile(path, []byte(example), 0o644)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"rules", "check", path}, func(string) string { return "" }, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "KVWATCH_TEAMS_WEBHOOK_URL") {
		t.Errorf("unset variables: exit %d:\n%s", code, stderr.String())
	}
}

// Every KVWATCH_ variable the README tells the reader to set is read by
// the shipped configuration or the code.
func TestReadmeVariablesExist(t *testing.T) {
	var corpus strings.Builder
	corpus.WriteString(readFile(t, "internal/pack/kvwatch.yaml"))
	for _, dir := range []string{"cmd", "internal"} {
		filepath.WalkDir(filepath.Join(repoRoot, dir), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
				b, _ := os.ReadFile(p)
				corpus.Write(b)
			}
			return nil
		})
	}
	all := corpus.String()
	names := regexp.MustCompile(`\bKVWATCH_[A-Z_]+[A-Z]`).FindAllString(readFile(t, "README.md"), -1)
	if len(names) == 0 {
		t.Fatal("no KVWATCH_ variables found in README.md")
	}
	for _, n := range names {
		if !strings.Contains(all, n) {
			t.Errorf("README.md names %s, which neither the shipped configuration nor the code reads", n)
		}
	}
}

// The output "What you see" shows is what make run (kvwatch replay of the
// demo day) prints: the configuration line (stderr, first), the same
// findings in the same order, and the same summary but for its duration.
func TestReadmeShowsWhatMakeRunPrints(t *testing.T) {
	text := readFile(t, "README.md")
	i := strings.Index(text, "## What you see")
	if i < 0 {
		t.Fatal("README.md has no \"What you see\" section")
	}
	block := regexp.MustCompile("(?s)```\n(.*?)```").FindStringSubmatch(text[i:])
	if block == nil {
		t.Fatal("no output block in \"What you see\"")
	}
	duration := regexp.MustCompile(` in [0-9.]+[mµn]?s$`)
	heads := func(s string) (out []string) {
		for _, l := range strings.Split(s, "\n") {
			if l != "" && !strings.HasPrefix(l, " ") {
				out = append(out, duration.ReplaceAllString(l, ""))
			}
		}
		return out
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"replay"}, func(string) string { return "" }, &stdout, &stderr); code != 0 {
		t.Fatalf("kvwatch replay exits %d:\n%s", code, stderr.String())
	}
	errs := heads(strings.TrimSpace(stderr.String()))
	if len(errs) == 0 || errs[0] != demoConfigLine {
		t.Fatalf("kvwatch replay of the demo day does not say first which configuration it runs:\n%s", stderr.String())
	}
	got := append(append(errs[:1:1], heads(stdout.String())...), errs[1:]...)
	if want := heads(block[1]); !slices.Equal(got, want) {
		t.Errorf("README.md shows\n%s\n\nkvwatch replay prints\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
}
