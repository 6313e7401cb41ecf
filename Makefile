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

deps: ## install what the tests need and the machine may lack (openssl, sqlite3, chromium, systemd, promtool, tmux), with apt-get
	@command -v openssl >/dev/null 2>&1 || { \
		echo "make: installing openssl (the tests check interop with the real binary)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; }
	@command -v sqlite3 >/dev/null 2>&1 || { \
		echo "make: installing sqlite3 (the tests read a live store with the real shell)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3; }
	@command -v chromium >/dev/null 2>&1 || { \
		echo "make: installing chromium (the console's browser test drives it headless)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@command -v systemd-analyze >/dev/null 2>&1 || { \
		echo "make: installing systemd (the tests verify deploy/'s units with systemd-analyze)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd; }
	@command -v promtool >/dev/null 2>&1 || { \
		echo "make: installing prometheus (the tests check deploy/prometheus with promtool)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }
	@command -v tmux >/dev/null 2>&1 || { \
		echo "make: installing tmux (the tests draw the student's progress bars in a real terminal)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux; }

test: deps lint cross ## the full suite: gofmt, go vet, the cross-builds, go test -race ./... (unit, fuzz seeds, end-to-end)
	PKIBOARD_REQUIRE_OPENSSL=1 PKIBOARD_REQUIRE_SQLITE3=1 PKIBOARD_REQUIRE_MOUNT=1 PKIBOARD_REQUIRE_CHROMIUM=1 PKIBOARD_REQUIRE_SYSTEMD=1 PKIBOARD_REQUIRE_PROMTOOL=1 PKIBOARD_REQUIRE_TMUX=1 $(GO) test -race -timeout 40m ./...
	@# allocation counts of pooled paths are only meaningful without the race detector
	$(GO) test -count=1 -run 'NoAllocs' ./wire ./session

# The platforms students download the student role for; the CA and the board run
# on Linux (their operator socket checks its peers with SO_PEERCRED).
RELEASE_TARGETS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64
DIST            ?= dist

.PHONY: release cross
release: ## build pkiboard for every RELEASE_TARGETS into dist/ (static, -trimpath, the version in --version), with SHA256SUMS
	@rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for t in $(RELEASE_TARGETS); do \
		os=$${t%/*}; arch=$${t#*/}; exe=; [ "$$os" = windows ] && exe=.exe; \
		echo "  $(DIST)/pkiboard-$$os-$$arch$$exe ($(VERSION))"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(DIST)/pkiboard-$$os-$$arch$$exe .; \
	done
	cd $(DIST) && sha256sum pkiboard-* > SHA256SUMS
	@echo "make: $(DIST)/SHA256SUMS written; publish it beside the binaries"

cross: ## vet the packages of the binary and build it for every RELEASE_TARGETS: a Unix-only call on the student's path fails here
	@set -e; for t in $(RELEASE_TARGETS); do \
		os=$${t%/*}; arch=$${t#*/}; echo "  go vet and go build for $$os/$$arch"; \
		pkgs=$$(CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) list -deps . | grep -E '^pkiboard(/|$$)'); \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) vet $$pkgs; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -o /dev/null .; \
	done

BENCHSTAT := golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
TOOLS    := $(CURDIR)/.tools

# The ca row's peer: step-ca, built once from the Go module proxy with cgo off
# into .tools/ (not a dependency of the module: go.mod does not change).
STEPCA := github.com/smallstep/certificates/cmd/step-ca@v0.30.2

$(TOOLS)/step-ca:
	@echo "make: building step-ca (the ca row's peer) into .tools/, once"
	CGO_ENABLED=0 GOBIN=$(TOOLS) $(GO) install $(STEPCA)

bench: build deps $(TOOLS)/step-ca ## measure against the baselines, print the table of ratios (also in bench/results.txt)
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

clean: ## remove the binary, the release builds, the demo's data and the installed tools
	rm -rf bin $(DIST) data .tools
