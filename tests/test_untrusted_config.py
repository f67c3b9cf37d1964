"""Config input that could hang a load or a reload, or misroute every later call: each limit
is checked before the work it bounds, and parsing is linear. The time bounds are loose on
purpose (the quadratic cases took 6 to 12 s; linear ones take milliseconds): they catch a
return of a quadratic case, not a slow machine."""

from __future__ import annotations

import subprocess
import time

import pytest

from asterisk_consul import config
from asterisk_consul.config import ConfigError
from asterisk_consul.values import parse_tags
from tests.configtext import parse_text
from tests.test_settings import CONF, consul, error_of, host, confdir, load, write  # noqa: F401

LOOSE_S = 2.0


def timed(fn, *args):
    began = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - began


def test_a_270_kb_tags_line_parses_in_linear_time():
    line = ",".join(f"tag{i}" for i in range(30000)) + ",tag1, tag2 ,,"
    assert len(line) > 200_000
    tags, took = timed(parse_tags, line)
    assert len(tags) == 30000 and tags[:3] == ("tag0", "tag1", "tag2")
    assert took < LOOSE_S, f"{took:.2f} s for 30000 tags"


def test_a_section_of_thousands_of_keys_is_read_in_linear_time():
    text = "[consul]\n" + "\n".join(f"k{i} = v" for i in range(8000)) + "\nk5 = again\n"
    parsed, took = timed(parse_text, text)
    section = parsed.section("consul")
    began = time.monotonic()
    values = {key: section.get(key).value for key in section.keys()}
    owned = [section.own_all(key) for key in section.keys()]
    took += time.monotonic() - began
    assert len(values) == 8000 and values["k5"] == "again" and len(owned[5]) == 2
    assert took < LOOSE_S, f"{took:.2f} s for 8000 keys"


def test_a_kv_section_over_the_key_limit_is_refused_before_its_keys_are_checked(host, confdir):
    text = "[consul]\n[kv]\n" + "\n".join(f"key{i} = ${{ID}}-{i}" for i in range(8000)) + "\n"
    began = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load(host, confdir, text)
    assert time.monotonic() - began < LOOSE_S
    assert str(caught.value) == f"{CONF}:2: [kv] has 8000 keys: at most 64"


def test_includes_that_fan_out_are_refused_by_the_number_of_files_read(tmp_path):
    """16 files each including the next twice would be 65 536 reads."""
    for i in range(16):
        text = f'#include "f{i + 1}.conf"\n#include "f{i + 1}.conf"\n' if i < 15 else "[a]\nx=1\n"
        (tmp_path / f"f{i}.conf").write_text(text)
    began = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        config.parse_file(str(tmp_path / "f0.conf"))
    assert time.monotonic() - began < LOOSE_S
    assert f"more than {config.MAX_FILES_READ} files read in all" in str(caught.value)
    assert "is a file included more than once?" in str(caught.value)


def test_self_doubling_templates_are_refused_before_they_expand():
    lines = ["[t0](!)", "a = 1"] + [f"[t{i}](!,t{i - 1},t{i - 1})" for i in range(1, 22)]
    began = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        parse_text("\n".join(lines), "tpl.conf")
    assert time.monotonic() - began < LOOSE_S
    assert f"more than {config.MAX_SECTION_ENTRIES} options with what its templates give it" \
        in str(caught.value)
    assert str(caught.value).startswith("tpl.conf:")


def test_a_line_over_the_limit_is_refused_with_its_file_and_line():
    text = "[consul]\nname = x\ntags = " + "a" * (config.MAX_LINE_CHARS + 1) + "\n"
    with pytest.raises(ConfigError) as caught:
        parse_text(text, "big.conf")
    assert str(caught.value) == (f"big.conf:3: line longer than {config.MAX_LINE_CHARS} "
                                 f"characters")


@pytest.mark.parametrize("value", [".", "..", "pbx\\1", "\\"])
def test_ids_that_are_not_one_path_segment_are_refused_at_load(host, confdir, value):
    message = error_of(host, confdir, f"id = {value}")
    assert message.startswith(f"{CONF}:2: [consul] id = '{value}': must not")


@pytest.mark.parametrize("value", [".", ".."])
def test_service_names_dot_and_dot_dot_are_refused_at_load(host, confdir, value):
    assert error_of(host, confdir, f"name = {value}").startswith(
        f"{CONF}:2: [consul] name = '{value}': must not be '.' or '..'")


def test_an_encrypted_client_key_is_refused_at_load_with_the_reason(host, confdir):
    key, cert = confdir / "client.key", confdir / "client.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=x", "-passout", "pass:pw"],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    message = error_of(host, confdir, "scheme = https", f"client_cert = {cert}",
                       f"client_key = {key}")
    assert f"client_key = '{key}': the client key {key} is encrypted" in message
    assert "use a key without one" in message


def test_an_event_payload_over_consuls_limit_is_said_at_load(host, confdir):
    _, warnings = consul(host, confdir, "events = yes", "id = " + "x" * 300)
    assert any(w.startswith(f"{CONF}:2: [consul] events = yes, but the event "
                            f"asterisk-register cannot be sent") and "512-byte limit" in w
               for w in warnings), warnings
    _, warnings = consul(host, confdir, "events = yes", "id = pbx-1")
    assert not any("cannot be sent" in w for w in warnings)
