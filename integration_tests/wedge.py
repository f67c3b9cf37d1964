"""Wedge the embedded interpreter of a test bed Asterisk, as a stuck thread would: gdb calls
PyGILState_Ensure() in the process, so the GIL is taken and never given back.

    wedge_interpreter(ast)     # returns once gdb detached; the process runs on, its Python stuck

The gdb is the sid chroot's (the test bed installs it there; bookworm's gdb 13 cannot call a
function on CPUs with AMX: "Couldn't write extended state status"). It serves both versions:
its sysroot is /proc/<pid>/root, the root the target process sees (the machine's for Asterisk
16, the chroot for 22), so it finds the very libpython the process mapped.
"""

import subprocess

from integration_tests.testbed import paths
from integration_tests.testbed.asterisk import sid_command

GDB = "/usr/bin/gdb"  # inside the sid chroot
CALL = "call (int)PyGILState_Ensure()"


class WedgeError(AssertionError):
    pass


def gdb_available():
    return (paths.sid_root() / GDB.lstrip("/")).exists()


def wedge_interpreter(ast, timeout=60):
    """Take the GIL in `ast`'s process from gdb's call and leave it taken. Returns gdb's output."""
    if not gdb_available():
        raise WedgeError("no gdb in the sid chroot (%s): run `make -C integration_tests "
                         "test-setup`" % paths.sid_root())
    argv = sid_command([GDB, "-nx", "-batch", "-p", str(ast.pid),
                        "-ex", "set sysroot /proc/%d/root" % ast.pid,
                        "-ex", "set confirm off",
                        "-ex", CALL])
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace",
                          timeout=timeout)
    out = proc.stdout
    # gdb prints the call's value as "$1 = <n>" (PyGILState_STATE: 0 locked, 1 unlocked).
    if proc.returncode != 0 or "$1 = " not in out:
        raise WedgeError("gdb could not call PyGILState_Ensure() in Asterisk %s (pid %d, exit "
                         "%s):\n%s" % (ast.version, ast.pid, proc.returncode, out[-3000:]))
    return out
