package secret_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kvwatch/kvwatch/internal/secret"
)

func TestRedact(t *testing.T) {
	const key = "c2VjcmV0LWtleS1tYXRlcmlhbA=="
	for _, c := range []struct{ in, want string }{
		{"AccountName=a;AccountKey=abc==;EndpointSuffix=x", "AccountName=a;AccountKey=REDACTED;EndpointSuffix=x"},
		{"https://a.table.core.windows.net/t?sv=2022&sig=abc%2Fdef&x", "https://a.table.core.windows.net/t?sv=2022&sig=REDACTED&x"},
		{"SharedAccessSignature=sv=1&sig=zzz;", "SharedAccessSignature=REDACTED;"},
		{"Endpoint=sb://x/;SharedAccessKeyName=listen;SharedAccessKey=" + key + ";EntityPath=a",
			"Endpoint=sb://x/;SharedAccessKeyName=listen;SharedAccessKey=REDACTED;EntityPath=a"},
		{"SharedAccessSignature=SharedAccessSignature sr=x&sig=" + key + "&se=1", "SharedAccessSignature=REDACTED"},
		{`Post "https://h/hook?sig=` + key + `": EOF`, `Post "https://h/hook?sig=REDACTED": EOF`},
		{"nothing secret here", "nothing secret here"},
	} {
		if got := secret.Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestErrorRedactsAndUnwraps(t *testing.T) {
	cause := fmt.Errorf("open AccountKey=k3y;: %w", context.DeadlineExceeded)
	err := secret.Error(fmt.Errorf("table: %w", cause))
	if strings.Contains(err.Error(), "k3y") || !strings.Contains(err.Error(), "AccountKey=REDACTED") {
		t.Fatalf("message %q", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, cause) {
		t.Fatal("the redacted error does not unwrap to its cause")
	}
	if secret.Error(err) != err || secret.Error(nil) != nil {
		t.Fatal("an error redacted already, or nil, is not returned as is")
	}
}

func ExampleRedact() {
	fmt.Println(secret.Redact("DefaultEndpointsProtocol=https;AccountName=kvwatch;AccountKey=bm90LWEta2V5;EndpointSuffix=core.windows.net"))
	// Output: DefaultEndpointsProtocol=https;AccountName=kvwatch;AccountKey=REDACTED;EndpointSuffix=core.windows.net
}
