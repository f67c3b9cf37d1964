"""The asterisk_consul package. The C module (res_discovery_consul.so) is built by the Makefile
with the same Python, which it then embeds."""

from setuptools import setup

setup(
    name="asterisk-consul",
    version="0.1.0",
    description="Consul service discovery for Asterisk (the Python side of res_discovery_consul.so)",
    license="GPL-2.0-only",
    packages=["asterisk_consul"],
    python_requires=">=3.9",
    # cffi builds the module and runs its embedded side; requests talks to Consul.
    install_requires=["cffi>=1.15", "requests>=2.25"],
)
