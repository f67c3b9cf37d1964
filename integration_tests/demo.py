"""A live demo: Consul and Asterisk 16 on 127.0.0.1 with PJSIP and res_discovery_consul loaded.

    make demo        start both (after installing the test bed), print the status
    make demo-stop   stop both and remove the demo's files

Unlike the tests' services, these outlive the command that started them; their process ids
and directories are kept in $ASTERISK_CONSUL_CACHE/demo/state.json for demo-stop.
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import requests

from integration_tests.testbed import build, paths, runtime
from integration_tests.testbed.asterisk import AsteriskInstance
from integration_tests.testbed.consul import ConsulAgent

STATE_DIR = paths.cache_dir() / "demo"
STATE = STATE_DIR / "state.json"

CONFIG = """\
; The demo's res_discovery_consul.conf (see res_discovery_consul.conf.sample for every option)
[general]
enabled = yes

[consul]
host = 127.0.0.1
port = {consul_port}
id = auto
name = Asterisk
tags = asterisk, demo, pbx-1
discovery_ip = 127.0.0.1
discovery_port = auto
metadata_profile = demo
check = yes
check_type = both
check_http_port = {http_port}
check_interval = 5s
check_timeout = 2s
check_ttl = 15s
check_deregister_after = 1m
kv_prefix = asterisk/${{ID}}

[metadata_demo]
group = demo
priority = 1
weight = 100
max_calls = 50

[kv]
sip_uri = sip:${{ADDRESS}}:${{PORT}}
version = ${{VERSION}}
"""


# The SIP stack the module probes (sip_check = auto) and publishes (TaggedAddresses sip_udp,
# the service Port with discovery_port = auto); the probe is identified, so PJSIP answers it
# without logging an unknown request every second.
PJSIP_MODULES = ["res_sorcery_config.so", "res_sorcery_memory.so", "res_sorcery_astdb.so",
                 "res_pjproject.so", "res_pjsip.so", "res_pjsip_session.so",
                 "res_pjsip_pubsub.so", "res_pjsip_endpoint_identifier_ip.so", "chan_pjsip.so"]
PJSIP = """\
[transport-udp]
type = transport
protocol = udp
bind = 127.0.0.1:{port}

[res_discovery_consul_probe]
type = endpoint
context = res-discovery-consul-probe
disallow = all

[res_discovery_consul_probe]
type = identify
endpoint = res_discovery_consul_probe
match = 127.0.0.1
"""


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def detach(argv, log_path, env=None, cwd=None):
    """Start a process in its own session that does not die with this one."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    return proc.pid


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def wait_until(what, check, timeout=30.0):
    """The test bed's wait, said the way a demo says it."""
    try:
        runtime.wait_until(check, timeout=timeout, interval=0.1, what=what)
    except runtime.WaitTimeout:
        raise SystemExit("demo: %s did not come up within %ds" % (what, timeout)) from None


def start():
    if STATE.exists():
        print("demo: already running (make demo-stop first); its status:")
        return status()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    print("demo: building res_discovery_consul.so for Asterisk 16 ...")
    so = build.build_module("16")

    consul = ConsulAgent(STATE_DIR / "consul")
    consul_pid = detach(consul.command(), consul.log_path)
    wait_until("Consul", lambda: requests.get(consul.url + "/v1/agent/self", timeout=1).ok)

    ast = AsteriskInstance("16", modules=PJSIP_MODULES + ["res_discovery_consul.so"],
                           extra_configs={"res_discovery_consul.conf": "placeholder",
                                          "pjsip.conf": PJSIP.format(port=free_udp_port())})
    # The instance's directory belongs to the demo now, not to this process's exit clean-up.
    runtime.unregister_cleanup(("asterisk", str(ast.host_dir)))
    ast.write_config("res_discovery_consul.conf",
                     CONFIG.format(consul_port=consul.http_port, http_port=ast.http_port))
    ast.install_module(so)
    state = {"consul_pid": consul_pid, "consul_dir": str(consul.workdir), "consul_url": consul.url,
             "asterisk_dir": str(ast.host_dir), "asterisk_conf": str(ast.conf_path),
             "asterisk_http": ast.http_url("/")}
    STATE.write_text(json.dumps(state, indent=2))
    state["asterisk_pid"] = detach(ast.command(), ast.stdout_path, env=ast._env(), cwd=str(ast.host_dir))
    STATE.write_text(json.dumps(state, indent=2))
    wait_until("Asterisk", lambda: "Running" in rx(state, "module show like res_discovery_consul"))
    wait_until("the registration", lambda: requests.get(
        consul.url + "/v1/health/service/Asterisk?passing", timeout=1).json(), timeout=20)
    wait_until("the KV keys", lambda: len(kv_keys(consul.url)) == 2, timeout=20)
    return status()


def kv_keys(consul_url):
    answer = requests.get(consul_url + "/v1/kv/asterisk/?recurse", timeout=1)
    return answer.json() if answer.status_code == 200 else []


def rx(state, command):
    env = {"LD_LIBRARY_PATH": paths.ast16_library_path(), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([str(paths.ast16_binary()), "-C", state["asterisk_conf"], "-rx", command],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=15)
    return res.stdout.replace("Asterisk ending (0).\n", "")


def status():
    state = json.loads(STATE.read_text())
    print("\n$ asterisk -rx 'discovery show status'")
    print(rx(state, "discovery show status"))
    print("$ curl %s/v1/health/service/Asterisk   (what consul-template and Kamailio read)" % state["consul_url"])
    for entry in requests.get(state["consul_url"] + "/v1/health/service/Asterisk", timeout=5).json():
        service = entry["Service"]
        print("  %s  %s:%s  tags=%s" % (service["ID"], service["Address"], service["Port"], service["Tags"]))
        sip = {k: v for k, v in (service.get("TaggedAddresses") or {}).items() if k.startswith("sip_")}
        print("  tagged=%s" % json.dumps(sip, sort_keys=True))
        print("  meta=%s" % json.dumps(service["Meta"], sort_keys=True))
        for check in entry["Checks"]:
            print("  check %-40s %s" % (check["CheckID"], check["Status"]))
    print("\n$ curl %s/v1/kv/asterisk/?recurse   (held by the module's session)" % state["consul_url"])
    for entry in kv_keys(state["consul_url"]):
        print("  %s = %s" % (entry["Key"], base64.b64decode(entry["Value"] or "").decode()))
    print("\nConsul web UI:   %s/ui/" % state["consul_url"])
    print("Asterisk CLI:    LD_LIBRARY_PATH=%s %s -C %s -r"
          % (paths.ast16_library_path(), paths.ast16_binary(), state["asterisk_conf"]))
    print("Try:             discovery show settings / discovery set maintenance on testing")
    print("Stop it all:     make demo-stop")


def stop():
    if not STATE.exists():
        print("demo: not running")
        return
    state = json.loads(STATE.read_text())
    pid = state.get("asterisk_pid")
    if pid and alive(pid):
        rx(state, "core stop now")
        for _ in range(100):
            if not alive(pid):
                break
            time.sleep(0.1)
    for key in ("asterisk_pid", "consul_pid"):
        pid = state.get(key)
        if pid and alive(pid):
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not alive(pid):
                    break
                time.sleep(0.1)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(state["asterisk_dir"], ignore_errors=True)
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    print("demo: stopped; nothing left running")


if __name__ == "__main__":
    {"start": start, "stop": stop, "status": status}[sys.argv[1] if len(sys.argv) > 1 else "start"]()
