"""TLS to the agent: the settings (TlsConfig) and the one place that turns them into an
ssl.SSLContext. Every connection to the agent (calls and blocking queries, adapter.py) uses
`tls_context`, which builds a context once per settings and files: an agent that is down is
retried without reading the CA files again (a ca_path of the system's certificates is some 150
files).
"""

from __future__ import annotations

import os
import re
import ssl
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ..config import read_regular_file

TLS_FILE_MAX_BYTES = 1024 * 1024  # a PEM bundle of every public CA is about 220 kB
CA_PATH_MAX_FILES = 1000
_CACHE_SIZE = 4  # the settings in use, a reload's new ones, a retired client's


@dataclass(frozen=True)
class TlsConfig:
    """How to talk TLS to the agent (used for https:// addresses only)."""

    verify: bool = True       # False: the agent's certificate is not checked at all
    ca_file: str = ""         # PEM bundle of the CAs to trust ("" and no ca_path: the system's)
    ca_path: str = ""         # directory of PEM CA certificates, every file read
    client_cert: str = ""     # PEM client certificate, sent when the agent asks for one
    client_key: str = ""      # its private key
    server_name: str = ""     # name the certificate must carry ("": the host connected to)


def ca_directory_bundle(path: str, names: Optional[List[str]] = None) -> str:
    """The PEM certificates of the regular files in directory `path`, as one bundle.

    As Consul's own clients read CONSUL_CAPATH: every file, no OpenSSL hash links needed.
    Files that are not regular (FIFOs, devices), unreadable or without a certificate are
    skipped; at most CA_PATH_MAX_FILES files are read.
    """
    if names is None:
        try:
            names = sorted(os.listdir(path))
        except OSError:
            return ""
    pems: List[str] = []
    for name in names[:CA_PATH_MAX_FILES]:
        try:
            data = read_regular_file(os.path.join(path, name), TLS_FILE_MAX_BYTES)
        except (OSError, ValueError):
            continue
        if len(data) > TLS_FILE_MAX_BYTES:
            continue
        text = data.decode("ascii", "replace")
        pems += re.findall(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?"
                           r"-----END CERTIFICATE-----", text)
    return "\n".join(pems) + ("\n" if pems else "")


def _refuse_pass_phrase() -> str:
    # Called by OpenSSL instead of prompting on Asterisk's terminal for an encrypted key.
    raise ssl.SSLError("the client key is encrypted (a pass phrase would be needed): "
                       "use a key without a pass phrase")


def _stamp(path: str) -> Tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_mtime_ns, st.st_size
    except (OSError, ValueError):
        return 0, 0


def _files_stamp(tls: TlsConfig) -> Tuple:
    """What changes when a file of the settings is replaced (a reload then rebuilds)."""
    return tuple(_stamp(p) if p else (0, 0)
                 for p in (tls.ca_file, tls.ca_path, tls.client_cert, tls.client_key))


_cache: Dict[Tuple, ssl.SSLContext] = {}
_cache_lock = threading.Lock()


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """The SSL context of these settings: built the first time, then the same one while the
    settings and their files are unchanged. Raises ssl.SSLError/OSError as loading does.

    verify off: no certificate checked. Otherwise the CAs of ca_file and/or ca_path (every file
    of the directory, as Consul's CLI reads it), or the system's; the certificate must carry
    server_name when set (the caller passes it as the server hostname). The client key is never
    asked a pass phrase for (OpenSSL would prompt on Asterisk's terminal)."""
    key = (tls, _files_stamp(tls))
    with _cache_lock:
        context = _cache.get(key)
    if context is not None:
        return context
    if not tls.verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        bundle = ca_directory_bundle(tls.ca_path) if tls.ca_path else ""
        context = ssl.create_default_context(cafile=tls.ca_file or None, cadata=bundle or None)
    if tls.client_cert:
        context.load_cert_chain(tls.client_cert, tls.client_key or None,
                                password=_refuse_pass_phrase)
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = context
    return context
