package finding

import (
	"fmt"
	"strings"
	"time"
)

// KQL returns a Log Analytics query over AzureDiagnostics (the default
// destination table of Key Vault diagnostic settings) showing the records a
// finding is about: the vault, the time window (padded by the 15 minutes
// records may arrive late), and the group's caller or IP. Property columns
// are read through column_ifexists, since AzureDiagnostics only has a column
// once some resource has sent it, and the caller's object id may sit in the
// short or the URI claim column (as Microsoft Sentinel's Key Vault rules do).
// Every value is embedded as an escaped KQL string literal.
func KQL(f *Finding) string {
	var b strings.Builder
	from := f.WindowStart.Add(-15 * time.Minute)
	to := f.WindowEnd.Add(15 * time.Minute)
	if f.WindowStart.IsZero() {
		from, to = f.FirstEvent.Add(-15*time.Minute), f.LastEvent.Add(15*time.Minute)
	}
	fmt.Fprintf(&b, "AzureDiagnostics\n| where TimeGenerated between (datetime(%s) .. datetime(%s))\n",
		from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	b.WriteString("| where ResourceProvider == \"MICROSOFT.KEYVAULT\" and Category == \"AuditEvent\"\n")
	if f.Vault != "" {
		fmt.Fprintf(&b, "| where Resource =~ %s\n", Quote(f.Vault))
	}
	b.WriteString("| extend CallerObjectId = iff(isempty(column_ifexists(\"identity_claim_oid_g\", \"\")), " +
		"column_ifexists(\"identity_claim_http_schemas_microsoft_com_identity_claims_objectidentifier_g\", \"\"), " +
		"column_ifexists(\"identity_claim_oid_g\", \"\"))\n")
	for _, p := range f.Group {
		switch p.Field {
		case "caller", "object_id":
			if p.Value == "" {
				continue
			}
			if f.Example != nil && f.Example.Caller.KeyFrom == "ip" && p.Field == "caller" {
				fmt.Fprintf(&b, "| where CallerIPAddress == %s\n", Quote(p.Value))
			} else if f.Example != nil && f.Example.Caller.KeyFrom == "appid" && p.Field == "caller" {
				fmt.Fprintf(&b, "| where column_ifexists(\"identity_claim_appid_g\", \"\") =~ %s\n", Quote(p.Value))
			} else {
				fmt.Fprintf(&b, "| where CallerObjectId =~ %s\n", Quote(p.Value))
			}
		case "app_id":
			fmt.Fprintf(&b, "| where column_ifexists(\"identity_claim_appid_g\", \"\") =~ %s\n", Quote(p.Value))
		case "ip":
			fmt.Fprintf(&b, "| where CallerIPAddress == %s\n", Quote(p.Value))
		case "operation":
			fmt.Fprintf(&b, "| where OperationName == %s\n", Quote(p.Value))
		}
	}
	if len(f.TopOperations) > 0 {
		ops := make([]string, len(f.TopOperations))
		for i, o := range f.TopOperations {
			ops[i] = Quote(o.Value)
		}
		fmt.Fprintf(&b, "| where OperationName in (%s)\n", strings.Join(ops, ", "))
	}
	b.WriteString("| project TimeGenerated, Resource, OperationName, ResultSignature, " +
		"httpStatusCode_d = column_ifexists(\"httpStatusCode_d\", real(null)), CallerIPAddress, CallerObjectId, " +
		"id_s = column_ifexists(\"id_s\", \"\"), clientInfo_s = column_ifexists(\"clientInfo_s\", \"\"), CorrelationId\n")
	b.WriteString("| order by TimeGenerated asc")
	return b.String()
}

// Quote returns s as a KQL string literal: backslash, double quote and
// control characters escaped, so log content can't end the literal or
// inject operators.
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04x`, r)
				continue
			}
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
