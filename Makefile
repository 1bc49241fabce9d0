# Thin wrapper over CMake. `make run` and `make test` work on a fresh
# Debian machine: they install what is missing first.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
CAIRND_FLAGS ?=

.PHONY: all bootstrap build run test asan demo demo-cluster clean install

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

# A run of 8 workers on 3 node processes; one node is killed midway.
demo: build
	$(BUILD)/client/cairn-demo --cairnd $(BUILD)/server/cairnd --node $(BUILD)/client/cairn-demo-node

# The same on 3 cairnd replicas over a private PostgreSQL.
demo-cluster: build
	/usr/bin/python3 scripts/demo-cluster $(BUILD)

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
asan:
	$(MAKE) test BUILD=build-asan BUILD_TYPE=Debug CMAKE_FLAGS=-DCAIRN_SANITIZE=ON

install: build
	cmake --install $(BUILD)

clean:
	rm -rf build build-asan
