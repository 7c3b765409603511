# devmail top-level entry points. `make check` and `make demo` work on a fresh Debian 12.
MAKEFLAGS += --no-print-directory
JOBS ?= $(shell nproc)
BUILD ?= build
BUILD_ASAN ?= build-asan
BUILD_REL ?= build-release
BUILD_CLANG ?= build-clang
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: all setup build build-asan build-release check test test-asan demo bench bench-daemon install clean

all: build

setup:
	bash scripts/setup

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

build-asan:
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DDEVMAIL_SANITIZE=ON >/dev/null
	cmake --build $(BUILD_ASAN) -j $(JOBS)

# Release (-O3) with GCC and with clang: warnings are errors here too, and -O3
# makes GCC's flow analysis see what the debug builds do not.
build-release:
	cmake -S . -B $(BUILD_REL) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD_REL) -j $(JOBS)
	CC=clang cmake -S . -B $(BUILD_CLANG) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD_CLANG) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	cd $(BUILD_ASAN) && ctest --output-on-failure -j $(JOBS)

# Installs, builds Release with GCC and clang (warnings are errors), then builds
# twice more (normal, ASan+UBSan) and runs the suite under each; the ASan ctest
# summary is the closing output.
check: setup
	$(MAKE) build-release
	$(MAKE) test
	$(MAKE) test-asan

demo: setup build
	bash scripts/demo $(BUILD)

bench: setup build
	bash bench/run $(BUILD)

# devmaild vs msmtp vs curl --next, 1,000 messages to the private Postfix + Dovecot
# of bench/mta.sh, and devmaild idle (~7 min; DM_BENCH_TARGET=npm: the npm peer).
bench-daemon: setup build
	bash bench/daemon.sh $(BUILD)

# Programs, man pages, the mail library (+ devmail.pc) and the systemd unit under
# $(DESTDIR)$(PREFIX); the unit and the .pc name $(PREFIX) (dist/install.cmake.in).
# Then, on the target: systemctl daemon-reload && systemctl enable --now devmaild
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_REL) $(BUILD_CLANG)
