"""The [kv] section: on Asterisk 16 and 22 against a real Consul agent, the
keys are read back with GET /v1/kv/<prefix>?recurse and their holder with
GET /v1/session/info/<id>."""

import base64
import re

from integration_tests import discovery as d
from integration_tests import resilience as r
from integration_tests.resilience import status_row

SERVICE_ID = "edge-kv"
PREFIX = "asterisk/pbx/edge-kv"  # kv_prefix = asterisk/${NAME}/${ID}

# Every placeholder, a literal $ and a key below a sub-path; the case of keys is kept.
TEMPLATED_KV = {
    "SipUri": "sip:${ID}@${ADDRESS}:${PORT}",
    "entity": "${EID}",
    "build/version": "Asterisk ${VERSION}",
    "price": "$$5 and $${ID} for ${NAME}",
}


def kv_options(**options):
    """[consul] options of these tests: no health check (not what they are about)."""
    merged = dict(id=SERVICE_ID, name="pbx", discovery_port=5080, check="no",
                  kv_prefix="asterisk/${NAME}/${ID}")
    merged.update(options)
    return merged


def kv_tree(consul, prefix):
    """{key: (value str, holding session)} of everything under prefix/ in Consul."""
    answer = consul.get("/v1/kv/%s/" % prefix, params={"recurse": ""})
    if answer.status_code == 404:
        return {}
    answer.raise_for_status()
    return {item["Key"]: (base64.b64decode(item["Value"] or "").decode(), item.get("Session"))
            for item in answer.json()}


def kv_values(consul, prefix):
    return {key: value for key, (value, _) in kv_tree(consul, prefix).items()}


def wait_kv(consul, prefix, expected, timeout=20.0):
    """The tree under prefix once its values are exactly `expected` ({full key: value})."""
    def matches():
        tree = kv_tree(consul, prefix)
        return [tree] if {k: v for k, (v, _) in tree.items()} == expected else None
    return d.wait_until(matches, timeout=timeout, interval=0.1,
                        what="KV under %s to be %r" % (prefix, expected))[0]


def session_info(consul, session_id):
    """GET /v1/session/info/<id>: the session, or None once Consul no longer has it."""
    answer = consul.get("/v1/session/info/%s" % session_id)
    answer.raise_for_status()
    return (answer.json() or [None])[0]


def our_sessions(consul):
    answer = consul.get("/v1/session/list")
    answer.raise_for_status()
    return [s for s in answer.json() or [] if s["Name"] == "res_discovery_consul:" + SERVICE_ID]


def reload_ok(ast):
    assert "reloaded" in ast.rx("module reload " + d.MODULE).lower()


def asterisk_version(ast):
    return ast.rx("core show version").split()[1]


def test_templated_keys_are_written_held_by_our_session_shown_and_removed_at_unload(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent,
                  extra_sections={"kv": TEMPLATED_KV}, **kv_options())
    expected = {
        PREFIX + "/SipUri": "sip:edge-kv@127.0.0.1:5080",
        PREFIX + "/entity": ast.eid,
        PREFIX + "/build/version": "Asterisk " + asterisk_version(ast),
        PREFIX + "/price": "$5 and ${ID} for pbx",
    }
    tree = wait_kv(consul_agent, PREFIX, expected)
    [session_id] = {holder for _, holder in tree.values()}
    assert session_id, tree
    session = session_info(consul_agent, session_id)
    assert session["Name"] == "res_discovery_consul:" + SERVICE_ID, session
    assert session["Behavior"] == "delete", session
    assert session["TTL"] == "30s", session  # kv_session_ttl's default
    assert session["LockDelay"] == 0, session

    def status_lists_every_key():
        status = ast.rx("discovery show status")
        return status if re.search(r"^\s*KV:\s+4 of 4 keys", status, re.M) else None
    status = d.wait_until(status_lists_every_key, timeout=10, interval=0.1,
                          what="status to list the 4 keys")
    assert re.match(r"4 of 4 keys under %s/ in Consul \(session %s, renewed \d{4}-\d\d-\d\d "
                    r"\d\d:\d\d:\d\d .*\(\d+s ago\)\)$" % (re.escape(PREFIX), session_id),
                    status_row(status, "KV")), status
    for key, value in expected.items():
        assert status_row(status, key) == value, status
    assert "KV error" not in status, status

    settings = ast.rx("discovery show settings")
    source = r"res_discovery_consul\.conf:%d"
    assert re.search(r"^\s+kv_prefix\s+asterisk/\$\{NAME\}/\$\{ID\}\s+%s\s*$"
                     % (source % d.conf_line(ast, "kv_prefix")), settings, re.M), settings
    assert re.search(r"^\s+kv_session_ttl\s+30s\s+default\s*$", settings, re.M), settings
    for key, value in TEMPLATED_KV.items():  # as written, not rendered
        assert re.search(r"^\s+kv %s\s+%s\s+%s\s*$" % (
            re.escape(key), re.escape(value), source % d.conf_line(ast, key)),
            settings, re.M), settings

    r.unload(ast)
    # The session is destroyed at unload and its keys go with it, at once.
    assert kv_tree(consul_agent, PREFIX) == {}
    assert session_info(consul_agent, session_id) is None
    assert our_sessions(consul_agent) == []


