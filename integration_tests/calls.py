"""Calls held up in a test bed Asterisk, for tests that need active channels.

    ast, flag = asterisk_with_calls(asterisk_factory, version, module_so)
    hold_call(ast)          # a Local channel pair answering and waiting: 2 active channels
    flag.touch()            # every held call ends within 0.2 s

While Asterisk shuts down gracefully neither the CLI nor AMI takes commands, so a held call
ends by itself once the file `flag` exists (and after about 2 minutes at the latest).
"""

import re

from integration_tests import discovery as d

HOLD_DIALPLAN = """[hold]
exten => s,1,Answer()
 same => n,Set(i=0)
 same => n(loop),Wait(0.2)
 same => n,Set(i=$[${i} + 1])
 same => n,GotoIf($[${STAT(e,%(flag)s)} | ${i} > 600]?done:loop)
 same => n(done),Hangup()
"""
MODULES = ["pbx_config.so", "func_env.so"]


def asterisk_with_calls(asterisk_factory, version, module_so, modules=(), start=True, **kwargs):
    """An Asterisk able to hold calls (not started if start=False), and the flag that ends
    them."""
    ast = asterisk_factory(version, install=[module_so], modules=MODULES + list(modules),
                           start=False, **kwargs)
    flag = ast.host_dir / "end-the-calls"
    ast.write_config("extensions.conf", HOLD_DIALPLAN % {"flag": ast.to_asterisk_path(flag)})
    if start:
        ast.start()
    return ast, flag


def active_channels(ast):
    match = re.search(r"^(\d+) active channels?", ast.rx("core show channels count"), re.M)
    return int(match.group(1)) if match else 0


def hold_call(ast, channels_after=None):
    """Originate a held call (a Local channel pair: two more active channels)."""
    expected = (channels_after if channels_after is not None else active_channels(ast) + 2)
    answer = ast.ami("Originate", Channel="Local/s@hold", Application="Wait", Data="300",
                     Async="true")
    assert answer.get("Response") == "Success", answer
    d.wait_until(lambda: active_channels(ast) >= expected, timeout=10, interval=0.1,
                 what="%d active channels" % expected)
