# vpm — the two quick-start commands are `make demo` and `make test` (as root, Debian 12).
SWIFT ?= swift
BIN := .build/debug

.PHONY: all deps build preload install demo test clean

all: build

# Installs the Debian packages vpm builds against and tests with, when they are missing.
deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build
	@$(MAKE) --no-print-directory preload

# The interception layer of `vpm exec`: plain C, linked only against libc (a SwiftPM
# library would drag the Swift runtime into every intercepted program).
preload: $(BIN)/libvpm-preload.so

$(BIN)/libvpm-preload.so: preload/vpm_preload.c
	@mkdir -p $(BIN)
	cc -shared -fPIC -O2 -Wall -Wextra -Werror -o $@ $<

# Installs vpm and its interception library under PREFIX (default /usr/local).
PREFIX ?= /usr/local
install: build
	install -D -m 0755 $(BIN)/vpm $(DESTDIR)$(PREFIX)/bin/vpm
	install -D -m 0644 $(BIN)/libvpm-preload.so $(DESTDIR)$(PREFIX)/lib/vpm/libvpm-preload.so

demo: build
	$(BIN)/vpm demo

test: build
	@scripts/test.sh

clean:
	rm -rf .build
