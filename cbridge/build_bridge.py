"""Generate the cffi (embedding mode) half of res_discovery_consul.so.

Run by the Makefile with the Python the module will embed:
    PYTHON cbridge/build_bridge.py BUILD_DIR [--app MODULE:CLASS [--app-path DIR]]
--app builds the shim around another application (the bridge's own tests use a probe); a
module is built around asterisk_consul.module:Application. It writes BUILD_DIR/_res_discovery_consul_cffi.c and the compiler and linker flags for that
Python (BUILD_DIR/python.cflags, BUILD_DIR/python.ldflags). Files are rewritten only when
their content changes, so make rebuilds only what is needed.
"""

import argparse
import os
import re
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
CFFI_MODULE = "_res_discovery_consul_cffi"
DEFAULT_APP = "asterisk_consul.module:Application"


def fail(message):
    sys.stderr.write("error: %s\n" % message)
    sys.exit(1)


def cffi_hint():
    """How to get cffi for this Python: pip in a virtualenv; never pip into a distribution's
    Python that refuses it (PEP 668: Debian's and Ubuntu's)."""
    if sys.prefix != sys.base_prefix:
        return "install it: %s -m pip install cffi" % sys.executable
    venv = "or build with PYTHON=<a virtualenv's python with cffi> (python3 -m venv DIR; DIR/bin/pip install cffi requests)"
    if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")):
        return "install it with the system's packages (Debian/Ubuntu: apt install python3-cffi), " + venv
    return "install it (%s -m pip install cffi; Debian/Ubuntu: apt install python3-cffi), %s" % (sys.executable, venv)


try:
    import cffi
except ImportError:
    fail("%s cannot import cffi: %s" % (sys.executable, cffi_hint()))


def read(name):
    with open(os.path.join(HERE, name)) as f:
        return f.read()


def c_string(text):
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def api_declarations():
    """Split bridge_api.h into what C offers Python (cdef) and what Python implements (embedding_api)."""
    header = read("bridge_api.h")
    offered, marker, implemented = header.partition("/* ---- Asterisk -> Python")
    if not marker:
        fail("bridge_api.h has lost its 'Asterisk -> Python' section marker")

    def plain(text):
        # cffi takes no preprocessor lines.
        return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))

    return plain(offered), plain(marker + implemented)


# Runs inside Asterisk each time the module is mapped. It must never raise: a failing cffi
# init leaves the module stuck as "Not Running" until Asterisk restarts.
INIT_CODE = """
from %(module)s import ffi, lib
try:
    import sys
    for path in %(app_path)r:
        if path not in sys.path:
            sys.path.insert(0, path)
    from asterisk_consul import bridge
    from %(app_module)s import %(app_class)s as application
    bridge.attach(ffi, lib, application)
except BaseException:
    try:
        import traceback
        lib.rdc_host_log(4, b"build_bridge.py", 0, b"init",
            ("res_discovery_consul: the Python side did not start (is asterisk_consul installed for "
             + %(python)r + "?)\\n" + traceback.format_exc()).encode("utf-8", "replace"))
    except BaseException:
        pass
"""


def python_flags():
    config = sysconfig.get_config_var
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        fail("Python.h not found in %s: install the Python headers (on Debian: apt install python3-dev)" % include)
    libdir = config("LIBDIR")
    ldversion = config("LDVERSION") or config("VERSION")
    if not config("Py_ENABLE_SHARED") and not os.path.exists(os.path.join(libdir, "libpython%s.so" % ldversion)):
        fail("%s has no shared libpython (libpython%s.so): embedding needs one "
             "(on Debian: apt install python3-dev; pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)" % (sys.executable, ldversion))
    soname = config("INSTSONAME") or "libpython%s.so.1.0" % ldversion
    cflags = "-I%s" % include
    ldflags = "-L%s -Wl,-rpath,%s -lpython%s -ldl" % (libdir, libdir, ldversion)
    return cflags, ldflags, soname


def write_if_changed(path, text):
    try:
        with open(path) as f:
            if f.read() == text:
                return
    except OSError:
        pass
    with open(path, "w") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser(description="Generate the cffi half of res_discovery_consul.so")
    parser.add_argument("build_dir")
    parser.add_argument("--app", default=DEFAULT_APP, help="MODULE:CLASS of the application")
    parser.add_argument("--app-path", default="", help="a directory to import it from")
    args = parser.parse_args()
    build_dir = args.build_dir
    app_module, _, app_class = args.app.partition(":")
    if not app_module or not app_class.isidentifier():
        fail("--app must be MODULE:CLASS, not %r" % args.app)
    os.makedirs(build_dir, exist_ok=True)
    cflags, ldflags, soname = python_flags()
    # The interpreter is told it is this executable (not the symlink's target), so a
    # virtualenv's pyvenv.cfg is found and its packages are used.
    executable = os.path.abspath(sys.executable)

    offered, implemented = api_declarations()
    externpy = " ".join("X(%s)" % name for name in re.findall(r"\b(rdc_py_\w+)\s*\(", implemented))
    ffi = cffi.FFI()
    ffi.cdef(offered)
    ffi.embedding_api(implemented)
    ffi.set_source(
        CFFI_MODULE,
        "#define RDC_PYTHON_EXECUTABLE %s\n#define RDC_LIBPYTHON %s\n#define RDC_EXTERNPY_LIST %s\n"
        "#include \"bridge_api.h\"\n%s"
        % (c_string(executable), c_string(soname), externpy, read("pyinit.c")),
    )
    ffi.embedding_init_code(INIT_CODE % {
        "module": CFFI_MODULE, "python": executable, "app_module": app_module,
        "app_class": app_class, "app_path": [args.app_path] if args.app_path else []})

    generated = os.path.join(build_dir, CFFI_MODULE + ".c.tmp")
    ffi.emit_c_code(generated)
    with open(generated) as f:
        source = f.read()
    os.unlink(generated)
    write_if_changed(os.path.join(build_dir, CFFI_MODULE + ".c"), source)
    write_if_changed(os.path.join(build_dir, "python.cflags"), cflags + "\n")
    write_if_changed(os.path.join(build_dir, "python.ldflags"), ldflags + "\n")


if __name__ == "__main__":
    main()
