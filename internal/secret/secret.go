// Package secret hides what must never reach a log line or an error
// message: storage account keys, Event Hubs shared access keys and shared
// access signatures, in connection strings and URLs.
package secret

import (
	"errors"
	"regexp"
)

var (
	// A key or a whole signature runs to the next ';' of a connection string.
	keyRE = regexp.MustCompile(`(?i)\b(AccountKey|SharedAccessKey|SharedAccessSignature)=([^;]*)`)
	// A URL's signature parameter runs to the next '&', space or quote.
	sigRE = regexp.MustCompile(`(?i)\b(sig)=([^;&\s"']*)`)
)

// Redact returns s with every key and signature replaced by REDACTED.
func Redact(s string) string {
	s = keyRE.ReplaceAllString(s, "${1}=REDACTED")
	return sigRE.ReplaceAllString(s, "${1}=REDACTED")
}

// Error returns err with its message redacted. It unwraps to err, so
// errors.As still finds an *azcore.ResponseError and errors.Is a context
// error. Error of nil is nil, and an error it returned is returned as is.
func Error(err error) error {
	if err == nil {
		return nil
	}
	var r *redacted
	if errors.As(err, &r) {
		return err
	}
	return &redacted{err}
}

type redacted struct{ err error }

func (r *redacted) Error() string { return Redact(r.err.Error()) }
func (r *redacted) Unwrap() error { return r.err }
