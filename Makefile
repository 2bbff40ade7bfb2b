# edgev2 — see README.md. Targets: build, test, bench, demo, deps.
GO ?= go
export PATH := $(PATH):/usr/local/go/bin
BIN := bin
CMDS := edgev2-keyd edgev2-certd edgev2-identityd edgev2-modrtd edgev2-labcloud edgectl

# Debian packages the tests, the benchmark and the demo need.
DEB_PACKAGES := dbus dbus-daemon polkitd systemd libglib2.0-bin softhsm2 opensc openssl p11-kit p11-kit-modules \
	ca-certificates gcc libc6-dev curl util-linux mount containerd runc containernetworking-plugins iptables busybox-static \
	docker-registry apache2-utils swtpm swtpm-tools libtpm2-pkcs11-1 libtpm2-pkcs11-tools \
	tpm2-tools libtss2-tcti-swtpm0 tpm2-abrmd libtss2-tcti-tabrmd0 debhelper dpkg-dev fakeroot lintian zip unzip \
	debootstrap systemd-container dbus-broker nodejs npm \
	libsystemd-dev libp11-kit-dev libengine-pkcs11-openssl mosquitto mosquitto-clients

.PHONY: all build pkcs11mod test test-system bench demo demo-shell deps vet fmt-check fuzz fuzz-targets clean deb

all: build

# The commit goes into `edgectl --version` (also in git worktrees, which Go's
# own VCS stamp skips); "+changes" marks uncommitted changes.
COMMIT := $(shell git rev-parse HEAD 2>/dev/null)$(shell git status --porcelain 2>/dev/null | grep -q . && echo +changes)

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '-X main.commit=$(COMMIT)' -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))
	@$(MAKE) --no-print-directory pkcs11mod

# pkcs11mod: the PKCS#11 module libedgev2-pkcs11.so (C over sd-bus; docs/pkcs11.md).
# $(CC) and $(PKG_CONFIG) make it cross-compile (CC=aarch64-linux-gnu-gcc
# PKG_CONFIG=aarch64-linux-gnu-pkg-config); CFLAGS/CPPFLAGS/LDFLAGS add
# Debian's hardening flags or a sanitizer. Only C_GetFunctionList is exported.
PKG_CONFIG ?= pkg-config
PKCS11MOD_SRC = $(wildcard keys/pkcs11mod/csrc/*.c) keys/pkcs11mod/csrc/internal.h
PKCS11MOD_CFLAGS = -std=c11 -D_GNU_SOURCE -O2 -g -fPIC -Wall -Wextra -Werror -fvisibility=hidden \
	$(shell $(PKG_CONFIG) --cflags p11-kit-1 libsystemd)
pkcs11mod: $(BIN)/libedgev2-pkcs11.so
$(BIN)/libedgev2-pkcs11.so: $(PKCS11MOD_SRC)
	@mkdir -p $(BIN)
	$(CC) $(PKCS11MOD_CFLAGS) $(CPPFLAGS) $(CFLAGS) -shared -Wl,-soname,libedgev2-pkcs11.so -Wl,-z,defs \
		-o $@ $(filter %.c,$^) $(LDFLAGS) $(shell $(PKG_CONFIG) --libs libsystemd)

# deps: install every Debian package the tests and the demo use (idempotent, root).
deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps must run as root (it uses apt-get)"; exit 1; fi
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else echo "all Debian packages present"; fi
	$(GO) mod download

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# test: everything against the real parts (needs root and `make deps`).
# -p 1: the packages' polkitd instances share /etc/polkit-1/rules.d.
test: fmt-check vet
	$(GO) test -race -count=1 -p 1 -timeout 25m ./...

# test-system: the packages on a Debian 12 booted with systemd-nspawn, once
# with dbus-daemon and once with dbus-broker as the system bus (root; the
# debootstrapped root is cached in /var/cache/edgev2-systest; docs/packaging.md).
test-system:
	$(GO) test -tags systemtest -count=1 -v -run TestSystemBootedDebian -timeout 45m ./packaging

# fuzz: a short run (FUZZTIME each) of every fuzz target; the seeds also run
# in `make test`. The targets are found, not listed: fuzz-targets prints
# "PACKAGE TARGET" for each Fuzz function in the test files go would build,
# and internal/fuzztargets checks that list against the Go parser's.
FUZZTIME ?= 30s
fuzz:
	@targets=$$($(MAKE) -s --no-print-directory fuzz-targets) || exit 1; \
	n=$$(echo "$$targets" | wc -l); \
	echo "$$targets" | { i=0; failed=""; while read -r pkg t; do i=$$((i+1)); \
		echo "== fuzz [$$i/$$n] $$t in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) "$$pkg" || failed="$$failed $$pkg:$$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed"; exit 1; fi; echo "fuzz: all $$n targets ran clean"; }

fuzz-targets:
	@$(GO) list -f '{{.ImportPath}} {{.Dir}} {{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' ./... | \
	while read -r pkg dir files; do \
		[ -n "$$files" ] || continue; \
		for f in $$files; do sed -n 's/^func \(Fuzz[^a-z(][A-Za-z0-9_]*\)(.*/\1/p' "$$dir/$$f"; done | \
			sort -u | sed "s|^|$$pkg |"; \
	done

# bench: figures beside their limits, measured interleaved in the same run
# (median and min–max of 5 repetitions). Exit 0 when every row was measured,
# goals met or not (unmet goals print NOT MET); non-zero when a row errored.
# BENCH_FLAGS=-quick for a short run; BENCH_FLAGS="-json out.json" to compare commits.
BENCH_FLAGS ?=
bench: build
	$(GO) run ./internal/bench $(BENCH_FLAGS)

# demo: the zero-touch flow with the four services, labcloud and containerd on a private bus.
demo:
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory deps; fi
	@echo "building the demo (go build; the first build takes a minute or two) ..."
	@$(GO) run ./internal/demo

# deb: the Debian packages of the committed tree into bin/deb (docs/packaging.md).
deb:
	packaging/build-deb.sh $(BIN)/deb

clean:
	rm -rf $(BIN)

# demo-shell: the demo, then keep it all running (bus, polkitd, the four
# services, labcloud, containerd) for the README tour, until Ctrl-C.
demo-shell:
	@echo "building the demo (go build; the first build takes a minute or two) ..."
	@$(GO) run ./internal/demo -shell
