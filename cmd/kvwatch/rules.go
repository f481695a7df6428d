package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/pack"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/ruletest"
)

const rulesUsage = `Usage:
  kvwatch rules check [--config FILE] [FILE]   validate the configuration as serve would, listing every error
  kvwatch rules show [--config FILE] ID        print a rule as it runs (the pack's, with your overrides and except)
  kvwatch rules test [--config FILE] [DIR]     run rule tests (no DIR: the default pack's own)

FILE "-" reads standard input. Run kvwatch rules SUBCOMMAND --help for its flags.
`

func rulesCmd(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return groupUsage(args, rulesUsage, stdout)
	}
	switch args[0] {
	case "check":
		return rulesCheck(args[1:], getenv, stdin, stdout)
	case "show":
		return rulesShow(args[1:], getenv, stdout)
	case "test":
		return rulesTest(ctx, args[1:], getenv, stdout)
	}
	return groupUsage(args, rulesUsage, stdout)
}

const configFlagHelp = "kvwatch.yaml (default: $KVWATCH_CONFIG, else the embedded configuration)"

// configFrom picks the configuration a command reads: FILE given as an
// argument or --config (not both, unless the same), "-" for standard
// input.
func configFrom(fs *flags, cfgFlag string, getenv func(string) string, stdin io.Reader) (*config.File, string, error) {
	path := cfgFlag
	if a := fs.arg(0); a != "" {
		if path != "" && path != a {
			return nil, "", usageError{fmt.Errorf("%s: give the file once, as FILE or --config, not %q and %q", fs.Name(), a, path)}
		}
		path = a
	}
	if path == "-" {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return nil, "", fmt.Errorf("reading the configuration from standard input: %w", err)
		}
		f, err := loadConfigData("<stdin>", data, getenv)
		return f, "<stdin>", err
	}
	name := path
	if name == "" {
		name = getenv("KVWATCH_CONFIG")
	}
	if name == "" {
		name = embeddedName
	}
	f, err := loadConfig(path, getenv)
	return f, name, err
}

// rulesCheck validates everything serve validates before it starts: the
// file, the rules it includes, the default pack merged with its overrides,
// the receivers, routes, silences and mute intervals, and compiles the
// rules. Every error is listed with its position; any error exits 1.
func rulesCheck(args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	fs := newFlags("rules check", "kvwatch rules check [--config FILE] [FILE]",
		`Validates the configuration as serve would: YAML and keys, rules, the default pack with your overrides
and except, receivers and their settings, routes, silences, mute intervals and delivery settings. Every
error is listed with file:line:col; any error exits 1. FILE (or --config) "-" reads standard input; no
FILE: $KVWATCH_CONFIG, else the embedded configuration.`)
	cfgPath := fs.String("config", "", configFlagHelp)
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if len(fs.args) > 1 {
		return usageError{fmt.Errorf("rules check takes one FILE, got %q", fs.args)}
	}
	f, name, err := configFrom(fs, *cfgPath, getenv, stdin)
	if err != nil {
		return err
	}
	rs, _, err := rules.Compile(f)
	if err != nil {
		return fmt.Errorf("%s: compile rules: %w", name, err)
	}
	on := 0
	for _, r := range rs {
		if r.Off == "" {
			on++
		} else {
			fmt.Fprintf(stdout, "rule %s is off: %s\n", r.ID, r.Off)
		}
	}
	for _, r := range f.Receivers {
		if r.Off != "" {
			fmt.Fprintf(stdout, "receiver %s is off: %s\n", r.Name, r.Off)
		}
	}
	if msg := f.NoReceivers(); msg != "" {
		fmt.Fprintln(stdout, msg)
	}
	fmt.Fprintf(stdout, "%s is valid: %d rules, %d on; %d receivers on, %d routes, %d silences, %d mute intervals\n",
		name, len(rs), on, len(f.Active()), len(f.Routes), len(f.Silences), len(f.MuteIntervals))
	return nil
}

// rulesShow prints one rule as it runs.
func rulesShow(args []string, getenv func(string) string, stdout io.Writer) error {
	fs := newFlags("rules show", "kvwatch rules show [--config FILE] ID",
		`Prints the rule ID as kvwatch runs it: the default pack's rule (or your own) with your overrides,
the top-level except and every default filled in, as YAML.`)
	cfgPath := fs.String("config", "", configFlagHelp)
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if len(fs.args) != 1 {
		return usageError{errors.New("rules show takes one rule ID (see kvwatch rules show --help)")}
	}
	id := fs.args[0]
	f, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	rs, _, err := rules.Compile(f)
	if err != nil {
		return fmt.Errorf("compile rules: %w", err)
	}
	var ids []string
	for i := range f.Rules {
		r := &f.Rules[i]
		ids = append(ids, r.ID)
		if r.ID != id {
			continue
		}
		out, err := yaml.Marshal(r)
		if err != nil {
			return fmt.Errorf("rules show %s: %w", id, err)
		}
		if _, o := f.Overrides[id]; o {
			fmt.Fprintf(stdout, "# changed by overrides.%s\n", id)
		}
		if len(f.Except) > 0 {
			fmt.Fprintf(stdout, "# the last %d entries of except are the top-level except\n", len(f.Except))
		}
		for _, c := range rs {
			if c.ID == id && c.Off != "" {
				fmt.Fprintf(stdout, "# off: %s\n", c.Off)
			}
		}
		_, err = stdout.Write(out)
		return err
	}
	return fmt.Errorf("rules show: no rule %q; rules are %s", id, strings.Join(ids, ", "))
}

func rulesTest(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := newFlags("rules test", "kvwatch rules test [--config FILE] [DIR]",
		`Runs rule tests (YAML files of events and the findings they must raise) against the configured
rules. No DIR: the default pack's own tests.`)
	cfgPath := fs.String("config", "", configFlagHelp)
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if len(fs.args) > 1 {
		return usageError{fmt.Errorf("rules test takes one DIR, got %q", fs.args)}
	}
	rs, s, err := loadRules(*cfgPath, getenv)
	if err != nil {
		return err
	}
	var suites map[string]*ruletest.File
	if dir := fs.arg(0); dir == "" {
		suites, err = ruletest.Load(pack.Tests, "tests")
	} else {
		st, serr := os.Stat(dir)
		switch {
		case serr != nil:
			return fmt.Errorf("rules test: %w", serr)
		case !st.IsDir():
			return fmt.Errorf("rules test: %s is not a directory (give the directory that holds the tests)", dir)
		}
		suites, err = ruletest.Load(os.DirFS(dir), ".")
		if err != nil {
			err = fmt.Errorf("rules test %s: %w", dir, err)
		}
	}
	if err != nil {
		return err
	}
	results := ruletest.Run(ctx, rs, s, suites)
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %s: %v\n", r.File, r.Name, r.Err)
		} else {
			fmt.Fprintf(stdout, "ok   %s: %s\n", r.File, r.Name)
		}
	}
	fmt.Fprintf(stdout, "rules: %d passed, %d failed\n", len(results)-failed, failed)
	if failed > 0 {
		return fmt.Errorf("%d rule tests failed", failed)
	}
	if len(results) == 0 {
		if dir := fs.arg(0); dir != "" {
			return fmt.Errorf("rules test: no rule tests found in %s", dir)
		}
		return errors.New("no rule tests found")
	}
	return nil
}
