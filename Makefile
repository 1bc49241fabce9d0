# Thin wrapper over CMake. `make run` and `make test` work on a fresh
# Debian machine: they install what is missing first.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
CAIRND_FLAGS ?=
# make fuzz: seconds per fuzz target; make test runs each for FUZZ_SMOKE_SECONDS
# (0: not at all). FUZZ_TARGETS limits both to some targets.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 3
FUZZ_TARGETS ?=

.PHONY: all bootstrap build run test asan fuzz demo demo-cluster clean install

all: build

bootstrap:
	./scripts/bootstrap

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: bootstrap $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/server/cairnd $(CAIRND_FLAGS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
ifneq ($(FUZZ_SMOKE_SECONDS),0)
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS)
endif

# The fuzz targets under libFuzzer (clang-14, ASan + UBSan), FUZZ_SECONDS
# each, in their own build directory (tests/fuzz/README.md).
$(FUZZ_BUILD)/CMakeCache.txt:
	CC=clang-14 cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAIRN_FUZZ=ON

fuzz: bootstrap $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target cairn_fuzz
	./scripts/fuzz $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# A run of 8 workers on 3 node processes; one node is killed midway.
demo: build
	$(BUILD)/client/cairn-demo --cairnd $(BUILD)/server/cairnd --node $(BUILD)/client/cairn-demo-node

# The same on 3 cairnd replicas over a private PostgreSQL.
demo-cluster: build
	/usr/bin/python3 scripts/demo-cluster $(BUILD)

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer (the
# fuzz targets' regression runners included; the libFuzzer run is make test's).
asan:
	$(MAKE) test BUILD=build-asan BUILD_TYPE=Debug CMAKE_FLAGS=-DCAIRN_SANITIZE=ON FUZZ_SMOKE_SECONDS=0

install: build
	cmake --install $(BUILD)

clean:
	rm -rf build build-asan $(FUZZ_BUILD)
