package delivery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// SilenceStore keeps the silences added at run time (kvwatch silence
// add|list|expire), so that every instance honours them without a restart
// or a new configuration. The Table Storage store (its own table) and
// MemorySilences implement it.
type SilenceStore interface {
	// AddSilence stores a silence; s.ID must be set (NewSilenceID).
	AddSilence(ctx context.Context, s Silence) error
	// Silences lists every stored silence, expired ones included, by
	// creation time.
	Silences(ctx context.Context) ([]Silence, error)
	// ExpireSilence ends a silence at at (if it would end later, or
	// never); ok is false if there is no silence with that ID.
	ExpireSilence(ctx context.Context, id string, at time.Time) (s Silence, ok bool, err error)
}

// NewSilenceID returns a fresh silence ID: 12 hex digits.
func NewSilenceID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// CheckSilence says what is wrong with a silence to be added, if anything.
func CheckSilence(s *Silence) error {
	var errs []error
	if s.ID == "" {
		errs = append(errs, errors.New("silence: no ID"))
	}
	if len(s.Rules)+len(s.Vaults)+len(s.Callers)+len(s.IPs) == 0 {
		errs = append(errs, errors.New("silence: name at least one of rules, vaults, callers, IPs"))
	}
	if !s.Ends.IsZero() && !s.Ends.After(s.Starts) {
		errs = append(errs, errors.New("silence: it ends before it starts"))
	}
	for _, p := range append(append([]string{}, s.Rules...), s.Vaults...) {
		if err := checkGlob(p); err != nil {
			errs = append(errs, fmt.Errorf("silence: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ParsePrefix reads an IP address or a CIDR, as silences take them.
func ParsePrefix(s string) (netip.Prefix, error) { return parsePrefix(s) }

func checkGlob(p string) error {
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("bad pattern %q", p)
	}
	return nil
}

// ExpiredAt is when a silence expired at at ends: at, or its start if
// that is later (a silence that had not begun never holds anything).
func ExpiredAt(s Silence, at time.Time) time.Time {
	if at.Before(s.Starts) {
		return s.Starts
	}
	return at
}

// MemorySilences is a SilenceStore in memory: serve without Table Storage.
type MemorySilences struct {
	mu sync.Mutex
	ss []Silence
}

// AddSilence implements SilenceStore.
func (m *MemorySilences) AddSilence(_ context.Context, s Silence) error {
	if s.ID == "" {
		return errors.New("silence: no ID")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if slices.ContainsFunc(m.ss, func(x Silence) bool { return x.ID == s.ID }) {
		return fmt.Errorf("silence %s exists", s.ID)
	}
	m.ss = append(m.ss, s)
	return nil
}

// Silences implements SilenceStore.
func (m *MemorySilences) Silences(context.Context) ([]Silence, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.ss), nil
}

// ExpireSilence implements SilenceStore.
func (m *MemorySilences) ExpireSilence(_ context.Context, id string, at time.Time) (Silence, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.ss {
		if m.ss[i].ID == id {
			if m.ss[i].Ends.IsZero() || m.ss[i].Ends.After(at) {
				m.ss[i].Ends = ExpiredAt(m.ss[i], at)
			}
			return m.ss[i], true, nil
		}
	}
	return Silence{}, false, nil
}

// SilenceWatcher keeps the silences of a SilenceStore in memory, read
// again every Interval (Run/Stop), for Options.SilenceSource: a silence
// added with kvwatch silence add is honoured by every instance within the
// interval, without a restart.
type SilenceWatcher struct {
	store    SilenceStore
	interval time.Duration
	now      func() time.Time
	log      zerolog.Logger

	mu      sync.RWMutex
	active  []Silence
	cancel  context.CancelFunc
	done    chan struct{}
	stopped bool
}

// DefaultSilencePoll is how often a SilenceWatcher reads its store.
const DefaultSilencePoll = 30 * time.Second

// NewSilenceWatcher returns a watcher of store; interval 0 is
// DefaultSilencePoll, now nil is time.Now.
func NewSilenceWatcher(store SilenceStore, interval time.Duration, now func() time.Time, log zerolog.Logger) *SilenceWatcher {
	if interval <= 0 {
		interval = DefaultSilencePoll
	}
	if now == nil {
		now = time.Now
	}
	return &SilenceWatcher{store: store, interval: interval, now: now, log: log}
}

// Refresh reads the store once: the silences not yet over replace those
// held. On an error the ones held stay.
func (w *SilenceWatcher) Refresh(ctx context.Context) error {
	all, err := w.store.Silences(ctx)
	if err != nil {
		return err
	}
	now := w.now()
	var live []Silence
	for _, s := range all {
		if s.Ends.IsZero() || s.Ends.After(now) {
			live = append(live, s)
		}
	}
	w.mu.Lock()
	w.active = live
	w.mu.Unlock()
	return nil
}

// Active returns the silences held (not over when last read).
func (w *SilenceWatcher) Active() []Silence {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.active
}

// Run reads the store every interval until ctx is done or Stop is called.
func (w *SilenceWatcher) Run(ctx context.Context) {
	w.mu.Lock()
	if w.stopped || w.done != nil {
		w.mu.Unlock()
		return
	}
	ctx, w.cancel = context.WithCancel(ctx)
	w.done = make(chan struct{})
	w.mu.Unlock()
	defer close(w.done)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		if err := w.Refresh(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn().Err(err).Msg("silences: reading the silences failed; keeping those read before")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stop ends Run and waits for it.
func (w *SilenceWatcher) Stop() {
	w.mu.Lock()
	w.stopped = true
	cancel, done := w.cancel, w.done
	w.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}
