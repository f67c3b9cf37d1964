"""The EID check: the endpoint Consul polls, and what Consul makes of it."""

import time

import requests

from integration_tests import discovery as d

PATH = "/res_discovery_consul/check_eid"


def test_check_endpoint_answers_by_eid_and_method(asterisk_factory, ast_version, module_so,
                                                  consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent, check="no")
    right = d.http_get(ast, PATH, params={"expected_eid": ast.eid})
    assert right.status_code == 200
    assert right.headers["Content-Type"].startswith("text/plain")
    assert d.http_get(ast, PATH, params={"expected_eid": ast.eid.upper()}).status_code == 200

    wrong_eid = "02:00:00:00:00:01" if ast.eid != "02:00:00:00:00:01" else "02:00:00:00:00:02"
    wrong = d.http_get(ast, PATH, params={"expected_eid": wrong_eid})
    assert wrong.status_code == 404
    assert ast.eid not in wrong.text  # a wrong box does not say whose box it is
    assert d.http_get(ast, PATH).status_code == 400
    assert d.http_get(ast, PATH, params={"expected_eid": ""}).status_code == 400
    post = requests.post(ast.http_url(PATH), params={"expected_eid": ast.eid}, timeout=5)
    assert post.status_code == 405
    assert "GET" in post.headers.get("Allow", "")


def test_check_goes_critical_when_another_asterisk_answers_at_the_address(
        asterisk_factory, ast_version, module_so, consul_agent):
    """The box at the registered address is not the one that registered (a new container on
    a reused IP): Consul must see the registration critical."""
    other = d.start(asterisk_factory, ast_version, module_so, consul_agent, check="no",
                    id="other", name="other")
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, check_http_port=other.http_port)
    d.load(ast)
    [check] = d.wait_health(consul_agent, "Asterisk", ast.eid, "critical", timeout=10)
    d.wait_until(lambda: "404" in (d.check_of(consul_agent, ast.eid) or
                                                      {}).get("Output", ""), timeout=10, interval=0.1, what="the check to have run")
    assert "expected_eid=%s" % ast.eid in d.check_of(consul_agent, ast.eid)["Output"]


def test_check_timeout_is_what_consul_waits_for_an_answer(
        asterisk_factory, ast_version, module_so, consul_agent, blackhole_peer):
    """check_timeout = 1500ms against an HTTP server that never answers: Consul gives up after
    about 1.5 s (its default would be the module's default 3s), then waits check_interval."""
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, check_http_port=blackhole_peer.port, check_interval="1s",
                 check_timeout="1500ms")
    d.load(ast)
    d.wait_until(lambda: blackhole_peer.accepted >= 1, timeout=10, interval=0.02,
                 what="Consul's first check request")
    first = time.monotonic()

    def timed_out():
        output = (d.check_of(consul_agent, ast.eid) or {}).get("Output", "")
        return "Timeout" in output or "deadline exceeded" in output
    d.wait_until(timed_out, timeout=10, interval=0.05, what="the check to time out")
    waited = time.monotonic() - first
    assert 1.2 < waited < 2.6, waited
    d.wait_until(lambda: blackhole_peer.accepted >= 2, timeout=10, interval=0.02,
                 what="Consul's second check request")
    assert 2.2 < time.monotonic() - first < 3.8  # timeout + interval
