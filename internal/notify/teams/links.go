package teams

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"net/url"
	"strings"
)

// LogsURL opens Log Analytics in the Azure portal, scoped to a resource (the
// vault: a resource-context query reads whichever workspaces its diagnostic
// settings send to), with query in the editor. It is the link the portal's
// own "Share > Copy link to query" makes:
//
//	https://portal.azure.com/#@{tenant}/blade/Microsoft_Azure_Monitoring_Logs/LogsBlade/resourceId/{resource id, URL-encoded}/source/LogsBlade.AnalyticsShareLinkToQuery/q/{query}
//
// where {query} is the query gzip-compressed, encoded as standard base64,
// then URL-encoded twice ("/" becomes %252F, "+" %252B, "=" %253D), as
// Microsoft's documentation links do. Without a tenant the "@{tenant}/" part
// is left out and the portal uses the signed-in user's directory.
func LogsURL(tenantID, resourceID, query string) string {
	var z bytes.Buffer
	w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression) // a valid level never errors
	w.Write([]byte(query))                                // writes to a bytes.Buffer never fail
	w.Close()
	q := url.QueryEscape(url.QueryEscape(base64.StdEncoding.EncodeToString(z.Bytes())))
	u := "https://portal.azure.com/#"
	if tenantID != "" {
		u += "@" + url.PathEscape(tenantID) + "/"
	}
	return u + "blade/Microsoft_Azure_Monitoring_Logs/LogsBlade/resourceId/" + strings.ReplaceAll(url.QueryEscape(resourceID), "+", "%20") +
		"/source/LogsBlade.AnalyticsShareLinkToQuery/q/" + q
}
