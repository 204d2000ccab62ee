# livevlm build. `make` builds build/livevlm and the tools; `make test` runs every test;
# `make SAN=1` builds into build-san/ with ASan+UBSan; `make check-san` runs the suite on it.

CC      ?= cc
SAN     ?= 0
WERROR  ?= 0
PKGS    := libuv libcurl jansson libturbojpeg openssl hiredis sqlite3 libpq libsodium
# src/media (camera sources) alone uses GStreamer: RTSP cameras, WebRTC ingest, decoding.
MEDIA_PKGS := gstreamer-1.0 gstreamer-app-1.0 gstreamer-video-1.0 gstreamer-webrtc-1.0 gstreamer-sdp-1.0

ifeq ($(SAN),1)
BUILD   := build-san
OPT     := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD   := build
OPT     := -O2 -g
endif

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla \
           -Wimplicit-fallthrough -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN    += -Werror
endif
# Each layer sees itself and the layers below it only (common <- proto <- core <- backend, store,
# obs, media <- server <- main), so an include that points up fails the build. Tests and main see all;
# the tools see common and proto. scripts/check-layers.sh also greps for it.
INC_COMMON  := -Isrc/common
INC_PROTO   := $(INC_COMMON) -Isrc/proto
INC_CORE    := $(INC_PROTO) -Isrc/core
INC_BACKEND := $(INC_CORE) -Isrc/backend
INC_STORE   := $(INC_CORE) -Isrc/store
INC_OBS     := $(INC_CORE) -Isrc/obs
INC_MEDIA   := $(INC_CORE) -Isrc/media
INC_ALL     := $(INC_CORE) -Isrc/backend -Isrc/store -Isrc/obs -Isrc/media -Isrc/server
INCS     = $(INC_ALL)
$(BUILD)/src/common/%.o:  INCS = $(INC_COMMON)
$(BUILD)/src/proto/%.o:   INCS = $(INC_PROTO)
$(BUILD)/src/core/%.o:    INCS = $(INC_CORE)
$(BUILD)/src/backend/%.o: INCS = $(INC_BACKEND)
$(BUILD)/src/store/%.o:   INCS = $(INC_STORE)
$(BUILD)/src/obs/%.o:     INCS = $(INC_OBS)
$(BUILD)/src/media/%.o:   INCS = $(INC_MEDIA) $(MEDIA_CFLAGS)
$(BUILD)/tools/%.o:       INCS = $(INC_PROTO)
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
CFLAGS   = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(INCS) $(PKG_CFLAGS) -MMD -MP
MEDIA_CFLAGS := $(shell pkg-config --cflags $(MEDIA_PKGS))
LDLIBS  := $(shell pkg-config --libs $(PKGS) $(MEDIA_PKGS)) -lm -ldl -lpthread
LDFLAGS := $(OPT)

