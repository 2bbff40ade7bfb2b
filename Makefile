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
	debootstrap systemd-container dbus-broker nodejs \
	libsystemd-dev libp11-kit-dev libengine-pkcs11-openssl mosquitto mosquitto-clients strace
# Cross-building (make deb ARCH=arm64|armhf) and its smoke test under qemu-user
# (packaging/cross_test.go): the cross compilers, qemu, and the target's
# run-time libraries through multiarch (make deps adds the architectures).
CROSS_ARCHS := arm64 armhf
DEB_PACKAGES += qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross \
	$(foreach a,$(CROSS_ARCHS),libc6:$(a) libgcc-s1:$(a) libstdc++6:$(a) libssl3:$(a) libsystemd-dev:$(a) libp11-kit-dev:$(a) pkg-config:$(a))

.PHONY: all build test test-system bench demo demo-shell deps vet fmt-check fuzz fuzz-targets clean deb deb-all c-artifacts pkcs11mod

# ARCH: the Debian architecture to build for (default: this machine's).
# amd64 builds natively; arm64 and armhf cross-build with Debian's cross
# compilers, cgo on (keyd's PKCS#11). TRIPLET_<arch> is the GNU type, so CC
# names the same compiler dpkg's buildtools.mk picks in debian/rules; every C
# artifact (cgo and any C file built here) uses $(CC). CC given on the command
# line or in the environment wins.
NATIVE_ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
ARCH ?= $(NATIVE_ARCH)
DEB_ARCHS := amd64 arm64 armhf
TRIPLET_amd64 := x86_64-linux-gnu
TRIPLET_arm64 := aarch64-linux-gnu
TRIPLET_armhf := arm-linux-gnueabihf
GOARCH_amd64 := amd64
GOARCH_arm64 := arm64
GOARCH_armhf := arm
GOARM_armhf := 7
ifeq ($(TRIPLET_$(ARCH)),)
ifneq ($(ARCH),$(NATIVE_ARCH))
$(error ARCH=$(ARCH) is not supported; use one of $(DEB_ARCHS))
endif
else ifeq ($(origin CC),default)
CC := $(TRIPLET_$(ARCH))-gcc
endif
# Native builds go to bin/ as before; cross builds to bin/<arch>/.
ifeq ($(ARCH),$(NATIVE_ARCH))
BINDIR ?= $(BIN)
GO_ENV :=
PKG_CONFIG ?= pkg-config
else
# pkg-config for the target: pkgconf's cross wrapper, which pkg-config:ARCH
# (Multi-Arch: same, installed by make deps) provides -- what buildtools.mk
# names in debian/rules and what a Debian cross builder installs for the
# unqualified pkg-config in Build-Depends.
PKG_CONFIG ?= $(TRIPLET_$(ARCH))-pkg-config
BINDIR ?= $(BIN)/$(ARCH)
GO_ENV := CGO_ENABLED=1 GOOS=linux GOARCH=$(GOARCH_$(ARCH)) $(if $(GOARM_$(ARCH)),GOARM=$(GOARM_$(ARCH))) CC=$(CC)
endif
# C artifacts built with $(CC) into $(BINDIR) by `make build` and, through
# `make c-artifacts`, by debian/rules (which passes BINDIR, CC, CFLAGS and
# LDFLAGS for the package's architecture). One line per artifact, e.g.
#   C_ARTIFACTS += $(BINDIR)/libedgev2-pkcs11.so
# with its rule below, and a line in packaging/debian/edgev2.install.
C_ARTIFACTS := $(BINDIR)/libedgev2-pkcs11.so

all: build

# The commit goes into `edgectl --version` (also in git worktrees, which Go's
# own VCS stamp skips); "+changes" marks uncommitted changes.
COMMIT := $(shell git rev-parse HEAD 2>/dev/null)$(shell git status --porcelain 2>/dev/null | grep -q . && echo +changes)

build: c-artifacts
	@mkdir -p $(BINDIR)
	$(GO_ENV) $(GO) build -trimpath -ldflags '-X main.commit=$(COMMIT)' -o $(BINDIR)/ $(addprefix ./cmd/,$(CMDS))

