# res_discovery_consul: build, install and test.
#
#   make                      build ./res_discovery_consul.so for PYTHON and ASTINCDIR
#   make install              install the module (DESTDIR, ASTMODDIR) and the Python package
#   make samples              install res_discovery_consul.conf.sample as the config (ASTETCDIR)
#   make test                 install the test bed (cached) and run every test
#   make demo / demo-stop     a live Consul + Asterisk 16 on loopback with the module loaded
#   make bench                the module vs Asterisk's own /httpstatus, load/unload times, RSS
#                             (prints a table, writes bench/results/*.json; BENCH_ARGS=--quick)
#   make fleet / fleet-stop   Asterisk hosts + a Consul cluster + Kamailio + SIPp in network
#                             namespaces, the failure scenarios live (a table, and
#                             bench/results/fleet-*.json; FLEET_HOSTS=3, FLEET_ARGS=--only a,b)

PYTHON ?= python3
ASTINCDIR ?= /usr/include
ASTETCDIR ?= /etc/asterisk
CC ?= gcc
CFLAGS ?= -O2 -g
DESTDIR ?=

BUILD := build
MODULE := res_discovery_consul.so
CFFI_C := $(BUILD)/_res_discovery_consul_cffi.c
AST_CFLAGS := -fPIC -pthread -D_GNU_SOURCE -D_REENTRANT -Wall -Wno-unused-function -I$(ASTINCDIR) -Icbridge

# The module dir of the installed Asterisk: asterisk.conf's astmoddir, else the Debian
# multiarch dir when it exists, else Asterisk's own default.
ASTMODDIR ?= $(shell sed -n 's/^[[:space:]]*astmoddir[[:space:]]*=>\{0,1\}[[:space:]]*//p' $(ASTETCDIR)/asterisk.conf 2>/dev/null | head -n1 | tr -d '[:space:]')
ifeq ($(ASTMODDIR),)
  ASTMODDIR := $(firstword $(wildcard /usr/lib/$(shell $(CC) -print-multiarch 2>/dev/null)/asterisk/modules) /usr/lib/asterisk/modules)
endif

# The test bed's cache and its virtualenv (see integration_tests/testbed/paths.py).
export ASTERISK_CONSUL_CACHE ?= $(HOME)/.cache/asterisk-consul
TEST_PYTHON := $(ASTERISK_CONSUL_CACHE)/venv/bin/python

.PHONY: all check-build-deps install samples test test-unit test-integration demo demo-stop bench clean

all: $(MODULE)

check-build-deps:
	@test -f "$(ASTINCDIR)/asterisk.h" || { \
	  echo "error: $(ASTINCDIR)/asterisk.h not found: install Asterisk's headers (Debian: apt install asterisk-dev)" \
	       "or set ASTINCDIR to the directory that holds asterisk.h" >&2; exit 1; }
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
	  echo "error: PYTHON=$(PYTHON) not found: set PYTHON to the python3 the module should embed" >&2; exit 1; }

# Regenerated on every run (cheap); the file only changes when its content does.
$(CFFI_C): check-build-deps FORCE
	@mkdir -p $(BUILD)
	@$(PYTHON) cbridge/build_bridge.py $(BUILD) >/dev/null

$(BUILD)/shim.o: cbridge/shim.c cbridge/bridge_api.h | check-build-deps
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) $(AST_CFLAGS) -c -o $@ cbridge/shim.c

$(BUILD)/cffi.o: $(CFFI_C)
	$(CC) $(CFLAGS) -fPIC -pthread -Wall -Wno-unused-function -Icbridge $$(cat $(BUILD)/python.cflags) -c -o $@ $(CFFI_C)

$(MODULE): $(BUILD)/shim.o $(BUILD)/cffi.o
	$(CC) -shared -pthread -o $@ $^ $$(cat $(BUILD)/python.ldflags) $(LDFLAGS)

FORCE:

install: $(MODULE)
	install -d $(DESTDIR)$(ASTMODDIR)
	# A new inode: a running Asterisk may have the old file mapped.
	install -m 0644 $(MODULE) $(DESTDIR)$(ASTMODDIR)/$(MODULE)
	# Staged (DESTDIR): only this package, and --ignore-installed, or pip would uninstall
	# the copy the running system uses.
	$(PYTHON) -m pip install $(if $(DESTDIR),--root $(DESTDIR) --ignore-installed --no-deps) .
	@echo "Installed $(DESTDIR)$(ASTMODDIR)/$(MODULE) (embeds $$($(PYTHON) -c 'import sys; print(sys.executable)'))"

samples:
	install -d $(DESTDIR)$(ASTETCDIR)
	@if [ -e "$(DESTDIR)$(ASTETCDIR)/res_discovery_consul.conf" ]; then \
	  echo "$(DESTDIR)$(ASTETCDIR)/res_discovery_consul.conf exists: left as it is;" \
	       "the sample is at res_discovery_consul.conf.sample"; \
	else \
	  install -m 0640 res_discovery_consul.conf.sample $(DESTDIR)$(ASTETCDIR)/res_discovery_consul.conf; \
	  echo "Installed $(DESTDIR)$(ASTETCDIR)/res_discovery_consul.conf"; \
	fi

# The README's test command: installs the test bed (cached outside the tree) and runs all tests.
test:
	$(MAKE) -C integration_tests test-setup
	$(TEST_PYTHON) -m pytest tests integration_tests $(PYTEST_ARGS)

test-unit:
	$(TEST_PYTHON) -m pytest tests $(PYTEST_ARGS)

test-integration:
	$(TEST_PYTHON) -m pytest integration_tests $(PYTEST_ARGS)

demo:
	$(MAKE) -C integration_tests test-setup ONLY=consul,ast16,venv
	$(TEST_PYTHON) -m integration_tests.demo start

demo-stop:
	$(TEST_PYTHON) -m integration_tests.demo stop

bench:
	$(MAKE) -C integration_tests test-setup ONLY=consul,ast16,venv,bench
	$(TEST_PYTHON) -m bench $(BENCH_ARGS)

FLEET_HOSTS ?= 3
.PHONY: fleet fleet-stop

fleet:
	$(MAKE) -C integration_tests test-setup ONLY=consul,ast16,venv,fleet
	$(TEST_PYTHON) -m integration_tests.fleet --hosts $(FLEET_HOSTS) $(FLEET_ARGS)

fleet-stop:
	$(TEST_PYTHON) -m integration_tests.fleet stop

clean:
	rm -rf $(BUILD) $(MODULE)
