# khyve build.  `make` builds build/khyve, build/khyvectl and build/testguest.
# `make check` runs every test, `make demo` shows a checkpoint/restore, `make asan` builds
# with AddressSanitizer and UBSan into build-asan/.

BUILD	?= build
CC	?= gcc
PREFIX	?= /usr/local
PKGS	:= json-c libxxhash slirp libsodium libseccomp libvncserver zlib

WARN	:= -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wstrict-prototypes \
	   -Wmissing-prototypes -Wformat=2
CFLAGS	?= -O2 -g
ALL_CFLAGS := -std=gnu11 $(WARN) $(CFLAGS) -D_GNU_SOURCE -Isrc -MMD -MP \
	   $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS	:= -lpthread $(shell pkg-config --libs $(PKGS) 2>/dev/null)

LIB_SRCS := $(filter-out src/main.c,$(wildcard src/*.c src/*/*.c src/*/*/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
CTL_SRCS := $(wildcard tools/*.c)
CTL_OBJS := $(CTL_SRCS:%.c=$(BUILD)/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: FORCE soak all check check-linux check-linux-snapshots linux-kernel unit e2e demo deps asan asan-unit asan-e2e install clean format-check format bench
all: $(BUILD)/khyve $(BUILD)/khyvectl $(BUILD)/testguest

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# The commit --version names: rewritten only when it changes, so only version.o is rebuilt.
# The temporary file is the make's own ($$$$): check runs two makes on one build at once.
KHYVE_COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell \
	git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
$(BUILD)/gen/commit.h: FORCE
	@mkdir -p $(dir $@)
	@t=$@.$$$$.tmp; echo '#define KHYVE_COMMIT "$(KHYVE_COMMIT)"' > $$t; \
	cmp -s $$t $@ && rm -f $$t || mv $$t $@
$(BUILD)/src/version.o: $(BUILD)/gen/commit.h
$(BUILD)/src/version.o: ALL_CFLAGS += -I$(BUILD)/gen
FORCE:

$(BUILD)/libkhyve.a: $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/khyve: $(BUILD)/src/main.o $(BUILD)/libkhyve.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/khyvectl: $(CTL_OBJS) $(BUILD)/libkhyve.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libkhyve.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags cmocka) -o $@ $< $(BUILD)/libkhyve.a \
		$(LDFLAGS) $(LDLIBS) $(shell pkg-config --libs cmocka)

# Fault-injection tests (tests/faultinj.h): each test_*_faults binary links tests/faultinj.c and
# has the host calls below redirected to its wrappers (the linker's --wrap); khyve and khyvectl
# never link it.  They are built from two sources in one command, so -MMD cannot record their
# headers: they depend on every tests/unit/*.h instead.
FI_WRAPS := read pread preadv write pwrite pwritev writev fsync fdatasync rename renameat2 open \
	openat mkostemp ftruncate fallocate mmap malloc calloc realloc strdup ioctl fstat dup \
	linkat copy_file_range lseek fchmod eventfd getrandom socket connect poll getsockopt \
	listen accept4 memfd_create madvise
$(BUILD)/tests/%_faults: tests/unit/%_faults.c tests/faultinj.c tests/faultinj.h $(wildcard tests/unit/*.h) \
		$(BUILD)/libkhyve.a
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(ALL_CFLAGS)) -Itests $(shell pkg-config --cflags cmocka) \
		$(LDFLAGS) $(foreach f,$(FI_WRAPS),-Wl,--wrap=$(f)) -o $@ $< tests/faultinj.c \
		$(BUILD)/libkhyve.a $(LDLIBS) $(shell pkg-config --libs cmocka)

include tests/guest/guest.mk

deps:
	@scripts/deps.sh

unit: $(UNIT_BINS)
	@scripts/run-unit.sh $(UNIT_BINS)

e2e: all
	@scripts/run-e2e.sh

# The Linux guest tests (check-linux) take many minutes where ring 0 is emulated: check starts
# them in the background once khyve is built and waits for them at the end; their output is
# printed then (and is in $(BUILD)/check-linux.log).
check: deps
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory all unit
	@$(MAKE) --no-print-directory check-linux > $(BUILD)/check-linux.log 2>&1 & linux=$$!; \
	E2E_EXCLUDE=test_linux. $(MAKE) --no-print-directory e2e; e2e=$$?; \
	$(MAKE) --no-print-directory asan-unit; asan=$$?; \
	$(MAKE) --no-print-directory fuzz-smoke; fz=$$?; \
	$(MAKE) --no-print-directory mutate-smoke; mu=$$?; \
	wait $$linux; lx=$$?; cat $(BUILD)/check-linux.log; \
	[ $$lx -eq 0 ] || echo "check: check-linux failed"; \
	[ $$e2e -eq 0 ] && [ $$asan -eq 0 ] && [ $$fz -eq 0 ] && [ $$mu -eq 0 ] && [ $$lx -eq 0 ]

# The Linux test kernel (tests/linux/build.sh): used when neither KHYVE_LINUX nor the prebuilt
# ../shared/guests image is there; built once into $(BUILD)/linux/.
linux-kernel:
	@tests/linux/build.sh

check-linux: all
	@E2E_ONLY=test_linux. scripts/run-e2e.sh

# The mid-boot snapshot test alone (also part of check-linux).
check-linux-snapshots: all
	@E2E_ONLY=test_linux.linux_snapshots scripts/run-e2e.sh

# The unit tests again under AddressSanitizer and UBSan; asan-e2e runs the end-to-end tests
# against the sanitized khyve too.
asan-unit: asan
	@scripts/run-unit.sh $(UNIT_SRCS:tests/unit/%.c=build-asan/tests/%)

asan-e2e: asan all
	@ln -sf ../$(BUILD)/testguest build-asan/testguest
	@KHYVE_BUILD=$(CURDIR)/build-asan scripts/run-e2e.sh

# Random checkpoint/suspend/restore cycles (tests/e2e/test_soak.py; make check runs 50).
CYCLES ?= 1000
soak: all
	@SOAK_CYCLES=$(CYCLES) E2E_ONLY=test_soak. scripts/run-e2e.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh

# Benchmarks (timing, ratios against dd, an empty KVM VM and QEMU): bench/README.md.
bench: deps
	@$(MAKE) --no-print-directory all
	@bench/snapshot.py

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
		LDFLAGS="-fsanitize=address,undefined" build-asan/khyve build-asan/khyvectl \
		$(UNIT_SRCS:tests/unit/%.c=build-asan/tests/%)

# libFuzzer targets (tests/fuzz/README.md): every tests/fuzz/fuzz_*.c, built with clang under
# ASan+UBSan into build-fuzz/.  `make fuzz` runs each FUZZ_SECONDS and prints execs/s,
# edges, corpus size and crashes; `make fuzz-smoke` (in `make check`) runs each for 3 s
# after replaying its regression corpus tests/fuzz/corpus/NAME/.  Either fails on a crash.
FUZZ_SECONDS ?= 60
FUZZ_BUILD := build-fuzz
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/fuzz/%)
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# clang's names for what gcc accepts quietly: kvm_msrs headers with their entries after them
# (a GNU extension the code relies on) and libseccomp's SCMP_A0() initialisers.
FUZZ_WNO := -Wno-gnu-variable-sized-type-not-at-end -Wno-missing-field-initializers

.PHONY: fuzz fuzz-smoke fuzz-build
fuzz-build:
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang \
		CFLAGS="-O1 -g $(FUZZ_SAN) $(FUZZ_WNO) -fsanitize=fuzzer-no-link" $(FUZZ_BINS)

$(FUZZ_BUILD)/tests/fuzz/%.o: ALL_CFLAGS += -Itests/fuzz
.SECONDARY: $(FUZZ_SRCS:%.c=$(FUZZ_BUILD)/%.o) $(FUZZ_BUILD)/tests/fuzz/fuzz.o

$(FUZZ_BUILD)/fuzz/%: $(FUZZ_BUILD)/tests/fuzz/%.o $(FUZZ_BUILD)/tests/fuzz/fuzz.o $(FUZZ_BUILD)/libkhyve.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

fuzz: fuzz-build
	@tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_BUILD) $(FUZZ_BINS)

fuzz-smoke: fuzz-build
	@tests/fuzz/run.sh 3 $(FUZZ_BUILD) $(FUZZ_BINS)

# Mutation testing (tests/mutants/): each mutant in tests/mutants/mutants.ini weakens one
# validation check in a scratch copy of the tree, which is built and tested; some test must
# fail.  `make mutate` runs every mutant (MUTATE_E2E_WRAP=CMD runs the e2e ones under CMD) and
# prints the score; `make mutate-smoke` (in `make check`) runs the few fast unit-only ones.
.PHONY: mutate mutate-smoke coverage
mutate:
	@python3 tests/mutants/run.py

mutate-smoke:
	@python3 tests/mutants/run.py --smoke

# Line and branch coverage (gcov): the unit tests and (COVERAGE_E2E=0 to skip them) the e2e
# tests against a --coverage build in build-cov/, then gcovr's tables for the guest-facing and
# snapshot-loading code.  A test failing under coverage is reported, the tables still printed.
COV_BUILD := build-cov
COVERAGE_E2E ?= 1
COV_UNITS := $(UNIT_SRCS:tests/unit/%.c=$(COV_BUILD)/tests/%)
COV_FILTER := --filter 'src/dev/' --filter 'src/snap/' --filter 'src/arch/x86/cpustate\.c'
# Atomic counters: vCPU and device threads update them at once (plain ones can go negative,
# which gcovr cannot parse; a line it still cannot parse is skipped with a warning).
# The -u's link libgcov's dump/reset in, for unit tests whose unprivileged children write
# their counts themselves (test_trust's locate_as).
COV_GCOVR := --exclude-unreachable-branches --gcov-ignore-parse-errors
coverage: all
	@find $(COV_BUILD) -name '*.gcda' -delete 2>/dev/null || true
	@$(MAKE) --no-print-directory BUILD=$(COV_BUILD) \
		CFLAGS="-O0 -g --coverage -fprofile-update=atomic" \
		LDFLAGS="--coverage -Wl,-u,__gcov_dump -Wl,-u,__gcov_reset" $(COV_BUILD)/khyve $(COV_BUILD)/khyvectl $(COV_UNITS)
	@ln -sf ../$(BUILD)/testguest $(COV_BUILD)/testguest
	-@scripts/run-unit.sh $(COV_UNITS) >$(COV_BUILD)/unit.log 2>&1; tail -1 $(COV_BUILD)/unit.log
	-@if [ "$(COVERAGE_E2E)" = 1 ]; then KHYVE_BUILD=$(CURDIR)/$(COV_BUILD) KHYVE_COVERAGE=1 \
		scripts/run-e2e.sh >$(COV_BUILD)/e2e.log 2>&1; tail -1 $(COV_BUILD)/e2e.log; fi
	@gcovr -r . --object-directory $(COV_BUILD) $(COV_FILTER) $(COV_GCOVR)
	@gcovr -r . --object-directory $(COV_BUILD) $(COV_FILTER) $(COV_GCOVR) -b

install: all
	install -D -m 755 $(BUILD)/khyve $(DESTDIR)$(PREFIX)/sbin/khyve
	install -D -m 755 $(BUILD)/khyvectl $(DESTDIR)$(PREFIX)/sbin/khyvectl
	install -D -m 644 man/khyve.8 $(DESTDIR)$(PREFIX)/share/man/man8/khyve.8
	install -D -m 644 man/khyvectl.8 $(DESTDIR)$(PREFIX)/share/man/man8/khyvectl.8
	install -D -m 644 contrib/khyve.bash-completion \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/khyve
	ln -sf khyve $(DESTDIR)$(PREFIX)/share/bash-completion/completions/khyvectl
	install -D -m 644 contrib/khyve@.service $(DESTDIR)$(PREFIX)/share/doc/khyve/khyve@.service
	install -D -m 644 $(BUILD)/testguest $(DESTDIR)$(PREFIX)/share/khyve/testguest
	install -D -m 644 README.md $(DESTDIR)$(PREFIX)/share/doc/khyve/README.md
	install -D -m 644 doc/control-protocol.md $(DESTDIR)$(PREFIX)/share/doc/khyve/control-protocol.md
	install -D -m 644 doc/snapshot-format.md $(DESTDIR)$(PREFIX)/share/doc/khyve/snapshot-format.md
	install -D -m 644 doc/platform.md $(DESTDIR)$(PREFIX)/share/doc/khyve/platform.md

FORMAT_SRCS := $(wildcard src/*.[ch] src/*/*.[ch] src/*/*/*.[ch] tools/*.c tests/unit/*.c tests/fuzz/*.[ch] \
	tests/faultinj.[ch])

format-check:
	@clang-format --dry-run --Werror $(FORMAT_SRCS) && echo "format: ok"

format:
	clang-format -i $(FORMAT_SRCS)

clean:
	rm -rf $(BUILD) build-asan $(FUZZ_BUILD) $(COV_BUILD)

# (not into build/linux/, the test kernel's tree: tests/linux/build.sh)
-include $(shell find $(BUILD) -path $(BUILD)/linux -prune -o -name '*.d' -type f -print 2>/dev/null)
