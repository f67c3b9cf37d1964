"""The log bridge: records reach the host with their level and place, secrets never do."""

import logging

import pytest

from asterisk_consul import logbridge
from asterisk_consul.logbridge import AsteriskLogHandler

OLD = "11111111-aaaa-token-old"
NEW = "22222222-bbbb-token-new"


class Host:
    def __init__(self):
        self.lines = []

    def log(self, level, message, file="", line=0, func=""):
        self.lines.append((level, message, file, line, func))


@pytest.fixture
def handler():
    handler = AsteriskLogHandler()
    handler.host = Host()
    return handler


def record(message, *args, level=logging.WARNING, exc_info=None):
    return logging.LogRecord("asterisk_consul.test", level, "/x/registrar.py", 42, message, args,
                             exc_info, func="job")


def test_levels_and_place(handler):
    for level, expected in ((logging.DEBUG, "debug"), (logbridge.VERBOSE, "verbose"),
                            (logging.INFO, "notice"), (logging.WARNING, "warning"),
                            (logging.ERROR, "error"), (logging.CRITICAL, "error")):
        handler.emit(record("m", level=level))
        assert handler.host.lines[-1] == (expected, "m", "registrar.py", 42, "job")


def test_secrets_are_masked_in_messages_arguments_and_tracebacks(handler):
    handler.set_secrets([NEW])
    handler.emit(record("token %s in an argument", NEW))
    try:
        raise RuntimeError("the peer said X-Consul-Token: " + NEW)
    except RuntimeError:
        import sys
        handler.emit(record("failed", exc_info=sys.exc_info(), level=logging.ERROR))
    text = "\n".join(line[1] for line in handler.host.lines)
    assert NEW not in text
    assert "token <redacted> in an argument" in text
    assert "Traceback" in text and "X-Consul-Token: <redacted>" in text


def test_a_replaced_token_stays_masked(handler):
    handler.set_secrets([OLD])
    handler.set_secrets([NEW])  # a reload brought another token
    handler.emit(record("late line about %s and %s", OLD, NEW))
    assert handler.host.lines[-1][1] == "late line about <redacted> and <redacted>"


def test_only_the_latest_few_tokens_are_kept(handler):
    for i in range(40):
        handler.set_secrets(["token-%03d" % i])
    assert handler.redact("token-039 token-030 token-000") == "<redacted> <redacted> token-000"


def test_a_secret_inside_another_is_masked_whole(handler):
    handler.set_secrets(["abc", "xxabcxx"])
    assert handler.redact("xxabcxx abc") == "<redacted> <redacted>"


def test_empty_secrets_are_ignored(handler):
    handler.set_secrets(["", None])
    assert handler.redact("nothing to hide") == "nothing to hide"


def test_module_level_redact_uses_the_installed_handler():
    logbridge.set_secrets(NEW)
    try:
        assert logbridge.redact("x " + NEW) == "x <redacted>"
    finally:
        logbridge._handler.set_secrets([])


def test_a_broken_host_never_raises(handler):
    class Broken:
        def log(self, *args):
            raise OSError("gone")
    handler.host = Broken()
    handler.emit(record("m"))  # nothing raised
    handler.host = None
    handler.emit(record("m"))


def test_line_breaks_in_operator_text_cannot_forge_log_lines(handler):
    """A maintenance or drain reason with CR/LF (or ESC) stays on its own line, escaped; a
    traceback keeps its lines."""
    forged = "upgrade\r\n[Dec  6 12:00:00] NOTICE[1]: Consul: service pbx-1 deregistered\x1b[2J"
    handler.emit(record("Consul: maintenance mode of %s is set (%s)", "pbx-1", forged))
    message = handler.host.lines[-1][1]
    assert "\n" not in message and "\r" not in message and "\x1b" not in message
    assert message.endswith("(upgrade\\r\\n[Dec  6 12:00:00] NOTICE[1]: Consul: service pbx-1 "
                            "deregistered\\x1b[2J)")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        handler.emit(record("failed: %s", "a\nb", exc_info=sys.exc_info()))
    text = handler.host.lines[-1][1]
    assert text.startswith("failed: a\\nb\nTraceback (most recent call last):")
