# devmail top-level entry points. `make check` and `make demo` work on a fresh Debian 12.
MAKEFLAGS += --no-print-directory
JOBS ?= $(shell nproc)
BUILD ?= build
BUILD_ASAN ?= build-asan

.PHONY: all setup build build-asan check test test-asan demo bench clean

all: build

setup:
	bash scripts/setup

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

build-asan:
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DDEVMAIL_SANITIZE=ON >/dev/null
	cmake --build $(BUILD_ASAN) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	cd $(BUILD_ASAN) && ctest --output-on-failure -j $(JOBS)

# Installs, builds twice (normal, ASan+UBSan) and runs the suite under each; the
# ASan ctest summary is the closing output.
check: setup
	$(MAKE) test
	$(MAKE) test-asan

demo: setup build
	bash scripts/demo $(BUILD)

bench: setup build
	bash bench/run $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
