"""The asterisk_consul package. The C module (res_discovery_consul.so) is built by the Makefile
with the same Python, which it then embeds."""

import re
from pathlib import Path

from setuptools import find_packages, setup

# One version, asterisk_consul.__version__; the shim is built with it too (Makefile).
VERSION = re.search(r'^__version__ = "([^"]+)"$',
                    (Path(__file__).parent / "asterisk_consul" / "__init__.py").read_text(),
                    re.M).group(1)

setup(
    name="asterisk-consul",
    version=VERSION,
    description="Consul service discovery for Asterisk (the Python side of res_discovery_consul.so)",
    license="GPL-2.0-only",
    packages=find_packages(include=["asterisk_consul", "asterisk_consul.*"]),
    python_requires=">=3.9",
    # cffi builds the module and runs its embedded side; requests talks to Consul.
    install_requires=["cffi>=1.15", "requests>=2.25"],
)
