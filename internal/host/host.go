// Package host is a double of the Azure Functions host as a custom handler
// sees it: it builds invocation bodies exactly as
// shared/reference/functions-host.md describes them, in every shape the
// Event Hubs trigger can produce, and posts them the way the host does.
//
// Tests use it, and so will `kvwatch dev`; nothing here runs in Azure.
package host

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Shape is how Data.<binding> carries the batch's event bodies.
type Shape int

// Shapes of Data.events.
const (
	// StringOfObjects: no dataType. The host parses each body as JSON and
	// serializes the array as a JSON string: "[{\"records\":[...]}, ...]".
	StringOfObjects Shape = iota
	// StringOfStrings: dataType "string". A JSON string holding an array of
	// strings, each one raw event body (what kvwatch's function.json asks for).
	StringOfStrings
	// StringOfBase64: dataType "binary". A JSON string holding an array of
	// base64 strings.
	StringOfBase64
	// PlainArray: a plain JSON array of event objects.
	PlainArray
)

// Shapes lists every shape, for table-driven tests.
var Shapes = []Shape{StringOfObjects, StringOfStrings, StringOfBase64, PlainArray}

func (s Shape) String() string {
	switch s {
	case StringOfObjects:
		return "string-of-objects"
	case StringOfStrings:
		return "string-of-strings"
	case StringOfBase64:
		return "string-of-base64"
	case PlainArray:
		return "plain-array"
	}
	return "shape-" + strconv.Itoa(int(s))
}

// Event is one Event Hubs event as the trigger sees it.
type Event struct {
	Body         []byte
	Sequence     int64
	Offset       int64
	Enqueued     time.Time
	PartitionKey string
}

// Batch is what one invocation carries.
type Batch struct {
	Namespace, Hub, ConsumerGroup, Partition string
	Events                                   []Event
	// RetryCount > 0 adds Metadata.RetryContext, as a retry policy does.
	RetryCount int
}

// Body builds the invocation body for batch in the given shape. For
// StringOfObjects and PlainArray every event body must be valid JSON (the
// real host fails such a batch before the handler sees it).
func Body(b Batch, shape Shape) ([]byte, error) {
	var data any
	switch shape {
	case StringOfObjects, PlainArray:
		arr := make([]json.RawMessage, len(b.Events))
		for i, e := range b.Events {
			if !json.Valid(e.Body) {
				return nil, fmt.Errorf("event %d: the host would fail a batch whose body is not JSON in shape %s", i, shape)
			}
			arr[i] = e.Body
		}
		if shape == PlainArray {
			data = arr
		} else {
			s, err := json.Marshal(arr)
			if err != nil {
				return nil, err
			}
			data = string(s)
		}
	case StringOfStrings, StringOfBase64:
		arr := make([]string, len(b.Events))
		for i, e := range b.Events {
			if shape == StringOfBase64 {
				arr[i] = base64.StdEncoding.EncodeToString(e.Body)
			} else {
				arr[i] = string(e.Body)
			}
		}
		s, err := json.Marshal(arr)
		if err != nil {
			return nil, err
		}
		data = string(s)
	default:
		return nil, fmt.Errorf("unknown shape %d", shape)
	}

	seq := make([]int64, len(b.Events))
	off := make([]string, len(b.Events))
	enq := make([]string, len(b.Events))
	pk := make([]*string, len(b.Events))
	props := make([]map[string]any, len(b.Events))
	sys := make([]map[string]any, len(b.Events))
	for i, e := range b.Events {
		seq[i] = e.Sequence
		off[i] = strconv.FormatInt(e.Offset, 10)
		// Enqueued times carry no zone suffix (UTC).
		enq[i] = e.Enqueued.UTC().Format("2006-01-02T15:04:05.999")
		if e.PartitionKey != "" {
			k := e.PartitionKey
			pk[i] = &k
		}
		props[i] = map[string]any{}
		sys[i] = map[string]any{
			"x-opt-sequence-number": e.Sequence,
			"x-opt-offset":          off[i],
			"x-opt-enqueued-time":   enq[i],
			"SequenceNumber":        e.Sequence,
			"Offset":                e.Offset,
			"PartitionKey":          pk[i],
			"EnqueuedTimeUtc":       enq[i],
		}
	}
	enc := func(v any) string {
		s, _ := json.Marshal(v)
		return string(s)
	}
	meta := map[string]any{
		"PartitionContext": map[string]any{
			"FullyQualifiedNamespace":        b.Namespace,
			"EventHubName":                   b.Hub,
			"ConsumerGroup":                  b.ConsumerGroup,
			"PartitionId":                    b.Partition,
			"IsCheckpointingAfterInvocation": true,
		},
		"SequenceNumberArray":   enc(seq),
		"OffsetArray":           enc(off),
		"EnqueuedTimeUtcArray":  enc(enq),
		"PartitionKeyArray":     enc(pk),
		"PropertiesArray":       enc(props),
		"SystemPropertiesArray": enc(sys),
		"sys": map[string]any{
			"MethodName": "AuditEvents",
			"UtcNow":     time.Now().UTC().Format(time.RFC3339Nano),
			"RandGuid":   "6b2c4e1e-6f3a-4c1b-9d4e-2a7c0f1e5b3d",
		},
	}
	if b.RetryCount > 0 {
		meta["RetryContext"] = map[string]any{"RetryCount": b.RetryCount, "MaxRetryCount": -1, "Exception": nil}
	}
	return json.Marshal(map[string]any{"Data": map[string]any{"events": data}, "Metadata": meta})
}

// Response is the custom handler's answer as the host reads it.
type Response struct {
	Status      int
	ContentType string
	Outputs     map[string]any `json:"Outputs"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue"`
	Raw         []byte
}

// Invoke posts body to baseURL/function the way the host does and reads the
// answer. A non-2xx status is returned in Response, not as an error; an
// error means no usable answer (the host would fail the invocation).
func Invoke(ctx context.Context, client *http.Client, baseURL, function string, body []byte) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/"+function, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("X-Azure-Functions-InvocationId", "0f6c3b9e-2d4b-4a8e-9b1c-5e7d2f3a4b6c")
	req.Header.Set("X-Azure-Functions-HostVersion", "4.1040.0.0")
	req.Header.Set("User-Agent", "Azure-Functions-Host/4.1040.0.0")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	r := &Response{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Raw: raw}
	if resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, r); err != nil {
			return r, fmt.Errorf("2xx answer is not the JSON object the host needs: %w", err)
		}
	}
	return r, nil
}
