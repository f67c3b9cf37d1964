"""contrib/kamailio/consul_dispatcher.py, the sample consul watch handler, on health entries
shaped as Consul 1.8 returns them (GET /v1/health/service/<name>): which instances Kamailio
routes new calls to, with which weight. The fleet tests run it for real; these cover the
states today's module cannot produce yet (warning, draining) and the weight rules."""

import importlib.util
import json
import subprocess
import sys

from integration_tests.testbed import paths

HANDLER = paths.repo_root() / "contrib" / "kamailio" / "consul_dispatcher.py"
_spec = importlib.util.spec_from_file_location("consul_dispatcher", HANDLER)
handler = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(handler)


def entry(sid, address, status="passing", weights=(1, 1), meta=None, output="", notes="",
          maintenance=False, port=5060):
    checks = [{"CheckID": "serfHealth", "ServiceID": "", "Status": "passing",
               "Output": "Agent alive and reachable", "Notes": ""},
              {"CheckID": f"check-asterisk-eid-{sid}", "ServiceID": sid, "Status": status,
               "Output": output, "Notes": notes}]
    if maintenance:
        checks.append({"CheckID": f"_service_maintenance:{sid}", "ServiceID": sid,
                       "Status": "critical", "Output": "", "Notes": "upgrade"})
    return {"Node": {"Node": f"node-{sid}", "Address": address},
            "Service": {"ID": sid, "Service": "Asterisk", "Address": address, "Port": port,
                        "Meta": dict(meta or {}),
                        "Weights": {"Passing": weights[0], "Warning": weights[1]}},
            "Checks": checks}


def lines(entries):
    """{service id: (flags, {attr: value})} of the rendered list."""
    out = {}
    for line in handler.render(entries).splitlines():
        if line.startswith("#"):
            continue
        _setid, _uri, flags, _priority, attrs = line.split()
        pairs = dict(a.split("=", 1) for a in attrs.split(";"))
        out[pairs["duid"]] = (int(flags), pairs)
    return out


def test_passing_boxes_are_routed_with_their_meta_weight_when_weights_are_consul_defaults():
    got = lines([entry("a", "10.0.0.1", meta={"weight": "1"}),
                 entry("b", "10.0.0.2", meta={"weight": "3"})])
    assert got["a"] == (0, {"duid": "a", "rweight": "1", "health": "passing"})
    assert got["b"][1]["rweight"] == "3"


def test_consul_weights_win_over_meta_weight():
    got = lines([entry("a", "10.0.0.1", weights=(10, 2), meta={"weight": "1"})])
    assert got["a"][1]["rweight"] == "10"


def test_warning_box_is_routed_with_its_warning_weight():
    got = lines([entry("a", "10.0.0.1", status="warning", weights=(10, 2)),
                 entry("b", "10.0.0.2", status="warning", meta={"weight": "5"})])
    assert got["a"] == (0, {"duid": "a", "rweight": "2", "health": "warning"})
    # Meta weight is the passing weight only; a warning box falls back to Consul's 1.
    assert got["b"][1]["rweight"] == "1"


def test_critical_maintenance_and_draining_boxes_are_listed_disabled():
    got = lines([entry("dead", "10.0.0.1", status="critical"),
                 entry("maint", "10.0.0.2", maintenance=True),
                 entry("drain", "10.0.0.3", output="HTTP GET ...: 200 OK Output: draining"),
                 entry("drain2", "10.0.0.4", status="warning", notes="Draining for upgrade")])
    assert {sid: (flags, a["health"]) for sid, (flags, a) in got.items()} == {
        "dead": (4, "critical"), "maint": (4, "maintenance"), "drain": (4, "draining"),
        "drain2": (4, "draining")}
    assert all("rweight" not in a for _f, a in got.values())


def test_a_critical_node_check_takes_its_boxes_out():
    dead_node = entry("a", "10.0.0.1")
    dead_node["Checks"][0]["Status"] = "critical"
    assert lines([dead_node])["a"][0] == 4


def test_weights_over_100_are_scaled_into_kamailios_range():
    got = lines([entry("a", "10.0.0.1", weights=(1000, 1)), entry("b", "10.0.0.2",
                                                                  weights=(250, 1))])
    assert (got["a"][1]["rweight"], got["b"][1]["rweight"]) == ("100", "25")


def test_two_registrations_on_one_address_are_two_lines():
    text = handler.render([entry("old", "10.0.0.1", status="critical"),
                           entry("new", "10.0.0.1")])
    assert text.count("sip:10.0.0.1:5060") == 2


def test_no_instance_renders_an_empty_list(tmp_path):
    listing = tmp_path / "dispatcher.list"
    proc = subprocess.run([sys.executable, str(HANDLER), "--list", str(listing), "--no-reload"],
                          input="[]", capture_output=True, text=True, check=True)
    assert [l for l in listing.read_text().splitlines() if not l.startswith("#")] == []
    assert "0 instance(s)" in proc.stdout


