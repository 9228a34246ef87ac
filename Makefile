# fathom — the two set-up commands are `make demo` and `make test` (see README.md).
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build demo test asan-test fuzz bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) > /dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	@scripts/demo.sh $(BUILD_DIR)/bin/fathom

# The whole suite; benchmarks are labelled `slow` and excluded (run them with `make bench`).
test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -LE slow --timeout 900

# Everything under AddressSanitizer + UBSan in a separate build tree.
asan-test: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFATHOM_SANITIZE=address,undefined > /dev/null
	@cmake --build build-asan -j $(JOBS)
	@cd build-asan && ctest --output-on-failure -j $(JOBS) -LE slow

# Every libFuzzer target (tests/fuzz) for FUZZ_SECONDS each, from a copy of its seed corpus
# with a fresh random seed; findings land in $(BUILD_DIR)/fuzz-artifacts/<target>/.
FUZZ_SECONDS ?= 60
fuzz: build
	@set -e; for f in $(BUILD_DIR)/fuzz/bin/*_fuzz; do \
	  name=$$(basename $$f _fuzz); echo "fuzz: $$name for $(FUZZ_SECONDS) s"; \
	  tests/fuzz/run_fuzzer.sh $$f tests/fuzz/corpus/$$name $(BUILD_DIR)/fuzz-artifacts/$$name \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=16384; \
	done

bench: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -L slow

clean:
	rm -rf $(BUILD_DIR) build-asan
