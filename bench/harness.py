"""The bench's test bed: one real Consul agent, broken peers, and Asterisk 16 instances with
res_discovery_consul.so installed and configured, driven over a persistent AMI session so that
`module load` / `module unload` are timed without the cost of `asterisk -rx` itself.

    with Bed(workdir) as bed:                   # builds the work tree's module (or module_so=)
        ast = bed.asterisk(target="up")          # started, module installed, not loaded
        ctl = ModuleControl(ast)
        watch = CatalogWatch(bed)                # before the load: times the service's arrival
        began = time.monotonic()
        load_s = ctl.load()
        catalog_s = watch.result(began)

The module is configured as an operator would, with the defaults kept except the agent's
port (`target`: the agent up, a refusing port, a blackhole), the service name, the discovery
address and an EID check against that Asterisk. Asterisk runs with verbose 0 / debug 0.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import requests

from integration_tests.amiclient import AmiSession
from integration_tests.testbed.asterisk import AsteriskInstance
from integration_tests.testbed.build import build_module
from integration_tests.testbed.consul import ConsulAgent
from integration_tests.testbed.peers import BlackholePeer, RefusingPeer

MODULE = "res_discovery_consul.so"
CONF = "res_discovery_consul.conf"
# The states of the Consul agent the module is pointed at.
TARGETS = ("up", "refusing", "blackholed")


def log(message: str) -> None:
    print("[bench] %s" % message, flush=True)


def conf_text(options: Dict[str, object], kv: Optional[Dict[str, str]] = None) -> str:
    """The module's config file; an option set to None is left out (its default applies)."""
    lines = ["[general]", "enabled = yes", "", "[consul]"]
    lines += ["%s = %s" % (k, v) for k, v in options.items() if v is not None]
    if kv:
        lines += ["", "[kv]"] + ["%s = %s" % (k, v) for k, v in kv.items()]
    return "\n".join(lines) + "\n"


