# kvwatch — every target a newcomer needs. `make help` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
# Short fuzz runs are counted in executions (each target's count below, a few
# seconds each), not in time: a -fuzztime duration races Go's fuzz coordinator
# (golang/go#75804, unfixed in go1.26) and fails at the deadline with a bare
# "context deadline exceeded" and no crasher, which failed CI once. A count has
# no deadline. `make fuzz FUZZTIME=10m` runs every target for a duration instead.
FUZZTIME ?=
FUZZMINIMIZE ?= 0x
BENCHTIME ?= 2s
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: help run test unit fuzz-short fuzz bench build vet demo clean azurite-install load dev

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

run: ## replay the bundled demo day through the real pipeline (in-memory state), then its daily digest
	$(GO) build -o bin/kvwatch ./cmd/kvwatch
	bin/kvwatch replay
	@echo
	bin/kvwatch digest --period daily

test: vet unit fuzz-short ## every test: vet, unit and integration tests, short fuzz runs

vet:
	$(GO) vet ./...

unit: azurite-install
	$(GO) test -count=1 ./...
	# The tests of state shared by batches running at once, under the race
	# detector: an entity changed in place while another batch reads it
	# (state.InPlace, state.Lease) is a data race, not a wrong count.
	$(GO) test -race -count=1 -run 'InPlace|AtOnce' ./internal/state/ ./internal/detect/

azurite-install: ## install the pinned Azurite (tools/azurite) the Table Storage tests run against
	bash tools/azurite/run.sh --install-only

# Each fuzz target with its short run's execution count (about 3-5 s here);
# `make fuzz FUZZTIME=10m` runs them for a duration.
FUZZ_TARGETS := \
	./internal/ingest:FuzzInvocation:20000 \
	./internal/ingest:FuzzFile:20000 \
	./internal/audit:FuzzNormalize:150000 \
	./internal/audit:FuzzParseTime:200000 \
	./internal/config:FuzzParse:40000 \
	./internal/groupkey:FuzzGroupKey:300000 \
	./internal/state:FuzzDiffMerge:60000 \
	./internal/state:FuzzJSONEncoder:40000 \
	./internal/state:FuzzJSONDecoder:20000 \
	./internal/detect:FuzzEngine:2000