def test_reload_deletes_dropped_keys_writes_new_ones_and_follows_the_prefix(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent,
                  extra_sections={"kv": {"role": "edge", "zone": "eu-${ID}"}}, **kv_options())
    wait_kv(consul_agent, PREFIX, {PREFIX + "/role": "edge", PREFIX + "/zone": "eu-edge-kv"})

    # zone dropped, role changed, rack added.
    d.write_conf(ast, consul_agent, extra_sections={"kv": {"role": "core", "rack": "r7"}},
                 **kv_options())
    reload_ok(ast)
    tree = wait_kv(consul_agent, PREFIX, {PREFIX + "/role": "core", PREFIX + "/rack": "r7"})
    assert len({holder for _, holder in tree.values()}) == 1, tree
    settings = ast.rx("discovery show settings")
    assert re.search(r"^\s+kv rack\s+r7\s+", settings, re.M), settings
    assert not re.search(r"^\s+kv zone\s", settings, re.M), settings

    # Another prefix: the keys move, nothing is left under the old one.
    d.write_conf(ast, consul_agent, extra_sections={"kv": {"role": "core", "rack": "r7"}},
                 **kv_options(kv_prefix="moved/${ID}/"))
    reload_ok(ast)
    wait_kv(consul_agent, "moved/edge-kv",
            {"moved/edge-kv/role": "core", "moved/edge-kv/rack": "r7"})
    wait_kv(consul_agent, PREFIX, {}, timeout=5)
    status = ast.rx("discovery show status")
    assert status_row(status, "KV").startswith("2 of 2 keys under moved/edge-kv/ in Consul"), \
        status

    # No [kv] any more: the keys and the session are gone, status has no KV row.
    d.write_conf(ast, consul_agent, **kv_options())
    reload_ok(ast)
    wait_kv(consul_agent, "moved/edge-kv", {}, timeout=10)
    d.wait_until(lambda: our_sessions(consul_agent) == [], timeout=5, interval=0.1,
                 what="our session to be destroyed")
    assert not re.search(r"^\s*KV:", ast.rx("discovery show status"), re.M)
    assert re.search(r"^\s+kv\s+\(none: no \[kv\] section\)\s+default\s*$",
                     ast.rx("discovery show settings"), re.M)


