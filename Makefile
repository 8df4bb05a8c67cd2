# vpm — the two quick-start commands are `make demo` and `make test` (as root, Debian 12).
SWIFT ?= swift
BIN := .build/debug

.PHONY: all deps build demo test clean

all: build

# Installs the Debian packages vpm builds against and tests with, when they are missing.
deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build

demo: build
	$(BIN)/vpm demo

test: build
	@scripts/test.sh

clean:
	rm -rf .build