class Bed:
    """Everything the bench runs against; close() (or the with-block) stops it all."""

    def __init__(self, workdir: Path, check_interval: str = "1s", module_so: Optional[Path] = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.check_interval = check_interval
        self.service_name = "bench-%d" % int(time.time() * 1000 % 1e9)
        self.instances: List[AsteriskInstance] = []
        if module_so is None:
            log("building res_discovery_consul.so for Asterisk 16 ...")
            module_so = build_module("16")
        self.module_so = Path(module_so)
        self.consul = ConsulAgent(self.workdir / "consul")
        self.consul.start()
        self.refusing = RefusingPeer()
        self.blackhole = BlackholePeer()
        self.http = requests.Session()

    def port_of(self, target: str) -> int:
        return {"up": self.consul.http_port, "refusing": self.refusing.port,
                "blackholed": self.blackhole.port}[target]

    def options(self, ast: AsteriskInstance, target: str = "up", **overrides) -> Dict[str, object]:
        """The module's [consul] options: the defaults an operator would keep, except the agent's
        port, the name, the discovery address and an EID check against this Asterisk."""
        options = {
            "host": "127.0.0.1",
            "port": self.port_of(target),
            "name": self.service_name,
            "discovery_ip": "127.0.0.1",
            "check": "yes",
            "check_type": "http",
            "check_http_port": ast.http_port,
            "check_interval": self.check_interval,
        }
        options.update(overrides)
        return options

    def configure(self, ast: AsteriskInstance, target: str = "up",
                  kv: Optional[Dict[str, str]] = None, **overrides) -> Dict[str, object]:
        options = self.options(ast, target, **overrides)
        ast.write_config(CONF, conf_text(options, kv))
        return options

    def asterisk(self, target: str = "up", start: bool = True, module_so: Optional[Path] = None,
                 kv: Optional[Dict[str, str]] = None, modules=(),
                 extra_configs: Optional[Dict[str, str]] = None, **overrides) -> AsteriskInstance:
        """A new Asterisk 16 with the module (default: the bed's build) installed and configured
        (not loaded); `modules`: stock modules it loads at start, `kv`: a [kv] section."""
        # Quiet: the test bed's verbose 5 / debug 5 would put a log write on every request.
        ast = AsteriskInstance("16", asterisk_conf_options={"verbose": "0", "debug": "0"},
                               modules=modules, extra_configs=extra_configs)
        ast.install_module(module_so or self.module_so)
        self.configure(ast, target, kv, **overrides)
        self.instances.append(ast)
        if start:
            ast.start()
        return ast

    def discard(self, ast: AsteriskInstance) -> None:
        ast.cleanup()
        if ast in self.instances:
            self.instances.remove(ast)

    # -- Consul's catalog ----------------------------------------------------------------------
    def catalog(self, index: Optional[int] = None, wait: str = "10s", passing: bool = False):
        """(X-Consul-Index, entries) of our service in the catalog (or, with passing, in the
        health endpoint, passing instances only); a blocking query when index is given."""
        path = ("/v1/health/service/%s" if passing else "/v1/catalog/service/%s") % self.service_name
        params = {}
        if passing:
            params["passing"] = "1"
        if index is not None:
            params.update(index=str(index), wait=wait)
        r = self.http.get(self.consul.url + path, params=params, timeout=30)
        r.raise_for_status()
        return int(r.headers.get("X-Consul-Index", "0")), r.json()

    def wait_catalog_empty(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        index, entries = self.catalog()
        while entries:
            if time.monotonic() > deadline:
                raise TimeoutError("service %s still in the catalog" % self.service_name)
            index, entries = self.catalog(index, wait="1s")

    def close(self) -> None:
        for ast in list(self.instances):
            try:
                self.discard(ast)
            except Exception:  # noqa: BLE001 - keep tearing down
                ast.kill()
        self.blackhole.close()
        self.refusing.close()
        self.consul.stop()
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CatalogWatch:
    """Started before a `module load`: records when the service first shows up in the catalog
    (and, with passing=True, when it first shows up passing). Blocking queries, so the time is
    that of the change in Consul, not of a poll.

    view: "catalog" (/v1/catalog/service/<name>), "passing" (/v1/health/service/<name>?passing,
    what consumers route to) or "health" (every entry, with its checks); `until` is what the
    entries must show (default: any entry); `consul_url`: another agent than the bed's."""

    VIEWS = {"catalog": ("/v1/catalog/service/%s", {}),
             "passing": ("/v1/health/service/%s", {"passing": "1"}),
             "health": ("/v1/health/service/%s", {})}

    def __init__(self, bed: Bed, passing: bool = False, timeout: float = 15.0,
                 view: Optional[str] = None, until: Optional[Callable[[list], bool]] = None,
                 consul_url: Optional[str] = None):
        self.bed = bed
        self.view = view or ("passing" if passing else "catalog")
        self.until = until or bool
        self.url = consul_url or bed.consul.url
        self.timeout = timeout
        self.seen_at: Optional[float] = None
        self.error: Optional[BaseException] = None
        self._session = requests.Session()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="catalog-watch")
        self._thread.start()
        self._ready.wait(5)

    def _query(self, index):
        path, params = self.VIEWS[self.view]
        params = dict(params)
        if index is not None:
            params.update(index=str(index), wait="5s")
        r = self._session.get(self.url + path % self.bed.service_name, params=params, timeout=30)
        r.raise_for_status()
        return int(r.headers.get("X-Consul-Index", "0")), r.json()

    def _run(self):
        try:
            index, entries = self._query(None)
            self._ready.set()
            deadline = time.monotonic() + self.timeout
            while not self.until(entries) and time.monotonic() < deadline:
                index, entries = self._query(index)
            if self.until(entries):
                self.seen_at = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 - reported by result()
            self.error = exc
        finally:
            self._ready.set()
            self._session.close()

    def result(self, since: float) -> Optional[float]:
        """Seconds from `since` to the service's arrival (to `until`), None if it never came."""
        self._thread.join(self.timeout + 35)
        if self.error is not None:
            raise self.error
        return None if self.seen_at is None else self.seen_at - since


class ModuleControl:
    """`module load` / `module unload` over one logged-in AMI session (ModuleLoad action): the
    time measured is Asterisk's, plus one loopback round trip."""

    def __init__(self, ast: AsteriskInstance):
        self.ast = ast
        self.ami = AmiSession(ast.manager_port, ast.manager_user, ast.manager_secret, timeout=30)
        # Silence events: the ModuleLoad answers are all we read.
        self.ami.action("Events", EventMask="off")
        self.refused_unloads = 0

    def _do(self, load_type: str) -> float:
        began = time.monotonic()
        reply = self.ami.action("ModuleLoad", timeout=30, Module=MODULE, LoadType=load_type)
        took = time.monotonic() - began
        self.ami.blocks.clear()
        if reply.get("Response") != "Success":
            time.sleep(0.2)  # let the logger write the reason
            raise RuntimeError("AMI ModuleLoad %s: %r\n%s" % (load_type, reply,
                                                               self.ast.log_text()[-2000:]))
        return took

    def unload(self) -> float:
        """`module unload`, timed. Asterisk refuses a soft unload while a request holds the
        module ("use count"): an EID check probe of Consul's that the shim has answered but
        not yet released can be one. Such a refusal is counted (refused_unloads) and the
        unload tried again; the time is that of the unload that worked."""
        for attempt in range(20):
            try:
                return self._do("unload")
            except RuntimeError as exc:
                if "has use count" not in str(exc) or attempt == 19:
                    raise
                self.refused_unloads += 1
                log("module unload refused while a request held the module (use count); "
                    "trying again")
                time.sleep(0.01)
        raise AssertionError("unreachable")

    def load(self) -> float:
        return self._do("load")

    def running(self) -> bool:
        return module_running(self.ast)

    def close(self) -> None:
        self.ami.close()


def module_running(ast: AsteriskInstance) -> bool:
    listing = ast.rx("module show like res_discovery_consul")
    return re.search(r"res_discovery_consul\.so\s.*\d+\s+Running\s", listing) is not None


def rss_kb(pid: int) -> Dict[str, int]:
    """VmRSS and its split (RssAnon: heap and other private memory; RssFile: mapped files such
    as libpython) of a process, in kB."""
    out = {}
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0])
    return out


def summary(values) -> Dict[str, object]:
    """median, min, max and the samples (seconds -> ms rounded for the JSON)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0}
    return {"n": len(values), "median_ms": round(statistics.median(values) * 1000, 3),
            "min_ms": round(min(values) * 1000, 3), "max_ms": round(max(values) * 1000, 3),
            "samples_ms": [round(v * 1000, 3) for v in values]}
