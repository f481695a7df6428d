// Package config loads kvwatch.yaml: strict decoding (unknown keys are
// errors), every error reported at once with file, line and column, ${NAME}
// expansion from the environment, rule files included by glob, and
// validation of everything that can be checked without running.
package config

import (
	"time"

	"github.com/kvwatch/kvwatch/internal/notify/email"
	"github.com/kvwatch/kvwatch/internal/notify/stdout"
	"github.com/kvwatch/kvwatch/internal/notify/teams"
	"github.com/kvwatch/kvwatch/internal/notify/webhook"
)

// File is kvwatch.yaml.
type File struct {
	Settings Settings `yaml:"settings"`
	// Include names rule files (globs, relative to the including file);
	// each holds a `rules:` list.
	Include []string   `yaml:"include"`
	Rules   []RuleSpec `yaml:"rules"`
	// DefaultPack, true unless set false, runs the embedded default rule
	// pack too; a rule here with the id of a pack rule replaces it.
	DefaultPack *bool `yaml:"default_pack"`

	// Delivery settings, receivers, routes and silences: where findings go.
	Delivery      DeliverySettings   `yaml:"delivery"`
	Receivers     []ReceiverSpec     `yaml:"receivers"`
	Routes        []RouteSpec        `yaml:"routes"`
	Silences      []SilenceSpec      `yaml:"silences"`
	MuteIntervals []MuteIntervalSpec `yaml:"mute_intervals"`

	// Overrides change some of a rule's fields (a pack rule's, usually)
	// without copying it, by rule id.
	Overrides map[string]OverrideSpec `yaml:"overrides"`
	// Except lists events no rule fires on (any one matching is enough):
	// a caller, app, vault or network allowed everywhere.
	Except []MatchSpec `yaml:"except"`
	// Inhibit makes one message of rules that fire on the same evidence
	// (Alertmanager's inhibit_rules): an alert of a target rule is recorded
	// as inhibited, and named in the source rule's alert, when a source
	// alert has the same values of the equal fields. Without the key, the
	// default pack's apply; `inhibit: []` turns them off.
	Inhibit []InhibitSpec `yaml:"inhibit"`

	// name and meta are where the file was read from and where each of
	// its keys was written, for Resolve's messages; nil for a File built
	// in code.
	name string
	meta *meta
}

// OverrideSpec is what overrides: changes in one rule; what is left out
// stays as the rule has it.
type OverrideSpec struct {
	Enabled  *bool    `yaml:"enabled"`
	Severity string   `yaml:"severity"`
	Count    int      `yaml:"count"`
	Window   Duration `yaml:"window"`
	Cooldown Duration `yaml:"cooldown"`
	Learning Duration `yaml:"learning"`
	Horizon  Duration `yaml:"horizon"`
	// Vaults replaces the rule's match.vaults (globs).
	Vaults []string `yaml:"vaults"`
	// Except is added to the rule's own except.
	Except  []MatchSpec `yaml:"except"`
	Tags    []string    `yaml:"tags"` // added to the rule's tags
	Runbook string      `yaml:"runbook"`
	// UpdateOn replaces the keys of the rule's update_on it sets.
	UpdateOn *UpdateOn `yaml:"update_on"`
	// Routine replaces the keys of the rule's routine it sets (a rule
	// without one gets one, the defaults filling the rest; enabled: false
	// turns it off).
	Routine *Routine `yaml:"routine"`
}

// InhibitSpec is one inhibition: while an alert of a source rule stands
// (within that rule's cooldown), an alert of a target rule with the same
// values of every equal field is not sent on its own but named in the
// source's. A target that brings what the source did not report (an
// operation of the administrative, delete, purge, backup or restore kinds
// the source's evidence does not hold, a higher severity than a source
// already sent) is never inhibited.
type InhibitSpec struct {
	SourceRules []string `yaml:"source_rules"` // rule ids (globs)
	TargetRules []string `yaml:"target_rules"` // rule ids (globs)
	// Equal are event fields (audit.FieldNames) both must agree on: a
	// finding's group value, else its vault, else its example event's.
	Equal []string `yaml:"equal"`
}

