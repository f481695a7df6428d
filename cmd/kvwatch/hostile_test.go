package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/host"
)

func rssKB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return -1
}

// TestHostileInput posts bad input of every kind to the real binary: each
// is answered as documented (200 with the problem in Logs and a dead
// letter, never a crash), and the process stays up and small.
func TestHostileInput(t *testing.T) {
	dl := filepath.Join(t.TempDir(), "dl.jsonl")
	var out bytes.Buffer
	p, err := host.Start(context.Background(), binary, []string{"serve"},
		[]string{"KVWATCH_DEADLETTER_FILE=" + dl, "KVWATCH_MAX_BODY_BYTES=67108864"}, &out, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	inv := func(events string) string {
		return `{"Data":{"events":` + events + `},"Metadata":{"PartitionContext":{"PartitionId":"0"},"SequenceNumberArray":"[1]"}}`
	}
	str := func(s string) string { b, _ := jsonString(s); return b }
	nested := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	claims := `{"records":[{"time":"2026-11-23T09:00:00Z","resourceId":"/SUBSCRIPTIONS/A/RESOURCEGROUPS/B/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV","operationName":"SecretGet","identity":{"claim":{`
	for i := 0; i < 10000; i++ {
		if i > 0 {
			claims += ","
		}
		claims += fmt.Sprintf(`"c%d":"v%d"`, i, i)
	}
	claims += `}}}]}`
	many := `{"records":[` + strings.TrimSuffix(strings.Repeat(sampleRecord+",", 20000), ",") + `]}`
	cases := map[string]string{
		"truncated JSON":        `{"Data":{"events":"[{\"records\":[{\"time\"`,
		"null Data":             `{"Data":null,"Metadata":null}`,
		"wrong types":           inv(`"[{\"records\":[{\"time\":5,\"operationName\":[],\"resourceId\":{},\"identity\":\"x\",\"properties\":7}]}]"`),
		"invalid UTF-8":         inv(str("{\"records\":[{\"time\":\"2026-11-23T09:00:00Z\",\"operationName\":\"Secret\xff\xfeGet\",\"resourceId\":\"/SUBSCRIPTIONS/A/RESOURCEGROUPS/B/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV\"}]}")),
		"deeply nested":         inv(str(nested)),
		"10000 claims":          inv(`[` + claims + `]`),
		"20000 records":         inv(`[` + many + `]`),
		"not an object":         `[1,2,3]`,
		"binary garbage":        "\x00\x01\x02\xff\xfe",
		"events a number":       inv(`12345`),
		"sequence array absurd": `{"Data":{"events":"[]"},"Metadata":{"SequenceNumberArray":"[1e999, -1, \"x\"]"}}`,
	}
	before := rssKB(p.Cmd.Process.Pid)
	for name, body := range cases {
		r, err := host.Invoke(context.Background(), http.DefaultClient, p.BaseURL, "AuditEvents", []byte(body))
		if err != nil || r.Status != 200 || len(r.Logs) == 0 {
			t.Fatalf("%s: %v %+v\n%s", name, err, r, out.String())
		}
	}
	// A 100 MB body: refused as too large (limit 64 MiB), the process stays up.
	huge := append([]byte(`{"Data":{"events":"`), bytes.Repeat([]byte("A"), 100<<20)...)
	huge = append(huge, `"}}`...)
	r, err := host.Invoke(context.Background(), http.DefaultClient, p.BaseURL, "AuditEvents", huge)
	if err != nil || r.Status != 200 || !strings.Contains(r.Logs[0], "exceeds the limit") {
		t.Fatalf("100 MB body: %v %+v", err, r)
	}
	if resp, err := http.Get(p.BaseURL + "/"); err != nil {
		t.Fatalf("handler died: %v\n%s", err, out.String())
	} else {
		resp.Body.Close()
	}
	after := rssKB(p.Cmd.Process.Pid)
	t.Logf("resident memory %d KB before the hostile corpus, %d KB after", before, after)
	if after > 400_000 {
		t.Fatalf("resident memory %d KB after hostile input", after)
	}
	letters, _ := os.ReadFile(dl)
	if n := bytes.Count(letters, []byte("\n")); n < 8 {
		t.Fatalf("%d dead letters, want one for each unusable input", n)
	}
	// Non-loopback callers are refused (checked in handlers); loopback only
	// listening is checked here: the port is not bound on other addresses.
	if strings.Contains(p.BaseURL, "0.0.0.0") {
		t.Fatal("listening beyond loopback")
	}
}

func jsonString(s string) (string, error) {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}

// TestColdStart checks the first answer to GET / comes fast, before any
// configuration is loaded (the listener opens first).
func TestColdStart(t *testing.T) {
	var out bytes.Buffer
	p, err := host.Start(context.Background(), binary, []string{"serve"}, nil, &out, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	t.Logf("cold start: first GET / answered %s after process start", p.Ready.Sub(p.Started))
	body, _ := host.Body(host.Batch{Partition: "0", Events: []host.Event{{Body: []byte(`{"records":[` + sampleRecord + `]}`)}}}, host.StringOfStrings)
	start := time.Now()
	r, err := host.Invoke(context.Background(), http.DefaultClient, p.BaseURL, "AuditEvents", body)
	if err != nil || r.Status != 200 {
		t.Fatalf("%v %+v", err, r)
	}
	t.Logf("first invocation served in %s", time.Since(start))
}
