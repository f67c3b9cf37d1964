"""Python logging into Asterisk's logger.

One handler on the root logger, re-pointed at the current host at every module load, so
that the package's records and those of the libraries it uses (requests, urllib3) reach
Asterisk's log with their file, line and function, tracebacks included, and nothing goes
to stderr. Secrets registered here are masked in every record as a last line of defence.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import List

from . import host as hostapi
from .safetext import scrub

# Between DEBUG and INFO: shown as an Asterisk VERBOSE message.
VERBOSE = 15
logging.addLevelName(VERBOSE, "VERBOSE")

# Control characters in a message (an operator's maintenance or drain reason, a peer's error
# text) would start a line of the log that Asterisk never wrote: shown escaped instead.
_ESCAPES = {i: "\\x%02x" % i for i in range(32) if i != 9}
_ESCAPES.update({10: "\\n", 13: "\\r", 127: "\\x7f"})


def one_line(text: str) -> str:
    """text with CR, LF and the other control characters (tab aside) escaped."""
    return text.translate(_ESCAPES)


class _OneLineFormatter(logging.Formatter):
    """The message on one line; a traceback (our own text) keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return one_line(super().formatMessage(record))


# Tokens replaced by a reload stay masked: a line about the old agent may still be on its way.
_MAX_SECRETS = 16


class AsteriskLogHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.host = None
        self._recent: List[str] = []   # in order of registration, newest last
        self._secrets_lock = threading.Lock()
        self.setFormatter(_OneLineFormatter("%(message)s"))

    def set_secrets(self, secrets) -> None:
        """The secrets in use now; earlier ones stay masked too (up to a few)."""
        with self._secrets_lock:
            # A new list, never one changed in place: redact() reads it without the lock.
            recent = list(self._recent)
            for secret in secrets:
                if not secret:
                    continue
                if secret in recent:
                    recent.remove(secret)
                recent.append(secret)
            self._recent = recent[-_MAX_SECRETS:]

    def redact(self, text: str) -> str:
        return scrub(text, self._recent)

    def emit(self, record: logging.LogRecord) -> None:
        host = self.host
        if host is None:
            return
        try:
            if record.levelno >= logging.ERROR:
                level = hostapi.LOG_ERROR
            elif record.levelno >= logging.WARNING:
                level = hostapi.LOG_WARNING
            elif record.levelno >= logging.INFO:
                level = hostapi.LOG_NOTICE
            elif record.levelno >= VERBOSE:
                level = hostapi.LOG_VERBOSE
            else:
                level = hostapi.LOG_DEBUG
            host.log(level, self.redact(self.format(record)), os.path.basename(record.pathname),
                     record.lineno, record.funcName or "")
        except Exception:
            # Never raise into the caller, never print: a broken log line is dropped.
            pass


_handler = AsteriskLogHandler()


def install_log_handler(host) -> AsteriskLogHandler:
    """Route all Python logging to this host (replacing the previous load's host)."""
    root = logging.getLogger()
    if _handler not in root.handlers:
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(_handler)
    root.setLevel(logging.DEBUG)
    # urllib3's debug lines are one per request: keep its warnings only.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    # No last-resort printing to Asterisk's stderr.
    logging.lastResort = None
    _handler.host = host
    return _handler


def detach_log_handler() -> None:
    _handler.host = None


def set_secrets(*secrets: str) -> None:
    _handler.set_secrets(secrets)


def redact(text: str) -> str:
    """Mask every registered secret in text: for anything that reaches Asterisk without
    going through logging (tracebacks the bridge formats itself, CLI and AMI text)."""
    return _handler.redact(text)
