package email

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/uuid"

	"github.com/kvwatch/kvwatch/internal/notify"
)

// ACSScope is the Entra ID scope of the Communication Services data plane
// (the double slash is Microsoft's: the Azure SDKs use it as is).
const ACSScope = "https://communication.azure.com//.default"

// ACS Email REST payloads (Email_Send, Email_GetSendResult).
type acsAddress struct {
	Address     string `json:"address"`
	DisplayName string `json:"displayName,omitempty"`
}

type acsRecipients struct {
	To []acsAddress `json:"to"`
	CC []acsAddress `json:"cc,omitempty"`
}

type acsContent struct {
	Subject   string `json:"subject"`
	PlainText string `json:"plainText"`
	HTML      string `json:"html"`
}

type acsMessage struct {
	SenderAddress string            `json:"senderAddress"`
	Recipients    acsRecipients     `json:"recipients"`
	Content       acsContent        `json:"content"`
	Headers       map[string]string `json:"headers,omitempty"`
	// Security alerts must not have their links rewritten for click
	// tracking.
	UserEngagementTrackingDisabled bool `json:"userEngagementTrackingDisabled"`
}

type acsResult struct {
	ID     string `json:"id"`
	Status string `json:"status"` // NotStarted, Running, Succeeded, Failed, Canceled
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// operationNamespace names kvwatch's Operation-Id UUIDs.
var operationNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/kvwatch/kvwatch#email-operation"))

// OperationID is the Operation-Id sent with an alert: a UUID (the API
// wants one) derived from the receiver's name and the alert ID, so every
// attempt to send the same alert through the same receiver names the same
// operation. The service does not deduplicate on it; the outbox does.
func OperationID(receiver, alertID string) string {
	return uuid.NewSHA1(operationNamespace, []byte(receiver+"\x00"+alertID)).String()
}

func (n *Notifier) sendACS(ctx context.Context, m *message) error {
	msg := acsMessage{
		SenderAddress: n.cfg.From,
		Content:       acsContent{Subject: m.Subject, PlainText: m.Text, HTML: m.HTML},
		Headers: map[string]string{
			"X-Kvwatch-Alert-Id": m.AlertID,
			"X-Kvwatch-Severity": m.Severity,
		},
		UserEngagementTrackingDisabled: true,
	}
	if m.Rule != "" {
		msg.Headers["X-Kvwatch-Rule"] = m.Rule
	}
	for _, a := range n.cfg.To {
		msg.Recipients.To = append(msg.Recipients.To, acsAddress{Address: a})
	}
	for _, a := range n.cfg.CC {
		msg.Recipients.CC = append(msg.Recipients.CC, acsAddress{Address: a})
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return notify.Permanent(fmt.Errorf("acs: encode: %w", err))
	}
	opID := OperationID(n.name, m.AlertID)

	send := n.apiURL("/emails:send")
	resp, rbody, err := n.acsDo(ctx, http.MethodPost, send, body, opID)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return acsStatusError("acs: send", resp, rbody, n.now())
	}
	var res acsResult
	_ = json.Unmarshal(rbody, &res)
	if done, err := acsTerminal(opID, &res); done {
		return err
	}
	if res.ID == "" {
		res.ID = opID
	}
	poll := n.pollURL(resp.Header.Get("Operation-Location"), res.ID)
	return n.pollACS(ctx, poll, opID, resp, res.Status)
}

// pollACS polls the operation until it is terminal or poll_timeout is
// spent, waiting retry-after when the service gives one.
func (n *Notifier) pollACS(ctx context.Context, poll *url.URL, opID string, resp *http.Response, status string) error {
	ctx, cancel := context.WithTimeout(ctx, n.pollTimeout+30*time.Second)
	defer cancel()
	var waited time.Duration
	last := status
	var lastErr error
	for {
		wait := notify.RetryAfter(resp.Header.Get("Retry-After"), n.now())
		if wait <= 0 {
			wait = n.pollInterval
		}
		if left := n.pollTimeout - waited; wait > left {
			wait = left
		}
		if wait <= 0 {
			why := "status " + last
			if lastErr != nil {
				why = lastErr.Error()
			}
			return notify.Temporary(fmt.Errorf("acs: operation %s not finished after %s (%s); the service accepted the mail, a retry may send it twice", opID, n.pollTimeout, why), 0)
		}
		if err := n.sleep(ctx, wait); err != nil {
			return notify.Temporary(fmt.Errorf("acs: polling operation %s: %w", opID, err), 0)
		}
		waited += wait

		r, rbody, err := n.acsDo(ctx, http.MethodGet, poll, nil, "")
		if err != nil {
			var ne *notify.Error
			if errors.As(err, &ne) && !ne.Retry {
				return err
			}
			lastErr = err
			resp = &http.Response{Header: http.Header{}}
			continue
		}
		resp = r
		if r.StatusCode/100 != 2 {
			err := acsStatusError("acs: poll", r, rbody, n.now())
			if retry, _ := notify.Retryable(err); retry {
				lastErr = err
				continue
			}
			return err
		}
		lastErr = nil
		var res acsResult
		if err := json.Unmarshal(rbody, &res); err != nil {
			lastErr = fmt.Errorf("unreadable status: %v", err)
			continue
		}
		if done, err := acsTerminal(opID, &res); done {
			return err
		}
		last = headerText(res.Status, 40)
	}
}