fuzz-short:
	@sum=""; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; fn=$${rest%%:*}; n=$${rest##*:}; \
		ft="$(FUZZTIME)"; [ -n "$$ft" ] || ft="$${n}x"; \
		echo "fuzz $$fn ($$pkg) for $$ft"; \
		out=$$($(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime "$$ft" -fuzzminimizetime $(FUZZMINIMIZE) $$pkg 2>&1) || { echo "$$out"; exit 1; }; \
		line=$$(echo "$$out" | grep '^fuzz: elapsed' | tail -n 1 || true); \
		sum="$$sum$$fn ($$pkg): $${line#fuzz: }\n"; \
	done; printf '\nfuzz figures (no failures):\n%b' "$$sum"

fuzz: ## run every fuzz target longer (FUZZTIME=10m)
	@$(MAKE) --no-print-directory fuzz-short FUZZTIME=$(if $(FUZZTIME),$(FUZZTIME),5m) FUZZMINIMIZE=$(if $(filter 0x,$(FUZZMINIMIZE)),10s,$(FUZZMINIMIZE))

bench: azurite-install ## benchmarks; every ratio is measured within one run
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./internal/ingest/
	$(GO) test -run '^$$' -bench BenchmarkDefaultPack -benchtime 1x -timeout 30m ./internal/detect/
	$(GO) test -run '^$$' -bench BenchmarkAlertLatency -benchtime 500x ./handlers/
	$(GO) test -run '^$$' -bench BenchmarkServeVsJSONDecode -benchtime 1x -timeout 30m ./handlers/
	KVWATCH_BENCH_DAYS=7 $(GO) test -run '^$$' -bench BenchmarkTableRoundTrips -benchtime 1x -timeout 30m ./internal/tablestore/
	$(GO) test -run '^$$' -bench BenchmarkStats -benchtime 3x ./internal/stats/
	$(GO) test -run '^$$' -bench BenchmarkOutboxRoundTrips -benchtime 200x ./internal/tablestore/
	$(GO) test -run '^$$' -bench BenchmarkColdStart -benchtime 20x ./e2e/

# The sustained load run (docs/performance.md): 10 million records through
# the host double into two kvwatch serve processes with their state in
# Azurite, at most LOADTIME (75m) of streaming; about 50 minutes on a 2-core machine. The last lines are the figures.
LOADTIME ?= 75m
LOADRECORDS ?= 10000000

.PHONY: load
load: azurite-install ## sustained load: LOADRECORDS records (10M) into 2 handlers with Table state, figures last
	$(GO) run ./e2e/cmd/load -records $(LOADRECORDS) -time $(LOADTIME)

# The cardinality sweep (issue 11): demo.Tenant's traffic at 5, 30, 300 and
# 3,000 callers over 20 vaults, 2 and 4 partitions, through two handlers with
# Table state, then memory state on the same records, then fresh handlers'
# restore after SWEEPHISTORY records (three in a row, the slowest counts);
# figures last, a table with the goals and PASS/FAIL. SWEEPRECORDS records per configuration (each state at most
# SWEEPPHASETIME): about 10 minutes when the store keeps up, 20 at most.
SWEEPRECORDS ?= 100000
SWEEPHISTORY ?= 1000000
SWEEPPHASETIME ?= 90s

.PHONY: sweep
sweep: azurite-install ## cardinality sweep: round trips, Table vs memory throughput, latency, RSS, restore; goals PASS/FAIL last
	$(GO) run ./e2e/cmd/load sweep -records $(SWEEPRECORDS) -history $(SWEEPHISTORY) -phase-time $(SWEEPPHASETIME)

.PHONY: dev
dev: azurite-install build ## the demo day through a local host double, Azurite, a webhook and an SMTP catcher
	./bin/kvwatch dev

build: ## build bin/kvwatch
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kvwatch ./cmd/kvwatch

demo: ## write the demo day to testdata/demo as PT1H.json blobs
	rm -rf testdata/demo
	$(GO) run ./cmd/kvwatch demo write testdata/demo

clean:
	rm -rf bin dist

# The deployable Function app: dist/app (what `func azure functionapp publish`
# and azd deploy) and dist/kvwatch.zip. The binary is a static linux/amd64
# build named as host.json's customHandler.description.defaultExecutablePath.
# The kvwatch.yaml shipped in the package: the default pack, or your own
# (make package PACKAGE_CONFIG=path/to/kvwatch.yaml).
PACKAGE_CONFIG ?= internal/pack/kvwatch.yaml
# The regions the deployment reads, in the order of main.bicep's `regions`
# (one Event Hubs trigger each). Empty: the `location` of every entry of
# `regions` in infra/main.bicepparam (azd's hook sees its environment, so
# readEnvironmentVariable('AZURE_LOCATION', ...) resolves as when deploying).
REGIONS ?=
PACKAGE_EXE = $(shell sed -n 's/.*"defaultExecutablePath"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' host.json)

.PHONY: package
package: ## build dist/app (host.json, one trigger per region, binary, kvwatch.yaml) and dist/kvwatch.zip
	@test -n "$(PACKAGE_EXE)" || { echo "host.json names no customHandler.description.defaultExecutablePath" >&2; exit 1; }
	rm -rf dist/app dist/kvwatch.zip
	mkdir -p dist/app
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/app/$(PACKAGE_EXE) ./cmd/kvwatch
	chmod 0755 dist/app/$(PACKAGE_EXE)
	cp host.json dist/app/host.json
	$(GO) run ./internal/contract/cmd/funcapp -out dist/app -regions '$(REGIONS)'
	cp $(PACKAGE_CONFIG) dist/app/kvwatch.yaml
	$(GO) run ./internal/contract/cmd/zip -o dist/kvwatch.zip dist/app
	@echo "dist/app and dist/kvwatch.zip ready: func azure functionapp publish <app> (from dist/app), or azd deploy"

# Teams cards as a person sees them: the card JSON kvwatch posts, for the demo's
# mass secret retrieval and for a 500-finding digest, rendered by the Adaptive
# Cards JS renderer (tools/cards, pinned by its package-lock.json) with a
# Teams-like host config in Debian's headless Chromium.
CARDS_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: render-cards
render-cards: ## render the Teams cards to docs/teams-alert.png, docs/teams-digest.png, docs/teams-daily-digest.png
	@command -v chromium >/dev/null || { $(CARDS_SUDO) apt-get update && $(CARDS_SUDO) apt-get install -y chromium fonts-liberation fonts-dejavu-core; }
	cd tools/cards && npm ci --no-audit --no-fund
	mkdir -p docs
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(GO) run ./internal/notify/teams/cmd/cardjson -out "$$tmp/alert.json" && \
	$(GO) run ./internal/notify/teams/cmd/cardjson -digest 500 -out "$$tmp/digest.json" && \
	$(GO) run ./cmd/kvwatch digest --period daily --card "$$tmp/daily.json" >/dev/null && \
	node tools/cards/render.mjs "$$tmp/alert.json" docs/teams-alert.png "$$tmp/digest.json" docs/teams-digest.png "$$tmp/daily.json" docs/teams-daily-digest.png
