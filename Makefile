# res_discovery_consul: build, install and test.
#
#   make                      build ./res_discovery_consul.so for PYTHON and ASTINCDIR
#   make install              install the module (DESTDIR, ASTMODDIR) and the Python package
#                             (offline: PYTHON's own setuptools builds it, no download)
#   make samples              install res_discovery_consul.conf.sample as the config (ASTETCDIR),
#                             mode 0640, group ASTGROUP (asterisk, when that group exists)
#   make install-systemd      the drop-in that makes systemctl stop|restart asterisk drain first
#                             (SYSTEMDDIR, LIBEXECDIR; then: systemctl daemon-reload)
#   make uninstall            remove what make install and install-systemd put in place (the
#                             config is left; PYTHON's pip removes the package)
#   make deb                  build the Debian package for Debian sid's Asterisk 22 in the test
#                             bed's sid chroot -> build/deb/ (DEB_VERSION=... for another version)
#   make test                 install the test bed (cached), type-check, and run every test
#   make typecheck            mypy over asterisk_consul/ (mypy.ini; the test venv pins mypy)
#   make demo / demo-stop     a live Consul + Asterisk 16 on loopback with the module loaded
#   make bench                the module vs Asterisk's own /httpstatus, load/unload times, RSS,
#                             idle cost, convergence, fleet cost (prints the figures and a
#                             summary against the goals, writes bench/results/*.json;
#                             BENCH_ARGS=--quick, BENCH_ARGS="--only idle,converge,fleetscale")
#   make fleet / fleet-stop   Asterisk hosts + a Consul cluster + Kamailio + SIPp in network
#                             namespaces, the failure scenarios live (a table, and
#                             bench/results/fleet-*.json; FLEET_HOSTS=3, FLEET_ARGS=--only a,b;
#                             FLEET_ASTERISK=22: Asterisk 22 + PJSIP + sid's Kamailio, the
#                             default; FLEET_ASTERISK=16: Asterisk 16 + chan_sip + Kamailio 5.6)
#   make chaos                the fleet under a seeded fault storm (overlapping faults while SIPp
#                             calls), invariants checked over the run; CHAOS_SEED=1,
#                             CHAOS_MINUTES=3 (the same seed gives the same schedule)

PYTHON ?= python3
ASTINCDIR ?= /usr/include
ASTETCDIR ?= /etc/asterisk
# The group Asterisk runs as (Debian: asterisk); empty when there is no such group.
ASTGROUP ?= $(shell getent group asterisk >/dev/null 2>&1 && echo asterisk)
CC ?= gcc
CFLAGS ?= -O2 -g
DESTDIR ?=
# no: the module carries no RUNPATH to PYTHON's libdir (Debian: libpython is in a default
# library dir; a venv of a Python built elsewhere needs it).
PYTHON_RPATH ?= yes
PYTHON_LDFLAGS_SED = $(if $(filter no,$(PYTHON_RPATH)),s/-Wl$(comma)-rpath$(comma)[^ ]*//g)
SYSTEMDDIR ?= /usr/lib/systemd/system
LIBEXECDIR ?= /usr/libexec/asterisk-consul

BUILD := build
MODULE := res_discovery_consul.so
# The gate: every door into the module, a library of its own, never unmapped (cbridge/gate.h); its file name carries its ABI.
GATE_ABI := $(shell sed -n 's/^\#define RDC_GATE_ABI \([0-9]*\)$$/\1/p' cbridge/gate.h)
GATE := res_discovery_consul.d/gate-$(GATE_ABI).so
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' asterisk_consul/__init__.py)
CFFI_C := $(BUILD)/_res_discovery_consul_cffi.c
# Asterisk's help for the module (config show help, manager show command/event), written from
# the option table, the AMI actions and the events (asterisk_consul/xmldoc.py).
XMLDOC := $(BUILD)/res_discovery_consul-en_US.xml
AST_CFLAGS := -fPIC -pthread -D_GNU_SOURCE -D_REENTRANT -Wall -Wno-unused-function -I$(ASTINCDIR) -Icbridge

# The module dir of the installed Asterisk: asterisk.conf's astmoddir, else the Debian
# multiarch dir when it exists, else Asterisk's own default.
ASTMODDIR ?= $(shell sed -n 's/^[[:space:]]*astmoddir[[:space:]]*=>\{0,1\}[[:space:]]*//p' $(ASTETCDIR)/asterisk.conf 2>/dev/null | head -n1 | tr -d '[:space:]')
ifeq ($(ASTMODDIR),)
  ASTMODDIR := $(firstword $(wildcard /usr/lib/$(shell $(CC) -print-multiarch 2>/dev/null)/asterisk/modules) /usr/lib/asterisk/modules)
endif
# Asterisk's data dir (asterisk.conf's astdatadir, else the default): third-party XML docs
# go to its documentation/thirdparty/.
ASTDATADIR ?= $(shell sed -n 's/^[[:space:]]*astdatadir[[:space:]]*=>\{0,1\}[[:space:]]*//p' $(ASTETCDIR)/asterisk.conf 2>/dev/null | head -n1 | tr -d '[:space:]')
ifeq ($(ASTDATADIR),)
  ASTDATADIR := /usr/share/asterisk
endif

# The test bed's cache and its virtualenv (see integration_tests/testbed/paths.py).
export ASTERISK_CONSUL_CACHE ?= $(HOME)/.cache/asterisk-consul
TEST_PYTHON := $(ASTERISK_CONSUL_CACHE)/venv/bin/python
# Stdlib-only helpers (the installer, the .deb build) run with any python3.
INSTALL_PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
comma := ,

.PHONY: all check-build-deps install install-module install-python install-xmldoc samples deb \
        install-systemd uninstall \
        test test-unit test-integration typecheck demo demo-stop bench clean

all: $(MODULE) $(GATE) $(XMLDOC)

check-build-deps:
	@test -f "$(ASTINCDIR)/asterisk.h" || { \
	  echo "error: $(ASTINCDIR)/asterisk.h not found: install Asterisk's headers (Debian: apt install asterisk-dev)" \
	       "or set ASTINCDIR to the directory that holds asterisk.h" >&2; exit 1; }
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
	  echo "error: PYTHON=$(PYTHON) not found: set PYTHON to the python3 the module should embed" >&2; exit 1; }

