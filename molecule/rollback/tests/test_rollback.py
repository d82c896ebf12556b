"""rollback: after renderfarm.tractor.upgrade failed to switch to 2.4 and rolled back.

Checked on the host: the 2.2 engine serves the old job database (same jobs, schema 2.2-4, the
job counter of before) under systemd, from the settings file pointed back at 2.2; the failed 2.4
engine's log is kept beside the backup the rollback restored; no lock is left behind. And on the
controller: the run's report says "rolled back".
"""

from __future__ import annotations

import glob
import json
import os

from tractor_checks import BACKUP_DIR, DATA_DIR, INSTALL_DROPIN, SITE_UNIT, STATE_PREPARED, backups, exec_start, starts_install


def prepared(host) -> dict:
    return json.loads(host.file(STATE_PREPARED).content_string)["engines"][host.backend.hostname]


def test_old_version_serves_under_systemd(host, engine):
    status = engine.status()
    assert (status["version"], status["schema-version"]) == ("2.2", "2.2-4")
    assert host.service("tractor-engine").is_running
    assert int(host.check_output("systemctl show -p MainPID --value tractor-engine")) == status["pid"]
    # The site's own unit hard-codes 2.2; the upgrade's drop-in pointed it at 2.4, and the
    # rollback pointed the drop-in back at 2.2. The unit file itself was never edited.
    assert starts_install(host, "2.2"), exec_start(host)
    assert "ExecStart=/opt/pixar/Tractor-2.2/bin/tractor-engine" in host.file(SITE_UNIT).content_string
    assert "Tractor-2.2/bin/tractor-engine" in host.file(INSTALL_DROPIN).content_string


def test_old_data_is_served(host, engine):
    before = prepared(host)
    assert [(j["jid"], j["title"]) for j in engine.jobs()] == [(j["jid"], j["title"]) for j in before["jobs"]]
    assert engine.params("2.2")["jidcounter"] == before["params"]["jidcounter"]
    assert engine.params("2.2")["schema-version"] == "2.2-4"


def test_failed_engine_log_kept_beside_the_backup(host):
    name = host.backend.hostname
    found = backups(host, name)
    assert found and found[-1]["manifest"]["schema_version"] == "2.2-4"
    evidence = host.check_output(f"ls -1 {BACKUP_DIR}/{name}/").split()
    assert any(name.startswith("failed-upgrade-to-2.4-") for name in evidence), evidence


def test_no_lock_left_behind(host):
    assert not host.file(f"{DATA_DIR}/.renderfarm-tractor.lock").exists


def test_report_says_rolled_back():
    reports = sorted(glob.glob(os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "reports", "upgrade-*", "report.json")),
                     key=os.path.getmtime)
    assert reports
    report = json.load(open(reports[-1]))
    assert not report["check_mode"]
    entry = {e["engine"]: e for e in report["engines"]}["rollback-engine"]
    assert entry["result"] == "rolled back" and entry["rollback"] is True
    # how the job database came back, and why (kept only when its schema was the backup's)
    database = entry["database"]
    assert database["path"] in ("kept", "restored") and database["reason"], database
    assert database["path"] == "restored" or database["schema_live"] == database["schema_backup"], database
