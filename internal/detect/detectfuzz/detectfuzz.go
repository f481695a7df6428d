// Package detectfuzz is the engine fuzz target's input, shared by its
// memory-state form (internal/detect FuzzEngine) and its Table-state form
// (internal/tablestore): arbitrary bytes as an event sequence, the default
// pack with every rule on, the target's seeds, and a run of events
// through an engine over a given state, batch by batch.
package detectfuzz

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/pack"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
)

var ops = []string{"SecretGet", "SecretList", "SecretSet", "SecretDelete", "SecretPurge", "SecretBackup",
	"KeySign", "KeyDecrypt", "KeyCreate", "VaultGet", "VaultPut", "VaultPatch", "VaultDelete",
	"CertificateIssuerSet", "SecretNearExpiryEventGridNotification", "Authentication"}

// Events turns bytes into events, seven bytes each: time step, operation,
// caller, vault, object, outcome and address, and for configurations the
// settings a VaultGet/Put/Patch carries. Callers c0 and c3 are people (a
// UPN beside the client's app id), the others application identities (an
// app id alone), so that routine learning, which learns applications only,
// is exercised both ways.
func Events(data []byte) []audit.Event {
	var out []audit.Event
	t := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	jumps := 0
	for i := 0; i+7 <= len(data) && len(out) < 300; i += 7 {
		b := data[i : i+7]
		// Up to about 5 minutes a step (and 4 hours at 255, six times at
		// most): a run spans a day or two, as the engine's batches do.
		t = t.Add(time.Duration(b[0]%64) * 5 * time.Second)
		if b[0] == 255 && jumps < 6 {
			t = t.Add(4 * time.Hour)
			jumps++
		}
		op := ops[int(b[1])%len(ops)]
		fam, kind := audit.Classify(op)
		caller := fmt.Sprintf("c%d", b[2]%6)
		e := audit.Event{Time: t, Vault: fmt.Sprintf("kv%d", b[3]%4), Operation: op, Family: fam, Kind: kind,
			ObjectType: "secret", ObjectName: fmt.Sprintf("s%d", b[4]%24), CallerIP: fmt.Sprintf("10.0.%d.%d", b[6]%2, b[6]%5),
			Caller: audit.Caller{ObjectID: caller, AppID: "app-" + caller, Key: caller, KeyFrom: "oid"},
			Source: audit.Source{Partition: "0", Sequence: int64(len(out)), HasSequence: true}}
		switch b[5] % 4 {
		case 0, 1:
			e.Outcome, e.HTTPStatus = audit.OutcomeSuccess, 200
		case 2:
			e.Outcome, e.HTTPStatus = audit.OutcomeDenied, 403
		default:
			e.Outcome, e.HTTPStatus = audit.OutcomeDenied, 401
			e.Caller = audit.Caller{Key: e.CallerIP, KeyFrom: "ip"}
		}
		if b[2]%3 == 0 {
			e.Caller.UPN = caller + "@contoso.com"
		}
		if fam == audit.FamilyVault && kind != audit.KindDelete {
			allow, pna := []string{"Deny", "Allow"}[b[4]%2], []string{"Disabled", "Enabled"}[b[4]>>1%2]
			ret, rbac := 7+int(b[4]>>2%3)*40, b[4]&8 == 0
			e.Config = &audit.VaultConfig{NetworkDefaultAction: allow, PublicNetworkAccess: pna,
				SoftDeleteRetentionDays: &ret, RBACAuthorization: &rbac, IPRules: []string{}}
			if b[4]&16 != 0 {
				e.Config.IPRules = []string{"0.0.0.0/0"}
			}
			// Access policies: the callers of b[6]'s low bits (access_grant
			// rules follow them), unless bit 7 says the record lists none.
			if b[6]&128 == 0 {
				n := 0
				for c := range 6 {
					if b[6]&(1<<c) != 0 {
						e.Config.PolicyObjectIDs = append(e.Config.PolicyObjectIDs, fmt.Sprintf("c%d", c))
						n++
					}
				}
				e.Config.AccessPolicies = &n
			}
		}
		out = append(out, e)
	}
	return out
}

// Pack is the default pack with every rule on.
func Pack(tb testing.TB) ([]*rules.Rule, *rules.Settings) {
	cf, err := config.Parse("kvwatch.yaml", pack.Config, config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		tb.Fatal(err)
	}
	rs, s, err := rules.Compile(cf)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range rs {
		r.Off = "" // the untrusted-network rule too
	}
	s.Trusted = nil
	return rs, s
}

