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

.PHONY: all bootstrap build run test asan fuzz valgrind tsan demo demo-cluster clean install

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

# Memcheck over the integration suite on SQLite: each test binary and
# every cairnd it starts under valgrind (CAIRN_TEST_WRAP). Fails on any
# error or definite leak; logs in $(BUILD)/valgrind/<pid>.log. What it
# leaves out and why: docs/testing.md. --max-threads: test_watch runs 999
# watcher threads; --child-silent-after-fork: a test's fork before it
# execs cairnd (under a valgrind of its own, same pid, same log) says
# nothing.
VALGRIND_LOGS = $(CURDIR)/$(BUILD)/valgrind
VALGRIND = valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
	--errors-for-leak-kinds=definite --show-leak-kinds=definite --num-callers=40 \
	--max-threads=1200 --child-silent-after-fork=yes \
	--suppressions=$(CURDIR)/tests/valgrind.supp --log-file=$(VALGRIND_LOGS)/%p.log
valgrind: build
	rm -rf $(VALGRIND_LOGS) && mkdir -p $(VALGRIND_LOGS)
	cd $(BUILD) && CAIRN_TEST_WRAP="$(VALGRIND)" CAIRN_TEST_TIME_SCALE=10 \
		ctest --output-on-failure -j $(JOBS) -L integration -LE 'postgres|no_valgrind' \
		|| { grep -l 'ERROR SUMMARY: [1-9]' $(VALGRIND_LOGS)/*.log; exit 1; }

# The concurrency tests (ctest label tsan) under ThreadSanitizer in
# build-tsan; the cairnd they start is the plain build's (docs/testing.md).
TSAN_TARGETS = test_ledger test_watch_hub test_pool test_retry test_guard integration_test_leases
tsan: build
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAIRN_TSAN=ON $(CMAKE_FLAGS)
	cmake --build build-tsan -j $(JOBS) --target $(TSAN_TARGETS)
	cd build-tsan && CAIRN_TEST_CAIRND=$(CURDIR)/$(BUILD)/server/cairnd \
		TSAN_OPTIONS="second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
		ctest --output-on-failure -j $(JOBS) -L tsan

install: build
	cmake --install $(BUILD)

clean:
	rm -rf build build-asan build-tsan $(FUZZ_BUILD)
