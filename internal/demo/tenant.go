package demo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// TenantOptions configures Tenant: the steady traffic of a mid-size tenant,
// for measuring how kvwatch's cost grows with the number of callers (issue
// 11). The zero value gives 300 application identities over 20 vaults, 15
// people, 2 partitions, 100,000 records from 2026-11-23 00:00 UTC.
type TenantOptions struct {
	// Callers is how many application identities (service principals with
	// an object id and an app id) read secrets; 0 means 300.
	Callers int
	// People is how many people (UPNs) do portal and CLI work; 0 means
	// max(3, Callers/20).
	People int
	// Vaults is how many vaults the traffic is spread over; 0 means 20.
	Vaults int
	// Partitions is how many Event Hubs partitions events are dealt to,
	// round robin; 0 means 2.
	Partitions int
	// Seed drives every random choice; 0 means 1.
	Seed int64
	// Start is the event time of the first record; zero means 2026-11-23.
	Start time.Time
	// Records is how many records to make; 0 means 100,000.
	Records int
	// RecordsPerEvent is how many records Azure Monitor packs into one
	// event; 0 means 10.
	RecordsPerEvent int
	// Rate is records per second of event time, whatever the number of
	// callers (so a batch spans the same event time at every cardinality);
	// 0 means 40.
	Rate float64
}

