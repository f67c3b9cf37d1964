"""Consul service discovery for Asterisk, embedded through the res_discovery_consul C shim."""

import os as _os

__version__ = "0.2.0"


def _python_files():
    """(path, size, mtime) of every .py file of the package as it is on disk now."""
    root = _os.path.dirname(_os.path.abspath(__file__))
    found = []
    for folder, dirs, files in _os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                path = _os.path.join(folder, name)
                stat = _os.stat(path)
                found.append((path, stat.st_size, stat.st_mtime_ns))
    return sorted(found)


_IMPORTED_FILES = _python_files()


def installed_files_changed() -> bool:
    """Whether the package on disk is no longer the one imported (a new version was installed
    over it). The shim's init code asks at every load and, if so, imports the package anew."""
    try:
        return _python_files() != _IMPORTED_FILES
    except OSError:
        return True