LIB_SRC := $(wildcard src/common/*.c src/proto/*.c src/core/*.c src/backend/*.c src/store/*.c \
                      src/obs/*.c src/media/*.c src/server/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/web_assets.o $(BUILD)/gen/migrations.o
FAKEVLM_SRC := $(wildcard tools/fakevlm/*.c)
LOADGEN_SRC := $(wildcard tools/loadgen/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
WEB_FILES := $(shell find web -type f ! -name '*.md' | LC_ALL=C sort)

.PHONY: all clean test unit check-san fuzz run
all: $(BUILD)/livevlm $(BUILD)/fakevlm $(if $(LOADGEN_SRC),$(BUILD)/loadgen) $(BUILD)/rtspcam $(UNIT_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# The test RTSP camera (tests/tools/rtspcam.c) alone uses libgstrtspserver; it is a peer the tests
# start, not part of the server, so it stays out of LIB_OBJ and is built without sanitizers
# (GStreamer's own allocations would fill a leak report that is not ours).
RTSPCAM_PKGS := gstreamer-1.0 gstreamer-rtsp-server-1.0
$(BUILD)/rtspcam: tests/tools/rtspcam.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) $(shell pkg-config --cflags $(RTSPCAM_PKGS)) \
	  -o $@ $< $(shell pkg-config --libs $(RTSPCAM_PKGS))

# The embed tool alone uses zlib (gzip copies) and libcrypto (SHA-256 ETags): the server does not.
EMBED_PKGS := zlib libcrypto
$(BUILD)/embed: tools/embed.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -Wall -Wextra $(shell pkg-config --cflags $(EMBED_PKGS)) -o $@ $< \
	  $(shell pkg-config --libs $(EMBED_PKGS))

# The web UI is embedded at build time so the binary serves it with no files around: each file
# with its ETag and a gzip copy (docs/protocol.md "HTTP routes").
$(BUILD)/gen/web_assets.c: $(BUILD)/embed $(WEB_FILES)
	@mkdir -p $(dir $@)
	$(BUILD)/embed web $@ $(WEB_FILES)

$(BUILD)/gen/web_assets.o: $(BUILD)/gen/web_assets.c
	$(CC) $(CFLAGS) -Wno-missing-prototypes -c $< -o $@

# The database migrations are embedded the same way, sorted by name so the output is reproducible
# (src/store/lv_db_engine.h, docs/internals/accounts.md).
MIGRATIONS := $(sort $(wildcard db/migrations/*.sql))
$(BUILD)/gen/migrations.c: scripts/embed-migrations.sh $(MIGRATIONS)
	@mkdir -p $(dir $@)
	scripts/embed-migrations.sh $@ $(MIGRATIONS)

$(BUILD)/gen/migrations.o: $(BUILD)/gen/migrations.c
	$(CC) $(CFLAGS) -Isrc/store -c $< -o $@

$(BUILD)/livevlm: $(BUILD)/src/main.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LDLIBS)

$(BUILD)/fakevlm: $(FAKEVLM_SRC:%.c=$(BUILD)/%.o) $(filter $(BUILD)/src/common/% $(BUILD)/src/proto/%,$(LIB_OBJ))
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LDLIBS)

$(BUILD)/loadgen: $(LOADGEN_SRC:%.c=$(BUILD)/%.o) $(filter $(BUILD)/src/common/% $(BUILD)/src/proto/%,$(LIB_OBJ))
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LDLIBS)

# bench/fairsim: the two-level fair queue in simulation (bench/scenarios/tenants.sh); Jain's index
# from the unit tests' tests/unit/jain.h
$(BUILD)/fairsim: bench/fairsim.c tests/unit/jain.h $(BUILD)/src/core/lv_drr.o $(filter $(BUILD)/src/common/%,$(LIB_OBJ))
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(filter %.o,$^) $(LDLIBS)

# bench/cfairsim: the cluster queue's two-level fairness on a real redis-server, started with the
# unit tests' header-only fixture (tests/unit/redis_fixture.h) (bench/scenarios/ctenants.sh)
$(BUILD)/cfairsim: bench/cfairsim.c tests/unit/redis_fixture.h tests/unit/jain.h $(BUILD)/src/store/lv_redis.o \
                   $(BUILD)/src/store/lv_cluster_queue.o $(filter $(BUILD)/src/common/% $(BUILD)/src/proto/%,$(LIB_OBJ))
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(filter %.o,$^) $(LDLIBS)

# bench/dbwait: the loop's cost of lv_db_submit and the journal append, database idle vs busy
$(BUILD)/dbwait: bench/dbwait.c $(LIB_OBJ)
	$(CC) $(CFLAGS) -o $@ $< $(filter %.o,$^) $(LDLIBS)

# bench/micro: ns/op and allocations/op of each frame-path stage (bench/scenarios/micro.sh). It
# defines malloc & co. to count allocations, which the sanitizers' own allocator would refuse.
$(BUILD)/micro: bench/micro.c $(LIB_OBJ)
	$(CC) $(CFLAGS) -o $@ $< $(filter %.o,$^) $(LDLIBS)

# bench/malloccount: an LD_PRELOAD shim counting heap calls (bench/scenarios/allocs.sh); no
# sanitizers (they bring their own malloc)
$(BUILD)/malloccount.so: bench/malloccount.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -g $(WARN) -fPIC -shared -o $@ $< -ldl

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-missing-prototypes -o $@ $< $(filter %.o,$^) $(LDLIBS) -lcmocka

unit: $(UNIT_BIN)
	@scripts/run-unit.sh $(BUILD)

test: all
	@scripts/test.sh

check-san:
	$(MAKE) SAN=1 all
	LIVEVLM_BUILD=build-san scripts/test.sh

fuzz:
	@scripts/fuzz.sh

run: all
	$(BUILD)/livevlm serve

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
