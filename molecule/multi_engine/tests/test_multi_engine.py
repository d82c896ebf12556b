"""multi_engine: production 2.2 and staging 2.4 on one machine; a colliding third engine refused.

Checked on the machine (render01): both engines answer with their own version, port, job database
port and data directory; staging was installed from its .deb by the role and runs outside
production's systemd unit; production was never restarted (same process as after prepare) and its
unit settings still select 2.2. The third engine (side_effect collide.yml, after these tests) is
checked by ../collided/.
"""

from __future__ import annotations

import json
import re

from tractor_checks import INSTALL_DROPIN, STATE_CONVERGED, STATE_PREPARED, Engine, exec_start


def production(host) -> Engine:
    return Engine(host, "127.0.0.1:80", "/opt/pixar/config", "/var/spool/tractor")


def staging(host) -> Engine:
    return Engine(host, "127.0.0.1:8080", "/opt/pixar/config-staging", "/var/spool/tractor-staging")


def saved(host, path: str) -> dict:
    return json.loads(host.file(path).content_string)["engines"]


def test_production_2_2_untouched_under_systemd(host):
    status = production(host).status()
    assert (status["version"], status["schema-version"]) == ("2.2", "2.2-4")
    # The same engine process as right after prepare: bringing up staging never restarted it.
    assert status["pid"] == saved(host, STATE_PREPARED)["render01"]["pid"]
    assert int(host.check_output("systemctl show -p MainPID --value tractor-engine")) == status["pid"]
    settings = host.file("/etc/sysconfig/tractor-engine").content_string
    assert re.search(r"^TRACTOR_INSTALL_DIR=/opt/pixar/Tractor-2\.2$", settings, re.M), settings
    assert re.search(r"^TRACTOR_CONFIG_DIR=/opt/pixar/config$", settings, re.M), settings
    # the module never pointed production's unit anywhere: no drop-in, the unit's own ExecStart
    assert not host.file(INSTALL_DROPIN).exists, exec_start(host)


def test_staging_2_4_beside_it_with_its_own_everything(host):
    status = staging(host).status()
    assert (status["version"], status["schema-version"]) == ("2.4", "2.2-4")  # 2.4 keeps the 2.2 schema (fact sheet §8)
    # Installed by the role from the .deb, started directly (not by production's unit).
    assert host.package("pixar-tractor-2.4").is_installed
    assert status["pid"] != int(host.check_output("systemctl show -p MainPID --value tractor-engine"))
    pidfile = host.file("/var/spool/tractor-staging/tractor-engine.pid")
    assert pidfile.exists and int(pidfile.content_string.strip()) == status["pid"]
    # Its own job database, port and data directory.
    assert host.file("/var/spool/tractor-staging/psql/PG_VERSION").exists
    for port in (80, 8080, 9876, 9877):
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening or \
            host.socket(f"tcp://0.0.0.0:{port}").is_listening, port
    config = host.file("/opt/pixar/config-staging/tractor.config").content_string
    assert "8080" in config and "/var/spool/tractor-staging" in config and "9181" in config
    db_config = host.file("/opt/pixar/config-staging/db.config").content_string
    assert "9877" in db_config


def test_engines_serve_their_own_jobs(host):
    prod_jobs = [j["title"] for j in production(host).jobs()]
    assert prod_jobs == ["production job (queued on 2.2)"]
    assert staging(host).jobs() == []
