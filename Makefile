# Coffer. `make test` is what CI runs (via .ci/run); it needs only Go and the local Postgres,
# which it starts when it is installed but stopped.
SHELL := /bin/bash
GO ?= go
GOFLAGS_TEST ?= -race -count=1 -timeout 15m
PKGS := ./...

.PHONY: test vet fmt-check postgres browser run bench bench-cli bench-dashboard bench-crypto bench-load bench-growth bench-keys bench-events build dex fuzz restore-drill lint-deploy

test: postgres dex browser vet fmt-check lint-deploy
	$(GO) test $(GOFLAGS_TEST) $(PKGS)

build:
	CGO_ENABLED=0 $(GO) build -o bin/coffer-server ./cmd/server
	CGO_ENABLED=0 $(GO) build -o bin/coffer ./cmd/coffer

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

# The Terraform deployment (deploy/terraform): terraform fmt, then tfsec, which fails on any high
# or critical finding (medium and low ones left are listed in deploy/terraform/README.md). tfsec
# is installed into .tools on first use. Without terraform the fmt check is skipped with a
# message, except under CI=true, where it fails.
TFSEC := .tools/tfsec
TFSEC_VERSION := v1.26.0
lint-deploy:
	@if command -v terraform >/dev/null; then \
		terraform fmt -check -recursive deploy/terraform || { echo "lint-deploy: run terraform fmt -recursive deploy/terraform"; exit 1; }; \
	elif [ "$$CI" = "true" ]; then \
		echo "lint-deploy: terraform is not installed, and CI=true requires the terraform fmt check"; exit 1; \
	else \
		echo "lint-deploy: terraform is not installed: skipping terraform fmt -check (set CI=true to make this an error)"; \
	fi
	@test -x $(TFSEC) || GOBIN=$(CURDIR)/.tools $(GO) install github.com/aquasecurity/tfsec/cmd/tfsec@$(TFSEC_VERSION)
	$(TFSEC) deploy/terraform --no-module-downloads --minimum-severity HIGH --no-color

# The local Postgres is a system service this machine provides; when it is installed but
# down, start it (tests skip Postgres when it is absent, and fail under CI=true).
postgres:
	@if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then \
		if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then \
			echo "starting the local Postgres"; \
			pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
			for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
		fi; \
	fi

# Debian's headless Chromium, which the browser tests (internal/browsertest) drive: installed
# when missing under CI=true as root; elsewhere those tests skip without it.
browser:
	@command -v chromium >/dev/null || { [ "$$CI" = true ] && [ "$$(id -u)" = 0 ] && \
		echo "installing chromium" && { apt-get install -y chromium chromium-driver >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y chromium chromium-driver >/dev/null; }; }; } || true

# Dex, the OpenID provider the OIDC sign-in tests run against (internal/oidctest), built from its
# own module in test/dex so Dex's dependencies stay out of go.mod. Rebuilt only when a source
# there is newer than the binary.
DEX_BIN := .tools/dex
dex: $(DEX_BIN)

