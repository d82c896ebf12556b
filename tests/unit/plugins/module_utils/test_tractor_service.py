"""tractor_service: which install a unit or init script starts, and the drop-in that changes it."""

from __future__ import annotations

import pytest

from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_service as ts

NEW = "/opt/pixar/Tractor-2.4"


@pytest.mark.parametrize("exec_start, expected", [
    # as a site writes it, the version hard-coded
    ("/opt/pixar/Tractor-2.2/bin/tractor-engine --configdir=/opt/pixar/config --log=/var/log/tractor-engine.log",
     NEW + "/bin/tractor-engine --configdir=/opt/pixar/config --log=/var/log/tractor-engine.log"),
    # ArtFX's 2.4 unit passes $OPTIONS (fact sheet 7.3)
    ("/opt/pixar/Tractor-2.2/bin/tractor-engine $OPTIONS", NEW + "/bin/tractor-engine $OPTIONS"),
    # through a shell, as the real 2.2 journal shows (LOG-22), with an escaped $ and a default
    ("/bin/sh -c 'exec \"$${TRACTOR_INSTALL_DIR:-/opt/pixar/Tractor-2.2}/bin/tractor-engine\" --configdir=\"$${C}\"'",
     "/bin/sh -c 'exec \"" + NEW + "/bin/tractor-engine\" --configdir=\"$${C}\"'"),
    ("/bin/bash -c \"$TRACTOR_DIR/bin/tractor-engine --daemon\"", "/bin/bash -c \"" + NEW + "/bin/tractor-engine --daemon\""),
])
def test_rewrite_exec_start(exec_start, expected):
    unit = "[Unit]\nDescription=x\n[Service]\nType=simple\nExecStart=%s\n[Install]\nWantedBy=multi-user.target\n" % exec_start
    assert ts.rewrite_exec_start(unit, NEW + "/") == expected


def test_dropins_reset_and_override_exec_start():
    cat = ("# /usr/lib/systemd/system/tractor-engine.service\n[Service]\nExecStart=/opt/pixar/Tractor-2.1/bin/tractor-engine\n"
           "# /etc/systemd/system/tractor-engine.service.d/10-site.conf\n[Service]\nExecStart=\n"
           "ExecStart=/opt/pixar/Tractor-2.2/bin/tractor-engine --debug\n")
    assert ts.unit_exec_start(cat) == ["/opt/pixar/Tractor-2.2/bin/tractor-engine --debug"]
    assert ts.rewrite_exec_start(cat, NEW) == NEW + "/bin/tractor-engine --debug"
    text = ts.dropin_text(NEW + "/bin/tractor-engine --debug")
    assert ts.unit_exec_start(cat + text) == [NEW + "/bin/tractor-engine --debug"]
    assert text.splitlines()[-3:] == ["[Service]", "ExecStart=", "ExecStart=" + NEW + "/bin/tractor-engine --debug"]


@pytest.mark.parametrize("unit, why", [
    ("[Service]\nExecStart=/usr/local/sbin/start-tractor\n", "names no .../bin/tractor-engine"),
    ("[Service]\nExecStart=/opt/a/Tractor-2.2/bin/tractor-engine && /opt/b/Tractor-2.4/bin/tractor-engine\n",
     "names more than one tractor-engine"),
    ("[Service]\nExecStart=\n", "has 0 ExecStart lines"),
    ("[Service]\nExecStart=/a/bin/tractor-engine\nExecStart=/b/bin/tractor-engine\n", "has 2 ExecStart lines"),
    ("[Unit]\nExecStart=/opt/pixar/Tractor-2.2/bin/tractor-engine\n", "has 0 ExecStart lines"),
    ("[Service]\nExecStart=/opt/pixar/Tractor-2.2/bin/tractor-engine-wrapper\n", "names no .../bin/tractor-engine"),
])
def test_units_that_cannot_be_steered(unit, why):
    with pytest.raises(ts.ServiceError, match=why.replace(".", r"\.")):
        ts.rewrite_exec_start(unit, NEW)


def test_show_runs():
    show = "ExecStart={ path=/bin/sh ; argv[]=/bin/sh -c exec \"/opt/pixar/Tractor-2.4/bin/tractor-engine\" ; }"
    assert ts.show_runs(show, NEW)
    assert not ts.show_runs(show, "/opt/pixar/Tractor-2.2")
    assert not ts.show_runs(show.replace("tractor-engine", "tractor-engine2"), NEW)


def test_sysv_install_variable():
    script = '#!/bin/sh\nTRACTOR_INSTALL_DIR=/opt/pixar/Tractor-2.2\n. /etc/sysconfig/pixar\nprogram="$TRACTOR_INSTALL_DIR/bin/tractor-engine"\n'
    assert ts.sysv_install_variable(script, "/etc/sysconfig/pixar") == "TRACTOR_INSTALL_DIR"
    assert ts.sysv_install_variable(script.replace("$TRACTOR_INSTALL_DIR", "${TD:-/opt/x}"), "/etc/sysconfig/pixar") == "TD"
    # a comment naming a path is not what the script runs
    assert ts.sysv_install_variable("# /opt/pixar/Tractor-2.2/bin/tractor-engine\n" + script, "/etc/sysconfig/pixar") \
        == "TRACTOR_INSTALL_DIR"
    hard_coded = script.replace("$TRACTOR_INSTALL_DIR", "/opt/pixar/Tractor-2.2")
    with pytest.raises(ts.ServiceError, match="runs /opt/pixar/Tractor-2.2/bin/tractor-engine itself"):
        ts.sysv_install_variable(hard_coded, "/etc/sysconfig/pixar", "/opt/pixar/Tractor-2.4")
    # it already starts the install wanted: nothing to change
    assert ts.sysv_install_variable(hard_coded, "/etc/sysconfig/pixar", "/opt/pixar/Tractor-2.2/") is None
    with pytest.raises(ts.ServiceError, match="does not mention /etc/sysconfig/tractor-settings"):
        ts.sysv_install_variable(script, "/etc/sysconfig/tractor-settings")
    assert ts.sysv_install_variable(script, "/srv/site/pixar") == "TRACTOR_INSTALL_DIR"   # the same file name
    with pytest.raises(ts.ServiceError, match="several variables"):
        ts.sysv_install_variable(script + 'old="$OLD/bin/tractor-engine"\n', "/etc/sysconfig/pixar")
