# edgev2 — see README.md. Targets: build, test, bench, demo, deps.
GO ?= go
export PATH := $(PATH):/usr/local/go/bin
BIN := bin
CMDS := edgev2-keyd edgev2-certd edgev2-identityd edgev2-modrtd edgev2-labcloud edgectl

# Debian packages the tests, the benchmark and the demo need.
DEB_PACKAGES := dbus dbus-daemon polkitd systemd libglib2.0-bin softhsm2 opensc openssl \
	ca-certificates gcc libc6-dev curl util-linux mount containerd runc containernetworking-plugins iptables busybox-static \
	docker-registry apache2-utils swtpm swtpm-tools libtpm2-pkcs11-1 libtpm2-pkcs11-tools \
	tpm2-tools libtss2-tcti-swtpm0 tpm2-abrmd libtss2-tcti-tabrmd0 debhelper dpkg-dev fakeroot lintian zip unzip

.PHONY: all build test bench demo demo-shell deps vet fmt-check fuzz clean deb

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

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

# fuzz: a short run of every fuzz target (the seeds also run in `make test`).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParsePKCS11URI -fuzztime 30s ./keys
	$(GO) test -run '^$$' -fuzz FuzzParseConfig -fuzztime 30s ./keys
	$(GO) test -run '^$$' -fuzz FuzzEscapePathElement -fuzztime 30s ./dbus
	$(GO) test -run '^$$' -fuzz FuzzParseChainPEM -fuzztime 30s ./certs
	$(GO) test -run '^$$' -fuzz FuzzParseCSR -fuzztime 30s ./certs
	$(GO) test -run '^$$' -fuzz FuzzParseCertsOnly -fuzztime 30s ./certs/est
	$(GO) test -run '^$$' -fuzz FuzzParseCSRAttrs -fuzztime 30s ./certs/est
	$(GO) test -run '^$$' -fuzz FuzzParseCSR -fuzztime 30s ./internal/labcloud/est
	$(GO) test -run '^$$' -fuzz FuzzDecodeBase64 -fuzztime 30s ./internal/labcloud/est
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./identity/connstr
	$(GO) test -run '^$$' -fuzz FuzzParseToken -fuzztime 30s ./identity/sas
	$(GO) test -run '^$$' -fuzz FuzzParseOperation -fuzztime 30s ./identity/dps
	$(GO) test -run '^$$' -fuzz FuzzParseModule -fuzztime 30s ./identity/hub
	$(GO) test -run '^$$' -fuzz FuzzParseRegistration -fuzztime 30s ./internal/labcloud/dps
	$(GO) test -run '^$$' -fuzz FuzzParseSAS -fuzztime 30s ./internal/labcloud/hub
	$(GO) test -run '^$$' -fuzz FuzzParseSpec -fuzztime 30s ./modrt
	$(GO) test -run '^$$' -fuzz FuzzOCIOpts -fuzztime 30s ./modrt
	$(GO) test -run '^$$' -fuzz FuzzWorkloadBodies -fuzztime 30s ./modrt/workload
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./internal/superconfig
	$(GO) test -run '^$$' -fuzz FuzzParseEKCert -fuzztime 30s ./internal/tpm
	$(GO) test -run '^$$' -fuzz FuzzParseAuthKey -fuzztime 30s ./identity/tpm
	$(GO) test -run '^$$' -fuzz FuzzRedactTOML -fuzztime 30s ./cmd/edgectl

# bench: figures beside their physical limits measured in the same run.
bench: build
	$(GO) run ./internal/bench

# demo: the Keys service on a private bus with polkit and a SoftHSM token.
demo:
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory deps; fi
	$(GO) run ./internal/demo

# deb: the Debian packages of the committed tree into bin/deb (docs/packaging.md).
deb:
	packaging/build-deb.sh $(BIN)/deb

clean:
	rm -rf $(BIN)

# demo-shell: the demo, then keep keyd running for the README tour.
demo-shell:
	$(GO) run ./internal/demo -shell