def test_the_list_file_is_written_for_kamailio(tmp_path):
    listing = tmp_path / "dispatcher.list"
    subprocess.run([sys.executable, str(HANDLER), "--list", str(listing), "--no-reload"],
                   input=json.dumps([entry("a", "10.0.0.1", meta={"weight": "2"})]),
                   capture_output=True, text=True, check=True)
    assert "1 sip:10.0.0.1:5060 0 0 duid=a;rweight=2;health=passing" in listing.read_text()


def test_a_transport_is_routed_to_the_address_and_port_its_tagged_address_names():
    tcp_box = entry("a", "10.0.0.1")
    tcp_box["Service"]["TaggedAddresses"] = {
        "sip_udp": {"Address": "10.0.0.1", "Port": 5060},
        "sip_tcp": {"Address": "10.0.0.1", "Port": 5080}}
    udp_only = entry("b", "10.0.0.2")
    udp_only["Service"]["TaggedAddresses"] = {"sip_udp": {"Address": "10.0.0.2", "Port": 5060}}
    uris = [line.split()[1] for line in handler.render([tcp_box, udp_only], transport="tcp")
            .splitlines() if not line.startswith("#")]
    assert uris == ["sip:10.0.0.1:5080;transport=tcp"], "a box without TCP is not listed"
    udp = [line.split()[1] for line in handler.render([tcp_box, udp_only]).splitlines()
           if not line.startswith("#")]
    assert udp == ["sip:10.0.0.1:5060", "sip:10.0.0.2:5060"]


# -- --follow: the handler's own blocking queries ---------------------------------------------
class _Agent:
    """An agent's /v1/health/service answers, one per request: (status, index, entries)."""

    def __init__(self, answers):
        import http.server
        import threading
        self.answers, self.requests = list(answers), []
        agent = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                agent.requests.append((self.path, self.headers.get("X-Consul-Token")))
                status, index, entries = (agent.answers.pop(0) if agent.answers
                                          else (200, 99, None))
                if status == 200 and entries is None:   # no change: a query that waits
                    import time
                    time.sleep(5)
                    entries = []
                body = json.dumps(entries).encode() if status == 200 else b"rpc error: EOF"
                self.send_response(status)
                self.send_header("X-Consul-Index", str(index))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.addr = "127.0.0.1:%d" % self.server.server_address[1]


def _follow(agent, listing, env=None):
    return subprocess.Popen([sys.executable, "-u", str(HANDLER), "--follow", "Asterisk",
                             "--http-addr", agent.addr, "--list", str(listing), "--no-reload"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def _wait_for(condition, seconds=10.0):
    import time
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within %ss" % seconds
        time.sleep(0.05)


def test_follow_renders_each_change_and_goes_on_after_errors_without_a_long_backoff(tmp_path):
    """Two errors in a row (a leader election) cost well under consul watch's 5 s + 20 s."""
    listing = tmp_path / "dispatcher.list"
    one, two = entry("a", "10.0.0.1"), entry("b", "10.0.0.2")
    agent = _Agent([(200, 10, [one]), (500, 10, None), (500, 10, None), (200, 12, [one, two])])
    proc = _follow(agent, listing)
    try:
        _wait_for(lambda: listing.exists() and "10.0.0.2" in listing.read_text(), seconds=6.0)
        assert "sip:10.0.0.1:5060" in listing.read_text()
        paths_asked = [path for path, _token in agent.requests]
        assert all("stale" in p for p in paths_asked), "any server may answer, no leader needed"
        assert "index=10" in paths_asked[1], "the second query blocks on the first's index"
        assert "index=0" in paths_asked[3], "after an error: the current state, not a change"
    finally:
        proc.kill()
        _out, err = proc.communicate()
        agent.server.shutdown()
    assert err.count("again in") == 2


def test_follow_sends_the_token_in_its_header_only_and_never_prints_it(tmp_path):
    listing = tmp_path / "dispatcher.list"
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    agent = _Agent([(500, 1, None), (200, 5, [entry("a", "10.0.0.1")])])
    env = {"PATH": "/usr/bin:/bin", "CONSUL_HTTP_TOKEN_FILE": str(token_file)}
    proc = _follow(agent, listing, env=env)
    try:
        _wait_for(lambda: listing.exists() and "10.0.0.1" in listing.read_text())
    finally:
        proc.kill()
        out, err = proc.communicate()
        agent.server.shutdown()
    assert {token for _path, token in agent.requests} == {"s3cret-token"}
    assert all("s3cret" not in path for path, _token in agent.requests)
    assert "s3cret" not in out + err


def test_follow_starts_over_when_the_index_goes_backwards():
    assert handler.next_index(50, 60) == 60
    assert handler.next_index(50, 40) == 0, "a server restored from a snapshot: start over"
    assert handler.next_index(0, 0) == 0


def test_follow_backoff_doubles_from_a_fifth_of_a_second_up_to_two_seconds_jittered():
    import random
    rng = random.Random(1)
    pauses = [handler.backoff(n, rng) for n in range(1, 10)]
    assert 0.1 <= pauses[0] <= 0.2
    assert all(p <= 2.0 for p in pauses) and max(pauses) >= 1.0
