"""backup_restore: after backup (converge), the loss of the job database and the restore.

Checked on the host, against what disaster.yml recorded right before the database was destroyed:
the job table (jobs and their tasks), the job parameters (jidcounter, schema-version) and every
command log are identical; the engine serves again under systemd; the backup has its checksum
and manifest and was verified.
"""

from __future__ import annotations

import json

from tractor_checks import backups

VOLATILE_TASK_KEYS = {"blade"}


def before(host) -> dict:
    return json.loads(host.file("/var/lib/molecule/before-disaster.json").content_string)


def test_engine_serves_again_under_systemd(host, engine):
    status = engine.status()
    assert (status["version"], status["schema-version"]) == ("2.2", "2.2-4")
    assert host.service("tractor-engine").is_running
    assert int(host.check_output("systemctl show -p MainPID --value tractor-engine")) == status["pid"]


def test_job_table_identical(host, engine):
    saved = before(host)
    assert engine.jobs() == saved["jobs"]
    for jid, tasks in saved["tasks"].items():
        assert engine.tasks(int(jid)) == tasks


def test_jidcounter_and_schema_identical(host, engine):
    saved = before(host)["params"]
    now = engine.params_api()
    for key in ("jidcounter", "schema-version"):
        assert now.get(key) == saved.get(key), key


def test_command_logs_identical(host):
    saved = before(host)["logs"]
    assert saved, "no command logs were recorded before the disaster"
    for path, digest in saved.items():
        assert host.check_output(f"sha256sum {path}").split()[0] == digest, path
    now = set(host.check_output("find /var/spool/tractor/cmd-logs -type f").split())
    assert now == set(saved)


def test_the_backup_has_checksum_and_manifest(host):
    found = backups(host, host.backend.hostname)
    assert len(found) == 1, found  # converge's backup; check mode wrote none
    manifest = found[0]["manifest"]
    assert manifest and str(manifest["sha256"]) == found[0]["sha256"]
    assert host.check_output(f"sha256sum {found[0]['path']}").split()[0] == found[0]["sha256"]
    assert int(manifest["jidcounter"]) == int(before(host)["params"]["jidcounter"])
