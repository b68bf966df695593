# Thin wrapper around CMake.  `make` installs the Debian packages covct
# needs, builds build/covct and runs the built-in example; `make test` runs
# the whole test suite.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build demo test bench clean

all: build demo

deps:
	scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	$(BUILD)/covct demo $(BUILD)/demo

test:
	scripts/test.sh

bench: build
	bench/run.sh

clean:
	rm -rf $(BUILD) build-test build-fuzz
