# icpml — PGXS build.  The version comes from icpml.control only.
EXTENSION = icpml
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = icpml
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# Where the SQL lives (CONTRIBUTING.md, "Where the SQL lives", says the same):
#   src/sql/NN_*.sql            the install script of the version in development,
#                               one part per module, concatenated in name order
#                               into icpml--$(EXTVERSION).sql (a build product)
#   src/sql/updates/            icpml--A--B.sql: ALTER EXTENSION icpml UPDATE
#                               scripts, written by hand, one per release step
#   src/sql/released/           icpml--A.sql: the install script of every
#                               released version, frozen by `make release`, so
#                               that CREATE EXTENSION icpml VERSION 'A' works
#   sql/*.sql, expected/*.out   pg_regress tests: PostgreSQL 15's pg_regress has
#                               no --expecteddir, so its inputs stay in sql/ next
#                               to expected/
#   sql/include/*.sql           fixtures the tests pull with \i (never run alone)
# src/sql/released/icpml--0.1.0.sql is exactly what the build made at commit
# 375c8d7 (then from sql/parts/):
#   for f in $(git ls-tree --name-only 375c8d7 sql/parts/ | LC_ALL=C sort); do
#     git show 375c8d7:$f; done > src/sql/released/icpml--0.1.0.sql
# and icpml--0.2.0.sql likewise at commit 740c3be; 0.3.0 was copied from the
# build at commit ca5cfe7^.
SQL_SRC = src/sql
SQL_PARTS = $(sort $(wildcard $(SQL_SRC)/[0-9]*.sql))
SQL_RELEASED = $(SQL_SRC)/released
SQL_UPDATES = $(SQL_SRC)/updates
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
# a released version's script is the build's own output (checked below), installed once
DATA = $(filter-out $(SQL_RELEASED)/$(DATA_built),$(wildcard $(SQL_RELEASED)/$(EXTENSION)--*.sql)) \
	$(wildcard $(SQL_UPDATES)/$(EXTENSION)--*--*.sql) \
	$(wildcard reference/*.sql)

# pg_regress: sql/NAME.sql against expected/NAME.out (stale install scripts of
# the old layout, sql/icpml--*.sql, are build products, never tests)
REGRESS = $(sort $(filter-out $(EXTENSION)--%,$(basename $(notdir $(wildcard sql/*.sql)))))
REGRESS_OPTS = --inputdir=. --load-extension=$(EXTENSION)

# pg_isolation_regress: test/isolation/specs/NAME.spec against test/isolation/expected/NAME.out
ISOLATION = $(sort $(basename $(notdir $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=$(EXTENSION)

# TAP: test/t/*.pl with PostgreSQL::Test::Cluster
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))

PG_CFLAGS = -Wall -Wmissing-prototypes -Werror=implicit-function-declaration
# libxgboost is opened at run time by its soname (src/xgb.c), not linked: a
# backend that only scores never loads it
XGBOOST_SONAME := $(shell objdump -p "$$($(CC) -print-file-name=libxgboost.so)" 2>/dev/null | sed -n 's/^ *SONAME *//p')
ifneq ($(XGBOOST_SONAME),)
PG_CPPFLAGS += -DICPML_XGBOOST_LIBRARY='"$(XGBOOST_SONAME)"'
endif
SHLIB_LINK = -lm -ldl

EXTRA_CLEAN = $(DATA_built)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# no automatic header dependencies in PGXS: rebuild everything when a header changes
$(OBJS): $(wildcard src/*.h)

# Once a version is released its install script never changes: the build
# refuses sources that no longer make the frozen copy.
$(DATA_built): $(SQL_PARTS) $(EXTENSION).control
	cat $(SQL_PARTS) > $@
	@if [ -f $(SQL_RELEASED)/$@ ] && ! cmp -s $@ $(SQL_RELEASED)/$@; then \
	  echo "$@: $(SQL_SRC)/*.sql no longer build the released $(SQL_RELEASED)/$@;" >&2; \
	  echo "  $(EXTVERSION) is released: open a new version for SQL changes (CONTRIBUTING.md, Releasing)" >&2; \
	  rm -f $@; exit 1; \
	fi

.PHONY: check-regress check-isolation check-tap
check-regress:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)
check-isolation:
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION)
check-tap:
	$(prove_installcheck)

# Releasing (CONTRIBUTING.md, "Releasing"): freeze the version in development,
# or start the next one; both refuse, with what to do, when something is missing.
# PGXS has a VERSION of its own (PostgreSQL's): only one given on the command
# line counts.
RELEASE_VERSION = $(if $(filter command line,$(origin VERSION)),$(VERSION))
.PHONY: release open-version update-diff
release: $(DATA_built)
	@bash $(SQL_SRC)/release.sh release "$(RELEASE_VERSION)" $(DATA_built)
open-version:
	@bash $(SQL_SRC)/release.sh open-version "$(RELEASE_VERSION)"
# what the update script from the last release has to do
update-diff: $(DATA_built)
	@last=$$(ls $(SQL_RELEASED) | sed -n 's/^$(EXTENSION)--\(.*\)\.sql$$/\1/p' | sort -V | grep -vx '$(EXTVERSION)' | tail -1); \
	diff -u $(SQL_RELEASED)/$(EXTENSION)--$$last.sql $(DATA_built) || true

# the portable tarball (docs/deployment.md): icpml.so with the XGBoost runtime it
# needs beside it, for a PostgreSQL 15 without libxgboost (e.g. supabase/postgres)
.PHONY: dist-portable
dist-portable: all
	sh packaging/dist-portable.sh --pg-config $(PG_CONFIG) --out dist

# the regression suite with every backend under valgrind (slow; CONTRIBUTING.md)
.PHONY: valgrind
valgrind:
	bash test/run valgrind
