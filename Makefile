# SPDX-License-Identifier: MIT
# eddy build. `make run` starts the demo (the eddy program), `make test` runs every test.
#
# Variables:
#   BUILD=dir          output directory (default build, or build/san-<sanitizers>)
#   SANITIZE=list      e.g. SANITIZE=address,undefined or SANITIZE=thread
#   WERROR=1           treat warnings as errors (CI does)
#   LTO=               build without link-time optimisation (on by default without SANITIZE)
#   PYTEST_ARGS=...    extra arguments for the integration tests (e.g. -k frames)
#   PYTEST_JOBS=n      pytest-xdist workers for the integration tests (default 2; 0: none)
#   PYTEST=cmd         pytest as found on PATH (default pytest; Debian: python3-pytest)
#   PYTHON=cmd         python3 for tests/soak (default: the first on PATH with websockets)

SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD ?= build
else
BUILD ?= build/san-$(subst $(comma),-,$(SANITIZE))
endif
comma := ,

CC ?= cc
OPT ?= -O2
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN += -Werror
endif
# Link-time optimisation: a message crosses conn.c, ws.c and server.c, and inlining across
# them saves an eighth of the instructions per echoed message (669 -> 579 at 20 bytes,
# bench/instructions). Fat objects keep libeddy.a linkable without it. Sanitizer builds go
# without (build time).
ifeq ($(SANITIZE),)
LTO ?= -flto=auto -ffat-lto-objects
endif
CFLAGS_ALL := -std=gnu11 -D_GNU_SOURCE $(OPT) $(LTO) -g $(WARN) -fPIC -pthread -Iinclude -Isrc $(CFLAGS)
# hiredis: the real-time layer's Redis broker (rt/rt_broker_redis.c).
HIREDIS_LIBS := $(shell pkg-config --libs hiredis 2>/dev/null || echo -lhiredis)
# msgpack-c: Socket.IO's Redis emitter format (rt/rt_emitter.c).
MSGPACK_LIBS := $(shell pkg-config --libs msgpack 2>/dev/null || echo -lmsgpackc)
LDLIBS_ALL := -lssl -lcrypto -lz $(HIREDIS_LIBS) $(MSGPACK_LIBS) -lm -pthread $(LDLIBS)
ifneq ($(SANITIZE),)
CFLAGS_ALL += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDLIBS_ALL += -fsanitize=$(SANITIZE)
endif

# The version is written once, in include/eddy.h.
VERSION := $(shell sed -n 's/^\#define EDDY_VERSION_STRING *"\(.*\)"/\1/p' include/eddy.h)
VERSION_MAJOR := $(word 1,$(subst ., ,$(VERSION)))
VERSION_MINOR := $(word 2,$(subst ., ,$(VERSION)))

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include

