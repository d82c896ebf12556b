"""The playbooks, run for real against emulated engines on this machine (local connection).

Each engine is a site of its own (config dir, data dir, ports, PostgreSQL); engines are started
and stopped by the collection itself (tractor_engine, direct service manager), blades are real
tractor-blade processes, and every outcome is checked independently of Ansible's return values:
with the emulator's tractor-dbctl, the engine's URL API and the files on disk.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest

from tractor_farm import Farm, engine_status, params, tree_digest, wait_done, wait_for
from tractor_sites import EngineProc


@pytest.fixture
def free_ports():
    from tractor_sites import free_port
    return lambda count: [free_port() for _ in range(count)]


@pytest.fixture
def farm(world, prefix, installs, ansible, tmp_path_factory):
    farm = Farm(world, prefix, installs, ansible, tmp_path_factory)
    yield farm
    farm.cleanup()


# -- backup and retention ------------------------------------------------------------------------
def test_backup_retention_and_restart(farm, site):
    farm.add("prod", site, "2.2")
    engine = farm.start("prod", "2.2")
    jid = engine.spool({"title": "j", "tasks": [{"title": "t", "argv": ["true"]}]})
    farm.play("backup", backup_keep_last=1)
    first = glob.glob(os.path.join(farm.backups, "prod", "*.tgz"))
    assert len(first) == 1
    manifest = json.load(open(first[0] + ".manifest.json"))
    assert manifest["jidcounter"] in (str(jid), jid) and manifest["schema_version"] == "2.2-4"
    status = engine_status(site)
    assert status and status["version"] == "2.2"  # the engine was running, so it runs again
    time.sleep(1.1)  # distinct backup names (second resolution)

    before = sorted(os.listdir(os.path.join(farm.backups, "prod")))
    check = farm.play("backup", check=True, backup_keep_last=1)
    assert sorted(os.listdir(os.path.join(farm.backups, "prod"))) == before  # check mode wrote nothing
    assert "Would stop the engine" in check.stdout

    # every number as the text an AWX survey (a Text question) or a CI variable sends
    farm.play("backup", backup_keep_last="1", backup_keep_days="0", backup_compression_level="1",
              tractor_engine_timeout="120", tractor_lock_lease="900", tractor_lock_stale_after="21600")
    remaining = glob.glob(os.path.join(farm.backups, "prod", "*.tgz"))
    assert len(remaining) == 1 and remaining != first  # the older one was pruned, the newest kept
    assert not os.path.exists(first[0] + ".manifest.json")
    report = farm.report("backup")
    assert report["engines"][0]["result"] == "ok" and report["engines"][0]["pruned"] == first


def test_backup_copies_while_stopped_and_archives_while_the_engine_serves(farm, site):
    farm.add("prod", site, "2.2")
    engine = farm.start("prod", "2.2")
    jid = engine.spool({"title": "j", "tasks": [{"title": "t", "argv": ["true"]}]})
    # what an interrupted run left: a finished copy and a partial one
    leftovers = [os.path.join(farm.backups, "prod", name)
                 for name in (".copy-old", ".copy-older.partial", ".copy-before-a-restart")]
    for path in leftovers:
        os.makedirs(os.path.join(path, "psql"))
    # a finished copy whose data was still in the page cache when the machine restarted: it is
    # removed, not archived (it may be incomplete)
    with open(os.path.join(leftovers[2], "renderfarm-tractor-copy.json"), "w") as handle:
        json.dump({"db_data_dir": site.db_dir, "top": "psql", "path": leftovers[2], "synced": False,
                   "boot_id": "an-earlier-boot"}, handle)
    farm.play("backup")
    assert not os.path.exists(os.path.join(farm.backups, "prod", "before-a-restart.tgz"))
    archive = glob.glob(os.path.join(farm.backups, "prod", "*.tgz"))[0]
    manifest = json.load(open(archive + ".manifest.json"))
    # The engine served again before the archive was complete: it started before the manifest,
    # the last file of a backup, was written (emulator uptime, 0.1 s steps, against the file's mtime).
    status = engine_status(site)
    engine_started = time.time() - status["uptime"]
    assert engine_started + 0.2 < os.stat(archive + ".manifest.json").st_mtime, (engine_started, manifest["created"])
    assert manifest["source"]["copy"].startswith(os.path.join(farm.backups, "prod", ".copy-"))
    assert manifest["jidcounter"] in (str(jid), jid) and manifest["params_source"] == "restore-verification"
    # no copy is left, the interrupted run's included
    assert not [name for name in os.listdir(os.path.join(farm.backups, "prod")) if name.startswith(".copy-")]
    entry = farm.report("backup")["engines"][0]
    assert entry["copy_first"] is True and 0 < float(entry["downtime"]) < float(entry["duration"]), entry


def progress_of(async_dir, backups):
    """The progress files (tractor_progress) of the async tractor_db jobs writing into ``backups``."""
    found = []
    for path in glob.glob(os.path.join(async_dir, "renderfarm-tractor-progress-*.json")):
        try:
            data = json.load(open(path))
        except (OSError, ValueError):
            continue  # replaced or removed while it was read
        if str(data.get("target") or "").startswith(backups + os.sep):
            found.append(data)
    return found


def archiving(async_dir, backups):
    """The progress of a job that is writing its archive (the engine serves again by then)."""
    return next((p for p in progress_of(async_dir, backups) if p["step"] == "writing the archive"), None)


def test_backup_shows_progress_survives_its_lost_controller_and_a_rerun_finishes_a_killed_one(farm, site):
    farm.add("prod", site, "2.2")
    engine = farm.start("prod", "2.2")
    jid = engine.spool({"title": "j", "tasks": [{"title": "t", "argv": ["true"]}]})
    engine_dir = os.path.join(farm.backups, "prod")
    async_dir = str(farm.base / "async")
    env = {"ANSIBLE_ASYNC_DIR": async_dir}
    # The archive is written at 2 MiB/s (backup_max_rate): a job database of tens of MB takes
    # well over 10 s to archive however fast the machine, long enough to see progress and act.
    # No lock option anywhere: a run whose controller (this host) and jobs are gone has a stale lock,
    # which the next run takes over by itself.
    slow = dict(backup_max_rate="2M")

    # 1. Progress lines, then the controller is lost (killed, as a dropped SSH session kills it):
    # the job goes on on the host and completes the backup.
    run = farm.start_play("backup", env=env, **slow)
    line = re.compile(r"\[prod\] tractor_db backup: writing the archive: [0-9.]+ \w+ of [0-9.]+ \w+ \(\d+ %\), \d+ s")
    wait_for(lambda: line.search(run.output()), 300, lambda: "a progress line\n" + run.output()[-3000:])
    job = archiving(async_dir, farm.backups)
    assert job is not None and 0 < job["done"] < job["total"], job
    os.kill(job["pid"], signal.SIGSTOP)  # held while the controller is killed and the state read
    try:
        run.signal_group(signal.SIGKILL)
        run.wait(60)
        assert not glob.glob(os.path.join(engine_dir, "*.tgz"))  # not written when the controller died
        assert engine_status(site)["version"] == "2.2"  # the engine already serves again
    finally:
        os.kill(job["pid"], signal.SIGCONT)
    wait_for(lambda: glob.glob(os.path.join(engine_dir, "*.tgz.manifest.json")), 300,
             "the orphaned job to finish the archive")
    first = glob.glob(os.path.join(engine_dir, "*.tgz"))
    assert len(first) == 1
    manifest = json.load(open(first[0] + ".manifest.json"))
    assert manifest["jidcounter"] in (str(jid), jid) and manifest["params_source"] == "restore-verification"
    assert hashlib.sha256(open(first[0], "rb").read()).hexdigest() == manifest["sha256"]
    wait_for(lambda: not [n for n in os.listdir(engine_dir) if n.startswith(".copy-")], 60, "the copy removed")
    # The orphaned job kept the lost run's lock while it worked (a worker in the lock) and leaves it as it ends.
    lock_path = os.path.join(site.data_dir, ".renderfarm-tractor.lock")
    wait_for(lambda: not json.load(open(lock_path))["workers"], 120, "the orphaned job to leave the lock")

    # 2. This time the job itself is killed while it writes (a host-side kill): what is left is a
    # finished copy and a temporary archive. A plain re-run writes that archive from the copy.
    time.sleep(1.1)  # distinct backup names (second resolution)
    run = farm.start_play("backup", env=env, **slow)
    job = wait_for(lambda: archiving(async_dir, farm.backups), 300, lambda: "the archive write\n" + run.output())
    os.kill(job["pid"], signal.SIGKILL)
    run.signal_group(signal.SIGKILL)
    run.wait(60)
    copies = [n for n in os.listdir(engine_dir) if n.startswith(".copy-")]
    assert len(copies) == 1 and not copies[0].endswith(".partial"), os.listdir(engine_dir)
    interrupted = os.path.join(engine_dir, copies[0][len(".copy-"):] + ".tgz")
    assert not os.path.exists(interrupted)
    assert glob.glob(os.path.join(engine_dir, "." + os.path.basename(interrupted) + ".tmp-*"))

    time.sleep(1.1)
    rerun = farm.play("backup")
    manifest = json.load(open(interrupted + ".manifest.json"))
    assert manifest["source"]["copy"] == os.path.join(engine_dir, copies[0]), manifest
    assert manifest["params_source"] == "restore-verification" and manifest["jidcounter"] in (str(jid), jid)
    left = os.listdir(engine_dir)
    assert not [n for n in left if n.startswith(".copy-") or ".tmp-" in n], left
    assert len(glob.glob(os.path.join(engine_dir, "*.tgz"))) == 3  # the first, the finished one, the re-run's
    entry = farm.report("backup")["engines"][0]
    assert entry["result"] == "ok" and entry["finished"] == [interrupted], entry
    assert engine_status(site)["version"] == "2.2"
    assert f"{interrupted}" in rerun.stdout


def test_backup_without_room_for_its_restore_check_is_refused_before_the_stop(farm, site):
    farm.add("prod", site, "2.2")
    engine = farm.start("prod", "2.2")
    engine.spool({"title": "j", "tasks": [{"title": "t", "argv": ["true"]}]})
    pid = engine_status(site)["pid"]
    size = sum(os.lstat(os.path.join(d, n)).st_size for d, _, names in os.walk(site.db_dir) for n in names)
    # room for the archive (1x) but not for the scratch copy of the restore check beside it (2x)
    room = farm.backups + "-one-and-a-half"  # beside the farm's backups: the EngineOwner can reach it
    os.makedirs(room)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size * 1.5)},mode=0755", "tmpfs", room], check=True)
    try:
        proc = farm.play("backup", expect_ok=False, backup_dir=room)
        out = " ".join((proc.stdout + proc.stderr).split())
        assert re.search(r"for the archive \([0-9.]+ \w+\), and a copy of the database beside it \([0-9.]+ \w+\): "
                         r"the copy taken while the engine is stopped, then the scratch copy of its restore check", out)
        assert "Nothing was changed" in out
        assert engine_status(site)["pid"] == pid and os.listdir(room) == []  # refused before the stop
        # no copy first, and the restore check's scratch copy on another filesystem: 1x is enough
        scratch = farm.backups + "-scratch"
        os.makedirs(scratch)
        os.chown(scratch, site.owner.pw_uid, site.owner.pw_gid)
        farm.play("backup", backup_dir=room, backup_copy_while_stopped=False, backup_scratch_dir=scratch)
        archive = glob.glob(os.path.join(room, "prod", "*.tgz"))
        assert archive and engine_status(site)["version"] == "2.2"
        manifest = json.load(open(archive[0] + ".manifest.json"))
        assert manifest["params_source"] == "restore-verification" and os.listdir(scratch) == []
    finally:
        subprocess.run(["umount", "-l", room], check=False)


# -- upgrade of two engines, with a task running through it --------------------------------------
def test_rolling_upgrade_of_two_engines_with_an_active_task(farm, site, make_site):
    other = make_site()
    farm.add("prod1", site, "2.2")
    farm.add("prod2", other, "2.2")
    engine1 = farm.start("prod1", "2.2")
    farm.start("prod2", "2.2")
    site.start_blade("2.2", "blade1")
    other.start_blade("2.2", "blade2")
    jid = engine1.spool({"title": "long", "tasks": [{"title": "t", "argv": ["sh", "-c", "sleep 12; echo finished"]}]})
    engine1.wait_tasks(jid, lambda ts: ts[0]["state"] == "active", timeout=30)

    # as text, the way an AWX survey or a CI variable sends it
    farm.play("upgrade", upgrade_version="2.4", upgrade_serial='[1, "100%"]')

    for one in (site, other):
        assert engine_status(one)["version"] == "2.4"
        assert params(one, "2.4")["schema-version"] == "2.2-4"  # 2.4 keeps the 2.2 schema (§8)
    wait_done(EngineProc(site, None), jid, timeout=60)  # the task ran through the upgrade
    log = os.path.join(site.data_dir, "cmd-logs", site.owner.pw_name, f"J{jid}", "T1.log")
    assert open(log).read().strip() == "finished"
    assert EngineProc(site, None).spool({"title": "next", "tasks": [{"title": "t", "argv": ["true"]}]}) == jid + 1
    report = farm.report("upgrade")
    by_engine = {e["engine"]: e for e in report["engines"]}
    assert set(by_engine) == {"prod1", "prod2"}
    for entry in by_engine.values():
        assert entry["result"] == "ok" and entry["version_after"] == "2.4" and not entry["rollback"]
        assert float(entry["downtime"]) > 0 and entry["backup"]["sha256"]
        assert "archive" in entry["phases"], entry["phases"]  # phase 6, after the switch
    # Each new engine served before its backup was complete: it started before the manifest, the
    # last file of a backup, was written (emulator uptime against the file's mtime). The archive
    # is the one of the 2.2 database, written from the copy phase 3 took.
    for name, one in (("prod1", site), ("prod2", other)):
        archive = by_engine[name]["backup"]["path"]
        manifest = json.load(open(archive + ".manifest.json"))
        started = time.time() - engine_status(one)["uptime"]
        assert started + 0.2 < os.stat(archive + ".manifest.json").st_mtime, (name, started, manifest["created"])
        assert manifest["engine_version"] == "2.2" and "/.copy-" in manifest["source"]["copy"]
        assert not [n for n in os.listdir(os.path.dirname(archive)) if n.startswith(".copy-")]
    assert os.path.exists(glob.glob(os.path.join(farm.reports, "upgrade-*", "report.xml"))[0])

    # A re-run changes nothing: both engines already serve 2.4 and keep their process.
    pids = {name: engine_status(s)["pid"] for name, s in (("prod1", site), ("prod2", other))}
    farm.play("upgrade", upgrade_version="2.4")
    assert {name: engine_status(s)["pid"] for name, s in (("prod1", site), ("prod2", other))} == pids
    assert {e["result"] for e in farm.report("upgrade")["engines"]} == {"unchanged"}


def upgrade_then_run_a_job(farm, site, version, title):
    """Upgrade "prod" to ``version`` (the upgrade backs it up first), then run one job on the new
    engine, after that backup: (backup archive, new engine, the job's jid)."""
    farm.play("upgrade", upgrade_version=version)
    backup = sorted(glob.glob(os.path.join(farm.backups, "prod", "*.tgz")))[-1]
    new = EngineProc(site, None)
    jid = new.spool({"title": title, "tasks": [{"title": "t", "argv": ["echo", title]}]})
    wait_done(new, jid)
    return backup, new, jid


# -- downgrade with restore (a schema change), log purge and counter -----------------------------------------------
def test_downgrade_restores_purges_logs_and_sets_the_counter(farm, site):
    # 2.1 -> 2.2 changes the schema (§8), so the downgrade must restore the backup
    farm.add("prod", site, "2.1")
    engine = farm.start("prod", "2.1")
    # A blade that hears from its engine every 5 s, longer than ansible takes from step 2 to
    # step 3: only a step 2 that waits for the kill lets it kill the command before step 3.
    site.start_blade("2.1", "blade", "--poll", "5")
    kept = engine.spool({"title": "before", "tasks": [{"title": "t", "argv": ["echo", "kept"]}]})
    wait_done(engine, kept)
    backup, new, lost = upgrade_then_run_a_job(farm, site, "2.2", "lost")  # the backup is made with 2.1
    lost_logs = os.path.join(site.data_dir, "cmd-logs", site.owner.pw_name, f"J{lost}")
    assert os.path.isdir(lost_logs)
    # A command still running when the downgrade starts (steps 1-3 are about it).
    running = new.spool({"title": "running", "tasks": [{"title": "t", "argv": ["sleep", "600"]}]})
    blade_log = os.path.join(site.base, "blade-blade.log")
    wait_for(lambda: re.search(rf"J{running} T1 .*started pid", open(blade_log, encoding="utf-8").read()), 60,
             lambda: open(blade_log, encoding="utf-8").read()[-4000:])

    farm.play("downgrade", tractor_version="2.2", downgrade_version="2.1", downgrade_backup=backup,
              downgrade_job_counter=100)

    # Steps 1-3 in order: the engine that `tq retry active` told (the 2.2 one) had the blade kill
    # the running command before step 3 killed that engine; a blade that hears of the retry only
    # from the restarted engine would first have found its engine unreachable.
    lines = open(blade_log, encoding="utf-8").read().splitlines()
    started = [i for i, line in enumerate(lines) if re.search(rf"J{running} T1 .*started pid", line)]
    assert len(started) == 1, "\n".join(lines[-40:])  # step 1 paused dispatching: never dispatched again
    asked = [i for i, line in enumerate(lines) if f"engine asked to kill J{running} T1 " in line]
    # the blade delivered the killed command's end to the 2.2 engine: step 2 waits for exactly that
    reported = [i for i, line in enumerate(lines) if re.search(rf"J{running} T1 \S+ \S+: reported rc=", line)]
    lost_engine = [i for i, line in enumerate(lines[started[0]:], started[0]) if "unreachable" in line]
    assert asked and reported, "\n".join(lines[-40:])
    assert not lost_engine or asked[0] < reported[0] < lost_engine[0], "\n".join(lines[started[0]:])

    status = engine_status(site)
    assert status["version"] == "2.1" and status["schema-version"] == "2.1-2"
    jobs = {j["jid"] for j in EngineProc(site, None).select("job", "", "Job.jid")}
    assert kept in jobs and lost not in jobs  # the job spooled after the backup is gone (runbook)
    assert not os.path.exists(lost_logs)  # step 7: logs of jids that will be reused are removed
    assert os.path.isdir(os.path.join(site.data_dir, "cmd-logs", site.owner.pw_name, f"J{kept}"))
    assert params(site, "2.1")["jidcounter"] == "100"  # step 8
    entry = farm.report("downgrade")["engines"][0]
    assert entry["result"] == "ok" and entry["version_after"] == "2.1"
    assert entry["database"]["path"] == "restored" and "2.2-4" in entry["database"]["reason"], entry["database"]
    # the two jobs spooled after the backup ("lost" and "running") are named as given up
    assert entry["database"]["lost_job_ids"] == [kept + 1, running], entry["database"]
    # the archive was read in full once (the verification); steps 4 and 5 trusted that read
    assert int(entry["backup"]["full_reads"]) == 1, entry["backup"]

    # Re-run: the old version already serves, nothing is destroyed again.
    pid = status["pid"]
    farm.play("downgrade", tractor_version="2.2", downgrade_version="2.1", downgrade_backup=backup)
    assert engine_status(site)["pid"] == pid and params(site, "2.1")["jidcounter"] == "100"
    assert farm.report("downgrade")["engines"][0]["result"] == "unchanged"


# -- downgrade that keeps the job database (2.4 keeps the 2.2 schema) ------------------------------
def test_downgrade_keeps_the_database_when_the_schema_is_unchanged(farm, site):
    farm.add("prod", site, "2.2")
    engine = farm.start("prod", "2.2")
    site.start_blade("2.2", "blade")
    before = engine.spool({"title": "before", "tasks": [{"title": "t", "argv": ["echo", "before"]}]})
    wait_done(engine, before)
    backup, new, after = upgrade_then_run_a_job(farm, site, "2.4", "after")  # the backup is made with 2.2
    after_logs = os.path.join(site.data_dir, "cmd-logs", site.owner.pw_name, f"J{after}")
    jobs_before = {(j["jid"], j["title"]) for j in new.select("job", "", "Job.jid,Job.title")}
    counter = params(site, "2.4")["jidcounter"]

    # The plan in check mode: forced restore versus the default
    farm.play("downgrade", check=True, tractor_version="2.4", downgrade_version="2.2", downgrade_backup=backup,
              downgrade_restore="always")
    planned = farm.report("downgrade")["engines"][0]
    assert planned["result"] == "planned" and planned["database"]["path"] == "restored", planned
    assert planned["database"]["reason"] == "downgrade_restore is always"
    # A site that does not let dbctl upgrade at start-up: the old engine would refuse the kept
    # database (another module checksum), so the plan is a restore.
    originals = {name: open(os.path.join(site.config_dir, name)).read() for name in ("tractor.config", "db.config")}
    site.write_config(db_extra='    "DBAutoUpgrade": False,\n')
    farm.play("downgrade", check=True, tractor_version="2.4", downgrade_version="2.2", downgrade_backup=backup)
    planned = farm.report("downgrade")["engines"][0]["database"]
    assert planned["path"] == "restored" and "DBAutoUpgrade" in planned["reason"], planned
    for name, text in originals.items():
        site.write(name, text)

    farm.play("downgrade", tractor_version="2.4", downgrade_version="2.2", downgrade_backup=backup)

    status = engine_status(site)
    assert status["version"] == "2.2" and status["schema-version"] == "2.2-4"
    old = EngineProc(site, None)
    # the same jobs with the same jids, the one spooled on 2.4 after the backup included
    assert {(j["jid"], j["title"]) for j in old.select("job", "", "Job.jid,Job.title")} == jobs_before
    assert (after, "after") in jobs_before
    assert params(site, "2.2")["jidcounter"] == counter and os.path.isdir(after_logs)  # no step 7 or 8
    assert not os.path.exists(os.path.join(site.data_dir, ".renderfarm-tractor-restore.psql.json"))
    entry = farm.report("downgrade")["engines"][0]
    assert entry["result"] == "ok" and entry["version_after"] == "2.2"
    database = entry["database"]
    assert (database["path"], database["schema_live"], database["schema_backup"]) == ("kept", "2.2-4", "2.2-4")
    assert "kept with every job" in database["reason"]
    # step 6: the old tractor-dbctl rebuilt its own views and functions (the module checksum changed)
    assert database["rebuilt"]["from_version"] == "2.2-4" and "Create all functions." in database["rebuilt"]["steps"]
    assert int(entry["backup"]["full_reads"]) == 1  # only the verification read the archive
    # the old engine dispatches new work, with the next jid
    again = old.spool({"title": "back on 2.2", "tasks": [{"title": "t", "argv": ["echo", "again"]}]})
    assert again == int(counter) + 1
    wait_done(old, again)


# -- automatic rollback ---------------------------------------------------------------------------
def test_failed_switch_rolls_back_to_the_old_version_and_data(farm, site):
    farm.add("prod", site, "2.2")
    engine = farm.start("prod", "2.2")
    jid = engine.spool({"title": "keep me", "tasks": [{"title": "t", "argv": ["true"]}]})
    # The new version's schema upgrade fails (emulator fault): the 2.4 engine cannot start.
    site.write("emulator-faults", "schema-upgrade-fails\n")
    proc = farm.play("upgrade", expect_ok=False, upgrade_version="2.4")
    assert proc.returncode != 0
    assert "rolled back to 2.2" in proc.stdout
    status = engine_status(site)
    assert status and status["version"] == "2.2"  # the old version serves
    assert jid in {j["jid"] for j in EngineProc(site, None).select("job", "", "Job.jid")}
    assert params(site, "2.2")["schema-version"] == "2.2-4"
    entry = farm.report("upgrade")["engines"][0]
    assert entry["result"] == "rolled back" and entry["rollback"] is True and "error" in entry
    # the failed schema upgrade stopped the database server again: its schema version cannot be
    # read, so the rollback restores the backup rather than guess
    assert entry["database"]["path"] == "restored" and "could not be read" in entry["database"]["reason"], entry
    # the backup the rollback restored was written from the copy phase 3 took (the switch failed
    # before phase 6 could archive it), and no copy is left
    manifest = json.load(open(entry["backup"]["path"] + ".manifest.json"))
    assert "/.copy-" in manifest["source"]["copy"] and manifest["engine_version"] == "2.2"
    assert not [n for n in os.listdir(os.path.join(farm.backups, "prod")) if n.startswith(".copy-")]
    evidence = glob.glob(os.path.join(farm.backups, "prod", "failed-upgrade-to-2.4-*.log"))
    assert evidence, os.listdir(os.path.join(farm.backups, "prod"))
    junit = open(glob.glob(os.path.join(farm.reports, "upgrade-*", "report.xml"))[0]).read()
    assert 'failures="1"' in junit


# -- multi-engine rules --------------------------------------------------------------------------
def test_colliding_engines_are_refused_before_any_change(farm, site, make_site):
    other = make_site()
    farm.add("prod", site, "2.2")
    farm.add("staging", other, "2.2")
    farm.start("prod", "2.2")
    # The second engine is configured with the first one's data directory.
    other.write_config(tractor_extra="")
    other.write("tractor.config", '{"EngineOwner": "%s", "TractorDataDirectory": "%s", "ListenerPort": %d}\n'
                % (other.owner.pw_name, site.data_dir, other.engine_port))
    proc = farm.play("upgrade", expect_ok=False, upgrade_version="2.4")
    assert proc.returncode != 0, proc.stdout[-8000:]
    assert "share the TractorDataDirectory" in proc.stdout and "prod" in proc.stdout and "staging" in proc.stdout
    assert engine_status(site)["version"] == "2.2"  # nothing was touched
    assert not os.path.exists(os.path.join(farm.backups, "prod"))


def test_engines_sharing_a_directory_through_a_bind_mount_are_refused(farm, site, make_site):
    # The second engine's TractorDataDirectory is the first one's, mounted elsewhere: other path
    # strings, one directory (and one DBDataDir below it). Before, both were backed up as two.
    other = make_site()
    farm.add("prod", site, "2.2")
    farm.add("twin", other, "2.2")
    farm.start("prod", "2.2")
    pid = engine_status(site)["pid"]
    bound = os.path.join(farm.base, "bound-data")
    os.makedirs(bound)
    subprocess.run(["mount", "--bind", site.data_dir, bound], check=True)
    try:
        other.write("tractor.config", '{"EngineOwner": "%s", "TractorDataDirectory": "%s", "ListenerPort": %d}\n'
                    % (other.owner.pw_name, bound, other.engine_port))
        before = tree_digest(site.data_dir, site.config_dir, other.config_dir)
        proc = farm.play("backup", expect_ok=False)
        out = " ".join((proc.stdout + proc.stderr).split())
        assert "share the TractorDataDirectory" in out and "share the DBDataDir" in out, proc.stdout[-6000:]
        assert "(the same directory as" in out
        assert engine_status(site)["pid"] == pid and not os.path.exists(farm.backups + "/prod")
        assert tree_digest(site.data_dir, site.config_dir, other.config_dir) == before
    finally:
        subprocess.run(["umount", "-l", bound], check=False)


def test_upgrade_refuses_a_downgrade(farm, site):
    farm.add("prod", site, "2.4")
    farm.start("prod", "2.4")
    proc = farm.play("upgrade", expect_ok=False, upgrade_version="2.2")
    assert proc.returncode != 0 and "runs only through the downgrade role" in proc.stdout
    assert engine_status(site)["version"] == "2.4"


def test_backup_refuses_an_engine_serving_another_version_than_the_inventory(farm, site):
    # The inventory was not updated after a rollout: it says 2.2, the engine serves 2.4.
    farm.add("prod", site, "2.2")
    farm.start("prod", "2.4")
    pid = engine_status(site)["pid"]
    proc = farm.play("backup", expect_ok=False)
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert ("the engine serves Tractor 2.4 (the Server header of its replies), but the inventory says "
            "tractor_version: 2.2. Set tractor_version: \"2.4\" for this host") in out, out[-3000:]
    assert "Nothing was changed" in out
    assert engine_status(site)["pid"] == pid and engine_status(site)["version"] == "2.4"  # never stopped
    assert not os.path.exists(os.path.join(farm.backups, "prod"))
    assert not os.path.exists(os.path.join(site.data_dir, ".renderfarm-tractor.lock"))
    # Told to take the version the engine serves, the backup runs and restarts 2.4, not 2.2.
    # (with Ansible's default output: the summary for AWX's artifacts is passed to set_stats)
    adopted = farm.play("backup", env={"ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_SHOW_CUSTOM_STATS": "1"},
                        tractor_version_adopt_live=True)
    stats = json.loads(adopted.stdout.split("CUSTOM STATS", 1)[1].split("RUN:", 1)[1])["renderfarm_tractor_report"]
    assert stats["results"] == {"ok": 1} and stats["engines"][0]["version_after"] == "2.4"
    assert os.path.isfile(stats["files"][1]) and stats["files"][1].endswith("/report.md")
    archive = glob.glob(os.path.join(farm.backups, "prod", "*.tgz"))
    assert len(archive) == 1 and "-2.4-" in os.path.basename(archive[0])
    assert engine_status(site)["version"] == "2.4"
    assert farm.report("backup")["engines"][0]["version_before"] == "2.4"


def test_lock_held_by_another_run_is_refused(farm, site):
    farm.add("prod", site, "2.2")
    farm.start("prod", "2.2")
    lock = os.path.join(site.data_dir, ".renderfarm-tractor.lock")
    with open(lock, "w") as handle:
        json.dump({"run_id": "someone-else", "controller_host": "another-controller", "controller_pid": 1,
                   "created": time.time(), "purpose": "upgrade 2.2 -> 2.3"}, handle)
    proc = farm.play("backup", expect_ok=False)
    out = " ".join(proc.stdout.split())
    assert proc.returncode != 0 and "engine locked by another run: run someone-else (upgrade 2.2 -> 2.3)" in out
    assert "from controller another-controller" in out and "-e tractor_lock_break=someone-else" in out
    assert json.load(open(lock))["run_id"] == "someone-else"  # left alone
    assert not glob.glob(os.path.join(farm.backups, "prod", "*.tgz"))


# -- check mode changes nothing -------------------------------------------------------------------
def test_check_mode_of_every_playbook_changes_nothing(farm, site):
    farm.add("prod", site, "2.2")
    engine = farm.start("prod", "2.2")
    engine.spool({"title": "j", "tasks": [{"title": "t", "argv": ["true"]}]})
    farm.play("backup")
    backup = sorted(glob.glob(os.path.join(farm.backups, "prod", "*.tgz")))[-1]

    def state():
        status = engine_status(site)
        return {"engine": (status["version"], status["pid"]), "params": params(site, "2.2"),
                "files": tree_digest(site.data_dir, site.config_dir, farm.backups)}

    before = state()
    farm.play("backup", check=True)
    farm.play("upgrade", check=True, upgrade_version="2.4")
    farm.play("downgrade", check=True, tractor_version="2.2", downgrade_version="2.2", downgrade_backup=backup)
    after = state()
    assert after == before
    assert {e["result"] for e in farm.report("upgrade")["engines"]} == {"planned"}


def test_upgrade_installs_its_version_from_a_package_and_check_mode_plans_it(farm, site, world):
    """Phase 2 stages the new version from the site's tarball (unpacked into the install prefix);
    check mode first reports the plan without installing or stopping anything."""
    from tractor_emulator import dist, install as installer  # pylint: disable=import-outside-toplevel

    prefix = tempfile.mkdtemp(prefix="prefix-", dir=world)  # this engine's own /opt/pixar
    os.chmod(prefix, 0o755)
    installer.install("2.2", prefix)
    package = dist.dist("2.3", tempfile.mkdtemp(prefix="dist-", dir=world))["tarball"]
    new_install = os.path.join(prefix, "Tractor-2.3")
    farm.add("prod", site, "2.2", tractor_install_prefix=prefix)
    started = farm.ansible.module("tractor_engine", {
        "state": "started", "install_dir": os.path.join(prefix, "Tractor-2.2"), "config_dir": site.config_dir,
        "service_manager": "direct"})
    assert not started.get("failed"), started
    before = engine_status(site)

    farm.play("upgrade", check=True, upgrade_version="2.3", upgrade_package=package)
    assert not os.path.exists(new_install)
    assert engine_status(site)["pid"] == before["pid"] and engine_status(site)["version"] == "2.2"
    record = farm.report("upgrade")["engines"][0]
    assert record["result"] == "planned" and "would be installed from" in record["note"]

    farm.play("upgrade", upgrade_version="2.3", upgrade_package=package)
    assert os.access(os.path.join(new_install, "bin", "tractor-dbctl"), os.X_OK)
    assert engine_status(site)["version"] == "2.3"
    assert farm.report("upgrade")["engines"][0]["result"] == "ok"


# -- staging beside production ---------------------------------------------------------------------
def test_staging_engine_beside_production_and_a_colliding_one_refused(farm, site, make_site, owner, free_ports):
    staging_site = make_site()
    config_dir = os.path.join(staging_site.base, "staging-config")  # written by the playbook
    port, db_port, cmdlog_port = free_ports(3)
    farm.add("prod", site, "2.2")
    farm.add("staging", staging_site, "2.4", staging=True, tractor_config_dir=config_dir,
             staging_listener_port=port, staging_db_port=db_port, staging_cmdlog_port=cmdlog_port,
             staging_data_dir=os.path.join(staging_site.base, "staging-data"), staging_engine_owner=owner.pw_name)
    farm.start("prod", "2.2")
    prod_pid = engine_status(site)["pid"]

    farm.play("staging", check=True)  # check mode: nothing is written, nothing starts
    assert not os.path.exists(config_dir)

    farm.play("staging")
    staged = EngineProc(staging_site, None)
    staged.url = f"http://127.0.0.1:{port}/Tractor/"
    assert staged.status()["version"] == "2.4"
    assert engine_status(site)["pid"] == prod_pid  # production untouched
    farm.play("staging")  # idempotent
    assert staged.status()["version"] == "2.4"

    # A third engine configured on production's port is refused before anything of it is written
    # (its configuration is checked as configure would write it), in check mode as for real.
    third = make_site()
    third_config, third_data = os.path.join(third.base, "cfg"), os.path.join(third.base, "third-data")
    farm.add("third", third, "2.4", staging=True, tractor_config_dir=third_config,
             staging_listener_port=site.engine_port, staging_db_port=free_ports(1)[0],
             staging_cmdlog_port=free_ports(1)[0], staging_data_dir=third_data,
             staging_engine_owner=owner.pw_name)
    for check in (True, False):
        proc = farm.play("staging", check=check, expect_ok=False)
        assert proc.returncode != 0 and f"use the same engine port {site.engine_port}" in proc.stdout, check
        assert "Refusing to touch third" in proc.stdout
        assert "Refusing to touch prod" not in proc.stdout  # only read: the collision is third's
        assert not os.path.exists(third_config) and not os.path.exists(third_data), check
    assert engine_status(site)["pid"] == prod_pid