def test_bad_templates_and_keys_refuse_the_load_with_file_line_and_value(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    refused = [
        ({"kv": {"good": "${ID}", "where": "at ${HOST}"}}, {}, "where",
         r"\[kv\] where = 'at \$\{HOST\}': has an unknown placeholder \$\{HOST\} "
         r"\(known: \$\{ID\}, \$\{NAME\}, \$\{EID\}, \$\{ADDRESS\}, \$\{PORT\}, \$\{VERSION\}\)"),
        ({"kv": {"cost": "5$ a month"}}, {}, "cost",
         r"\[kv\] cost = '5\$ a month': has a '\$' that starts no \$\{NAME\} placeholder "
         r"\(write \$\$ for a '\$'\)"),
        ({"kv": {"../escape": "x"}}, {}, "../escape",
         r"\[kv\] \.\./escape = 'x': key must be a relative path below kv_prefix"),
        ({"kv": {"price": "1"}}, {"kv_prefix": "pbx/${HOSTNAME}"}, "kv_prefix",
         r"\[consul\] kv_prefix = 'pbx/\$\{HOSTNAME\}': has an unknown placeholder"),
    ]
    for sections, options, line_of, message in refused:
        d.write_conf(ast, consul_agent, extra_sections=sections, **kv_options(**options))
        log = d.load_declined(ast)
        where = r"res_discovery_consul\.conf:%d" % d.conf_line(ast, line_of)
        assert re.search(r"ERROR.*%s: %s" % (where, message), log), log
    assert consul_agent.services() == {}
    assert kv_tree(consul_agent, "asterisk") == {}


def test_sigkilled_asterisk_keys_vanish_when_the_session_expires(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent,
                  extra_sections={"kv": {"role": "edge"}}, **kv_options(kv_session_ttl="10s"))
    tree = wait_kv(consul_agent, PREFIX, {PREFIX + "/role": "edge"})
    session_id = tree[PREFIX + "/role"][1]
    assert session_info(consul_agent, session_id)["TTL"] == "10s"
    # The worker renews every TTL/2 (5 s): a renewal of this very session reaches Consul.
    d.wait_until(lambda: ("PUT", "/v1/session/renew/" + session_id) in r.consul_requests(consul_agent),
                 timeout=15, interval=0.5,
                 what="a renewal of session %s" % session_id)

    ast.kill()  # SIGKILL: no unload, nothing destroys the session
    assert not ast.is_running()
    # Consul invalidates an unrenewed session after up to 2 x TTL; Behavior delete.
    wait_kv(consul_agent, PREFIX, {}, timeout=45)
    assert session_info(consul_agent, session_id) is None


def test_restarted_asterisk_takes_over_the_keys_of_its_killed_run(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent,
                  extra_sections={"kv": {"role": "edge"}}, **kv_options())
    old_session = wait_kv(consul_agent, PREFIX, {PREFIX + "/role": "edge"})[PREFIX + "/role"][1]
    ast.kill()
    ast.start()
    d.load(ast)
    # Long before the old session's 30 s TTL could run out, the new run holds the key.
    def held_by_a_new_session():
        value, holder = kv_tree(consul_agent, PREFIX).get(PREFIX + "/role", (None, None))
        return holder if holder not in (None, old_session) and value == "edge" else None
    new_session = d.wait_until(held_by_a_new_session, timeout=10, interval=0.1,
                               what="the key held by a new session")
    assert session_info(consul_agent, old_session) is None  # destroyed by the take-over
    assert [s["ID"] for s in our_sessions(consul_agent)] == [new_session]
    assert "KV error" not in ast.rx("discovery show status")


def test_key_held_by_someone_elses_session_is_left_alone_and_reported(
        asterisk_factory, ast_version, module_so, consul_agent):
    # LockDelay 0s: once released, Consul lets the key be taken at once (its default would
    # make every acquire wait 15 s, which is Consul's behaviour, not the module's).
    created = consul_agent.put("/v1/session/create",
                               json={"Name": "someone-else", "LockDelay": "0s"})
    created.raise_for_status()
    foreign = created.json()["ID"]
    taken = consul_agent.put("/v1/kv/%s/owned" % PREFIX, params={"acquire": foreign},
                             data=b"theirs")
    assert taken.json() is True, taken.text

    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent,
                  extra_sections={"kv": {"role": "edge", "owned": "ours"}}, **kv_options())
    wait_kv(consul_agent, PREFIX, {PREFIX + "/role": "edge", PREFIX + "/owned": "theirs"})

    def reported():
        status = ast.rx("discovery show status")
        return status if re.search(r"^\s*KV error:", status, re.M) else None
    status = d.wait_until(reported, timeout=10, interval=0.1, what="the KV error in status")
    assert status_row(status, "KV error") == (
        "KV key %s/owned is held by another Consul session (%s, name someone-else): "
        "not written" % (PREFIX, foreign)), status
    assert status_row(status, "KV").startswith("1 of 2 keys under %s/" % PREFIX), status
    assert kv_tree(consul_agent, PREFIX)[PREFIX + "/owned"] == ("theirs", foreign)

    # Once its holder lets go, the key is ours at a later attempt and the error clears.
    consul_agent.put("/v1/session/destroy/%s" % foreign).raise_for_status()
    wait_kv(consul_agent, PREFIX, {PREFIX + "/role": "edge", PREFIX + "/owned": "ours"})
    d.wait_until(lambda: "KV error" not in ast.rx("discovery show status"),
                 timeout=10, interval=0.1,
                 what="the KV error to clear")