# Regenerated on every run (cheap); the file only changes when its content does.
$(CFFI_C): check-build-deps FORCE
	@mkdir -p $(BUILD)
	@$(PYTHON) cbridge/build_bridge.py $(BUILD) $(if $(RDC_APP),--app $(RDC_APP)) \
	  $(if $(RDC_APP_PATH),--app-path $(RDC_APP_PATH)) >/dev/null

$(BUILD)/shim.o: cbridge/shim.c cbridge/bridge_api.h cbridge/gate.h asterisk_consul/__init__.py | check-build-deps
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) $(AST_CFLAGS) -DRDC_VERSION='"$(VERSION)"' -c -o $@ cbridge/shim.c

$(GATE): cbridge/gate.c cbridge/gate.h | check-build-deps
	@mkdir -p $(dir $(GATE))
	$(CC) $(CFLAGS) $(AST_CFLAGS) -shared -o $@ cbridge/gate.c $(LDFLAGS)

$(BUILD)/cffi.o: $(CFFI_C)
	$(CC) $(CFLAGS) -fPIC -pthread -Wall -Wno-unused-function -Icbridge $$(cat $(BUILD)/python.cflags) -c -o $@ $(CFFI_C)

$(MODULE): $(BUILD)/shim.o $(BUILD)/cffi.o
	$(CC) -shared -pthread -o $@ $^ $$(sed '$(PYTHON_LDFLAGS_SED)' $(BUILD)/python.ldflags) $(LDFLAGS)

$(XMLDOC): $(wildcard asterisk_consul/*.py asterisk_consul/*/*.py) | check-build-deps
	@mkdir -p $(BUILD)
	$(PYTHON) -m asterisk_consul.xmldoc $@

FORCE:

install: install-module install-python install-xmldoc
	@echo "Installed $(DESTDIR)$(ASTMODDIR)/$(MODULE) (embeds $$($(PYTHON) -c 'import sys; print(sys.executable)'))"

install-module: $(MODULE) $(GATE)
	install -d $(DESTDIR)$(ASTMODDIR) $(DESTDIR)$(ASTMODDIR)/$(dir $(GATE))
	# New inodes: a running Asterisk may have the old files mapped.
	install -m 0644 $(MODULE) $(DESTDIR)$(ASTMODDIR)/$(MODULE)
	install -m 0644 $(GATE) $(DESTDIR)$(ASTMODDIR)/$(GATE)

# Offline: no build isolation (PYTHON's setuptools builds the package) and no index (the
# runtime dependencies must already be there). Staged (DESTDIR): only this package, and
# --ignore-installed, or pip would uninstall the copy the running system uses.
install-python:
	@$(PYTHON) -c 'import setuptools, requests' 2>/dev/null || { \
	  echo "error: $(PYTHON) needs setuptools (to install the package) and requests (to run it):" \
	       "Debian: apt install python3-setuptools python3-requests; a venv: <venv>/bin/pip install setuptools requests" >&2; exit 1; }
	$(PYTHON) -m pip install --no-build-isolation --no-index \
	  $(if $(DESTDIR),--root $(DESTDIR) --ignore-installed --no-deps) .

# Asterisk reads third-party docs from <astdatadir>/documentation/thirdparty/ at start.
install-xmldoc: $(XMLDOC)
	install -d $(DESTDIR)$(ASTDATADIR)/documentation/thirdparty
	install -m 0644 $(XMLDOC) $(DESTDIR)$(ASTDATADIR)/documentation/thirdparty/

