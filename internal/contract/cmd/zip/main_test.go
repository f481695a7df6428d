package main

import (
	"archive/zip"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestZipKeepsModesAndPaths(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app")
	if err := os.MkdirAll(filepath.Join(app, "AuditEvents"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]struct {
		body string
		mode os.FileMode
	}{
		"kvwatch":                   {"\x7fELF binary", 0o755},
		"host.json":                 {`{"version":"2.0"}`, 0o644},
		"AuditEvents/function.json": {`{"bindings":[]}`, 0o644},
	}
	for name, f := range files {
		p := filepath.Join(app, filepath.FromSlash(name))
		if err := os.WriteFile(p, []byte(f.body), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil { // umask
			t.Fatal(err)
		}
	}
	// Never deployed, as Core Tools and azd leave it out.
	if err := os.WriteFile(filepath.Join(app, "local.settings.json"), []byte(`{"Values":{"FUNCTIONS_WORKER_RUNTIME":"custom"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "app.zip")
	if err := Zip(out, app); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.OpenReader(out)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, zf := range zr.File {
		names = append(names, zf.Name)
		want, ok := files[zf.Name]
		if !ok {
			t.Errorf("unexpected entry %q", zf.Name)
			continue
		}
		if got := zf.Mode().Perm(); got != want.mode {
			t.Errorf("%s: mode %v, want %v", zf.Name, got, want.mode)
		}
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != want.body {
			t.Errorf("%s: content %q", zf.Name, b)
		}
	}
	if want := []string{"AuditEvents/function.json", "host.json", "kvwatch"}; len(names) != 3 || names[0] != want[0] || names[1] != want[1] || names[2] != want[2] {
		t.Errorf("entries %v, want sorted %v", names, want)
	}

	// Same tree, same bytes.
	out2 := filepath.Join(dir, "again.zip")
	if err := Zip(out2, app); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(out2)
	if string(a) != string(b) {
		t.Error("two archives of the same tree differ")
	}
}

func TestZipEmptyDir(t *testing.T) {
	if err := Zip(filepath.Join(t.TempDir(), "x.zip"), t.TempDir()); err == nil {
		t.Error("no error for an empty directory")
	}
}
