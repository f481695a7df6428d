package detect_test

import (
	"context"
	"fmt"
	"slices"
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

var fuzzOps = []string{"SecretGet", "SecretList", "SecretSet", "SecretDelete", "SecretPurge", "SecretBackup",
	"KeySign", "KeyDecrypt", "KeyCreate", "VaultGet", "VaultPut", "VaultPatch", "VaultDelete",
	"CertificateIssuerSet", "SecretNearExpiryEventGridNotification", "Authentication"}

// fuzzEvents turns bytes into events, seven bytes each: time step, operation,
// caller, vault, object, outcome and address, and for configurations the
// settings a VaultGet/Put/Patch carries.
func fuzzEvents(data []byte) []audit.Event {
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
		op := fuzzOps[int(b[1])%len(fuzzOps)]
		fam, kind := audit.Classify(op)
		caller := fmt.Sprintf("c%d", b[2]%6)
		e := audit.Event{Time: t, Vault: fmt.Sprintf("kv%d", b[3]%4), Operation: op, Family: fam, Kind: kind,
			ObjectType: "secret", ObjectName: fmt.Sprintf("s%d", b[4]%24), CallerIP: fmt.Sprintf("10.0.%d.%d", b[6]%2, b[6]%5),
			Caller: audit.Caller{ObjectID: caller, Key: caller, KeyFrom: "oid"},
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

// FuzzEngine feeds arbitrary event sequences through the default pack with
// memory state, as one batch and cut into several: no panic, and the same
// findings whatever the batching.
func FuzzEngine(f *testing.F) {
	f.Add([]byte("\x01\x00\x01\x01\x01\x00\x01\x02\x01\x01\x01\x02\x00\x01\x02\x0b\x01\x01\x05\x00\x01"), uint8(3))
	f.Add(slices.Repeat([]byte{1, 0, 2, 3, 9, 1, 4, 0, 1, 2, 3, 10, 0, 4, 200, 2, 5, 1, 7, 2, 1}, 40), uint8(7))
	f.Add(slices.Repeat([]byte{30, 10, 1, 1, 0, 0, 0, 30, 11, 1, 1, 1, 0, 0, 255, 9, 1, 1, 3, 0, 0}, 10), uint8(2))
	rnd := make([]byte, 2100)
	x := uint32(7)
	for i := range rnd {
		x = x*1664525 + 1013904223
		rnd[i] = byte(x >> 24)
	}
	f.Add(rnd, uint8(5))
	fuzzRules, fuzzSettings = fuzzPack(f)
	f.Fuzz(func(t *testing.T, data []byte, cuts uint8) { runFuzzBody(t, data, cuts) })
}

// fuzzPack is the default pack with every rule on.
func fuzzPack(tb testing.TB) ([]*rules.Rule, *rules.Settings) {
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

var fuzzRules []*rules.Rule
var fuzzSettings *rules.Settings

func runFuzzBody(t *testing.T, data []byte, cuts uint8) {
	rs, s := fuzzRules, fuzzSettings
	{
		evs := fuzzEvents(data)
		start := time.Now()
		defer func() {
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("slow: %s for %d events", d, len(evs))
			}
		}()
		run := func(n int) []string {
			got := map[string]string{}
			en := detect.New(rs, s, detect.Options{Store: state.NewMemory(), Log: zerolog.Nop(),
				Now: func() time.Time { return time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) },
				Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error {
					for _, f := range fs {
						got[f.ID] = f.Rule + " " + finding.GroupString(f.Group) + " " + f.Period.Format(time.RFC3339) + " " + f.Value
					}
					return nil
				})})
			per := max((len(evs)+n-1)/n, 1)
			for i := 0; i < len(evs); i += per {
				batch := slices.Clone(evs[i:min(i+per, len(evs))])
				if _, err := en.Consume(context.Background(), batch); err != nil {
					t.Fatal(err)
				}
			}
			ids := make([]string, 0, len(got))
			for _, d := range got {
				ids = append(ids, d)
			}
			slices.Sort(ids)
			return ids
		}
		one, many := run(1), run(int(cuts%8)+2)
		if !slices.Equal(one, many) {
			var only1, onlyN []string
			for _, x := range one {
				if !slices.Contains(many, x) {
					only1 = append(only1, x)
				}
			}
			for _, x := range many {
				if !slices.Contains(one, x) {
					onlyN = append(onlyN, x)
				}
			}
			t.Fatalf("one batch: %d findings, %d batches: %d findings\nonly in one batch: %q\nonly in batches: %q", len(one), int(cuts%8)+2, len(many), only1, onlyN)
		}
	}
}
