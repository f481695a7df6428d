package ingest_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/host"
	"github.com/kvwatch/kvwatch/internal/ingest"
)

// benchRecord returns realistic records: mostly data-plane reads with short
// claims, some management calls with URI claims, some denied.
func benchRecord(i int) string {
	t := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * 137 * time.Millisecond)
	ts := t.Format("2006-01-02T15:04:05.0000000Z")
	if i%10 == 9 {
		return fmt.Sprintf(`{"time":"%s","resourceId":"/SUBSCRIPTIONS/0B1F6471-1BF0-4DDA-AEC3-CB9272F09590/RESOURCEGROUPS/RG-PROD/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-WEB-PROD","operationName":"VaultGet","operationVersion":"2023-07-01","category":"AuditEvent","resultType":"Success","resultSignature":"OK","resultDescription":"","durationMs":"38","callerIpAddress":"52.168.1.%d","correlationId":"6f1c0d2e-4b1a-4a7e-9c55-%012d","identity":{"claim":{"http://schemas.microsoft.com/identity/claims/objectidentifier":"a5f0e1d2-3c4b-4d5e-8f9a-0b1c2d3e4f50","appid":"509e4652-da8d-478d-a730-e9d4a1996ca4","http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":"","http://schemas.microsoft.com/identity/claims/tenantid":"72f988bf-86f1-41af-91ab-2d7cd011db47"}},"properties":{"clientInfo":"AzureResourceGraph.IngestionWorkerService.global/1.24.1.0","requestUri":"https://management.azure.com/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/rg-prod/providers/Microsoft.KeyVault/vaults/kv-web-prod?api-version=2023-07-01","httpStatusCode":200,"sku":{"Family":"A","Name":"Standard","Capacity":null},"tenantId":"72f988bf-86f1-41af-91ab-2d7cd011db47","tlsVersion":"TLS1_2"}}`, ts, i%250, i)
	}
	status, sig := 200, "OK"
	if i%7 == 3 {
		status, sig = 403, "Forbidden"
	}
	return fmt.Sprintf(`{"time":"%s","resourceId":"/SUBSCRIPTIONS/0B1F6471-1BF0-4DDA-AEC3-CB9272F09590/RESOURCEGROUPS/RG-PROD/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-PAYMENTS-PROD","operationName":"SecretGet","operationVersion":"7.4","category":"AuditEvent","resultType":"Success","resultSignature":"%s","resultDescription":"","durationMs":"%d","callerIpAddress":"20.50.1.%d","correlationId":"a1b2c3d4-5e6f-4a8b-9c0d-%012d","identity":{"claim":{"oid":"11111111-2222-3333-4444-55555555%04d","appid":"04b07795-8ddb-461a-bbee-02f9e1bf7b46","appidacr":"2","http://schemas.microsoft.com/identity/claims/scope":"user_impersonation","upn":"svc-payments@contoso.com","ipaddr":"20.50.1.%d","tid":"72f988bf-86f1-41af-91ab-2d7cd011db47"}},"properties":{"id":"https://kv-payments-prod.vault.azure.net/secrets/db-password-%d/0123456789abcdef0123456789abcdef","clientInfo":"FxVersion/4.8.9181.0 OSName/Windows OSVersion/Microsoft.Windows.10.0.20348. Microsoft.Azure.KeyVault.KeyVaultClient/3.0.5.1","httpStatusCode":%d,"requestUri":"https://kv-payments-prod.vault.azure.net/secrets/db-password-%d?api-version=7.4","isAccessPolicyMatch":true,"secretProperties":{"attributes":{"enabled":true,"created":1700000000,"updated":1700000000}},"tlsVersion":"TLS1_2"}}`,
		ts, sig, 3+i%20, i%250, i, i%50, i%250, i%40, status, i%40)
}

