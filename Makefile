# icpml — PGXS build.  The version comes from icpml.control only.
EXTENSION = icpml
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = icpml
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# The install script is assembled from one part per module (sql/parts/NN_*.sql).
# Install scripts of released versions are kept, frozen, in sql/frozen/ so that
# CREATE EXTENSION icpml VERSION 'A' works; sql/icpml--A--B.sql upgrade them.
# sql/frozen/icpml--0.1.0.sql is exactly what this rule built at commit 375c8d7:
#   for f in $(git ls-tree --name-only 375c8d7 sql/parts/ | LC_ALL=C sort); do
#     git show 375c8d7:$f; done > sql/frozen/icpml--0.1.0.sql
# and sql/frozen/icpml--0.2.0.sql likewise at commit 740c3be.
SQL_PARTS = $(sort $(wildcard sql/parts/*.sql))
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA = $(wildcard sql/frozen/$(EXTENSION)--*.sql) \
	$(wildcard sql/$(EXTENSION)--*--*.sql) \
	$(wildcard reference/*.sql)

# pg_regress: sql/NAME.sql against expected/NAME.out (install scripts excluded)
REGRESS = $(sort $(filter-out $(EXTENSION)--%,$(basename $(notdir $(wildcard sql/*.sql)))))
REGRESS_OPTS = --inputdir=. --load-extension=$(EXTENSION)

# pg_isolation_regress: test/isolation/specs/NAME.spec against test/isolation/expected/NAME.out
ISOLATION = $(sort $(basename $(notdir $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=$(EXTENSION)

# TAP: test/t/*.pl with PostgreSQL::Test::Cluster
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))

PG_CFLAGS = -Wall -Wmissing-prototypes -Werror=implicit-function-declaration
SHLIB_LINK = -lxgboost -lm

EXTRA_CLEAN = $(DATA_built)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# no automatic header dependencies in PGXS: rebuild everything when a header changes
$(OBJS): $(wildcard src/*.h)

$(DATA_built): $(SQL_PARTS) $(EXTENSION).control
	cat $(SQL_PARTS) > $@

.PHONY: check-regress check-isolation check-tap
check-regress:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)
check-isolation:
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION)
check-tap:
	$(prove_installcheck)