// UpdateOn says which later evidence for an incident the user was told of
// is sent as an update of it (cooldowns and reminders hold back only
// repeats of the facts already reported).
type UpdateOn struct {
	// Operations: an operation of the administrative, delete, purge, backup
	// or restore kinds not reported yet; default true.
	Operations *bool `yaml:"operations"`
	// Severity: a severity above the one reported; default true.
	Severity *bool `yaml:"severity"`
	// CountFactor: a count at least this many times the count last
	// reported (2: 25, then 50, 100, …); 0 never. Default 2, and 0 for
	// each rules (whose count is a batch's events, not the incident's).
	CountFactor *float64 `yaml:"count_factor"`
}

// DeliverySettings tune the alert lifecycle.
type DeliverySettings struct {
	// GiveUp is how long an alert a receiver does not accept is retried
	// before it is recorded as undelivered; default 24h.
	GiveUp Duration `yaml:"give_up"`
	// MaxBackoff caps the wait between two attempts; default 10m.
	MaxBackoff Duration `yaml:"max_backoff"`
	// MaxReminder caps the exponential re-alerting interval for a
	// condition that persists (cooldown, 2×, 4×, …); default 24h.
	MaxReminder Duration `yaml:"max_reminder"`
	// GroupWait holds a new alert this long, adding the findings of the
	// same rule and vault that arrive meanwhile; default 0 (send at once).
	GroupWait Duration `yaml:"group_wait"`
	// InhibitWait holds an alert of a rule some inhibition targets
	// (mass-secret-retrieval, a burst) this long when no alert of a source
	// rule covers it yet, so that a source raised by a later batch (the
	// listing of a sweep whose reads came first, on another partition)
	// still makes one message that names it; default 1m, 0 sends at once.
	InhibitWait Duration `yaml:"inhibit_wait"`
	// SendTimeout is the deadline of one send to one receiver; default
	// 30s. A receiver that does not answer within it is tried again later;
	// it never holds up ingestion or the other receivers.
	SendTimeout Duration `yaml:"send_timeout"`
	// Retention is how long the outbox keeps alerts no receiver waits for
	// any more (delivered, given up, muted) and the decisions about
	// findings before Housekeeping deletes them; default 100d.
	Retention Duration `yaml:"retention"`
}

// ReceiverSpec is one receiver: a name and exactly one of the kinds.
type ReceiverSpec struct {
	Name string `yaml:"name"`
	// Optional leaves the receiver out, instead of failing, when variables
	// its settings need (${NAME} with no default) are unset; Off then says
	// which. Routes skip a receiver that is off.
	Optional bool            `yaml:"optional"`
	Off      string          `yaml:"-"`
	Teams    *teams.Config   `yaml:"teams"`
	Email    *email.Config   `yaml:"email"`
	Webhook  *webhook.Config `yaml:"webhook"`
	Stdout   *stdout.Config  `yaml:"stdout"`
}

// RouteSpec sends matching alerts to receivers. Routes are tried in
// order; the first that matches wins unless it says continue.
type RouteSpec struct {
	Receivers   []string `yaml:"receivers"`
	MinSeverity string   `yaml:"min_severity"` // info..critical
	Rules       []string `yaml:"rules"`        // globs
	Tags        []string `yaml:"tags"`
	Vaults      []string `yaml:"vaults"` // globs
	Continue    bool     `yaml:"continue"`
}