// Seed is one input of the target: its bytes and how many batches
// (cuts%8+2) the several-batch run cuts them into.
type Seed struct {
	Name string
	Data []byte
	Cuts uint8
}

// Seeds are the inputs FuzzEngine adds itself.
func Seeds() []Seed {
	rnd := make([]byte, 2100)
	x := uint32(7)
	for i := range rnd {
		x = x*1664525 + 1013904223
		rnd[i] = byte(x >> 24)
	}
	return []Seed{
		{"added/routine", routineSeed(), 4},
		{"added/1", []byte("\x01\x00\x01\x01\x01\x00\x01\x02\x01\x01\x01\x02\x00\x01\x02\x0b\x01\x01\x05\x00\x01"), 3},
		{"added/2", slices.Repeat([]byte{1, 0, 2, 3, 9, 1, 4, 0, 1, 2, 3, 10, 0, 4, 200, 2, 5, 1, 7, 2, 1}, 40), 7},
		{"added/3", slices.Repeat([]byte{30, 10, 1, 1, 0, 0, 0, 30, 11, 1, 1, 1, 0, 0, 255, 9, 1, 1, 3, 0, 0}, 10), 2},
		{"added/4", rnd, 5},
	}
}

// routineSeed is a caller (c1) that lists kv1's secrets then reads 25 of
// them within two minutes, at five starts 4 hours apart, then 60 reads in
// one second: the sweep rules' routine learns it (told at the third start,
// routine at the fourth and fifth), and the sixth is above it.
func routineSeed() []byte {
	var b []byte
	for start := range 6 {
		b = append(b, 255, 1, 1, 1, 0, 0, 0) // 4 hours on; SecretList by c1 on kv1
		n, step := 25, byte(1)
		if start == 5 {
			n, step = 60, 0
		}
		for i := range n {
			b = append(b, step, 0, 1, 1, byte(i%24), 0, 0) // SecretGet
		}
	}
	return b
}

// Corpus reads the seeds go test saved under dir (testdata/fuzz/FuzzEngine:
// "go test fuzz v1", a []byte and a byte or uint8 literal).
func Corpus(dir string) ([]Seed, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		return nil, err
	}
	var out []Seed
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		var lines []string
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<22)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" {
				lines = append(lines, l)
			}
		}
		if len(lines) != 3 || lines[0] != "go test fuzz v1" {
			return nil, fmt.Errorf("%s: not a FuzzEngine seed", n)
		}
		data, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		lit := lines[2][strings.Index(lines[2], "(")+1 : len(lines[2])-1]
		var cuts uint64
		if strings.HasPrefix(lit, "'") {
			r, _, _, err := strconv.UnquoteChar(strings.Trim(lit, "'"), '\'')
			if err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
			cuts = uint64(r)
		} else if cuts, err = strconv.ParseUint(lit, 0, 8); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out = append(out, Seed{Name: filepath.Base(n), Data: []byte(data), Cuts: uint8(cuts)})
	}
	return out, nil
}

// Epoch is the engine's clock in a run: the start of the events.
var Epoch = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// Findings runs evs through a new engine over store, cut into n batches,
// and returns its findings, one line each ("rule group period value", and
// " routine" when its last version is marked routine), sorted.
func Findings(tb testing.TB, rs []*rules.Rule, s *rules.Settings, store state.Store, evs []audit.Event, n int) []string {
	tb.Helper()
	got := map[string]string{}
	en := detect.New(rs, s, detect.Options{Store: store, Log: zerolog.Nop(),
		Now: func() time.Time { return Epoch },
		Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error {
			for _, f := range fs {
				got[f.ID] = f.Rule + " " + finding.GroupString(f.Group) + " " + f.Period.Format(time.RFC3339) + " " + f.Value
				if f.Routine {
					got[f.ID] += " routine"
				}
			}
			return nil
		})})
	per := max((len(evs)+n-1)/n, 1)
	for i := 0; i < len(evs); i += per {
		batch := slices.Clone(evs[i:min(i+per, len(evs))])
		if _, err := en.Consume(context.Background(), batch); err != nil {
			tb.Fatal(err)
		}
	}
	ids := make([]string, 0, len(got))
	for _, d := range got {
		ids = append(ids, d)
	}
	slices.Sort(ids)
	return ids
}
