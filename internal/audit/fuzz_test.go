package audit

import (
	"os"
	"path/filepath"
	"testing"
	"time"
	"unicode/utf8"
)

// addRecordSeeds adds every fixture record and malformed record as a seed.
func addRecordSeeds(f *testing.F) {
	for _, dir := range []string{recordsDir, malformedDir} {
		paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	addRecordSeeds(f)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"time":"2024-05-14T09:20:15Z","operationName":"SecretGet"}`))
	f.Add([]byte(`{"time":"0001-01-01T00:00:00Z","operationName":"X","resourceId":""}`))
	f.Add([]byte(`{"identity":{"claim":{"oid":[1,"a",{}],"upn":null}},"time":"2024-05-14 09:20:15+02","operationName":"K"}`))
	f.Add([]byte(`{"durationMs":"1e400","properties":{"httpStatusCode":"1e300","properties":{"accessPolicies":[[],{}]}},"time":"2024-05-14T09:20:15Z","operationName":"VaultPut"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRecord(data)
		if err != nil {
			return
		}
		e, skip, err := Normalize(&r, Source{})
		if err != nil || skip != SkipNone {
			if e.Operation != "" || !e.Time.IsZero() {
				t.Fatalf("Normalize returned an event with skip %q / error %v: %+v", skip, err, e)
			}
			return
		}
		if e.Time.IsZero() {
			t.Fatalf("event with a zero time from %q", r.Time)
		}
		if e.Time.Location() != time.UTC {
			t.Fatalf("event time %v not in UTC", e.Time)
		}
		if e.Operation == "" {
			t.Fatal("event with an empty operation")
		}
		if e.Family == "" || e.Kind == "" || e.Outcome == "" {
			t.Fatalf("event with empty enums: %+v", e)
		}
		if e.DurationMs < 0 {
			t.Fatalf("negative duration %d", e.DurationMs)
		}
		if e.Config != nil && e.Operation != "VaultPut" && e.Operation != "VaultPatch" {
			t.Fatalf("config on %s", e.Operation)
		}
		// Every event must survive the JSON encoding downstream packages use.
		if _, err := e.Time.MarshalJSON(); err != nil {
			t.Fatalf("event time %v does not marshal: %v", e.Time, err)
		}
	})
}

func FuzzParseTime(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join(recordsDir, "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if r, err := DecodeRecord(data); err == nil && r.Time != "" {
			f.Add(r.Time)
		}
	}
	for _, s := range []string{
		"", "2024-05-14T09:20:15", "2024-05-14 09:20:15.5+0200", "2016-12-31T23:59:60Z",
		"2024-02-31T00:00:00Z", "2024-05-14T09:20:15.1234567891234-11:59", "0001-01-01T00:00:00Z",
		"9999-12-31T23:59:59.999999999-23:59", "2024-05-14T09:20:15+02", "2024-05-14T09:20:15,5z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTime(s)
		if err != nil {
			if !got.IsZero() {
				t.Fatalf("ParseTime(%q) failed but returned %v", s, got)
			}
			if !utf8.ValidString(err.Error()) && utf8.ValidString(s) {
				t.Fatalf("ParseTime(%q): error message is not valid UTF-8: %q", s, err.Error())
			}
			return
		}
		if got.Location() != time.UTC {
			t.Fatalf("ParseTime(%q) = %v, not UTC", s, got)
		}
		if got.IsZero() {
			t.Fatalf("ParseTime(%q) = the zero time", s)
		}
		text := got.Format(time.RFC3339Nano)
		back, err := time.Parse(time.RFC3339Nano, text)
		if err != nil {
			t.Fatalf("ParseTime(%q) = %s, which time.Parse rejects: %v", s, text, err)
		}
		if !back.Equal(got) {
			t.Fatalf("ParseTime(%q) = %s, round-trips to %s", s, text, back.Format(time.RFC3339Nano))
		}
		// Our own parser reads what it wrote.
		again, err := ParseTime(text)
		if err != nil || !again.Equal(got) {
			t.Fatalf("ParseTime(%q) = %s; ParseTime of that = %v, %v", s, text, again, err)
		}
	})
}
