package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/azurite"
	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/host"
	"github.com/kvwatch/kvwatch/internal/printer"
)

// devCmd is `kvwatch dev`: everything a newcomer needs to watch kvwatch
// work, on this machine only. It starts Azurite (tools/azurite), a webhook
// catcher and an SMTP catcher that print what they receive, and this very
// binary as `kvwatch serve` the way the Functions host starts it; then it
// streams the demo day through the host double, fires the Housekeeping and
// LoggingSilence timers, and prints the alerts as they arrive. Ctrl-C stops
// everything. Nothing leaves 127.0.0.1.
func devCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("dev", "kvwatch dev [--batch N] [--pace D] [--partitions N] [--timers D] [--silence-after D] [--for D]",
		`Streams the demo day through a local Functions host double, Azurite and local receivers (a webhook
and an SMTP catcher) into kvwatch serve, and prints the alerts as they arrive. Needs make azurite-install.`)
	batch := fs.Int("batch", 20, "events (of 10 records) per batch")
	pace := fs.Duration("pace", 100*time.Millisecond, "pause between two rounds of batches")
	partitions := fs.Int("partitions", 2, "Event Hubs partitions the demo day is dealt to")
	every := fs.Duration("timers", 15*time.Second, "how often to fire the Housekeeping and LoggingSilence timers")
	silence := fs.Duration("silence-after", time.Minute, "settings.logging_silence.after in the generated kvwatch.yaml (the default pack says 60m)")
	stopAfter := fs.Duration("for", 0, "stop after this long (default: run until Ctrl-C)")
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if len(fs.args) > 0 || *batch <= 0 || *partitions <= 0 || *every <= 0 || *silence <= 0 {
		return usageError{errors.New("usage: kvwatch dev [--batch N] [--pace D] [--partitions N] [--timers D] [--silence-after D] [--for D]")}
	}
	if *stopAfter > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *stopAfter)
		defer cancel()
	}
	out := &devOut{w: stdout}

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("dev: cannot find this binary to run it as serve: %w", err)
	}
	tools, err := azurite.Tools()
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	work, err := os.MkdirTemp("", "kvwatch-dev-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	// Its own process group: Ctrl-C stops serve first, then Azurite.
	az, err := azurite.Launch(tools, azurite.Options{OwnGroup: true})
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer az.Stop()
	out.printf("kvwatch dev: Azurite (Table Storage, in memory) on 127.0.0.1:%d\n", az.Port)

	hook, err := startWebhookCatcher(out)
	if err != nil {
		return err
	}
	defer hook.Close()
	smtpAddr, smtpSrv, mails, err := startSMTPCatcher(out)
	if err != nil {
		return err
	}
	defer smtpSrv.Close()
	_, smtpPort, _ := net.SplitHostPort(smtpAddr)
	out.printf("kvwatch dev: webhook catcher on %s/alerts, SMTP catcher on %s\n", hook.url, smtpAddr)

	cfg := filepath.Join(work, "kvwatch.yaml")
	// The demo day's tenant: the pack, its exceptions (demo.Config, as
	// kvwatch replay runs the day), alerts to the local catchers.
	if err := os.WriteFile(cfg, append([]byte(fmt.Sprintf(`# Written by kvwatch dev: the default rule pack, alerts to the local catchers,
# and the demo tenant's exceptions (internal/demo/kvwatch.yaml).
settings:
  logging_silence: {after: %s}   # the default is 60m; short here so the silence after the demo day shows
receivers:
  - name: webhook
    webhook: {url: %q, timeout: 5s}
  - name: email
    email:
      from: kvwatch@example.com
      to: [secops@example.com]
      smtp: {host: 127.0.0.1, port: %s, tls: none, timeout: 5s}
delivery: {max_backoff: 5s, inhibit_wait: 5s}   # inhibit_wait's default is 1m; the day streams in seconds here
`, *silence, hook.url+"/alerts", smtpPort)), demo.Config...), 0o644); err != nil {
		return err
	}

	prefix := fmt.Sprintf("dev%d", rand.IntN(1_000_000))
	conn := az.ConnectionString()
	proc, err := host.Start(ctx, exe, []string{"serve"}, []string{
		"KVWATCH_TABLE_CONNECTION_STRING=" + conn, "KVWATCH_TABLE_PREFIX=" + prefix,
		"KVWATCH_CONFIG=" + cfg, "KVWATCH_LOG_LEVEL=warn",
		"KVWATCH_DEADLETTER_FILE=" + filepath.Join(work, "deadletter.jsonl"),
	}, &prefixWriter{prefix: "serve: ", w: stderr}, 30*time.Second)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("dev: start kvwatch serve: %w", err)
	}
	defer func() {
		if err := proc.Stop(35 * time.Second); err != nil {
			fmt.Fprintf(stderr, "kvwatch dev: serve: %v\n", err)
		}
	}()
	out.printf("kvwatch dev: kvwatch serve on %s, started as the Functions host starts it (ready in %s), config %s\n",
		proc.BaseURL, proc.Ready.Sub(proc.Started).Round(time.Millisecond), cfg)
	out.printf("kvwatch dev: to look at its state from another terminal:\n  KVWATCH_TABLE_CONNECTION_STRING='%s' KVWATCH_TABLE_PREFIX=%s kvwatch alerts list\n", conn, prefix)

	// Timers, as the host fires them on their schedules.
	timersDone := make(chan struct{})
	go func() {
		defer close(timersDone)
		devTimers(ctx, proc.BaseURL, *every, out)
	}()

	hub, clock := devHub(*partitions)
	out.printf("kvwatch dev: streaming the demo day (%s, 4 vaults, %d records) through the host double: %d partitions, %d-event batches\n",
		demoDay().Format(time.DateOnly), clock.records, *partitions, *batch)
	t0 := time.Now()
	if err := devStream(ctx, hub, clock, proc.BaseURL, *batch, *pace, out); err != nil {
		if ctx.Err() != nil {
			out.printf("kvwatch dev: stopping\n")
			<-timersDone
			return nil
		}
		return err
	}
	out.printf("kvwatch dev: the demo day went through in %s: %d alerts by webhook, %d mails so far.\n",
		time.Since(t0).Round(100*time.Millisecond), hook.count(), mails.count())
	out.printf("kvwatch dev: the vaults are silent now; LoggingSilence (fired every %s) raises logging-silence for each once %s have passed. Ctrl-C stops everything.\n",
		*every, *silence)
	<-ctx.Done()
	<-timersDone
	out.printf("kvwatch dev: stopping (%d alerts by webhook, %d mails)\n", hook.count(), mails.count())
	return nil
}

