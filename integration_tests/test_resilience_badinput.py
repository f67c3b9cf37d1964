"""Bad input never crashes anything, on real Asterisk 16 and 22.

The EID check endpoint, fuzzed over real HTTP (odd and unknown methods, missing, duplicate,
huge, percent-encoded and binary parameters, long paths, many parameters), answers only
200/400/404/405 — or, for a request Asterisk's HTTP server refuses before any module sees it,
exactly what Asterisk answers for that request on a path nobody serves. Every config option
fed garbage, a missing, empty, unreadable or non-regular file, syntax errors and unknown
sections: a clear log line naming file and line, a declined load (or a warning), never a crash.
"""

import os
import random
import re
import socket

from integration_tests import discovery as d
from integration_tests import resilience as r

ALLOWED = {200, 400, 404, 405}
CHECK = b"/res_discovery_consul/check_eid"


def http_status(port, request, timeout=5.0):
    """Send raw bytes, return the status code of the answer (None: closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except OSError:
            pass  # refused half-way (too large): the answer, if any, is still readable
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
    return int(match.group(1)) if match else None


def request(method, target, headers=(), body=b""):
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += list(headers)
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def pct(data):
    return "".join("%%%02X" % b for b in data).encode()


def fuzz_requests(eid, rng):
    """(label, request bytes, expected status or None) — None: any allowed answer."""
    e = eid.encode()
    q = CHECK + b"?expected_eid="
    fixed = [
        ("own eid", request(b"GET", q + e), 200),
        ("own eid, HEAD", request(b"HEAD", q + e), 200),
        ("own eid upper case", request(b"GET", q + e.upper()), 200),
        ("own eid percent-encoded", request(b"GET", q + pct(e)), 200),
        ("path percent-encoded", request(b"GET", b"/res_discovery_consul/check%5Feid?expected_eid=" + e), 200),
        ("other eid", request(b"GET", q + b"02:00:00:00:00:01"), 404),
        ("no parameter", request(b"GET", CHECK), 400),
        ("empty parameter", request(b"GET", q), 400),
        ("duplicate", request(b"GET", q + e + b"&expected_eid=" + e), 400),
        ("duplicate, one empty", request(b"GET", q + e + b"&expected_eid="), 400),
        ("other name", request(b"GET", CHECK + b"?expected_EID=" + e), 400),
        ("eid plus junk", request(b"GET", q + e + b"x"), 400),
        # Asterisk decodes %00 into its C string, which ends there: the handler gets the EID.
        ("own eid, then %00", request(b"GET", q + e + b"%00"), 200),
        ("binary", request(b"GET", q + b"\xff\xfe\x80\x01"), 400),
        ("binary, percent-encoded", request(b"GET", q + b"%FF%FE%00%80"), 400),
        ("broken escapes", request(b"GET", q + b"%ZZ%3%"), 400),
        ("huge value", request(b"GET", q + b"a" * 6000), None),
        ("many parameters", request(b"GET", CHECK + b"?" + b"&".join(
            b"p%d=%d" % (i, i) for i in range(200)) + b"&expected_eid=" + e), 400),
        ("33 parameters", request(b"GET", CHECK + b"?" + b"&".join(
            b"p%d=1" % i for i in range(32)) + b"&expected_eid=" + e), 400),
        ("long path", request(b"GET", b"/res_discovery_consul/" + b"x/" * 1500), 404),
        ("path below the check", request(b"GET", CHECK + b"/more?expected_eid=" + e), 404),
        ("root of the module", request(b"GET", b"/res_discovery_consul/?expected_eid=" + e), 404),
        ("dot dot", request(b"GET", b"/res_discovery_consul/../res_discovery_consul/check_eid"), None),
        ("POST", request(b"POST", q + e, body=b"expected_eid=" + e), 405),
        ("PUT", request(b"PUT", q + e, body=b"{}"), 405),
        ("DELETE", request(b"DELETE", q + e), 405),
        ("OPTIONS", request(b"OPTIONS", q + e), 405),
        ("PATCH", request(b"PATCH", q + e), 405),
        ("unknown method", request(b"BREW", q + e), 405),
        ("lower-case get", request(b"get", q + e), 200),  # Asterisk: methods in any case
        ("many headers", request(b"GET", q + e, headers=[b"X-H%d: v" % i for i in range(90)]), 200),
        ("too many headers", request(b"GET", q + e, headers=[b"X-H%d: v" % i for i in range(500)]), None),
        ("HTTP/1.0", b"GET " + q + e + b" HTTP/1.0\r\n\r\n", 200),
        ("no version", b"GET " + q + e + b"\r\n\r\n", None),
        ("garbage", b"\x00\x01\x02 junk\r\n\r\n", None),
    ]
    methods = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE",
               b"FOO", b"G\xc3\x89T", b"X" * 40]
    names = [b"expected_eid", b"expected_eid", b"expected_eid", b"eid", b"", b"%00", b"a" * 300,
             b"expected%5Feid"]

    def value():
        kind = rng.randrange(8)
        if kind == 0:
            return e if rng.random() < 0.5 else e.upper()
        if kind == 1:
            return pct(e)
        if kind == 2:
            return bytes(rng.choice(b"0123456789abcdefABCDEF:") for _ in range(rng.randrange(20)))
        if kind == 3:
            return pct(os.urandom(rng.randrange(1, 40)))
        if kind == 4:
            return bytes(rng.choice([b for b in range(33, 256) if b not in b"&#?%"])
                         for _ in range(rng.randrange(1, 30)))
        if kind == 5:
            return b"x" * rng.choice([100, 1000, 3000])
        if kind == 6:
            return b"%" + bytes(rng.choice(b"0123456789ABCDEFGZ%") for _ in range(rng.randrange(3)))
        return b""

    generated = []
    for i in range(160):
        path = rng.choice([CHECK, CHECK, CHECK, CHECK + b"/", b"/res_discovery_consul/CHECK_EID",
                           b"/res_discovery_consul/" + b"y" * rng.randrange(2000),
                           b"/res_discovery_consul/check_eid%00", b"/res_discovery_consul"])
        params = b"&".join(rng.choice(names) + b"=" + value()
                           for _ in range(rng.choice([0, 1, 1, 1, 2, 3, 40])))
        target = path + (b"?" + params if params or rng.random() < 0.5 else b"")
        generated.append(("random %d" % i, request(rng.choice(methods), target), None))
    return fixed + generated


def asterisk_own_answer(port, raw):
    """What Asterisk answers for the same request on a path no module serves."""
    first, _, rest = raw.partition(b"\r\n")
    parts = first.split(b" ")
    if len(parts) >= 2:
        target = parts[1]
        path, sep, query = target.partition(b"?")
        parts[1] = b"/no_such_module" + (b"/x" * (len(path) // 2)) + sep + query
    return http_status(port, b" ".join(parts) + b"\r\n" + rest)


def test_check_endpoint_fuzzed_over_http(asterisk_factory, ast_version, module_so, consul_agent):
    ast = d.start(asterisk_factory, ast_version, module_so, consul_agent)
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")
    rng = random.Random(5)
    unexpected, outside = [], []
    for label, raw, expected in fuzz_requests(ast.eid, rng):
        status = http_status(ast.http_port, raw)
        if expected is not None and status != expected:
            unexpected.append((label, status, expected))
        if status not in ALLOWED:
            # Only acceptable when it is Asterisk's own answer, given before any module runs.
            own = asterisk_own_answer(ast.http_port, raw)
            if status == 500 or status != own:
                outside.append((label, status, own))
        if status == 200:
            # Only a request that carries this Asterisk's EID (plainly or percent-encoded).
            assert ast.eid.encode() in raw.lower() or pct(ast.eid.encode()) in raw, label
    assert not unexpected, unexpected
    assert not outside, outside
    assert ast.is_running() and d.module_running(ast)
    assert d.http_get(ast, "/res_discovery_consul/check_eid",
                      params={"expected_eid": ast.eid}).status_code == 200
    log = ast.log_text()
    assert "Traceback" not in log and "HTTP request failed" not in log
    d.wait_health(consul_agent, "Asterisk", ast.eid, "passing")


# -------------------------------------------------------------------------------- config
def _garbage_cases(ast):
    """(label, file text or callable(ast) that sets the file up, expected log regex)."""
    c = "[consul]\n"
    return [
        ("enabled", "[general]\nenabled = maybe\n", r":2: \[general\] enabled = 'maybe': must be yes or no"),
        ("host", c + "host = not a host!\n", r":2: \[consul\] host = 'not a host!': must be an IPv4 or IPv6 address or a host name"),
        ("port 0", c + "port = 0\n", r":2: \[consul\] port = '0': must be a whole number from 1 to 65535"),
        ("port text", c + "port = eighty\n", r"port = 'eighty': must be a whole number from 1 to 65535"),
        ("port huge", c + "port = " + "9" * 5000 + "\n", r"port = '9+': must be a whole number"),
        ("scheme", c + "scheme = gopher\n", r"scheme = 'gopher': must be http or https"),
        ("token", c + "token = two words\n", r":2: \[consul\] token: contains whitespace or control characters \(value not shown\)"),
        ("token non-ascii", c + "token = t\u00f6ken\n", r"\[consul\] token: contains characters other than printable ASCII \(value not shown\)"),
        ("token and token_file", c + "token = a\ntoken_file = b\n", r"token and token_file are both set"),
        # token_file's value is never quoted (a token may be pasted there): its line is.
        ("token_file missing", c + "token_file = /nonexistent/consul.token\n", r":2: \[consul\] token_file: cannot read the token file it names: No such file or directory \(the name is not shown: it may be a token\)"),
        ("token_file a directory", c + "token_file = .\n", r":2: \[consul\] token_file: cannot read the token file it names: a directory"),
        ("token_file a FIFO", lambda a: _fifo(a, "token.fifo", c + "token_file = token.fifo\n"), r":2: \[consul\] token_file: cannot read the token file it names: not a regular file"),
        ("consul_timeout_ms", c + "consul_timeout_ms = -5\n", r"consul_timeout_ms = '-5': must be a whole number from 1 to 60000"),
        ("id", c + "id = a/b\n", r"id = 'a/b': must not contain '/'"),
        ("name", c + "name = x/y\n", r"name = 'x/y': must not contain '/'"),
        ("discovery_ip", c + "discovery_ip = 999.1.1.1\n", r"discovery_ip = '999\.1\.1\.1': must be an IPv4 or IPv6 address"),
        ("discovery_ip auto", c + "discovery_ip = auto\ndiscovery_interface = nosuch0\n", r"discovery_ip = 'auto': .*nosuch0"),
        ("discovery_port", c + "discovery_port = 70000\n", r"discovery_port = '70000': must be a whole number from 1 to 65535"),
        ("discovery_interface", c + "discovery_interface = bad name!\n", r"discovery_interface = 'bad name!'"),
        ("metadata_profile", c + "metadata_profile = gone\n", r"metadata_profile = 'gone': there is no section \[metadata_gone\]"),
        ("metadata value", c + "metadata_profile = p\n[metadata_p]\ngroup = " + "g" * 600 + "\n", r":4: \[metadata_p\] group = 'g+': must be at most 512 characters"),
        ("check", c + "check = sometimes\n", r"check = 'sometimes': must be yes or no"),
        ("check_http_port", c + "check_http_port = -1\n", r"check_http_port = '-1': must be a whole number"),
        ("check_interval", c + "check_interval = 10\n", r"check_interval = '10': has no unit"),
        ("check_timeout", c + "check_timeout = -1s\n", r"check_timeout = '-1s': must be more than zero"),
        ("check_deregister_after", c + "check_deregister_after = 1parsec\n", r"check_deregister_after = '1parsec': has an unknown unit 'parsec'"),
        ("resync_interval", c + "resync_interval = forever\n", r"resync_interval = 'forever': must be a duration"),
        ("section header", c + "[general\n", r":2: section header has no closing '\]'"),
        ("line without =", c + "just words\n", r":2: expected 'key = value', '\[section\]' or '#include'"),
        ("option outside", "host = x\n", r":1: option outside of any \[section\]"),
        ("#exec", c + "#exec /bin/true\n", r":2: #exec is not supported by this module"),
        ("include missing", c + "#include nope.conf\n", r":2: cannot read nope\.conf: no such file"),
        ("include loop", lambda a: _write(a, "loop.conf", "#include res_discovery_consul.conf\n",
                                          c + "#include loop.conf\n"), r"include loop"),
        ("block comment", c + ";-- never closed\n", r":2: block comment ';--' is never closed"),
        ("not UTF-8", lambda a: _write_bytes(a, b"[consul]\nname = \xff\xfe\n"), r":2: not valid UTF-8 text"),
        ("missing file", lambda a: _remove(a), r"not found: looked for .*res_discovery_consul\.conf"),
        ("a directory", lambda a: _replace_with_dir(a), r"cannot read res_discovery_consul\.conf .*: a directory"),
        ("a FIFO", lambda a: _fifo(a, None, None), r"cannot read res_discovery_consul\.conf .*: not a regular file"),
    ]


def _conf_path(ast):
    return ast.etc_dir / d.CONF


def _clear(ast):
    path = _conf_path(ast)
    if path.is_dir():
        path.rmdir()
    elif path.exists() or path.is_symlink():
        path.unlink()


def _write(ast, name, text, conf):
    ast.write_config(name, text)
    ast.write_config(d.CONF, conf)


def _write_bytes(ast, data):
    _conf_path(ast).write_bytes(data)


def _remove(ast):
    pass  # _clear already did


def _replace_with_dir(ast):
    _conf_path(ast).mkdir()


def _fifo(ast, name, conf):
    if name is None:
        os.mkfifo(_conf_path(ast))
        return
    fifo = ast.etc_dir / name
    if not fifo.exists():
        os.mkfifo(fifo)
    ast.write_config(d.CONF, conf)


def test_config_garbage_is_declined_with_a_clear_message(asterisk_factory, ast_version,
                                                         module_so):
    ast = d.new_asterisk(asterisk_factory, ast_version, module_so)
    problems = []
    for label, setup, message in _garbage_cases(ast):
        _clear(ast)
        if callable(setup):
            setup(ast)
        else:
            ast.write_config(d.CONF, setup)
        since = ast.log_offset()
        out, took = d.timed_rx(ast, "module load " + d.MODULE)
        if d.module_running(ast):
            problems.append("%s: loaded" % label)
            r.unload(ast)
            continue
        if took > 1.0:
            problems.append("%s: the declined load took %.2f s" % (label, took))
        try:
            ast.wait_log(r"ERROR.*" + message, since=since, timeout=3)
            ast.wait_log(r"res_discovery_consul not loaded: fix res_discovery_consul\.conf",
                         since=since, timeout=3)
        except TimeoutError as exc:
            problems.append("%s: %s" % (label, str(exc).splitlines()[0]))
        log = ast.log_text(since)
        if "Traceback" in log:
            problems.append("%s: traceback in the log:\n%s" % (label, log))
    assert not problems, "\n".join(problems)
    assert ast.is_running()

    # Warnings, and the module loads: an empty file, unknown sections and options.
    for label, text, warning in [
            ("empty file", "", r"res_discovery_consul\.conf: the file has no settings: using all defaults"),
            ("unknown section", "[consul]\n[mystery]\nx = 1\n", r":2: unknown section \[mystery\] \(ignored\)"),
            ("unknown option", "[consul]\ncolour = blue\n", r":2: \[consul\] unknown option 'colour' \(ignored\)"),
            ("unknown general option", "[general]\nverbose = yes\n", r":2: \[general\] unknown option 'verbose' \(ignored\)"),
            ("tags with nothing in them", "[consul]\ntags = ,, ,\nhost = 127.0.0.1\n", None)]:
        _clear(ast)
        ast.write_config(d.CONF, text)
        since = ast.log_offset()
        d.load(ast)
        if warning:
            ast.wait_log(r"WARNING.*" + warning, since=since, timeout=3)
        r.unload(ast)
    assert ast.is_running()
    assert "Traceback" not in ast.log_text()
