"""Safe defaults and a check that cannot pass (issue 25), on a real Asterisk and Consul:
checks on by default, check_type = auto, check_http_port from http.conf's bindport, and an
EID check against a bindaddr that does not answer at discovery_ip said at load and in the
status. The test bed's http.conf binds Asterisk's HTTP server to 127.0.0.1 (bindport: the
instance's own port); 127.0.0.2, on loopback too, is an address it does not listen at."""

import re

from integration_tests import discovery as d


def conf_line(ast, name, option):
    lines = (ast.etc_dir / name).read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if re.match(r"\s*%s\s*=" % option, line))


def test_defaults_give_both_checks_on_the_port_http_conf_says(asterisk_factory, ast_version,
                                                              module_so, consul_agent):
    """check, check_type and check_http_port left out: both checks, the EID check polling
    http.conf's bindport, passing."""
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent, check=None,
                  check_type=None, check_http_port=None)
    settings = ast.rx("discovery show settings")
    assert re.search(r"^\s+check\s+yes\s+default\s*$", settings, re.M), settings
    assert re.search(r"^\s+check_type\s+both\s+default \(auto: http\.conf's server answers at "
                     r"discovery_ip\)", settings, re.M), settings
    assert re.search(r"^\s+check_http_port\s+%d\s+http\.conf:%d \(http\.conf bindport\)"
                     % (ast.http_port, conf_line(ast, "http.conf", "bindport")), settings,
                     re.M), settings
    checks = d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")
    assert {c["CheckID"] for c in checks} == {"check-asterisk-eid-%s" % ast.eid,
                                              "check-asterisk-ttl-%s" % ast.eid}


def test_an_eid_check_that_cannot_pass_is_said_at_load_and_in_the_status(
        asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    d.write_conf(ast, consul_agent, discovery_ip="127.0.0.2", check_type="both",
                 check_http_port=None)
    since = ast.log_offset()
    d.load(ast)
    bind_line = conf_line(ast, "http.conf", "bindaddr")
    ast.wait_log(r"WARNING.*res_discovery_consul\.conf:%d: \[consul\] check_type = both: the EID "
                 r"check will fail: http\.conf:%d: bindaddr = 127\.0\.0\.1: Asterisk's HTTP "
                 r"server does not listen at discovery_ip 127\.0\.0\.2, where the agent polls it"
                 % (d.conf_line(ast, "check_type"), bind_line), since=since)
    status = ast.rx("discovery show status")
    assert re.search(r"^\s+warning:\s+the EID check cannot pass: http\.conf:%d: "
                     r"bindaddr = 127\.0\.0\.1" % bind_line, status, re.M), status
    # And it is true: Consul finds the EID check critical.
    d.wait_health(consul_agent, "Asterisk", ast.eid, "critical", timeout=10)

    # check_type = auto picks the TTL check alone instead, and says why; no warning.
    d.write_conf(ast, consul_agent, discovery_ip="127.0.0.2", check_type=None,
                 check_http_port=None)
    since = ast.log_offset()
    ast.rx("module reload " + d.MODULE)
    checks = d.wait_health(consul_agent, "Asterisk", ast.eid, "passing", timeout=15)
    assert [c["CheckID"] for c in checks] == ["check-asterisk-ttl-%s" % ast.eid]
    assert re.search(r"^\s+check_type\s+ttl\s+default \(auto: ttl, the EID check could not "
                     r"pass: http\.conf:%d: bindaddr = 127\.0\.0\.1" % bind_line,
                     ast.rx("discovery show settings"), re.M)
    assert "EID check will fail" not in ast.log_text(since)