func demoDay() time.Time { return time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC) }

// devClock knows, per partition, the time of the last record of every
// event, to show how far through the day the stream is.
type devClock struct {
	last    map[string][]string
	records int
}

// devHub puts the demo day on a hub as the live stream carries it: every
// vault's records in one time order, 10 records per event, events dealt
// to the partitions round robin.
func devHub(partitions int) (*host.Hub, *devClock) {
	recs := demo.Stream(demo.Options{Day: demoDay()})
	h := host.NewHub()
	c := &devClock{last: map[string][]string{}, records: len(recs)}
	for i := 0; i*10 < len(recs); i++ {
		chunk := recs[i*10 : min(i*10+10, len(recs))]
		p := strconv.Itoa(i % partitions)
		h.Append(p, demo.EventBody(chunk))
		c.last[p] = append(c.last[p], string(chunk[len(chunk)-1].Time))
	}
	return h, c
}

// devStream delivers every partition, a batch at a time, round robin (so
// the partitions stay together in event time), pausing between rounds, and
// marks each hour of the day as the stream passes it.
func devStream(ctx context.Context, hub *host.Hub, clock *devClock, target string, batch int, pace time.Duration, out *devOut) error {
	retry := host.Retry{MaxRetryCount: -1, Min: time.Second, Max: 10 * time.Second}
	client := &http.Client{Timeout: 2 * time.Minute}
	parts := hub.Partitions()
	slices.Sort(parts)
	done := map[string]int{}
	hour := -1
	records := 0
	for {
		busy := false
		for _, p := range parts {
			n, _, err := hub.Deliver(ctx, client, target, p, batch, host.StringOfStrings, retry)
			if err != nil {
				return err
			}
			if n == 0 {
				continue
			}
			busy = true
			done[p] += n
			records += n
			at, _ := time.Parse(time.RFC3339Nano, clock.last[p][done[p]-1])
			if h := at.Hour(); h > hour {
				hour = h
				out.printf("  ··· %02d:00 UTC  (%d events so far)\n", h, records)
			}
		}
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pace):
		}
	}
}

