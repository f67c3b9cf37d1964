"""Applications that stop part of the way, for the memory breakdown of `make bench`.

Each is built into its own module (build_module(version, app="memstages:...")) and loaded into
a fresh Asterisk, since the interpreter outlives every unload: the RSS an Asterisk gains at load
with each one, against the real module's, says what Python itself, requests and the package cost.
"""


class PythonOnly:
    """The interpreter, cffi and the bridge: no application code, no thread, no import."""

    cli_commands = ()
    ami_actions = ()
    http_routes = ()

    def __init__(self, host):
        self.host = host

    def load(self):
        return True

    def unload(self):
        pass

    def reload(self):
        return True

    def shutdown(self):
        pass


class PythonAndPackage(PythonOnly):
    """The above plus every module of the package imported (no thread, no Consul)."""

    def load(self):
        import asterisk_consul.module  # noqa: F401
        import asterisk_consul.registrar.worker  # noqa: F401
        return True


class PythonPackageAndRequests(PythonAndPackage):
    """The above plus requests, imported the way the module's transport imports it."""

    def load(self):
        super().load()
        from asterisk_consul.consul import transport
        transport._import_requests()
        return True