c-artifacts: $(C_ARTIFACTS)

# pkcs11mod: the PKCS#11 module libedgev2-pkcs11.so (C over sd-bus; docs/pkcs11.md),
# with $(CC) and $(PKG_CONFIG) of ARCH; CFLAGS/CPPFLAGS/LDFLAGS add Debian's
# hardening flags or a sanitizer. Only C_GetFunctionList is exported.
PKCS11MOD_SRC = $(wildcard keys/pkcs11mod/csrc/*.c) keys/pkcs11mod/csrc/internal.h
PKCS11MOD_CFLAGS = -std=c11 -D_GNU_SOURCE -O2 -g -fPIC -Wall -Wextra -Werror -fvisibility=hidden \
	$(shell $(PKG_CONFIG) --cflags p11-kit-1 libsystemd)
pkcs11mod: $(BINDIR)/libedgev2-pkcs11.so
$(BINDIR)/libedgev2-pkcs11.so: $(PKCS11MOD_SRC)
	@mkdir -p $(BINDIR)
	$(CC) $(PKCS11MOD_CFLAGS) $(CPPFLAGS) $(CFLAGS) -shared -Wl,-soname,libedgev2-pkcs11.so -Wl,-z,defs \
		-o $@ $(filter %.c,$^) $(LDFLAGS) $(shell $(PKG_CONFIG) --libs libsystemd)

# deps: install every Debian package the tests and the demo use (idempotent, root).
# The cross architectures are added to dpkg first (packaging/cross-deps.sh
# checks that the apt sources offer them); libsofthsm2 of each is unpacked
# under /var/cache/edgev2-cross, as it cannot be co-installed with amd64's.
deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps must run as root (it uses apt-get)"; exit 1; fi
	@packaging/cross-deps.sh architectures $(CROSS_ARCHS)
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -q || echo "make deps: apt-get update reported errors (above); installing from the indexes it has"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else echo "all Debian packages present"; fi
	@# npm: Debian's, unless a nodejs that bundles its own (NodeSource's, which conflicts with it) is there.
	@command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm
	@packaging/cross-deps.sh softhsm $(CROSS_ARCHS)
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
# The daemons are measured as the package links them (packaging/debian/rules
# on amd64: PIE, external link, full RELRO, packed relative relocations),
# since resident memory depends on it (keyd: 14.4 MiB so, 15.2 without
# packing); TestBenchLinksTheDaemonsAsThePackageDoes keeps the two alike.
BENCH_FLAGS ?=
BENCH_GOFLAGS := -buildmode=pie -ldflags=-linkmode=external
BENCH_CGO_LDFLAGS := -Wl,-z,relro,-z,now,-z,pack-relative-relocs
bench: build
	GOFLAGS='$(strip $(GOFLAGS) $(BENCH_GOFLAGS))' CGO_LDFLAGS='$(BENCH_CGO_LDFLAGS)' $(GO) run ./internal/bench $(BENCH_FLAGS)

# demo: the zero-touch flow with the four services, labcloud and containerd on a private bus.
demo:
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory deps; fi
	@echo "building the demo (go build; the first build takes a minute or two) ..."
	@$(GO) run ./internal/demo

# deb: the Debian packages of the committed tree into bin/deb (docs/packaging.md),
# for ARCH (default this machine's); deb-all: for amd64, arm64 and armhf.
deb:
	packaging/build-deb.sh --arch $(ARCH) $(BIN)/deb

deb-all:
	@for a in $(DEB_ARCHS); do packaging/build-deb.sh --arch $$a $(BIN)/deb || exit 1; done

clean:
	rm -rf $(BIN)

# demo-shell: the demo, then keep it all running (bus, polkitd, the four
# services, labcloud, containerd) for the README tour, until Ctrl-C.
demo-shell:
	@echo "building the demo (go build; the first build takes a minute or two) ..."
	@$(GO) run ./internal/demo -shell
