# havip — see README.md. Every target installs what it needs (as root on Debian).
SHELL    := /bin/bash
.SHELLFLAGS := -o pipefail -c
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE     ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
APT_PKGS := iproute2 nftables keepalived tcpdump qemu-system-x86 busybox-static cpio ipvsadm groff-base \
            lintian rpm debootstrap systemd-container

.PHONY: all build deps test unit vmtest fuzz bench demo package clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/havip ./cmd/havip

# deps installs the Debian packages the labs use (only the missing ones).
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v $(GO) >/dev/null || { echo "Go is not installed (need $(shell sed -n 's/^go //p' go.mod))"; exit 1; }
	bash test/vmlab/setup.sh

# test runs every test: unit, fuzz seed corpora, namespace e2e, the keepalived
# interop test and the IPVS VM lab. Needs root.
test: deps
	$(GO) vet ./...
	$(GO) vet -tags vmtest ./...
	@# One package at a time: the e2e tests measure failover in milliseconds,
	@# and the VM lab's qemu would otherwise take both cores from them.
	$(GO) test -count=1 -p 1 -timeout 25m ./...

unit:
	$(GO) test -short -count=1 ./internal/conf/ ./internal/vrrp/ ./internal/ctl/ ./internal/importka/ ./internal/importipvs/ ./cmd/... ./packaging/gendocs/

vmtest: deps
	$(GO) test -count=1 -p 1 -timeout 15m -v ./test/vmlab/ ./test/e2e/lvs/

fuzz:
	$(GO) test ./internal/vrrp -run '^$$' -fuzz FuzzParse -fuzztime 60s
	$(GO) test ./internal/conf -run '^$$' -fuzz FuzzParse -fuzztime 60s

# bench prints the failover figures (namespace lab), the config scale
# figures (load and reload of 10,000 virtual servers x 10 real servers,
# target < 1 s) and the IPVS scale figures (VM lab: 10,000 services x 10 real servers vs ipvsadm -R; the
# cost of connection sync, kernel defaults vs havip's).
bench: deps build
	$(GO) test -count=1 -p 1 -timeout 30m -run '^$$' -bench . -benchtime 1x ./test/e2e/
	$(GO) test -count=1 -p 1 -run '^$$' -bench 'Large|HTTPProbe|ControllerHealthChange' -benchtime 1x ./internal/conf/ ./internal/daemon/ ./internal/checks/
	$(GO) run ./test/vmlab/vmrun -pkg ./internal/ipvsync -run '^$$' -bench . -timeout 25m -- -test.benchtime=1x

demo: deps build
	HAVIP_BIN=$(CURDIR)/bin/havip $(GO) test -count=1 -v -run TestDemo ./test/demo/ | grep -v -E "^(=== RUN|--- PASS|PASS$$|ok )"
	@echo; echo "== IPVS through the pair: DR, TUN and NAT, kill -9 of the master with 20 open connections =="
	@if [ -e /proc/net/ip_vs ]; then \
		echo "(this kernel has IPVS: running natively)"; \
		$(GO) test -tags vmtest -count=1 -v -run TestLVS ./test/e2e/lvs/; \
	else \
		echo "(this kernel has no IPVS: running in the VM lab, Debian's cloud kernel under qemu)"; \
		$(GO) run ./test/vmlab/vmrun -pkg ./test/e2e/lvs -run TestLVS; \
	fi | grep -E "^(LVS through|mode |dr |tun |nat |\(takeover|--- (PASS|FAIL)|vmlab: (PASS|FAIL))"

# package builds the .deb and .rpm for each of ARCHES into DIST with nfpm
# (pure Go, run at a pinned version so the daemon's go.mod stays as it is).
# The packaged binary is stripped (-s -w), as Debian policy wants; Go's
# panics still print symbolized stacks without DWARF.
# Package version: the latest vX.Y.Z tag (X.Y.Z+N.gHASH past it; a pre-release
# vX.Y.Z-rc1 sorts before X.Y.Z as X.Y.Z~rc1), else 0.0.0~dev.
PKG_VERSION ?= $(shell git describe --tags --match 'v[0-9]*' 2>/dev/null | sed -E 's/^v//; s/-([0-9]+)-g([0-9a-f]+)$$/+\1.g\2/; s/-/~/g' | grep . || echo 0.0.0~dev)
ARCHES   ?= amd64 arm64
DIST     ?= dist
PKG_FORMATS ?= deb rpm
NFPM     := $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
STAGE     = $(DIST)/stage

package:
	rm -rf $(STAGE) && mkdir -p $(STAGE)/docs
	$(GO) run ./packaging/gendocs -o $(STAGE)/docs
	gzip -9n $(STAGE)/docs/havip.8 $(STAGE)/docs/havip.toml.5
	gzip -9nc packaging/changelog > $(STAGE)/changelog.gz
	for a in $(ARCHES); do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags '$(LDFLAGS) -s -w' -o $(STAGE)/$$a/havip ./cmd/havip || exit 1; \
		for f in $(PKG_FORMATS); do \
			HAVIP_ARCH=$$a HAVIP_VERSION='$(PKG_VERSION)' HAVIP_STAGE='$(abspath $(STAGE))' \
				$(NFPM) package -f packaging/nfpm.yaml -p $$f -t $(DIST)/ || exit 1; \
		done; \
	done
	rm -rf $(STAGE)

clean:
	rm -rf bin dist
