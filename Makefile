# setdet: the commands of README.md and docs/getting_started.md. Each installs what it needs (idempotently) and builds first.
BUILD_DIR ?= build
ASAN_DIR ?= build-asan
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
PYTHON := /usr/bin/python3

.PHONY: all deps configure build test demo demo-pss demo-relation demo-vrd demo-deta bench format sanitize fuzz clean

all: build

deps:
	@bash scripts/install_deps.sh

$(BUILD_DIR)/build.ninja: | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

configure: deps $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

demo: build
	bash scripts/demo.sh $(BUILD_DIR)

demo-pss: build
	bash scripts/demo_pss.sh $(BUILD_DIR)

demo-relation: build
	bash scripts/demo_relation.sh $(BUILD_DIR)

demo-vrd: build
	bash scripts/demo_vrd.sh $(BUILD_DIR)

demo-deta: build
	bash scripts/demo_deta.sh $(BUILD_DIR)

bench: build
	bash scripts/bench.sh $(BUILD_DIR)

# ASan + UBSan build of setdet_core and its unit tests
sanitize: deps
	cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSETDET_SANITIZE=ON
	cmake --build $(ASAN_DIR) -j $(JOBS) --target setdet_core_tests
	cd $(ASAN_DIR) && ctest --output-on-failure -R '^core\.'

# libFuzzer targets (clang, ASan + UBSan), each run FUZZ_SECONDS from tests/fuzz/corpus/
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSETDET_FUZZ=ON
	cmake --build $(FUZZ_DIR) -j $(JOBS)
	bash scripts/fuzz.sh $(FUZZ_DIR) $(FUZZ_SECONDS)

format:
	find src apps tests bench -name '*.cpp' -o -name '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR)