func (o TenantOptions) withDefaults() TenantOptions {
	if o.Callers <= 0 {
		o.Callers = 300
	}
	if o.People <= 0 {
		o.People = max(3, o.Callers/20)
	}
	if o.Vaults <= 0 {
		o.Vaults = 20
	}
	if o.Partitions <= 0 {
		o.Partitions = 2
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Start.IsZero() {
		o.Start = defaultDay
	}
	if o.Records <= 0 {
		o.Records = 100_000
	}
	if o.RecordsPerEvent <= 0 {
		o.RecordsPerEvent = 10
	}
	if o.Rate <= 0 {
		o.Rate = 40
	}
	return o
}

// TenantEvent is one Event Hubs event of a tenant's traffic: the partition
// it is dealt to and its records (EventBody gives its body).
type TenantEvent struct {
	Partition int
	Records   []Record
}

// TenantStream makes a tenant's traffic event by event, in event-time
// order (records of requests that overlap interleave within a second, as
// they do in Azure), holding only the world in memory: any number of
// records can be streamed. The same options give the same events.
//
// The mix, by records: about 83% application identities polling the ~30
// secrets each reads from its vault (SecretGet, now and then a SecretList
// first), 6% people (UPNs) working in the portal (VaultGet through ARM,
// SecretList, SecretGet) or the CLI, 11% Azure Resource Graph reading
// vaults (VaultGet through ARM). About 3% fail: the SDK's anonymous 401
// first leg when a client starts, 403 when an application reads a vault it
// has no role on, 404 for a secret name that no longer exists.
type TenantStream struct {
	o      TenantOptions
	g      *gen
	r      *rand.Rand
	vaults []*vault
	apps   []*tenantApp
	people []*tenantPerson
	t      time.Time
	made   int
	events int
	buf    bytes.Buffer
	enc    *json.Encoder
	queue  []Record
}

type tenantApp struct {
	p       *principal
	cl      *client
	ips     []string
	home    *vault
	other   *vault // a vault it has no role on
	secrets []string
}

type tenantPerson struct {
	p      *principal
	cl     *client
	ip     string
	vaults []*vault
}

// Tenant returns the stream of a tenant's traffic.
func Tenant(o TenantOptions) *TenantStream {
	o = o.withDefaults()
	g := &gen{seed: uint64(o.Seed), day: o.Start.UTC(), span: 100 * 365 * 24 * time.Hour}
	s := &TenantStream{o: o, g: g, r: g.rng("tenant/activity"), t: g.day}
	s.enc = json.NewEncoder(&s.buf)
	s.enc.SetEscapeHTML(false)
	s.world()
	return s
}

// TenantRecords returns all the records of Tenant(o), in stream order
// (partitions interleaved as they were dealt).
func TenantRecords(o TenantOptions) []Record {
	s := Tenant(o)
	var out []Record
	for {
		e, ok := s.Next()
		if !ok {
			return out
		}
		out = append(out, e.Records...)
	}
}

// Options returns the options in effect, defaults filled in.
func (s *TenantStream) Options() TenantOptions { return s.o }

// Made reports how many records the stream has returned so far.
func (s *TenantStream) Made() int { return s.made }

var tenantTeams = []string{"payments", "orders", "web", "search", "identity", "billing", "data", "ml",
	"shipping", "catalog", "crm", "hr", "reporting", "iot", "mobile", "edge", "platform", "support",
	"inventory", "pricing", "fraud", "ledger", "notify", "media"}

var tenantSecretStems = []string{"db", "sql", "redis", "storage", "servicebus", "eventhub", "cosmos",
	"api", "webhook", "signing", "jwt", "oauth", "smtp", "sftp", "partner", "cdn", "search", "appinsights"}

var tenantSecretKinds = []string{"connection", "password", "key", "secret", "token", "readonly", "admin-password", "sas"}

var tenantFirst = []string{"alex", "maria", "sam", "li", "omar", "anna", "jonas", "priya", "tom", "eva",
	"kenji", "sara", "lucas", "noor", "ivan", "julia", "mateo", "chloe", "amir", "hanna"}

var tenantLast = []string{"smith", "garcia", "chen", "novak", "haddad", "berg", "kumar", "rossi", "dubois",
	"silva", "tanaka", "weber", "okafor", "lindqvist", "moreau", "kowalski"}

// world makes the vaults, application identities and people.
func (s *TenantStream) world() {
	o, g := s.o, s.g
	r := g.rng("tenant/world")
	subs := []string{guid(r), guid(r), guid(r)}
	for i := range o.Vaults {
		team := tenantTeams[i%len(tenantTeams)]
		env := []string{"prod", "dev", "test"}[i/len(tenantTeams)%3]
		name := fmt.Sprintf("kv-%s-%s-%02d", team, env, i)
		if len(name) > 24 { // vault names are at most 24 characters
			name = fmt.Sprintf("kv-%s-%02d", team, i)
		}
		v := &vault{name: name, sub: subs[i%len(subs)], rg: "rg-" + team + "-" + env,
			rbac: i%3 != 2, purgeProtection: i%2 == 0, ver: map[string]string{}, created: map[string]int64{}}
		v.rid = v.resourceID()
		seen := map[string]bool{}
		for len(v.secrets) < 48 {
			n := team + "-" + tenantSecretStems[r.IntN(len(tenantSecretStems))] + "-" + tenantSecretKinds[r.IntN(len(tenantSecretKinds))]
			if seen[n] {
				n += "-" + strconv.Itoa(len(v.secrets))
			}
			seen[n] = true
			v.secrets = append(v.secrets, n)
			v.ver["secrets/"+n] = hex32(r)
			v.created["secrets/"+n] = g.day.Add(-time.Duration(30+r.IntN(400)) * 24 * time.Hour).Unix()
		}
		s.vaults = append(s.vaults, v)
	}
	appClients := []string{"net8", "java", "csi", "net48", "adf", "cli-gha"}
	for i := range o.Callers {
		home := s.vaults[i%len(s.vaults)]
		other := s.vaults[(i+1+r.IntN(max(len(s.vaults)-1, 1)))%len(s.vaults)]
		p := &principal{name: fmt.Sprintf("service principal app-%04d", i), oid: guid(r), appid: guid(r), acr: "1"}
		if r.IntN(2) == 0 { // a managed identity
			p.acr = "2"
			p.mirid = miid(home.sub, home.rg, fmt.Sprintf("Microsoft.ManagedIdentity/userAssignedIdentities/id-app-%04d", i))
		}
		a := &tenantApp{p: p, cl: clients[appClients[r.IntN(len(appClients))]], home: home, other: other}
		for range 1 + r.IntN(3) {
			a.ips = append(a.ips, fmt.Sprintf("10.%d.%d.%d", 1+i/4096%200, i/16%256, 4+r.IntN(250)))
		}
		perm := r.Perm(len(home.secrets))
		for _, k := range perm[:26+r.IntN(9)] { // about 30 secrets
			a.secrets = append(a.secrets, home.secrets[k])
		}
		s.apps = append(s.apps, a)
	}
	for i := range o.People {
		upn := fmt.Sprintf("%s.%s%d@contoso.com", tenantFirst[i%len(tenantFirst)], tenantLast[(i/len(tenantFirst)+i)%len(tenantLast)], i)
		pp := &tenantPerson{p: &principal{name: upn, oid: guid(r), upn: upn, human: true},
			cl: clients[[]string{"portal", "cli", "portal", "python"}[i%4]],
			ip: fmt.Sprintf("198.51.100.%d", 10+i%200)}
		for range 1 + r.IntN(3) {
			pp.vaults = append(pp.vaults, s.vaults[r.IntN(len(s.vaults))])
		}
		s.people = append(s.people, pp)
	}
}

// Next returns the next event, or false when the stream has made
// Options().Records records.
func (s *TenantStream) Next() (TenantEvent, bool) {
	for len(s.queue) < s.o.RecordsPerEvent && s.made+len(s.queue) < s.o.Records {
		s.activity()
	}
	n := min(s.o.RecordsPerEvent, len(s.queue), s.o.Records-s.made)
	if n <= 0 {
		return TenantEvent{}, false
	}
	recs := make([]Record, n)
	copy(recs, s.queue[:n])
	s.queue = s.queue[n:]
	if len(s.queue) == 0 {
		s.queue = s.queue[:0:0]
	}
	s.made += n
	e := TenantEvent{Partition: s.events % s.o.Partitions, Records: recs}
	s.events++
	return e, true
}

// activity makes the records of one request or poll at the stream's clock
// and moves the clock on in proportion to them.
func (s *TenantStream) activity() {
	g, r := s.g, s.r
	t := s.t
	switch k := r.IntN(100); {
	case k < 65:
		s.appPoll(t)
	case k < 75:
		s.personStep(t)
	default:
		v := s.vaults[r.IntN(len(s.vaults))]
		g.arm(r, t, v, principals["resource-graph"], clients["arg"], argIPs[r.IntN(len(argIPs))], "VaultGet", "2022-07-01", nil)
	}
	n := len(g.entries)
	for _, e := range g.entries {
		rec := e.rec
		rec.Time = e.t.Format(timeLayout)
		s.buf.Reset()
		must(s.enc.Encode(&rec))
		line := bytes.Clone(bytes.TrimSuffix(s.buf.Bytes(), []byte("\n")))
		s.queue = append(s.queue, Record{Time: recordTime(line), Line: line})
	}
	g.entries = g.entries[:0]
	s.t = s.t.Add(time.Duration(r.ExpFloat64() * float64(n) / s.o.Rate * float64(time.Second)))
}

// appPoll: an application reads a few of its secrets, as a configuration
// refresh does; a starting client is challenged first (401), a stale name
// misses (404), and now and then it tries a vault it has no role on (403).
func (s *TenantStream) appPoll(t time.Time) {
	g, r := s.g, s.r
	a := s.apps[r.IntN(len(s.apps))]
	ip := a.ips[r.IntN(len(a.ips))]
	if r.IntN(100) < 3 {
		g.data(r, call{t: t, v: a.other, p: a.p, cl: a.cl, ip: ip, op: "SecretGet",
			obj: a.other.secrets[r.IntN(len(a.other.secrets))], status: 403})
		return
	}
	fresh := r.IntN(30) == 0
	if r.IntN(20) == 0 {
		t = g.challenged(r, call{t: t, v: a.home, p: a.p, cl: a.cl, ip: ip, op: "SecretList", status: 200}, fresh)
		fresh = false
		t = t.Add(between(r, 5*time.Millisecond, 40*time.Millisecond))
	}
	for range 1 + r.IntN(5) {
		name, status := a.secrets[r.IntN(len(a.secrets))], 200
		if r.IntN(100) < 2 {
			name, status = name+"-old", 404
		}
		t = g.challenged(r, call{t: t, v: a.home, p: a.p, cl: a.cl, ip: ip, op: "SecretGet", obj: name, status: status}, fresh)
		fresh = false
		t = t.Add(between(r, 3*time.Millisecond, 30*time.Millisecond))
	}
}

// personStep: one step of a person's portal or CLI work.
func (s *TenantStream) personStep(t time.Time) {
	g, r := s.g, s.r
	pp := s.people[r.IntN(len(s.people))]
	v := pp.vaults[r.IntN(len(pp.vaults))]
	switch k := r.IntN(10); {
	case k < 4 && pp.cl == clients["portal"]:
		g.arm(r, t, v, pp.p, pp.cl, pp.ip, "VaultGet", "2023-07-01", nil)
	case k < 6:
		g.data(r, call{t: t, v: v, p: pp.p, cl: pp.cl, ip: pp.ip, op: "SecretList", status: 200})
	default:
		name, status := v.secrets[r.IntN(len(v.secrets))], 200
		if r.IntN(20) == 0 { // a typo
			name, status = strings.TrimSuffix(name, "-key")+"s", 404
		}
		g.data(r, call{t: t, v: v, p: pp.p, cl: pp.cl, ip: pp.ip, op: "SecretGet", obj: name, status: status})
	}
}
