# havip — see README.md. Every target installs what it needs (as root on Debian).
SHELL    := /bin/bash
.SHELLFLAGS := -o pipefail -c
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE     ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
APT_PKGS := iproute2 nftables keepalived tcpdump qemu-system-x86 busybox-static cpio ipvsadm

.PHONY: all build deps test unit vmtest fuzz bench demo clean

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
	$(GO) test -short -count=1 ./internal/conf/ ./internal/vrrp/ ./internal/ctl/ ./cmd/...

vmtest: deps
	$(GO) test -count=1 -p 1 -timeout 15m -v ./test/vmlab/ ./test/e2e/lvs/

fuzz:
	$(GO) test ./internal/vrrp -run '^$$' -fuzz FuzzParse -fuzztime 60s
	$(GO) test ./internal/conf -run '^$$' -fuzz FuzzParse -fuzztime 60s

# bench prints the failover figures (namespace lab) and the IPVS scale
# figures (VM lab: 10,000 services x 10 real servers vs ipvsadm -R; the
# cost of connection sync, kernel defaults vs havip's).
bench: deps build
	$(GO) test -count=1 -p 1 -timeout 30m -run '^$$' -bench . -benchtime 1x ./test/e2e/
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

clean:
	rm -rf bin
