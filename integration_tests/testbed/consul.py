"""A real Consul dev agent on 127.0.0.1 with free ports, for tests.

    with ConsulAgent(tmp_path, acl=True) as consul:
        consul.put("/v1/agent/service/register", json={...})   # master token by default
        consul.put("/v1/agent/service/register", json={...}, token="")  # -> 403

A -dev agent keeps no data: restart() brings it back empty on the same ports.
"""

import json as _json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import requests

from . import paths, runtime

_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = asterisk-consul test
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,DNS:localhost,DNS:server.dc1.consul
[v3_client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
"""


def make_test_certs(directory):
    """Make a throwaway CA, a server cert (127.0.0.1, localhost, server.dc1.consul) and a client
    cert with the openssl CLI. Returns dict of paths: ca, ca_key, server_cert, server_key,
    client_cert, client_key."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cnf = d / "openssl.cnf"
    cnf.write_text(_OPENSSL_CNF)
    files = {name: d / name for name in
             ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")}

    def run(*args):
        subprocess.run(["openssl", *args], check=True, cwd=d,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-config", str(cnf), "-x509", *ec, "-keyout", str(files["ca.key"]),
        "-out", str(files["ca.pem"]), "-days", "3", "-subj", "/CN=asterisk-consul test CA",
        "-extensions", "v3_ca")
    for who, cn in (("server", "server.dc1.consul"), ("client", "asterisk-consul test client")):
        csr = d / f"{who}.csr"
        run("req", "-config", str(cnf), "-new", *ec, "-keyout", str(files[f"{who}.key"]),
            "-out", str(csr), "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", str(csr), "-CA", str(files["ca.pem"]),
            "-CAkey", str(files["ca.key"]), "-set_serial", str(uuid.uuid4().int >> 64),
            "-days", "3", "-extfile", str(cnf), "-extensions", f"v3_{who}",
            "-out", str(files[f"{who}.pem"]))
    for key in ("ca.key", "server.key", "client.key"):
        os.chmod(files[key], 0o600)
    return {"ca": files["ca.pem"], "ca_key": files["ca.key"],
            "server_cert": files["server.pem"], "server_key": files["server.key"],
            "client_cert": files["client.pem"], "client_key": files["client.key"]}


class ConsulAgent(runtime.ManagedProcess):
    """One `consul agent -dev` on 127.0.0.1, every port its own.

    acl=True: ACLs on, default deny, `master_token` (a uuid) is the master token and also the
    agent token. tls=True: an HTTPS port too (`https_port`, `https_url`) with certificates made
    here (`ca_file`, `client_cert`, `client_key`); tls_verify_incoming=True makes the HTTPS port
    demand a client certificate. The plain HTTP port stays open either way (`url`).
    """

    START_TIMEOUT = 30.0
    # A fresh agent's own server joining triggers a full sync that Consul staggers by up to 3 s
    # (serverUpIntv); while it waits, no change reaches the catalog (a check gone critical
    # shows there only when that sync runs). A long-running agent is past it.
    STARTUP_SYNC_S = 3.0 + 0.5  # + margin: the join comes a few ms around readiness

    def __init__(self, workdir, acl=False, tls=False, binary=None, tls_verify_incoming=False,
                 extra_config=None, client_of=None):
        """client_of: a client agent (not -dev) that joins that agent, a server."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = Path(binary) if binary else paths.consul_binary()
        self.acl = acl
        self.tls = tls
        self.tls_verify_incoming = tls_verify_incoming
        self.extra_config = dict(extra_config or {})
        self.client_of = client_of
        self.master_token = str(uuid.uuid4()) if acl else None
        self.https_port = self.https_url = None
        self.ca_file = self.client_cert = self.client_key = None
        self.log_path = self.workdir / "consul.log"
        self.config_path = self.workdir / "agent.json"
        self.proc = None
        self._started_once = False
        self._pick_ports()
        if tls:
            certs = make_test_certs(self.workdir / "certs")
            self.ca_file = str(certs["ca"])
            self.client_cert = str(certs["client_cert"])
            self.client_key = str(certs["client_key"])
            self._server_cert = str(certs["server_cert"])
            self._server_key = str(certs["server_key"])
        self._write_config()

    def _pick_ports(self, keep_http=False):
        """Free ports; keep_http keeps the HTTP(S) ports, which whoever talks to the agent
        knows (the other ports are the agent's own business)."""
        if not keep_http:
            self.http_port = runtime.free_port()
        self.dns_port = runtime.free_port(udp=True)
        self.serf_lan_port = runtime.free_port(udp=True)
        self.serf_wan_port = runtime.free_port(udp=True)
        self.server_port = runtime.free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        if self.tls and not keep_http:
            self.https_port = runtime.free_port()
            self.https_url = f"https://127.0.0.1:{self.https_port}"

    # -- lifecycle ---------------------------------------------------------------------------
    def _write_config(self):
        cfg = {"ports": {"grpc": -1}, "disable_update_check": True, "log_level": "DEBUG"}
        if self.acl:
            cfg["primary_datacenter"] = "dc1"
            cfg["acl"] = {"enabled": True, "default_policy": "deny", "down_policy": "deny",
                          "tokens": {"master": self.master_token, "agent": self.master_token}}
        if self.tls:
            cfg["ports"]["https"] = self.https_port
            cfg.update({"ca_file": self.ca_file, "cert_file": self._server_cert,
                        "key_file": self._server_key,
                        "verify_incoming_https": bool(self.tls_verify_incoming),
                        "verify_incoming_rpc": False, "verify_outgoing": False})
        cfg.update(self.extra_config)
        self.config_path.write_text(_json.dumps(cfg, indent=2))

    def command(self):
        if self.client_of is not None:
            mode = ["-data-dir", str(self.workdir / "data"), "-retry-join",
                    f"127.0.0.1:{self.client_of.serf_lan_port}"]
        else:
            mode = ["-dev"]
        return [str(self.binary), "agent", *mode, "-bind", "127.0.0.1", "-client", "127.0.0.1",
                "-node", f"test-{self.http_port}", "-http-port", str(self.http_port),
                "-dns-port", str(self.dns_port), "-serf-lan-port", str(self.serf_lan_port),
                "-serf-wan-port", str(self.serf_wan_port), "-server-port", str(self.server_port),
                "-config-file", str(self.config_path)]

    def start(self, timeout=None):
        if self.is_running():
            return self
        if not self.binary.exists():
            raise FileNotFoundError(f"consul binary not found at {self.binary} "
                                    "(run `make -C integration_tests test-setup`)")
        for attempt in range(3):
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            with open(self.log_path, "ab") as log:
                log.write(f"--- starting {' '.join(self.command())}\n".encode())
            self.proc = runtime.spawn(self.command(), log_path=self.log_path)
            try:
                self._wait_ready(timeout or self.START_TIMEOUT)
                break
            except BaseException:
                self.kill()
                # A port taken by someone else between picking and binding: new ports, once
                # more (after the first start, restart() keeps the HTTP ports it promises).
                if attempt < 2 and "address already in use" in self.log_text()[offset:]:
                    self._pick_ports(keep_http=self._started_once)
                    self._write_config()
                    continue
                raise
        self._started_once = True
        return self

    def _wait_ready(self, timeout):
        def ready():
            if self.proc.poll() is not None:
                raise runtime.GiveUp(f"consul exited with {self.proc.returncode}; log:\n"
                                   + self.log_tail())
            r = requests.get(self.url + "/v1/status/leader", timeout=1)
            if r.status_code != 200 or r.json() in ("", None):
                return False
            r = self.get("/v1/agent/self", timeout=1)
            if r.status_code != 200:
                return False
            if self.client_of is not None:
                return True  # a client's sync to the servers may be refused on purpose
            # Until anti-entropy has put the agent's own node in the catalog, sessions (and
            # anything tied to the node) fail with 500 "Missing node registration".
            node = r.json()["Config"]["NodeName"]
            r = self.get(f"/v1/catalog/node/{node}", timeout=1)
            return r.status_code == 200 and r.json() is not None
        try:
            runtime.wait_until(ready, timeout=timeout, interval=0.05, what="consul /v1/agent/self")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; consul log:\n{self.log_tail()}") from None
        self.ready_at = time.monotonic()

    def wait_startup_sync(self):
        """Wait until changes reach the catalog at once, as on a long-running agent: for tests
        that time how fast a change shows in the catalog."""
        time.sleep(max(0.0, self.ready_at + self.STARTUP_SYNC_S - time.monotonic()))

    def stop(self, timeout=10.0):
        """Graceful stop (SIGINT = leave), SIGKILL after timeout."""
        runtime.reap(self.proc, timeout=timeout, sig=signal.SIGINT)
        self.proc = None

    def restart(self, timeout=None):
        """Stop and start again on the same HTTP port. A dev agent comes back empty."""
        return super().restart(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- HTTP helpers ------------------------------------------------------------------------
    def _headers(self, token):
        tok = self.master_token if token is None else token
        return {"X-Consul-Token": tok} if tok else {}

    def request(self, method, path, token=None, timeout=10, **kwargs):
        """requests.request against the plain HTTP port; token None -> master_token, "" -> none."""
        headers = dict(kwargs.pop("headers", None) or {})
        headers.update(self._headers(token))
        return requests.request(method, self.url + path, headers=headers, timeout=timeout,
                                **kwargs)

    def get(self, path, token=None, **kwargs):
        return self.request("GET", path, token=token, **kwargs)

    def put(self, path, json=None, token=None, **kwargs):
        return self.request("PUT", path, token=token, json=json, **kwargs)

    def delete(self, path, token=None, **kwargs):
        return self.request("DELETE", path, token=token, **kwargs)

    def services(self):
        """GET /v1/agent/services -> {id: service}."""
        r = self.get("/v1/agent/services")
        r.raise_for_status()
        return r.json()

    def checks(self):
        """GET /v1/agent/checks -> {check_id: check}."""
        r = self.get("/v1/agent/checks")
        r.raise_for_status()
        return r.json()

    def events(self, name):
        """GET /v1/event/list?name=<name> -> the user events of that name this agent saw."""
        r = self.get("/v1/event/list", params={"name": name})
        r.raise_for_status()
        return r.json()

    def service_health(self, service_id):
        """GET /v1/agent/health/service/id/:id -> (status_code, body).

        200 passing, 429 warning, 503 critical, 404 unknown; body is the decoded JSON (or text)."""
        r = self.get(f"/v1/agent/health/service/id/{service_id}")
        try:
            body = r.json()
        except ValueError:
            body = r.text
        return r.status_code, body

    def kv_get(self, key):
        """Raw value of a KV key, or None if absent."""
        r = self.get(f"/v1/kv/{key}?raw")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.content

    def wait_service_status(self, service_id, status="passing", timeout=30.0):
        """Wait until the agent's aggregated health of service_id is status
        ("passing"/"warning"/"critical"/"absent"). Returns the last (code, body)."""
        want = {"passing": 200, "warning": 429, "critical": 503, "absent": 404}[status]
        last = {}

        def check():
            last["v"] = self.service_health(service_id)
            return last["v"][0] == want
        try:
            runtime.wait_until(check, timeout=timeout, interval=0.1,
                               what=f"service {service_id} {status}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last: {last.get('v')!r}") from None
        return last["v"]

    def wait_service(self, service_id, present=True, timeout=30.0):
        """Wait until service_id is (or is no longer) in /v1/agent/services."""
        return runtime.wait_until(lambda: (service_id in self.services()) == present,
                                  timeout=timeout, interval=0.1,
                                  what=f"service {service_id} {'present' if present else 'gone'}")

    def __repr__(self):
        state = "running" if self.is_running() else "stopped"
        return f"<ConsulAgent {self.url} acl={self.acl} tls={self.tls} {state}>"
