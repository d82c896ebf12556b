"""The engine-process helpers shared by tractor_engine and tractor_lock."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_process as tp
from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_lease


def test_engine_argv_and_version_from_argv():
    emulated = ["/usr/bin/python3", "-m", "tractor_emulator.launch", "--tractor-version", "2.2", "--install-root",
                "/opt/pixar/Tractor-2.2", "tractor-engine", "--configdir", "/cfg"]
    assert tp.is_engine_argv(emulated) and tp.version_from_argv(emulated) == "2.2"
    assert tp.is_engine_argv(["/opt/pixar/Tractor-2.4/bin/tractor-engine"])
    assert tp.version_from_argv(["/opt/pixar/Tractor-2.4/bin/tractor-engine"]) == "2.4"
    assert not tp.is_engine_argv(["/bin/sh", "/etc/init.d/tractor-engine.sh", "start"])
    assert not tp.is_engine_argv(["/opt/pixar/Tractor-2.4/bin/tractor-dbctl", "--start-for-engine"])
    assert tp.version_from_argv(["/usr/local/tractor/bin/tractor-engine"]) is None


def test_pid_alive_and_zombies():
    assert tp.pid_alive(os.getpid())
    assert not tp.pid_alive(None) and not tp.pid_alive(0)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert tp.pid_alive(proc.pid)
    proc.kill()
    deadline = time.monotonic() + 5
    while os.path.exists("/proc/%d" % proc.pid) and tp.pid_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.path.exists("/proc/%d" % proc.pid)  # not reaped yet: a zombie
    assert not tp.pid_alive(proc.pid)
    proc.wait()
    assert not tp.pid_alive(proc.pid)


def test_tail_file(tmp_path):
    log = tmp_path / "engine.log"
    log.write_text("".join("line %d\n\n" % n for n in range(40)))
    assert tp.tail_file(str(log), 3) == ["line 37", "line 38", "line 39"]
    assert tp.tail_file(str(tmp_path / "missing")) == []
    assert tp.tail_file(None) == []


# -- started ---------------------------------------------------------------------------------------


def test_lease_process_check_uses_the_same_rule():
    assert tractor_lease.process_runs(os.getpid(), None) and tractor_lease.process_runs(str(os.getpid()), "")
    assert tractor_lease.process_runs("not a pid", None) is None  # unknown: never stale on a guess
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert tractor_lease.process_runs(proc.pid, None) is False
