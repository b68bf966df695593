# Thin wrapper around CMake.  `make` installs the Debian packages covct
# needs, builds build/covct and runs the built-in example (a synthetic
# chest CT phantom, analysed); `make test` runs the whole test suite.
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
	rm -rf $(BUILD)/phantom $(BUILD)/phantom-report
	$(BUILD)/covct phantom -o $(BUILD)/phantom
	$(BUILD)/covct analyze $(BUILD)/phantom/dicom -o $(BUILD)/phantom-report

test:
	scripts/test.sh

bench: build
	bench/run.sh

clean:
	rm -rf $(BUILD) build-test build-fuzz
