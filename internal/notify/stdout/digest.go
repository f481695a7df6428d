package stdout

import (
	"context"
	"io"
)

// Digest is a digest as this receiver writes it, already rendered
// (internal/digest depends on this package through delivery and config).
type Digest struct {
	// Text is digest.Text; JSON the webhook body (one object), written on
	// one line in json format.
	Text string
	JSON []byte
}

// SendDigest writes the digest: its text, or its JSON on one line.
func (n *Notifier) SendDigest(_ context.Context, d Digest) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.json {
		_, err := n.w.Write(append(append([]byte(nil), d.JSON...), '\n'))
		return err
	}
	_, err := io.WriteString(n.w, d.Text)
	return err
}
