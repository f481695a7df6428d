package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/deadletter"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/digest"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/tablestore"
)

// Environment variables openStores reads, besides those of
// tablestore.ClientFromEnv (KVWATCH_TABLE_CONNECTION_STRING,
// KVWATCH_TABLE_ENDPOINT, AzureWebJobsStorage and its identity-based forms).
const (
	envTablePrefix    = "KVWATCH_TABLE_PREFIX"
	envDeadLetterFile = "KVWATCH_DEADLETTER_FILE"
)

// stores are where kvwatch keeps what must outlive an invocation: the
// detection state, the delivery outbox and the dead letters.
type stores struct {
	State   state.Store
	Outbox  delivery.Outbox
	Letters deadletter.Sink
	// Silences are those added at run time (kvwatch silence add).
	Silences delivery.SilenceStore
	// Durable is true when they are in Table Storage: they survive a
	// restart and every instance shares them.
	Durable bool
	// Describe says where they are, for logs and messages; it never holds a
	// key or a signature.
	Describe string
}

// openStores opens the stores the environment configures: Table Storage
// when tablestore.ClientFromEnv finds a connection (its tables named with
// KVWATCH_TABLE_PREFIX before state, findings, deadletters and outbox),
// else memory for state and outbox and a JSON Lines file for dead letters
// (KVWATCH_DEADLETTER_FILE, default $TMPDIR/kvwatch/deadletter.jsonl).
func openStores(ctx context.Context, getenv func(string) string, log zerolog.Logger) (stores, error) {
	client, desc, err := tablestore.ClientFromEnv(getenv)
	if err != nil {
		return stores{}, fmt.Errorf("table storage: %w", err)
	}
	if client == nil {
		path := strings.TrimSpace(getenv(envDeadLetterFile))
		if path == "" {
			tmp := getenv("TMPDIR")
			if tmp == "" {
				tmp = os.TempDir()
			}
			path = filepath.Join(tmp, "kvwatch", "deadletter.jsonl")
		}
		s := stores{
			State: state.NewMemory(), Outbox: delivery.NewMemory(), Letters: deadletter.NewFile(path),
			Silences: &delivery.MemorySilences{},
			Describe: "memory (state and outbox), dead letters in " + path,
		}
		log.Warn().Str("deadletter_file", path).
			Msg("no Table Storage configured: detection state and the outbox are in memory, lost on restart and not shared " +
				"between instances; dead letters go to a local file")
		return s, nil
	}
	prefix := strings.TrimSpace(getenv(envTablePrefix))
	ts, err := tablestore.New(ctx, client, tablestore.Options{Prefix: prefix})
	if err != nil {
		if _, _, _, nerr := tablestore.TableNames(prefix); nerr != nil {
			return stores{}, fmt.Errorf("%s: %w", envTablePrefix, nerr)
		}
		return stores{}, fmt.Errorf("%s: %w", desc, err)
	}
	if prefix != "" {
		desc += ", tables prefixed " + prefix
	}
	if getenv(envDeadLetterFile) != "" {
		log.Info().Msg(envDeadLetterFile + " is ignored: dead letters go to Table Storage")
	}
	// Detection state and statistics: a log per input stream folded into
	// an in-memory view (tablestore.Journal), so a batch's Table round trips
	// do not grow with the callers it touches; the digest's once-per-period
	// claims need compare-and-set and stay in the state table.
	j, err := ts.Journal(ctx, client, tablestore.JournalOptions{Direct: digest.Claims, Log: log})
	if err != nil {
		return stores{}, fmt.Errorf("%s: %w", desc, err)
	}
	silences, err := ts.Silences(ctx, client)
	if err != nil {
		return stores{}, fmt.Errorf("%s: %w", desc, err)
	}
	log.Info().Str("stores", desc).Msg("state, outbox, silences and dead letters are in Table Storage")
	return stores{State: j, Outbox: ts.Outbox(), Letters: ts.DeadLetters(), Silences: silences, Durable: true, Describe: desc}, nil
}
