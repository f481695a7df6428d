// Package receiver builds the receivers a configuration names. Each kind
// (teams, email, webhook, stdout) is one entry of one table, kinds: how
// to tell the kind from the configuration and how to build it. What an
// entry builds takes alerts (delivery.Notifier) and digests
// (digest.Sender), rendering a digest in its own form: the Adaptive Card
// for Teams, the HTML mail with its inline chart, the JSON form for
// webhooks, text or JSON for stdout. A new receiver kind is one entry
// here beside its package under internal/notify.
//
// The notify packages cannot take a *digest.Report themselves (digest
// reads the outbox of delivery, which reads their configuration), so the
// rendering for each lives here, in the one place that knows both.
package receiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/digest"
	"github.com/kvwatch/kvwatch/internal/notify"
	"github.com/kvwatch/kvwatch/internal/notify/email"
	"github.com/kvwatch/kvwatch/internal/notify/stdout"
	"github.com/kvwatch/kvwatch/internal/notify/teams"
	"github.com/kvwatch/kvwatch/internal/notify/webhook"
)

// Deps are what receivers are built with.
type Deps struct {
	// HTTPClient sends Teams, webhook and ACS requests; nil means each
	// package's default.
	HTTPClient *http.Client
	// Stdout is where stdout receivers write.
	Stdout io.Writer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log says which optional receivers are off.
	Log zerolog.Logger
}

// kind is one kind of receiver.
type kind struct {
	name  string
	is    func(r config.ReceiverSpec) bool
	build func(r config.ReceiverSpec, d Deps) (delivery.Notifier, error)
}

// kinds is the one table of receiver kinds.
var kinds = []kind{
	{"teams", func(r config.ReceiverSpec) bool { return r.Teams != nil }, func(r config.ReceiverSpec, d Deps) (delivery.Notifier, error) {
		n, err := teams.New(r.Name, *r.Teams, d.HTTPClient, d.Now)
		if err != nil {
			return nil, err
		}
		return teamsReceiver{n}, nil
	}},
	{"email", func(r config.ReceiverSpec) bool { return r.Email != nil }, func(r config.ReceiverSpec, d Deps) (delivery.Notifier, error) {
		n, err := email.New(r.Name, *r.Email, email.Deps{HTTPClient: d.HTTPClient, Now: d.Now})
		if err != nil {
			return nil, err
		}
		return emailReceiver{n}, nil
	}},
	{"webhook", func(r config.ReceiverSpec) bool { return r.Webhook != nil }, func(r config.ReceiverSpec, d Deps) (delivery.Notifier, error) {
		n, err := webhook.New(r.Name, *r.Webhook, d.HTTPClient, d.Now)
		if err != nil {
			return nil, err
		}
		return webhookReceiver{n}, nil
	}},
	{"stdout", func(r config.ReceiverSpec) bool { return r.Stdout != nil }, func(r config.ReceiverSpec, d Deps) (delivery.Notifier, error) {
		w := d.Stdout
		if w == nil {
			w = io.Discard
		}
		return stdoutReceiver{stdout.New(*r.Stdout, w)}, nil
	}},
}

// Build builds every configured receiver that is on, by name; optional
// receivers that are off are left out (and logged). Errors are all
// reported at once.
func Build(cfg *config.File, d Deps) (map[string]delivery.Notifier, error) {
	out := map[string]delivery.Notifier{}
	var errs []error
	for _, r := range cfg.Receivers {
		if r.Off != "" {
			d.Log.Info().Str("receiver", r.Name).Str("how", r.Off).Msg("optional receiver is off")
			continue
		}
		built := false
		for _, k := range kinds {
			if !k.is(r) {
				continue
			}
			n, err := k.build(r, d)
			if err != nil {
				errs = append(errs, err)
			} else {
				out[r.Name] = n
			}
			built = true
			break
		}
		if !built {
			errs = append(errs, fmt.Errorf("receiver %s: no kind configured (%s)", r.Name, Kinds()))
		}
	}
	return out, errors.Join(errs...)
}

// Kinds names the receiver kinds, e.g. for messages: "teams, email,
// webhook or stdout".
func Kinds() string {
	s := ""
	for i, k := range kinds {
		switch {
		case i == 0:
		case i == len(kinds)-1:
			s += " or "
		default:
			s += ", "
		}
		s += k.name
	}
	return s
}

// --- each kind's digest -------------------------------------------------

type teamsReceiver struct{ *teams.Notifier }

// SendDigest posts the digest's Adaptive Card.
func (n teamsReceiver) SendDigest(ctx context.Context, r *digest.Report) error {
	return n.Notifier.SendDigest(ctx, teams.Digest{ID: digest.ID(r), Card: digest.Card(r)})
}

type emailReceiver struct{ *email.Notifier }

// SendDigest mails the digest: text and HTML, the chart inline.
func (n emailReceiver) SendDigest(ctx context.Context, r *digest.Report) error {
	html, err := digest.HTML(r)
	if err != nil {
		return notify.Wrap("email "+n.Name(), notify.Permanent(fmt.Errorf("render digest %s: %w", digest.ID(r), err)))
	}
	png, err := digest.ChartPNG(r)
	if err != nil {
		return notify.Wrap("email "+n.Name(), notify.Permanent(fmt.Errorf("draw digest %s chart: %w", digest.ID(r), err)))
	}
	return n.Notifier.SendDigest(ctx, email.Digest{ID: digest.ID(r), Period: string(r.Period), Label: digest.PeriodLabel(r),
		Text: digest.Text(r), HTML: html, Chart: png, ChartCID: digest.ChartCID})
}

type webhookReceiver struct{ *webhook.Notifier }

// SendDigest posts the digest's JSON form.
func (n webhookReceiver) SendDigest(ctx context.Context, r *digest.Report) error {
	b, err := digest.JSON(r)
	if err != nil {
		return notify.Permanent(fmt.Errorf("encode digest %s: %w", digest.ID(r), err))
	}
	return n.Notifier.SendDigest(ctx, webhook.Digest{ID: digest.ID(r), JSON: b})
}

type stdoutReceiver struct{ *stdout.Notifier }

// SendDigest writes the digest as text, or its JSON form on one line.
func (n stdoutReceiver) SendDigest(ctx context.Context, r *digest.Report) error {
	b, err := digest.JSON(r)
	if err != nil {
		return notify.Permanent(fmt.Errorf("encode digest %s: %w", digest.ID(r), err))
	}
	return n.Notifier.SendDigest(ctx, stdout.Digest{Text: digest.Text(r), JSON: b})
}

// Stdout builds a stdout receiver outside any configuration (kvwatch
// digest --send and replay with none configured): it takes digests too.
func Stdout(cfg stdout.Config, w io.Writer) delivery.Notifier {
	return stdoutReceiver{stdout.New(cfg, w)}
}
