"""Test bed for asterisk-consul: real Consul and real Asterisk (16 and 22) on 127.0.0.1.

install.py fetches them into a cache outside the work tree; consul.py, asterisk.py and peers.py
start and stop them; fixtures.py is the pytest plugin that ties them to tests.
"""