$(DEX_BIN): $(wildcard test/dex/*.go) test/dex/go.mod test/dex/go.sum
	@mkdir -p $(@D)
	cd test/dex && $(GO) build -o ../../$@ .

run:
	$(GO) run ./cmd/server

# The restore drill (docs/production.md): a Postgres database with secrets, key rolls and a
# checkpoint is dumped with pg_dump and restored with pg_restore into a fresh database; a server
# with the same key-encryption key reads every secret back and verifies the audit chain, and a
# server with another key refuses to start. It also runs in make test.
restore-drill: postgres
	$(GO) test -count=1 -run '^TestRestoreDrill$$' -v ./internal/app/

# Fuzzes the dotenv reader and writer (not part of make test): any input either fails with a
# line number or survives a write and a second read unchanged.
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/envfile/
	$(GO) test -run '^$$' -fuzz '^FuzzWrite$$' -fuzztime $(FUZZTIME) ./internal/envfile/

bench: postgres bench-crypto bench-load bench-keys bench-events bench-dashboard bench-cli

# `coffer run -- true` against an environment of 100 secrets on loopback (issue 18: median of
# 20 runs at most 100 ms): the server in its own process, each sample the wall time of the CLI
# binary run as a process; SQLite and Postgres.
bench-cli: postgres
	$(GO) run ./tools/clibench -runs 20

# The dashboard's environment page of 500 variables (issue 17: at most 50 ms of server time).
bench-dashboard:
	$(GO) test -run '^$$' -bench BenchmarkDashboardEnvironment500 -benchtime 3s ./internal/app/

bench-crypto:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/crypto/

# Reads one environment of 100 secrets with ?include=values for a fixed time over HTTP, on
# SQLite and on Postgres, beside a bare gin handler serving the same bytes from memory. The
# server, the bare handler and the load generator each run in their own process; the generator
# is wrk, installed here from Debian's packages when missing and we are root, else the
# project's own (internal/loadgen) built into the loadbench binary.
BENCH_DURATION ?= 10s
BENCH_CONNS ?= 64
bench-load:
	@command -v wrk >/dev/null || [ "$$(id -u)" != 0 ] || apt-get install -y wrk >/dev/null || \
		echo "bench-load: could not install wrk; using the project's own generator"
	$(GO) run ./tools/loadbench -duration $(BENCH_DURATION) -connections $(BENCH_CONNS)

# How the audited read's cost grows (issue 16, item 3), on SQLite and Postgres, each point a
# bench-load run: with the values in the environment (10, 100, 1,000 at 64 connections), with
# the connections (16, 64, 256 at 100 values) and with the environments read round-robin
# (1 vs 10,000 of 10 values; the 10,000 read once cold, after a restart, then warm). Points
# shared by two series (100 values at 64 connections; 10 values in one environment) run once.
# The server and loadbench are built once. About 6 minutes on 2 cores; the summary table at
# the end gathers every run. Not part of bench.
GROWTH_DURATION ?= 5s
GROWTH_WARMUP ?= 2s
bench-growth: postgres
	@command -v wrk >/dev/null || [ "$$(id -u)" != 0 ] || apt-get install -y wrk >/dev/null || \
		echo "bench-growth: could not install wrk; using the project's own generator"
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(GO) build -o $$tmp/coffer-server ./cmd/server && $(GO) build -o $$tmp/loadbench ./tools/loadbench && \
	lb="$$tmp/loadbench -server $$tmp/coffer-server -duration $(GROWTH_DURATION) -warmup $(GROWTH_WARMUP) -summary $$tmp/summary" && \
	rc=0 && \
	for v in 10 100 1000; do echo "== $$v values, 64 connections"; $$lb -values $$v -connections 64 || rc=1; done && \
	for c in 16 256; do echo "== 100 values, $$c connections"; $$lb -values 100 -connections $$c || rc=1; done && \
	echo "== 10,000 environments of 10 values, 64 connections" && \
	{ $$lb -values 10 -environments 10000 -connections 64 || rc=1; } && \
	echo && echo "== growth summary ($(GROWTH_DURATION) measured after $(GROWTH_WARMUP) warm-up per point)" && \
	{ head -n 1 $$tmp/summary; tail -n +2 $$tmp/summary | sort -s -k1,1; } && \
	exit $$rc

# With the key-encryption key in AWS KMS (the KMS test server): reads of the same environment
# with the data-key cache warm and disabled, on SQLite and Postgres, counting KMS Decrypt calls;
# then the reseal of 1,000 secrets x 100 versions on Postgres while reads continue.
bench-keys:
	$(GO) run ./tools/keybench -duration $(BENCH_DURATION) -connections $(BENCH_CONNS)

# The live event stream: the server built from ./cmd/server and run in its own process, 1,000
# WebSocket subscribers to one environment, 200 secret writes one every 20 ms; the time from
# each write's commit to its delivery at every subscriber (p50/p90/p99/max; target p99 <= 100 ms),
# on SQLite and on Postgres.
EVENT_SUBSCRIBERS ?= 1000
EVENT_WRITES ?= 200
bench-events:
	$(GO) run ./tools/eventbench -subscribers $(EVENT_SUBSCRIBERS) -writes $(EVENT_WRITES)
