package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics and always answers either a
// valid File or an *Errors with positions inside the input. The included
// files are the fuzzed data too, so include errors are exercised as well.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("../../testdata/config/*.yaml")
	more, _ := filepath.Glob("../../testdata/config/*/*.yaml")
	for _, name := range append(seeds, more...) {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("rules: [{id: a, kind: each, <<: {severity: high}}]\ninclude: ['rules/*.yaml']\n"))
	f.Add([]byte("a: &a [x, *a]\nrules: *a\n"))
	f.Add([]byte("rules:\n  - id: ${ID:-x}\n    kind: ${KIND}\n    count: $${N}\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		opts := Options{
			Getenv: func(name string) string {
				if name == "KIND" {
					return "each"
				}
				return ""
			},
			ReadFile: func(name string) ([]byte, error) {
				if name == "rules/a.yaml" {
					return data, nil
				}
				return nil, fs.ErrNotExist
			},
			Glob: func(pattern string) ([]string, error) {
				if _, err := filepath.Match(pattern, ""); err != nil {
					return nil, err
				}
				if ok, _ := filepath.Match(pattern, "rules/a.yaml"); ok {
					return []string{"rules/a.yaml"}, nil
				}
				return nil, nil
			},
		}
		file, err := Parse("kvwatch.yaml", data, opts)
		if err == nil {
			if file == nil {
				t.Fatal("no File and no error")
			}
			if err := file.Validate(); err != nil {
				t.Fatalf("a parsed file does not validate: %v", err)
			}
			return
		}
		var errs *Errors
		if !errors.As(err, &errs) || len(errs.List) == 0 {
			t.Fatalf("error %T %v", err, err)
		}
		// YAML breaks lines at CR LF, CR and LF alike (so do editors): a
		// position counts lines that way.
		lines := strings.Count(strings.ReplaceAll(strings.ReplaceAll(string(data), "\r\n", "\n"), "\r", "\n"), "\n") + 1
		for _, e := range errs.List {
			if e.Msg == "" {
				t.Errorf("empty message: %+v", e)
			}
			if e.File != "" && e.File != "kvwatch.yaml" && e.File != "rules/a.yaml" {
				t.Errorf("error in file %q", e.File)
			}
			if e.Line < 0 || e.Line > lines+1 || e.Column < 0 {
				t.Errorf("position %d:%d outside %d lines: %v", e.Line, e.Column, lines, e)
			}
		}
	})
}
