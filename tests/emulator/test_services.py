"""The sysVinit script shipped in <install>/lib/SystemServices starts, reports and stops the real
emulated engine (fact sheet §7.3: status exits 3 when stopped).  systemd is not PID 1 on the test
machine; the unit is exercised in the Molecule scenarios.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from tractor_sites import EngineProc

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the init script runs as root, as a service does")


def test_init_script_start_status_stop(site, installs):
    script = os.path.join(installs("2.2"), "lib", "SystemServices", "tractor-engine")
    settings = os.path.join(site.base, "pixar")
    pidfile = os.path.join(site.base, "tractor-engine.pid")
    log = os.path.join(site.base, "engine-init.log")
    with open(settings, "w", encoding="utf-8") as handle:
        handle.write(f"TRACTOR_CONFIG_DIR={site.config_dir}\n"
                     f"TRACTOR_ENGINE_PIDFILE={pidfile}\n"
                     f'TRACTOR_ENGINE_OPTIONS="--log={log}"\n'
                     "TRACTOR_STOP_TIMEOUT=60\n")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PIXAR_SYSCONFIG": settings}

    def init(action):
        return subprocess.run(["sh", script, action], capture_output=True, text=True, env=env, timeout=120)

    assert init("status").returncode == 3
    started = init("start")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        assert init("status").returncode == 0
        pid = int(open(pidfile).read())
        owner = os.stat(f"/proc/{pid}").st_uid
        assert owner == site.owner.pw_uid  # bound as root, then dropped to EngineOwner (§7.3)
        engine = EngineProc(site, None)  # not our child: the init script detached it
        reply = None
        for _ in range(100):
            try:
                status, headers, reply = engine.call("ctrl?q=status", timeout=5)
                if reply.get("rc") == 0:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert reply and headers["Server"].startswith("Pixar_Tractor/2.2 ("), open(log).read()  # §6.1
    finally:
        stopped = init("stop")
    assert stopped.returncode == 0, stopped.stdout
    assert init("status").returncode == 3
    assert "NOT running" in site.dbctl("2.2", "--status").stderr  # the engine stopped PostgreSQL
    assert "engine exit" in open(log).read()
