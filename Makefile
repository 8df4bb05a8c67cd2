# vpm — the two quick-start commands are `make demo` and `make test` (as root, Debian 12).
SWIFT ?= swift
BIN := .build/debug

.PHONY: all bpf deps build install install-build deb demo test clean bench bench-micro bench-cooperative bench-exec bench-scale fuzz soak

all: build

# Installs the Debian packages vpm builds against and tests with, when they are missing.
deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build

# The socket datapath's BPF program, compiled (the toolchain's clang) into the committed
# Sources/CSteering/steer_object.c. Run after changing Sources/CSteering/bpf/steer.bpf.c.
bpf:
	@scripts/build-bpf.sh

# Installs a release build of vpm under PREFIX (default /usr/local). DESTDIR stages it.
# The Swift runtime is linked in (--static-swift-stdlib) and the binary stripped, so the
# installed vpm needs only Debian's libraries, not the toolchain it was built with.
PREFIX ?= /usr/local
INSTALL_BUILD := $(SWIFT) build -c release --static-swift-stdlib --product vpm --scratch-path .build/install
# With it: the man page and bash/zsh completions under PREFIX/share, the systemd units (vpm,
# and the instance template vpm-exec@; ExecStart under PREFIX) in UNITDIR and, unless one exists,
# an example /etc/vpm/vpm.yaml (`systemctl enable --now vpm` once it is edited).
UNITDIR ?= /etc/systemd/system
install: deps install-build
	install -D -s -m 0755 "$$($(INSTALL_BUILD) --show-bin-path)/vpm" $(DESTDIR)$(PREFIX)/bin/vpm
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|@BINDIR@|$(PREFIX)/bin|g' packaging/vpm.service.in > $(DESTDIR)$(UNITDIR)/vpm.service
	sed 's|@BINDIR@|$(PREFIX)/bin|g' 'packaging/vpm-exec@.service.in' > '$(DESTDIR)$(UNITDIR)/vpm-exec@.service'
	chmod 0644 $(DESTDIR)$(UNITDIR)/vpm.service '$(DESTDIR)$(UNITDIR)/vpm-exec@.service'
	[ -e $(DESTDIR)/etc/vpm/vpm.yaml ] || install -D -m 0644 packaging/vpm.yaml $(DESTDIR)/etc/vpm/vpm.yaml
	SWIFT="$(SWIFT)" scripts/install-extras.sh $(DESTDIR)$(PREFIX)/bin/vpm $(DESTDIR)$(PREFIX)/share/man/man8 \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions

# The release build alone (make install's and make deb's): make test starts it early, with the
# smallest CPU share (a cgroup), so it takes the cores the debug build and the tests leave idle.
install-build:
	$(INSTALL_BUILD)

# A Debian package (dpkg-deb) in the current folder: the binary, the unit, the example
# configuration, the man page and bash/zsh completions (scripts/make-deb.sh).
deb: deps
	@scripts/make-deb.sh .

demo: build
	$(BIN)/vpm demo

# scripts/test.sh builds (debug, with the tests) and, beside it, the release build.
test: deps
	@scripts/test.sh

# vpm against kernel NAT and haproxy (root, about 10 minutes): installs the tools it needs,
# builds vpm in release, prints the table, writes Benchmarks/results/bench-results.json.
bench:
	@scripts/bench.sh

# Cooperative connection set-up (root, about a minute): two engines in cooperative mode,
# connect() timed from an instance's client, against the same loop with no engine; and the
# two as a fleet on etcd, dialling the server's address and a service address (docs/fleet.md).
bench-cooperative:
	@Benchmarks/cooperative-setup.sh

# The cost of vpm exec's interception (root, under a minute): bind, getsockname and connect
# from one C program, plain and under vpm exec, same run; medians and ratios.
bench-exec:
	@Benchmarks/interception-cost.sh

# The engine under load on each datapath (root, about 8 minutes): 10,000 held connections,
# 1,000 new a second for 60 s, a spoofed SYN flood with legitimate clients, the engine's RSS
# throughout; prints the figures, writes Benchmarks/results/soak-DATE.json.
soak:
	@Benchmarks/soak.sh

# How the engine's costs grow with its work (root, about ten minutes): 10k to 1M live flows,
# 10 to 100,000 source rules, 10 and 1,000 AIDs, on both datapaths; engine RSS, new
# connections a second, round trips, and the stall while `vpm flows` dumps the table.
# Writes Benchmarks/results/scale-DATE.json (Benchmarks/scale.sh).
bench-scale:
	@Benchmarks/scale.sh

# Micro-benchmarks (Benchmarks/, a package of its own, so `make test` never builds them):
# the packet rewrite, the whole per-packet decision and the flow table. The second run
# prints raw mallocs per sample of 1,000 operations, so one allocation anywhere in a
# sample would show as 1 or more.
bench-micro:
	cd Benchmarks && $(SWIFT) package benchmark --no-progress
	cd Benchmarks && $(SWIFT) package benchmark --no-progress --scale --metric mallocCountTotal

# libFuzzer + ASan on the packet parser and the negotiation decoder (Fuzz/README.md): each for
# FUZZ_SECONDS (default 60); fails and names the saved input when a harness crashes.
fuzz:
	@Fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf .build
