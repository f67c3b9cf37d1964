"""Consul service discovery for Asterisk, embedded through the res_discovery_consul C shim."""

__version__ = "0.1.0"
