# pkiboard — build, test and run. `make help` lists the targets.

GO       ?= go
BIN      := bin/pkiboard
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 10s

.PHONY: help build test deps bench fuzz lint demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/pkiboard
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) .

deps: ## install what the tests need and the machine may lack (openssl, sqlite3, tmux), with apt-get
	@command -v openssl >/dev/null 2>&1 || { \
		echo "make: installing openssl (the tests check interop with the real binary)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; }
	@command -v sqlite3 >/dev/null 2>&1 || { \
		echo "make: installing sqlite3 (the tests read a live store with the real shell)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3; }
	@command -v tmux >/dev/null 2>&1 || { \
		echo "make: installing tmux (the tests draw the student's progress bars in a real terminal)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux; }

test: deps lint ## the full suite: gofmt, go vet, go test -race ./... (unit, fuzz seeds, end-to-end)
	PKIBOARD_REQUIRE_OPENSSL=1 PKIBOARD_REQUIRE_SQLITE3=1 PKIBOARD_REQUIRE_TMUX=1 PKIBOARD_REQUIRE_MOUNT=1 $(GO) test -race -timeout 40m ./...
	@# allocation counts of pooled paths are only meaningful without the race detector
	$(GO) test -count=1 -run 'NoAllocs' ./wire ./session

BENCHSTAT := golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
TOOLS    := $(CURDIR)/.tools

bench: build deps ## measure against the baselines, print the table of ratios (also in cmd/bench/results.txt)
	@test -x $(TOOLS)/benchstat || { echo "make: installing benchstat"; GOBIN=$(TOOLS) $(GO) install $(BENCHSTAT); }
	$(GO) build -o $(TOOLS)/pkibench ./cmd/bench
	PATH="$(TOOLS):$$PATH" $(TOOLS)/pkibench -bin $(BIN) $(BENCHFLAGS)

fuzz: ## run every fuzz target for FUZZTIME (default 10s) each
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
		done; \
	done

# fuzz-long's time per target: FUZZTIME when given (make fuzz-long FUZZTIME=30m), else 10 minutes.
LONGFUZZ = $(if $(filter command line environment,$(origin FUZZTIME)),$(FUZZTIME),10m)

.PHONY: fuzz-long
fuzz-long: ## run every fuzz target for FUZZTIME (default 10m) each, one after another
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(LONGFUZZ)

CHAOS_N ?= 25

.PHONY: chaos
chaos: deps ## kill the CA and the board CHAOS_N times each (default 25) under load; check nothing acknowledged is lost
	CHAOS_N=$(CHAOS_N) $(GO) test -race -count=1 -timeout 60m -run '^TestChaosKillUnderLoad$$' -v ./e2e

lint: ## gofmt and go vet must be clean
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

demo: build ## run the CA, the board and a student with three IDs (fresh data/ each run)
	@./scripts/demo.sh

.PHONY: attacks
attacks: build ## play every attack (on the session, through the adversary; on the boundary, from the lab) against a real CA and board; print the table (fails unless each is defeated)
	$(GO) run ./cmd/attacks -bin $(BIN)

clean: ## remove the binary, the demo's data and the installed tools
	rm -rf bin data .tools