// SilenceSpec mutes matching alerts between two instants (event time).
type SilenceSpec struct {
	Comment string   `yaml:"comment"`
	Rules   []string `yaml:"rules"`   // globs
	Vaults  []string `yaml:"vaults"`  // globs
	Callers []string `yaml:"callers"` // globs over the group's caller and the example's UPN
	IPs     []string `yaml:"ips"`     // CIDRs or addresses
	Starts  string   `yaml:"starts"`  // RFC 3339
	Ends    string   `yaml:"ends"`    // RFC 3339
}

// MuteIntervalSpec is a recurring maintenance window: alerts whose events
// fall in it are recorded as muted.
type MuteIntervalSpec struct {
	Name  string   `yaml:"name"`
	Zone  string   `yaml:"zone"`
	Days  []string `yaml:"days"`
	Start string   `yaml:"start"` // "HH:MM"
	End   string   `yaml:"end"`   // "HH:MM"
}

// RulesFile is an included rules file.
type RulesFile struct {
	Rules []RuleSpec `yaml:"rules"`
}

// Settings apply to every rule.
type Settings struct {
	// Lateness is how late (in event time) a record may arrive and still
	// count with certainty; state is kept that long past the longest window.
	Lateness Duration `yaml:"lateness"` // default 15m
	// Bucket is the width of the counting buckets windows are made of.
	Bucket Duration `yaml:"bucket"` // default 1m
	// BusinessHours define "outside business hours" for matches.
	BusinessHours BusinessHours `yaml:"business_hours"`
	// TrustedNetworks are CIDRs that ip_in / ip_not_in may name as
	// "trusted_networks"; rules that use it are off while the list is empty.
	TrustedNetworks []string `yaml:"trusted_networks"`
	// LoggingSilence: when a vault's records stop arriving.
	LoggingSilence LoggingSilence `yaml:"logging_silence"`
}

// LoggingSilence configures the LoggingSilence timer.
type LoggingSilence struct {
	// After is how long without a record makes a vault silent; default 60m.
	After Duration `yaml:"after"`
	// Vaults are watched even before kvwatch has seen a record from them
	// (vault names, lower-case).
	Vaults []string `yaml:"vaults"`
	// Overrides give quiet vaults their own After.
	Overrides []SilenceOverride `yaml:"overrides"`
}

// SilenceOverride is one vault's own LoggingSilence.After.
type SilenceOverride struct {
	Vault string   `yaml:"vault"`
	After Duration `yaml:"after"`
}

// BusinessHours is a weekly schedule in a time zone.
type BusinessHours struct {
	Zone  string   `yaml:"zone"`  // IANA zone, default UTC
	Days  []string `yaml:"days"`  // mon..sun, default mon-fri
	Start string   `yaml:"start"` // "08:00", default 08:00
	End   string   `yaml:"end"`   // "18:00", default 18:00
}

// RuleSpec is one rule as written in YAML.
type RuleSpec struct {
	ID          string      `yaml:"id"`
	Title       string      `yaml:"title"`
	Description string      `yaml:"description"`
	Severity    string      `yaml:"severity"` // info, low, medium, high, critical
	Tags        []string    `yaml:"tags"`     // MITRE ATT&CK ids and free tags
	Enabled     *bool       `yaml:"enabled"`  // default true
	Match       MatchSpec   `yaml:"match"`
	Except      []MatchSpec `yaml:"except"`
	GroupBy     []string    `yaml:"group_by"` // event field names (audit.FieldNames)
	Kind        string      `yaml:"kind"`     // each, threshold, distinct, spike, new_value, sequence, config_change, access_grant
	Window      Duration    `yaml:"window"`   // threshold, distinct, spike, sequence
	Count       int         `yaml:"count"`    // threshold: N; distinct: N distinct; sequence: N events of `then`
	Field       string      `yaml:"field"`    // distinct: the field counted
	Fields      []string    `yaml:"fields"`   // new_value: the value (tuple) remembered
	Horizon     Duration    `yaml:"horizon"`  // new_value: how long a value stays known (L)
	Learning    Duration    `yaml:"learning"` // new_value, spike: silence after the first event seen
	Baseline    *Baseline   `yaml:"baseline"` // spike
	Then        *MatchSpec  `yaml:"then"`     // sequence: event B (event A is `match`); access_grant: what the grantee does
	Cooldown    Duration    `yaml:"cooldown"` // default: the window, or 1h for each/new_value
	Runbook     string      `yaml:"runbook"`
	// MinEvents (distinct): the window must also hold at least this many
	// matching events (Sentinel's mass retrieval: more than 10 distinct
	// secrets and more than 50 reads a day).
	MinEvents int `yaml:"min_events"`
	// UpdateOn says what later evidence makes an update of an incident
	// already reported; defaults in DefaultUpdateOn.
	UpdateOn *UpdateOn `yaml:"update_on"`
	// Routine: a group that fired in After distinct periods within Within
	// is routine: told once, then no longer alerted but for growth
	// (routine.go). Application identities only (service principals,
	// managed identities: an app id, no user principal name): a person is
	// never learned as routine, and alerts every time; the rule must group
	// by caller (or object_id).
	Routine *Routine `yaml:"routine"`
}