samples:
	install -d $(DESTDIR)$(ASTETCDIR)
	@if [ -e "$(DESTDIR)$(ASTETCDIR)/res_discovery_consul.conf" ]; then \
	  echo "$(DESTDIR)$(ASTETCDIR)/res_discovery_consul.conf exists: left as it is;" \
	       "the sample is at res_discovery_consul.conf.sample"; \
	else \
	  install -m 0640 $(if $(ASTGROUP),-g $(ASTGROUP)) res_discovery_consul.conf.sample \
	    $(DESTDIR)$(ASTETCDIR)/res_discovery_consul.conf; \
	  echo "Installed $(DESTDIR)$(ASTETCDIR)/res_discovery_consul.conf (mode 0640$(if $(ASTGROUP),$(comma) group $(ASTGROUP)))"; \
	fi

# systemd: `systemctl stop|restart asterisk` runs `core stop gracefully` first (the module
# drains), bounded (contrib/systemd/, docs/install.md).
install-systemd:
	install -d $(DESTDIR)$(SYSTEMDDIR)/asterisk.service.d $(DESTDIR)$(LIBEXECDIR)
	install -m 0644 contrib/systemd/asterisk.service.d/res-discovery-consul-drain.conf \
	  $(DESTDIR)$(SYSTEMDDIR)/asterisk.service.d/
	install -m 0755 contrib/systemd/asterisk-stop-gracefully $(DESTDIR)$(LIBEXECDIR)/
	@echo "Installed the drain drop-in for asterisk.service: run systemctl daemon-reload"

# What install, install-systemd (and samples, with PURGE_CONFIG=yes) put in place. The
# Python package is removed with PYTHON's pip. Unload the module first (module unload).
uninstall:
	rm -f $(DESTDIR)$(ASTMODDIR)/$(MODULE) $(DESTDIR)$(ASTMODDIR)/$(GATE)
	-rmdir $(DESTDIR)$(ASTMODDIR)/$(dir $(GATE)) 2>/dev/null
	rm -f $(DESTDIR)$(ASTDATADIR)/documentation/thirdparty/$(notdir $(XMLDOC))
	rm -f $(DESTDIR)$(SYSTEMDDIR)/asterisk.service.d/res-discovery-consul-drain.conf \
	  $(DESTDIR)$(LIBEXECDIR)/asterisk-stop-gracefully
	-rmdir $(DESTDIR)$(SYSTEMDDIR)/asterisk.service.d $(DESTDIR)$(LIBEXECDIR) 2>/dev/null
	@# Staged (DESTDIR): the package under DESTDIR is left to whoever removes DESTDIR; pip
	@# would remove the running system's copy instead.
	$(if $(DESTDIR),,@if $(PYTHON) -m pip show asterisk-consul >/dev/null 2>&1; then \
	  $(PYTHON) -m pip uninstall -y asterisk-consul; fi)
	$(if $(filter yes,$(PURGE_CONFIG)),rm -f $(DESTDIR)$(ASTETCDIR)/res_discovery_consul.conf)
	@echo "Uninstalled; $(ASTETCDIR)/res_discovery_consul.conf is kept unless PURGE_CONFIG=yes"

# In the test bed's Debian sid chroot (installed if missing; needs root), with debhelper.
deb:
	$(MAKE) -C integration_tests test-setup ONLY=ast22
	$(INSTALL_PYTHON) -m integration_tests.testbed.debbuild --out $(BUILD)/deb $(if $(DEB_VERSION),--version $(DEB_VERSION))

# The README's test command: installs the test bed (cached outside the tree) and runs all tests.
test:
	$(MAKE) -C integration_tests test-setup
	$(MAKE) typecheck
	$(TEST_PYTHON) -m pytest tests integration_tests $(PYTEST_ARGS)

test-unit:
	$(TEST_PYTHON) -m pytest tests $(PYTEST_ARGS)

test-integration:
	$(TEST_PYTHON) -m pytest integration_tests $(PYTEST_ARGS)

# Seconds; its own target so a type error fails fast, before the half-hour of tests.
typecheck:
	$(TEST_PYTHON) -m mypy --config-file mypy.ini --cache-dir $(ASTERISK_CONSUL_CACHE)/mypy

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

FLEET_ASTERISK ?= 22
export FLEET_ASTERISK

fleet:
	$(MAKE) -C integration_tests test-setup ONLY=consul,$(if $(filter 16,$(FLEET_ASTERISK)),ast16,ast22),venv,fleet
	$(TEST_PYTHON) -m integration_tests.fleet --hosts $(FLEET_HOSTS) $(FLEET_ARGS)

fleet-stop:
	$(TEST_PYTHON) -m integration_tests.fleet stop

CHAOS_SEED ?= 1
CHAOS_MINUTES ?= 3
.PHONY: chaos

chaos:
	$(MAKE) -C integration_tests test-setup ONLY=consul,$(if $(filter 16,$(FLEET_ASTERISK)),ast16,ast22),venv,fleet
	$(TEST_PYTHON) -m integration_tests.fleet.chaos --seed $(CHAOS_SEED) --minutes $(CHAOS_MINUTES) --hosts $(FLEET_HOSTS)

clean:
	rm -rf $(BUILD) $(MODULE) $(dir $(GATE))