// acsTerminal reports whether res is a final status, and its error.
func acsTerminal(opID string, res *acsResult) (bool, error) {
	switch res.Status {
	case "Succeeded":
		return true, nil
	case "Failed", "Canceled":
		why := ""
		if res.Error != nil {
			why = ": " + headerText(res.Error.Code, 100) + ": " + headerText(res.Error.Message, 300)
		}
		return true, notify.Permanent(fmt.Errorf("acs: operation %s %s%s", opID, res.Status, why))
	}
	return false, nil
}

func acsStatusError(step string, resp *http.Response, body []byte, now time.Time) error {
	err := notify.FromStatus(resp, headerText(string(body), 300), now)
	var ne *notify.Error
	if errors.As(err, &ne) {
		ne.Err = fmt.Errorf("%s: %w", step, ne.Err)
	}
	return err
}

func (n *Notifier) apiURL(path string) *url.URL {
	u := *n.endpoint
	u.Path = path
	u.RawQuery = url.Values{"api-version": {n.cfg.ACS.APIVersion}}.Encode()
	return &u
}

// pollURL is the Operation-Location the service gave, if it is on the
// endpoint's own scheme and host (credentials go nowhere else); otherwise
// the documented status route of the operation.
func (n *Notifier) pollURL(loc, id string) *url.URL {
	if loc != "" {
		if u, err := n.endpoint.Parse(loc); err == nil && u.Scheme == n.endpoint.Scheme && u.Host == n.endpoint.Host {
			if u.Query().Get("api-version") == "" {
				q := u.Query()
				q.Set("api-version", n.cfg.ACS.APIVersion)
				u.RawQuery = q.Encode()
			}
			u.Fragment = ""
			return u
		}
	}
	return n.apiURL("/emails/operations/" + url.PathEscape(id))
}

// acsDo sends one authorized request and reads (a bounded part of) the
// answer. Transport failures are temporary.
func (n *Notifier) acsDo(ctx context.Context, method string, u *url.URL, body []byte, opID string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, nil, notify.Permanent(fmt.Errorf("acs: %w", err))
	}
	if body == nil {
		req.Body = http.NoBody
		req.ContentLength = 0
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "kvwatch")
	if opID != "" {
		req.Header.Set("Operation-Id", opID)
	}
	if err := n.authorize(ctx, req, body); err != nil {
		return nil, nil, err
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return nil, nil, notify.Temporary(fmt.Errorf("acs: %s %s: %w", method, notify.RedactURL(u.String()), err), 0)
	}
	defer resp.Body.Close()
	rbody, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, nil, notify.Temporary(fmt.Errorf("acs: %s %s: reading answer: %w", method, notify.RedactURL(u.String()), err), 0)
	}
	return resp, rbody, nil
}

// authorize signs req with the access key (HMAC-SHA256 over
// "VERB\npath?query\ndate;host;content-hash") or sets an Entra ID bearer
// token.
func (n *Notifier) authorize(ctx context.Context, req *http.Request, body []byte) error {
	if n.key != nil {
		date := n.now().UTC().Format(http.TimeFormat)
		sum := sha256.Sum256(body)
		hash := base64.StdEncoding.EncodeToString(sum[:])
		sig := acsSignature(n.key, req.Method, req.URL.RequestURI(), date, req.URL.Host, hash)
		req.Header.Set("x-ms-date", date)
		req.Header.Set("x-ms-content-sha256", hash)
		req.Header.Set("Authorization", "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature="+sig)
		return nil
	}
	tok, err := n.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{ACSScope}})
	if err != nil {
		return notify.Temporary(fmt.Errorf("acs: get Entra ID token: %w", err), 0)
	}
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	return nil
}

// acsSignature is the base64 HMAC-SHA256, keyed with the decoded access
// key, of the string to sign.
func acsSignature(key []byte, method, pathAndQuery, date, host, contentHash string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(method + "\n" + pathAndQuery + "\n" + date + ";" + host + ";" + contentHash))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