LIB_SRCS := $(sort $(wildcard src/*.c))
# The real-time layer (rt/: events, rooms, Socket.IO) is part of libeddy but sits above the
# engine: it is compiled without -Isrc, so it sees only the public headers, like cmd/.
RT_SRCS := $(sort $(wildcard rt/*.c))
RT_CFLAGS := $(filter-out -Isrc,$(CFLAGS_ALL)) -Irt
LIB_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/obj/%.o) $(RT_SRCS:rt/%.c=$(BUILD)/obj/rt/%.o)
EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
EXAMPLES := $(EXAMPLE_SRCS:examples/%.c=$(BUILD)/examples/%)
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_TESTS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
# C programs the integration tests drive (a testbed server exposing every method).
TEST_PROG_SRCS := $(sort $(wildcard tests/integration/*.c))
TEST_PROGS := $(TEST_PROG_SRCS:tests/integration/%.c=$(BUILD)/tests/%)
# The eddy program (cmd/): it sees only include/, like any application. `eddy ws` is the
# command-line WebSocket client (cmd/eddy_ws.c), also reached as eddy-ws, a link to eddy.
CMD_SRCS := $(sort $(wildcard cmd/*.c))
CMD_OBJS := $(CMD_SRCS:cmd/%.c=$(BUILD)/cmd/%.o) $(BUILD)/cmd/default_conf.o \
	$(BUILD)/cmd/admin_html.o
# jansson parses JSON: the claims of auth tokens (cmd/auth.c). libcurl: the backend proxy.
JANSSON_CFLAGS := $(shell pkg-config --cflags jansson 2>/dev/null)
JANSSON_LIBS := $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson)
CMD_CFLAGS := $(filter-out -Isrc,$(CFLAGS_ALL)) $(shell pkg-config --cflags inih libcurl 2>/dev/null) \
	$(JANSSON_CFLAGS)
CMD_LDLIBS := $(shell pkg-config --libs inih 2>/dev/null || echo -linih) $(JANSSON_LIBS) \
	$(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system

.PHONY: all cmds client-bench lib program examples unit-tests test-programs deps deps-test run test test-unit \
	test-integration test-oom test-js soak install deb clean format format-check

all: lib program examples unit-tests test-programs cmds

lib: $(BUILD)/libeddy.a $(BUILD)/libeddy.so
program: $(BUILD)/eddy
examples: $(EXAMPLES)
# Command-line programs (cmd/), built on the public header like any user.
cmds: $(BUILD)/eddy-ws
unit-tests: $(UNIT_TESTS)
test-programs: $(TEST_PROGS)

deps:
	@scripts/deps.sh build
deps-test:
	@scripts/deps.sh test

$(BUILD)/obj/%.o: src/%.c include/eddy.h $(wildcard src/*.h) | $(BUILD)/obj
	$(CC) $(CFLAGS_ALL) -fvisibility=hidden -c -o $@ $<

$(BUILD)/obj/rt/%.o: rt/%.c $(wildcard include/*.h rt/*.h) | $(BUILD)/obj/rt
	$(CC) $(RT_CFLAGS) -fvisibility=hidden -c -o $@ $<

$(BUILD)/libeddy.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

# Shared library names (README "Versioning"): while the major version is 0 a minor release
# may break the ABI, so the soname carries major and minor (libeddy.so.0.1); from 1.0 on
# only the major. Installed as libeddy.so -> SONAME -> libeddy.so.X.Y.Z.
LIB_SONAME := libeddy.so.$(if $(filter 0,$(VERSION_MAJOR)),0.$(VERSION_MINOR),$(VERSION_MAJOR))

$(BUILD)/libeddy.so: $(LIB_OBJS)
	$(CC) $(CFLAGS_ALL) -shared -Wl,-soname,$(LIB_SONAME) -o $@ $^ $(LDLIBS_ALL)

# bench/client/run: the client-side benchmark (eddy's client beside Node ws and websockets).
client-bench: $(BUILD)/eddy-client-bench $(BUILD)/examples/echo
$(BUILD)/eddy-client-bench: bench/client/eddy_client.c $(BUILD)/libeddy.a
	$(CC) $(CFLAGS_ALL) -o $@ $< $(BUILD)/libeddy.a $(LDLIBS_ALL)

$(BUILD)/eddy-ws: $(BUILD)/eddy
	ln -sf eddy $@

$(BUILD)/examples/%: examples/%.c examples/example.h $(BUILD)/libeddy.a | $(BUILD)/examples
	$(CC) $(CFLAGS_ALL) -o $@ $< $(BUILD)/libeddy.a $(LDLIBS_ALL)

# The Socket.IO test application's handlers, shared with the fuzz drivers.
$(BUILD)/examples/socketio: examples/socketio_app.h

# tests/support/*.h: reference code shared by the unit tests and the fuzz drivers.
TEST_SUPPORT_HDRS := $(wildcard tests/support/*.h)

# Every unit test can make allocations fail on demand (tests/unit/alloc_fail.h): its
# malloc, calloc and realloc, and those of libeddy.a, go through these wrappers.
ALLOC_FAIL_LDFLAGS := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc

$(BUILD)/tests/alloc_fail.o: tests/unit/alloc_fail.c tests/unit/alloc_fail.h | $(BUILD)/tests
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c tests/unit/test.h tests/unit/test_server.h tests/unit/test_rt_server.h tests/unit/alloc_fail.h $(TEST_SUPPORT_HDRS) $(BUILD)/tests/alloc_fail.o $(BUILD)/libeddy.a | $(BUILD)/tests
	$(CC) $(CFLAGS_ALL) -Irt -Itests/support $(UNIT_CFLAGS) -o $@ $< $(BUILD)/tests/alloc_fail.o $(UNIT_OBJS) $(BUILD)/libeddy.a $(UNIT_LDLIBS) $(LDLIBS_ALL) $(ALLOC_FAIL_LDFLAGS)

# test_auth: the daemon's token verifier (cmd/auth.c), which needs jansson.
$(BUILD)/tests/test_auth: $(BUILD)/cmd/auth.o cmd/auth.h
$(BUILD)/tests/test_auth: UNIT_CFLAGS = -Icmd $(JANSSON_CFLAGS)
$(BUILD)/tests/test_auth: UNIT_OBJS = $(BUILD)/cmd/auth.o
$(BUILD)/tests/test_auth: UNIT_LDLIBS = $(JANSSON_LIBS)

# test_throttle: the daemon's failed-login throttle (cmd/throttle.c).
$(BUILD)/tests/test_throttle: $(BUILD)/cmd/throttle.o cmd/throttle.h
$(BUILD)/tests/test_throttle: UNIT_CFLAGS = -Icmd
$(BUILD)/tests/test_throttle: UNIT_OBJS = $(BUILD)/cmd/throttle.o

$(BUILD)/tests/%: tests/integration/%.c examples/example.h $(BUILD)/libeddy.a | $(BUILD)/tests
	$(CC) $(CFLAGS_ALL) -Iexamples -Irt -o $@ $< $(BUILD)/libeddy.a $(LDLIBS_ALL)

$(BUILD)/cmd/%.o: cmd/%.c cmd/cmd.h cmd/auth.h cmd/realtime.h cmd/admin.h cmd/throttle.h include/eddy.h include/eddy_rt.h | $(BUILD)/cmd
	$(CC) $(CMD_CFLAGS) -Icmd -c -o $@ $<

# `eddy config default` prints cmd/eddy.conf, compiled in as a string.
$(BUILD)/cmd/default_conf.c: cmd/eddy.conf | $(BUILD)/cmd
	{ echo 'const char cfg_default_text[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$$/\\n"/' $<; echo ';'; } > $@

$(BUILD)/cmd/default_conf.o: $(BUILD)/cmd/default_conf.c
	$(CC) $(CMD_CFLAGS) -c -o $@ $<

# The admin page (cmd/admin.c serves it), compiled in the same way: no file is read at
# run time.
$(BUILD)/cmd/admin_html.c: cmd/admin/index.html | $(BUILD)/cmd
	{ echo 'const char admin_html[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$$/\\n"/' $<; echo ';'; } > $@

$(BUILD)/cmd/admin_html.o: $(BUILD)/cmd/admin_html.c
	$(CC) $(CMD_CFLAGS) -c -o $@ $<

$(BUILD)/eddy: $(CMD_OBJS) $(BUILD)/libeddy.a
	$(CC) $(CMD_CFLAGS) -o $@ $(CMD_OBJS) $(BUILD)/libeddy.a $(CMD_LDLIBS) $(LDLIBS_ALL)

$(BUILD)/obj $(BUILD)/obj/rt $(BUILD)/examples $(BUILD)/tests $(BUILD)/cmd:
	mkdir -p $@

# The demo: the eddy program with its default configuration serves www/ on
# http://127.0.0.1:9501/: a Socket.IO chat (index.html) and eddy.js's echo page (echo.html,
# the WebSocket echo at /ws).
run: deps
	@$(MAKE) --no-print-directory program www-assets
	@echo "eddy: open http://127.0.0.1:9501/ (the chat; /echo.html: the WebSocket echo; Ctrl-C stops)"
	exec $(BUILD)/eddy serve -c cmd/eddy.conf

# The chat page's socket.io-client, installed from npm at build time (never committed):
# www/vendor/package-lock.json pins it, npm ci installs it outside the document root, and
# its browser build is copied beside the page.
WWW_ASSETS := www/vendor/socket.io.min.js
.PHONY: www-assets
www-assets: $(WWW_ASSETS)
$(WWW_ASSETS): www/vendor/package.json www/vendor/package-lock.json
	@mkdir -p build/www-npm
	cp www/vendor/package.json www/vendor/package-lock.json build/www-npm/
	npm ci --prefix build/www-npm --omit=dev --no-audit --no-fund
	cp build/www-npm/node_modules/socket.io-client/dist/socket.io.min.js.map www/vendor/
	cp build/www-npm/node_modules/socket.io-client/dist/socket.io.min.js $@

test: deps-test
	@$(MAKE) --no-print-directory all www-assets
	@$(MAKE) --no-print-directory test-unit test-js test-integration

test-unit: $(UNIT_TESTS)
	@set -e; for t in $(UNIT_TESTS); do echo "== $$t"; $$t; done

# The unit tests that allocate, re-run with their n-th allocation failing (README: Development).
OOM_SWEEP_TESTS := api errors options deflate settings_restart task_race stop_race loop_post
OOM_SWEEP_TESTS += rt_history client_oom rt_broker_memory rt_broker_shard rt_broker_cluster
OOM_SWEEP_TESTS += rt_cluster rt_eio rt_handshake watch

test-oom: $(UNIT_TESTS)
	$(BUILD)/tests/test_oom_session
	tests/unit/oom_sweep.sh $(OOM_SWEEP_TESTS:%=$(BUILD)/tests/test_%)

# eddy.js (clients/js): the plain-script builds are up to date, and the unit tests pass.
# The rt codecs' decode/encode tables (tests/unit/test_sio_packet.c, test_eio_payload.c)
# agree with the reference parsers (socket.io-parser, engine.io-parser v4 and v3).
test-js:
	node clients/js/build.mjs --check
	node --test clients/js/test/*.test.js
	node tests/clients/sio_packet_check.js
	node tests/clients/eio_payload_check.js

PYTEST ?= pytest
# The first python3 on PATH that has the websockets module (a pyenv or venv python3 may
# come first without Debian's python3-websockets).
PYTHON ?= $(shell for p in $$(which -a python3); do $$p -c 'import websockets' 2>/dev/null && { echo $$p; break; }; done)

# --durations: the slowest tests are listed at the end, to watch CI's time budget.
# PYTEST_JOBS pytest-xdist workers (python3-pytest-xdist), one test file each at a time
# (--dist loadfile: a file's module fixtures are set up once): the tests mostly wait on
# servers, clients and timeouts, so two workers take about 0.6 of one's time on two cores.
# PYTEST_JOBS=0 runs them in pytest's own process.
PYTEST_JOBS ?= 2
test-integration: lib $(BUILD)/eddy $(EXAMPLES) $(TEST_PROGS) $(BUILD)/eddy-ws
	EDDY_BUILD=$(BUILD) $(PYTEST) -q --durations=15 -n $(PYTEST_JOBS) --dist loadfile \
	    tests/integration tests/conformance $(PYTEST_ARGS)

# The churn soak (tests/soak/churn.py): SOAK_ARGS="--connections 50000" for a longer one.
soak: examples
	EDDY_BUILD=$(BUILD) $(PYTHON) tests/soak/churn.py $(SOAK_ARGS)

# eddy.pc names its directories relative to ${prefix} when they lie under PREFIX, so the
# installed tree can be moved by editing one line (or staged and used with
# PKG_CONFIG_SYSROOT_DIR).
PC_LIBDIR = $(patsubst $(PREFIX)/%,$${exec_prefix}/%,$(LIBDIR))
PC_INCLUDEDIR = $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))

install: lib $(BUILD)/eddy
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR)
	install -m 755 $(BUILD)/eddy $(DESTDIR)$(BINDIR)/eddy
	ln -sf eddy $(DESTDIR)$(BINDIR)/eddy-ws
	install -m 644 include/*.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(BUILD)/libeddy.a $(DESTDIR)$(LIBDIR)/libeddy.a
	install -m 755 $(BUILD)/libeddy.so $(DESTDIR)$(LIBDIR)/libeddy.so.$(VERSION)
	ln -sf libeddy.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(LIB_SONAME)
	ln -sf $(LIB_SONAME) $(DESTDIR)$(LIBDIR)/libeddy.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(PC_LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(PC_INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    eddy.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/eddy.pc
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(SYSCONFDIR)/eddy \
	    $(DESTDIR)$(DATADIR)/eddy/www $(DESTDIR)$(SYSTEMDUNITDIR)
	install -m 644 man/eddy.1 $(DESTDIR)$(MANDIR)/man1/eddy.1
	install -m 644 man/eddy.conf.5 $(DESTDIR)$(MANDIR)/man5/eddy.conf.5
	# The default configuration, unless one is there already (it may have been edited).
	test -e $(DESTDIR)$(SYSCONFDIR)/eddy/eddy.conf || \
	    install -m 644 cmd/eddy.conf $(DESTDIR)$(SYSCONFDIR)/eddy/eddy.conf
	install -m 644 $(wildcard www/*.*) $(DESTDIR)$(DATADIR)/eddy/www/
	# The chat page's socket.io-client, when it was built (make www-assets: it needs npm).
	if [ -f $(WWW_ASSETS) ]; then install -d $(DESTDIR)$(DATADIR)/eddy/www/vendor && \
	    install -m 644 $(WWW_ASSETS) $(WWW_ASSETS).map $(DESTDIR)$(DATADIR)/eddy/www/vendor/; fi
	sed -e 's|/usr/local/bin|$(BINDIR)|' -e 's|/usr/local/etc|$(SYSCONFDIR)|' \
	    -e 's|/usr/local/share|$(DATADIR)|' contrib/systemd/eddy.service \
	    > $(DESTDIR)$(SYSTEMDUNITDIR)/eddy.service
	install -m 644 contrib/systemd/eddy.socket $(DESTDIR)$(SYSTEMDUNITDIR)/eddy.socket

# Debian packages (debian/): eddy, libeddy0.1 and libeddy-dev, built by dpkg-buildpackage
# (unsigned, binary only) in a copy of the sources under $(BUILD)/deb, where the .debs land:
# the checkout gets none of the build's files. `make deb LTO=` builds them without LTO.
DEB_DIR := $(BUILD)/deb
deb:
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/eddy-$(VERSION)
	tar -cf - --exclude=./build --exclude=node_modules --exclude=./.git . | \
	    tar -xf - -C $(DEB_DIR)/eddy-$(VERSION)
	cd $(DEB_DIR)/eddy-$(VERSION) && \
	    DEB_BUILD_OPTIONS="$${DEB_BUILD_OPTIONS:-parallel=2}" \
	    EDDY_DEB_FLAGS="$(if $(LTO),,LTO=)" dpkg-buildpackage -us -uc -b
	ls $(DEB_DIR)/*.deb

FORMAT_FILES = $(wildcard include/*.h src/*.[ch] rt/*.[ch] examples/*.[ch] tests/unit/*.[ch] \
	tests/support/*.h tests/integration/*.c fuzz/*.[ch] bench/*.[ch] cmd/*.[ch])

format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf build

# ---------------------------------------------------------------------------------------
# Fuzzing (clang + libFuzzer; Debian: libclang-rt-14-dev). `make fuzz` builds the drivers
# with the codec sources linked in directly (the session drivers with the whole library);
# `make fuzz-smoke` runs each for FUZZ_SECONDS
# on a scratch copy of its seed corpus and fails on any crash. Long runs: fuzz/README.md.
# ---------------------------------------------------------------------------------------

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 20
FUZZ_CFLAGS := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1 \
	-Iinclude -Isrc -Irt -Itests/support
FUZZ_CODEC_SRCS := src/http_parser.c src/ws_codec.c src/utf8.c src/handshake.c src/base64.c \
	src/tls13.c src/provider.c
FUZZ_CODEC_DRIVERS := fuzz_http_parser fuzz_http_response fuzz_ws_codec fuzz_utf8 fuzz_pmd fuzz_tls13 \
	fuzz_deflater
# The stateful sessions (fuzz/session.h): the whole library linked in.
FUZZ_SESSION_DRIVERS := fuzz_ws_session fuzz_http_session fuzz_client_session
FUZZ_DRIVERS := $(FUZZ_CODEC_DRIVERS) $(FUZZ_SESSION_DRIVERS)
# The real-time layer's codecs (rt/): each links only the rt files it needs, plus
# src/utf8.c for eddy_utf8_valid.
FUZZ_RT_DRIVERS := fuzz_rt_json fuzz_sio_packet fuzz_eio_payload
FUZZ_RT_SRCS_fuzz_rt_json := rt/rt_json.c
FUZZ_RT_SRCS_fuzz_sio_packet := rt/sio_packet.c rt/rt_json.c
FUZZ_RT_SRCS_fuzz_eio_payload := rt/eio_payload.c src/base64.c
# The history's offsets; src/util.c for eddy_strerror.
FUZZ_RT_DRIVERS += fuzz_rt_offset
FUZZ_RT_SRCS_fuzz_rt_offset := rt/rt_history.c src/util.c src/base64.c
# Socket.IO's Redis emitter format, on msgpack-c.
FUZZ_RT_DRIVERS += fuzz_rt_emitter
FUZZ_RT_SRCS_fuzz_rt_emitter := rt/rt_emitter.c rt/rt_json.c
FUZZ_RT_LIBS_fuzz_rt_emitter := -lmsgpackc -lm
FUZZ_DICT_fuzz_rt_json := -dict=fuzz/rt_json.dict
FUZZ_DICT_fuzz_sio_packet := -dict=fuzz/sio_packet.dict
FUZZ_DICT_fuzz_eio_payload := -dict=fuzz/eio_payload.dict
FUZZ_RT_BINS := $(FUZZ_RT_DRIVERS:%=$(BUILD)/fuzz/%)
FUZZ_DRIVERS += $(FUZZ_RT_DRIVERS)
# The eddy program's JWT verifier (cmd/auth.c), with jansson.
FUZZ_CMD_DRIVERS := fuzz_jwt
FUZZ_DRIVERS += $(FUZZ_CMD_DRIVERS)
# The real-time layer's sessions (fuzz/session.h, fuzz/rt_app.h): the whole library, rt/ included.
FUZZ_RT_SESSION_DRIVERS := fuzz_sio_session fuzz_eio_polling
# What other nodes send through Redis (rt_xnode.h, node messages): the whole library too.
FUZZ_RT_SESSION_DRIVERS += fuzz_rt_xnode
# The Redis URLs of redis_url (rt_broker_url.c), with Sentinel lists: the whole library too.
FUZZ_RT_SESSION_DRIVERS += fuzz_rt_broker_url
FUZZ_DICT_fuzz_sio_session := -dict=fuzz/sio_session.dict
FUZZ_DICT_fuzz_eio_polling := -dict=fuzz/eio_polling.dict
FUZZ_DICT_fuzz_rt_broker_url := -dict=fuzz/redis_url.dict
FUZZ_RT_SESSION_BINS := $(FUZZ_RT_SESSION_DRIVERS:%=$(BUILD)/fuzz/%)
FUZZ_DRIVERS += $(FUZZ_RT_SESSION_DRIVERS)
FUZZ_BINS := $(FUZZ_DRIVERS:%=$(BUILD)/fuzz/%)
FUZZ_CODEC_BINS := $(FUZZ_CODEC_DRIVERS:%=$(BUILD)/fuzz/%)
FUZZ_SESSION_BINS := $(FUZZ_SESSION_DRIVERS:%=$(BUILD)/fuzz/%)
# Dictionary per driver (none for fuzz_utf8 and fuzz_tls13).
FUZZ_DICT_fuzz_http_parser := -dict=fuzz/http.dict
FUZZ_DICT_fuzz_http_response := -dict=fuzz/http_response.dict
FUZZ_DICT_fuzz_ws_codec := -dict=fuzz/ws.dict
FUZZ_DICT_fuzz_pmd := -dict=fuzz/pmd.dict
FUZZ_DICT_fuzz_ws_session := -dict=fuzz/ws.dict
FUZZ_DICT_fuzz_http_session := -dict=fuzz/http.dict
FUZZ_DICT_fuzz_client_session := -dict=fuzz/client.dict
FUZZ_DICT_fuzz_jwt := -dict=fuzz/jwt.dict
# Sources beyond the codecs, per driver.
FUZZ_EXTRA_fuzz_pmd := src/deflate.c src/util.c
FUZZ_EXTRA_fuzz_deflater := src/deflater.c src/util.c

.PHONY: fuzz fuzz-smoke

fuzz: $(FUZZ_BINS)

$(FUZZ_CODEC_BINS): $(BUILD)/fuzz/%: fuzz/%.c fuzz/fuzz.h $(FUZZ_CODEC_SRCS) src/codec.h include/eddy.h $(TEST_SUPPORT_HDRS) | $(BUILD)/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -D_GNU_SOURCE -o $@ $< $(FUZZ_CODEC_SRCS) $(FUZZ_EXTRA_$*) -lcrypto -lz

# Sources beyond the codecs, as prerequisites too.
$(BUILD)/fuzz/fuzz_pmd: src/deflate.c src/deflate.h src/util.c
$(BUILD)/fuzz/fuzz_deflater: src/deflater.c src/deflater.h src/util.c

# The session drivers link the library (and the rt ones the real-time layer) compiled once
# with the fuzzers' flags, not each driver compiling every source again.
FUZZ_LIB_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/fuzz/obj/%.o)
FUZZ_RT_OBJS := $(RT_SRCS:rt/%.c=$(BUILD)/fuzz/obj/rt/%.o)

$(BUILD)/fuzz/obj/%.o: src/%.c $(wildcard src/*.h) include/eddy.h | $(BUILD)/fuzz/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -std=gnu11 -D_GNU_SOURCE -pthread -c -o $@ $<

$(BUILD)/fuzz/obj/rt/%.o: rt/%.c $(wildcard src/*.h rt/*.h) include/eddy.h include/eddy_rt.h | $(BUILD)/fuzz/obj/rt
	$(FUZZ_CC) $(FUZZ_CFLAGS) -std=gnu11 -D_GNU_SOURCE -pthread -c -o $@ $<

$(FUZZ_SESSION_BINS): $(BUILD)/fuzz/%: fuzz/%.c fuzz/fuzz.h fuzz/session.h $(FUZZ_LIB_OBJS) $(wildcard src/*.h) include/eddy.h $(TEST_SUPPORT_HDRS) | $(BUILD)/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -std=gnu11 -D_GNU_SOURCE -pthread -o $@ $< $(FUZZ_LIB_OBJS) -lssl -lcrypto -lz

$(FUZZ_RT_SESSION_BINS): $(BUILD)/fuzz/%: fuzz/%.c fuzz/fuzz.h fuzz/session.h fuzz/rt_app.h fuzz/timers.h examples/socketio_app.h $(FUZZ_LIB_OBJS) $(FUZZ_RT_OBJS) $(wildcard src/*.h rt/*.h) include/eddy.h include/eddy_rt.h $(TEST_SUPPORT_HDRS) | $(BUILD)/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Iexamples -std=gnu11 -D_GNU_SOURCE -pthread -o $@ $< $(FUZZ_LIB_OBJS) $(FUZZ_RT_OBJS) -lssl -lcrypto -lz \
	    $(HIREDIS_LIBS) $(MSGPACK_LIBS)

$(FUZZ_RT_BINS): $(BUILD)/fuzz/%: fuzz/%.c fuzz/fuzz.h $(wildcard rt/*.[ch]) src/utf8.c src/base64.c src/codec.h include/eddy.h | $(BUILD)/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -std=gnu11 -D_GNU_SOURCE -o $@ $< $(FUZZ_RT_SRCS_$*) src/utf8.c $(FUZZ_RT_LIBS_$*)

$(BUILD)/fuzz/fuzz_jwt: fuzz/fuzz_jwt.c fuzz/fuzz.h cmd/auth.c src/base64.c cmd/auth.h cmd/cmd.h include/eddy.h $(TEST_SUPPORT_HDRS) | $(BUILD)/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Icmd $(JANSSON_CFLAGS) -std=gnu11 -D_GNU_SOURCE -o $@ $< cmd/auth.c src/base64.c \
	    -lcrypto $(JANSSON_LIBS)

$(BUILD)/fuzz $(BUILD)/fuzz/obj $(BUILD)/fuzz/obj/rt:
	mkdir -p $@

# One target per driver, so `make -j2 fuzz-smoke` runs two at a time. Each driver's output
# goes to build/fuzz/<driver>.log: its final stats are printed, the whole log if it fails.
FUZZ_SMOKE := $(FUZZ_DRIVERS:%=fuzz-smoke-%)
.PHONY: $(FUZZ_SMOKE)
fuzz-smoke: $(FUZZ_SMOKE)
$(FUZZ_SMOKE): fuzz-smoke-%: $(BUILD)/fuzz/%
	@rm -rf $(BUILD)/fuzz/corpus-$*; mkdir -p $(BUILD)/fuzz/corpus-$*
	@cp fuzz/corpus/$*/* $(BUILD)/fuzz/corpus-$*/
	@if $(BUILD)/fuzz/$* -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=$(BUILD)/fuzz/$*- $(FUZZ_DICT_$*) $(BUILD)/fuzz/corpus-$* \
	        > $(BUILD)/fuzz/$*.log 2>&1; then \
	    echo "== $* for $(FUZZ_SECONDS)s:" $$(grep '^stat::' $(BUILD)/fuzz/$*.log); \
	else \
	    cat $(BUILD)/fuzz/$*.log; echo "== $* FAILED (log: $(BUILD)/fuzz/$*.log)"; exit 1; \
	fi

# ---------------------------------------------------------------------------------------
# Benchmarks (bench/README.md). `make bench` runs bench/run (BENCH_ARGS=... passes options,
# e.g. BENCH_ARGS="--quick echo"); `make bench-tools` only builds eddy-bench and the C peer
# servers into build/bench. bench/run builds eddy itself with BUILD=build/bench.
# ---------------------------------------------------------------------------------------

BENCH_BUILD ?= build/bench
BENCH_CFLAGS := -std=gnu11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror $(CFLAGS)
BENCH_TOOLS := $(BENCH_BUILD)/eddy-bench $(BENCH_BUILD)/peers/lws_echo $(BENCH_BUILD)/peers/floor_echo \
	$(BENCH_BUILD)/deflate_compare

.PHONY: bench bench-tools

bench:
	bench/run $(BENCH_ARGS)

bench-tools: $(BENCH_TOOLS)

# Links tls13.c, not the library: its TLS records are sealed and opened as eddy's server does.
$(BENCH_BUILD)/eddy-bench: bench/eddy-bench.c bench/ws_frame.h src/tls13.c src/tls13.h \
		src/provider.c src/provider.h include/eddy.h | $(BENCH_BUILD)/peers
	$(CC) $(BENCH_CFLAGS) -Iinclude -Isrc -o $@ bench/eddy-bench.c src/tls13.c src/provider.c \
		-lssl -lcrypto -lz -lm

# Links the deflater's sources, not the library: it compares internals (src/deflater.h).
$(BENCH_BUILD)/deflate_compare: bench/deflate_compare.c src/deflater.c src/util.c \
		src/deflater.h src/util.h | $(BENCH_BUILD)/peers
	$(CC) $(BENCH_CFLAGS) -Iinclude -Isrc -o $@ bench/deflate_compare.c src/deflater.c \
		src/util.c -lz

$(BENCH_BUILD)/peers/lws_echo: bench/peers/lws_echo.c | $(BENCH_BUILD)/peers
	$(CC) $(BENCH_CFLAGS) $$(pkg-config --cflags libwebsockets) -o $@ $< \
	    $$(pkg-config --libs libwebsockets)

$(BENCH_BUILD)/peers/floor_echo: bench/peers/floor_echo.c bench/ws_frame.h | $(BENCH_BUILD)/peers
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lcrypto -luring

$(BENCH_BUILD)/peers:
	mkdir -p $@
