package printer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/printer"
)

func TestEventLineEscapesLogContent(t *testing.T) {
	hostile := []string{
		"\x1b[31mred\x1b[0m",        // terminal colour
		"alice\nFAKE LINE",          // forged line
		"bob\r\x1b[2Kcleared",       // carriage return and erase
		"name with \"quotes\" \\ x", // quotes
		"\u202etxt.exe",             // right-to-left override
		"zero\u200bwidth",
		string([]byte{0xff, 0xfe}), // invalid UTF-8
	}
	for _, h := range hostile {
		e := audit.Event{Time: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC), Vault: h, Operation: h,
			ObjectType: "secret", ObjectName: h, Outcome: audit.OutcomeDenied, HTTPStatus: 403,
			CallerIP: h, Caller: audit.Caller{UPN: h}}
		line := printer.EventLine(&e)
		for _, r := range line {
			if r < 0x20 || r == 0x7f || r == 0x202e || r == 0x200b || r == 0xfffd {
				t.Fatalf("control or invisible character %U survived in %q", r, line)
			}
		}
		if strings.Count(line, "\n") != 0 {
			t.Fatalf("line break survived: %q", line)
		}
	}
}

func TestEventLinePlainValuesStayReadable(t *testing.T) {
	e := audit.Event{Time: time.Date(2026, 11, 23, 9, 14, 3, 123e6, time.UTC), Vault: "kv-payments-prod",
		Operation: "SecretGet", ObjectType: "secret", ObjectName: "db-password", Outcome: audit.OutcomeDenied,
		HTTPStatus: 403, CallerIP: "20.50.1.7", Caller: audit.Caller{UPN: "alice@contoso.com", Key: "x"}}
	want := "2026-11-23T09:14:03.123Z kv-payments-prod SecretGet secret/db-password denied(403) caller=alice@contoso.com ip=20.50.1.7"
	if got := printer.EventLine(&e); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestJSONOutputIsOneObjectPerLine(t *testing.T) {
	var buf bytes.Buffer
	p := printer.NewEvents(&buf, printer.JSON)
	evs := []audit.Event{{Vault: "a\nb", Operation: "SecretGet"}, {Vault: "c", Operation: "KeyGet"}}
	if _, err := p.Consume(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %q", len(lines), buf.String())
	}
	for i, l := range lines {
		var e audit.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if e.Vault != evs[i].Vault {
			t.Fatalf("line %d round-trips to %q", i, e.Vault)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for in, ok := range map[string]bool{"text": true, "json": true, "yaml": false, "": false} {
		if _, err := printer.ParseFormat(in); (err == nil) != ok {
			t.Errorf("ParseFormat(%q) err=%v", in, err)
		}
	}
}