// hostBody is 100 events of 10 records in the host's default shape
// (no dataType: a JSON string holding the array of event objects).
func hostBody(b *testing.B, shape host.Shape) []byte {
	batch := host.Batch{Namespace: "ns.servicebus.windows.net", Hub: "insights-logs-auditevent", ConsumerGroup: "kvwatch", Partition: "3"}
	for e := 0; e < 100; e++ {
		recs := make([]string, 10)
		for r := range recs {
			recs[r] = benchRecord(e*10 + r)
		}
		batch.Events = append(batch.Events, host.Event{Body: []byte(`{"records":[` + strings.Join(recs, ",") + `]}`),
			Sequence: int64(5000 + e), Enqueued: time.Date(2026, 11, 23, 9, 1, 0, 0, time.UTC)})
	}
	body, err := host.Body(batch, shape)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

const benchRecords = 1000

// baselineRecord is what a plain encoding/json decode into typed records
// materializes: the same fields kvwatch uses.
type baselineRecord struct {
	Time             string `json:"time"`
	ResourceID       string `json:"resourceId"`
	OperationName    string `json:"operationName"`
	OperationVersion string `json:"operationVersion"`
	Category         string `json:"category"`
	ResultType       string `json:"resultType"`
	ResultSignature  string `json:"resultSignature"`
	DurationMs       any    `json:"durationMs"`
	CallerIPAddress  string `json:"callerIpAddress"`
	CorrelationID    string `json:"correlationId"`
	Identity         struct {
		Claim struct {
			OID       json.RawMessage `json:"oid"`
			OIDURI    json.RawMessage `json:"http://schemas.microsoft.com/identity/claims/objectidentifier"`
			AppID     json.RawMessage `json:"appid"`
			UPN       json.RawMessage `json:"upn"`
			UPNURI    json.RawMessage `json:"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"`
			Name      json.RawMessage `json:"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"`
			TID       json.RawMessage `json:"tid"`
			TenantURI json.RawMessage `json:"http://schemas.microsoft.com/identity/claims/tenantid"`
		} `json:"claim"`
	} `json:"identity"`
	Properties struct {
		ID             string `json:"id"`
		RequestURI     string `json:"requestUri"`
		HTTPStatusCode any    `json:"httpStatusCode"`
		ClientInfo     string `json:"clientInfo"`
		TLSVersion     string `json:"tlsVersion"`
	} `json:"properties"`
}

func baselineDecode(body []byte) (int, error) {
	var inv struct {
		Data struct {
			Events string `json:"events"`
		} `json:"Data"`
		Metadata struct {
			SequenceNumberArray  string `json:"SequenceNumberArray"`
			EnqueuedTimeUtcArray string `json:"EnqueuedTimeUtcArray"`
		} `json:"Metadata"`
	}
	if err := json.Unmarshal(body, &inv); err != nil {
		return 0, err
	}
	var events []struct {
		Records []baselineRecord `json:"records"`
	}
	if err := json.Unmarshal([]byte(inv.Data.Events), &events); err != nil {
		return 0, err
	}
	n := 0
	for _, e := range events {
		n += len(e.Records)
	}
	return n, nil
}

func ingestDecode(body []byte) (int, error) {
	var d ingest.Decoder
	b := d.Invocation(body)
	if len(b.Letters) > 0 {
		return 0, fmt.Errorf("%v", b.Problems)
	}
	return len(b.Events), nil
}

func report(b *testing.B, records int) {
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkIngest is the whole ingest path: invocation body → decoded,
// normalized events with positions.
func BenchmarkIngest(b *testing.B) {
	body := hostBody(b, host.StringOfObjects)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := ingestDecode(body); err != nil || n != benchRecords {
			b.Fatalf("%d %v", n, err)
		}
	}
	report(b, benchRecords)
}

// BenchmarkIngestStringOfStrings is the same for the shape kvwatch's
// function.json asks for (dataType string).
func BenchmarkIngestStringOfStrings(b *testing.B) {
	body := hostBody(b, host.StringOfStrings)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := ingestDecode(body); err != nil || n != benchRecords {
			b.Fatalf("%d %v", n, err)
		}
	}
	report(b, benchRecords)
}

// BenchmarkBaseline only decodes the same body with encoding/json into
// typed records: no normalization, no positions.
func BenchmarkBaseline(b *testing.B) {
	body := hostBody(b, host.StringOfObjects)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := baselineDecode(body); err != nil || n != benchRecords {
			b.Fatalf("%d %v", n, err)
		}
	}
	report(b, benchRecords)
}

// BenchmarkIngestVsBaseline interleaves both on the same body, so a noisy
// machine slows both alike, and reports the throughput ratio
// (ingest records/s ÷ baseline records/s). Goal: ≥ 1.5.
func BenchmarkIngestVsBaseline(b *testing.B) {
	body := hostBody(b, host.StringOfObjects)
	var tIngest, tBase time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := baselineDecode(body); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := ingestDecode(body); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		tBase += t1.Sub(t0)
		tIngest += t2.Sub(t1)
	}
	b.ReportMetric(float64(benchRecords*b.N)/tIngest.Seconds(), "ingest-records/s")
	b.ReportMetric(float64(benchRecords*b.N)/tBase.Seconds(), "baseline-records/s")
	b.ReportMetric(tBase.Seconds()/tIngest.Seconds(), "ratio")
	b.ReportMetric(0, "ns/op")
}
