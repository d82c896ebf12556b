"""default: after the rolling upgrade of engine1 (canary) and engine2 from 2.2 to 2.4.

Checked on the hosts: the engine runs 2.4 under systemd, from the settings file the module
rewrote; the job database has the 2.4 schema; the long task that was running when the upgrade
began ran through the engine's restart and was recorded done; new jobs get the next job id; the
backup taken before the switch is there with its checksum and manifest; the canary went first.
"""

from __future__ import annotations

import re

import testinfra

from tractor_checks import BACKUP_DIR, INSTALL_DROPIN, OWNER, SITE_UNIT, Engine, backups, exec_start, starts_install

HOSTS = ["engine1", "engine2"]


def test_engine_serves_2_4_under_systemd(host, engine):
    status = engine.status()
    assert (status["version"], status["schema-version"]) == ("2.4", "2.2-4")  # 2.4 keeps the 2.2 schema (fact sheet §8)

    unit = host.service("tractor-engine")
    assert unit.is_running and unit.is_enabled
    main_pid = host.check_output("systemctl show -p MainPID --value tractor-engine")
    # The unit's ExecStart is `sh -c 'exec tractor-engine ...'`, so MainPID is the engine itself.
    assert int(main_pid) == status["pid"]

    # systemd itself says it starts 2.4: the module's drop-in reset ExecStart to the 2.4 install.
    assert starts_install(host, "2.4"), exec_start(host)
    assert host.file(INSTALL_DROPIN).exists
    # The unit stays the one the site has: engine1 the one installed from 2.2, engine2 one the
    # site wrote itself with the 2.2 install hard-coded in ExecStart.
    if host.backend.hostname == "engine2":
        assert "ExecStart=/opt/pixar/Tractor-2.2/bin/tractor-engine" in host.file(SITE_UNIT).content_string
    else:
        assert "Tractor 2.2" in host.file("/usr/lib/systemd/system/tractor-engine.service").content_string

    assert host.package("pixar-tractor-2.4").is_installed
    assert host.package("pixar-tractor-2.2").is_installed  # kept for a downgrade

    params = engine.params("2.4")
    assert params["schema-version"] == "2.2-4"


def test_long_task_ran_through_the_upgrade_and_was_recorded_done(host, engine):
    job = engine.job("long render")
    tasks = engine.wait_tasks(job["jid"], "done", timeout=300)
    assert [t["state"] for t in tasks] == ["done"]
    log = engine.cmd_log(OWNER, job["jid"])
    start = int(re.search(r"^start (\d+)$", log, re.M).group(1))
    end = int(re.search(r"^end (\d+)$", log, re.M).group(1))
    assert "engine serves 2.4" in log
    # The new engine started while the task ran: it was started under 2.2 and finished under 2.4.
    new_engine_start = engine.status()["starttime"]
    assert start < new_engine_start <= end, (start, new_engine_start, end, log)
    # The blade kept running through the upgrade: the engine's restart does not restart it.
    assert host.service("tractor-blade").is_running
    blade_since = int(host.check_output(
        "date -d \"$(systemctl show -p ActiveEnterTimestamp --value tractor-blade)\" +%s"))
    assert blade_since <= start


def test_job_ids_continue(engine):
    before = max(j["jid"] for j in engine.jobs())
    long_jid = engine.job("long render")["jid"]
    jid = engine.spool("2.4", "verify: next job id", ["/usr/local/bin/render-sim", "--seconds", "0"])
    assert jid == before + 1 and jid > long_jid
    engine.wait_tasks(jid, "done", timeout=120)


def test_backup_with_manifest_taken_before_the_switch(host, engine):
    name = host.backend.hostname
    found = backups(host, name)
    assert found, f"no backup in {BACKUP_DIR}/{name}"
    newest = found[-1]
    manifest = newest["manifest"]
    assert manifest is not None, f"{newest['path']}: no manifest"
    assert str(manifest.get("schema_version")) == "2.2-4"
    assert str(manifest.get("sha256")) == newest["sha256"]
    assert host.file(newest["path"]).size > 0
    digest = host.check_output(f"sha256sum {newest['path']}").split()[0]
    assert digest == newest["sha256"]
    # The long job was in the database when it was backed up.
    assert int(manifest["jidcounter"]) >= engine.job("long render")["jid"]


def test_canary_first_then_the_rest():
    """engine1 was upgraded (and healthy) before engine2 was even stopped for its backup."""
    one = testinfra.get_host("podman://engine1")
    two = testinfra.get_host("podman://engine2")
    engine1_started = Engine(one).status()["starttime"]
    engine2_backup = backups(two, "engine2")[-1]["path"]
    engine2_backup_time = int(two.check_output(f"stat -c %Y {engine2_backup}"))
    assert engine1_started <= engine2_backup_time, (engine1_started, engine2_backup_time)


def test_no_lock_left_behind(host):
    assert not host.file("/var/spool/tractor/.renderfarm-tractor.lock").exists