// Baseline configures a spike rule.
type Baseline struct {
	Days     int     `yaml:"days"`      // history length, default 7
	K        float64 `yaml:"k"`         // deviations above the mean, default 3
	Ratio    float64 `yaml:"ratio"`     // and at least this many times the mean, default 3
	MinCount int     `yaml:"min_count"` // and at least this many, default 20
}

// MatchSpec selects events. Every key given must match (AND); within a key
// any listed value may match (OR). Strings match case-insensitively; those
// marked glob accept * and ?.
type MatchSpec struct {
	Operations  []string `yaml:"operations"`   // glob
	Families    []string `yaml:"families"`     // audit.Family
	Kinds       []string `yaml:"kinds"`        // audit.Kind
	Outcomes    []string `yaml:"outcomes"`     // audit.Outcome
	Status      []int    `yaml:"status"`       // HTTP status codes
	Vaults      []string `yaml:"vaults"`       // glob
	Callers     []string `yaml:"callers"`      // glob, against caller key, UPN, object id and app id
	AppIDs      []string `yaml:"app_ids"`      // exact
	Objects     []string `yaml:"objects"`      // glob against object name
	ObjectTypes []string `yaml:"object_types"` // secret, key, certificate, storage
	ClientInfo  []string `yaml:"client_info"`  // glob
	// IPIn / IPNotIn are CIDRs or plain addresses; the word
	// "trusted_networks" stands for settings.trusted_networks.
	IPIn                 []string `yaml:"ip_in"`
	IPNotIn              []string `yaml:"ip_not_in"`
	OutsideBusinessHours *bool    `yaml:"outside_business_hours"`
	// Anonymous matches requests that carried no identity at all (the SDKs'
	// first, unauthenticated request gets a 401 challenge by design).
	Anonymous *bool        `yaml:"anonymous"`
	Config    *ConfigMatch `yaml:"config"`
}

// ConfigMatch looks at the configuration a VaultPut/VaultPatch left.
type ConfigMatch struct {
	// Weakened matches when any protection is off: network default Allow,
	// public network access Enabled, purge protection, RBAC or soft delete
	// false, soft-delete retention below 90 days.
	Weakened             *bool    `yaml:"weakened"`
	NetworkDefaultAction []string `yaml:"network_default_action"`
	PublicNetworkAccess  []string `yaml:"public_network_access"`
	PurgeProtection      *bool    `yaml:"purge_protection"`
	RBAC                 *bool    `yaml:"rbac"`
	SoftDelete           *bool    `yaml:"soft_delete"`
	RetentionBelow       int      `yaml:"retention_below_days"`
}

// Duration is a time.Duration written as "90s", "5m", "1h30m" or "7d".
type Duration struct {
	time.Duration
	Set bool
}