// devTimers fires Housekeeping and LoggingSilence every interval until ctx
// ends, printing what they did when they did something.
func devTimers(ctx context.Context, target string, every time.Duration, out *devOut) {
	tk := time.NewTicker(every)
	defer tk.Stop()
	first := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		for _, name := range []string{"Housekeeping", "LoggingSilence"} {
			now := time.Now().UTC()
			r, err := host.Invoke(ctx, http.DefaultClient, target, name, host.TimerBody(name, now.Add(-every), now.Add(every), false))
			if ctx.Err() != nil {
				return
			}
			if err != nil || r.Status != http.StatusOK {
				status := 0
				if r != nil {
					status = r.Status
				}
				out.printf("timer    %s failed: %v (HTTP %d)\n", name, err, status)
				continue
			}
			for _, l := range r.Logs {
				idle := strings.Contains(l, " 0 alerts delivered, 0 still retrying, 0 given up") || strings.HasSuffix(l, ": 0 changes") ||
					strings.Contains(l, " done in ")
				if first || !idle {
					out.printf("timer    %s: %s\n", name, printer.Clean(l))
				}
			}
		}
		first = false
	}
}

// webhookCatcher prints every alert it receives.
type webhookCatcher struct {
	srv *http.Server
	url string
	mu  sync.Mutex
	n   int
}

func startWebhookCatcher(out *devOut) (*webhookCatcher, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &webhookCatcher{url: "http://" + l.Addr().String()}
	c.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		var a alert.Alert
		if err != nil || json.Unmarshal(body, &a) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
		if a.Schema != alert.SchemaVersion {
			out.printf("webhook  %s (%d bytes)\n", printer.Clean(a.Schema), len(body))
		} else {
			vault := a.Vault
			if vault == "" {
				vault = "-"
			}
			out.printf("webhook  %-8s %-18s %s (%s)\n", strings.ToUpper(a.Severity.String()), printer.Clean(vault),
				printer.Clean(a.Title), printer.Clean(a.Rule))
		}
		w.WriteHeader(http.StatusAccepted)
	})}
	go c.srv.Serve(l)
	return c, nil
}

func (c *webhookCatcher) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *webhookCatcher) Close() error { return c.srv.Close() }

// smtpCatcher is a go-smtp backend that prints each message's subject.
type smtpCatcher struct {
	out *devOut
	mu  sync.Mutex
	n   int
}

func (b *smtpCatcher) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

func (b *smtpCatcher) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{b: b}, nil }

type smtpSession struct {
	b  *smtpCatcher
	to []string
}

func (s *smtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}
func (s *smtpSession) Reset()        { s.to = nil }
func (s *smtpSession) Logout() error { return nil }

func (s *smtpSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	subject := "(no subject)"
	if m, err := mail.ReadMessage(bytes.NewReader(data)); err == nil {
		subject = m.Header.Get("Subject")
		if d, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
			subject = d
		}
	}
	s.b.mu.Lock()
	s.b.n++
	s.b.mu.Unlock()
	s.b.out.printf("mail     %s → %s\n", printer.Clean(subject), printer.Clean(strings.Join(s.to, ", ")))
	return nil
}

func startSMTPCatcher(out *devOut) (string, *smtp.Server, *smtpCatcher, error) {
	be := &smtpCatcher{out: out}
	srv := smtp.NewServer(be)
	srv.Domain = "localhost"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 16 << 20
	srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	go srv.Serve(l)
	return l.Addr().String(), srv, be, nil
}

// devOut serializes lines from the catchers, the timers and the stream.
type devOut struct {
	mu sync.Mutex
	w  io.Writer
}

func (o *devOut) printf(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.w, format, args...)
}

// prefixWriter writes each line with a prefix (serve's log lines).
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, printer.Clean(string(p.buf[:i])))
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}
