"""Faults that need a playbook run of their own: a farm per test, real ansible-playbook runs.

Downgrade with a PostgreSQL that refuses to start, a host lost in the middle of a batch,
colliding engines, a target version that cannot be had, and a run interrupted with Ctrl-C.
Outcomes are read without Ansible (engine URL API, SQL, files on disk).
"""

from __future__ import annotations

import glob
import json
import os
import signal
import stat

from tractor_farm import (
    Watcher, backup_problems, backups, engine_processes, job_records, serving_version, spool_jobs, stop_engine,
    wait_for,
)
from tractor_sites import EngineProc

LOCK = ".renderfarm-tractor.lock"


def pid_of(site):
    return EngineProc(site, None).status()["pid"]


def gone(site, version):
    """A predicate: true once an engine of ``version`` was seen serving the site and is gone."""
    seen = []

    def check():
        if engine_processes(site, version):
            seen.append(True)
            return False
        return bool(seen)
    return check


def flat(proc):
    return " ".join((proc.stdout + proc.stderr).split())


# -- 7 --------------------------------------------------------------------------------------------
def test_07_postgresql_refusing_to_start_after_the_restore(farm, site, ansible, make_site):
    """Downgrade 2.2 -> 2.1 (a schema change: the backup is restored), then PostgreSQL will not start."""
    farm.add("prod", site, "2.2")
    farm.launch(("prod", "2.1"))
    spool_jobs(site)
    stop_engine(site)
    backup_dir = os.path.join(farm.backups, "prod")
    os.makedirs(backup_dir)
    os.chown(backup_dir, site.owner.pw_uid, site.owner.pw_gid)
    backup = os.path.join(backup_dir, "tractor-prod-2.1-before-upgrade.tgz")
    made = ansible.module("tractor_db", {"install_dir": site.installs("2.1"), "config_dir": site.config_dir,
                                         "state": "backup", "path": backup, "verify": "archive"})
    assert not made.get("failed"), made
    in_backup = job_records(site)
    farm.launch(("prod", "2.2"))  # the upgrade (schema 2.1-2 -> 2.2-4 at start-up)
    EngineProc(site, None).spool({"title": "spooled on 2.2", "tasks": [{"title": "d", "argv": ["true"]}]})

    # A job counter below the backup's (2) would fail step 8 after the restore: refused before step 1.
    serving, pid, records = serving_version(site), pid_of(site), job_records(site)
    proc = farm.play("downgrade", expect_ok=False, downgrade_version="2.1", downgrade_backup=backup,
                     downgrade_job_counter=1)
    assert "downgrade_job_counter 1 is below the job counter of the backup" in flat(proc)
    assert (serving_version(site), pid_of(site), job_records(site)) == (serving, pid, records)
    # A verified backup, but of another engine's database: step 4 would refuse it after the kill;
    # the system identifiers are known before step 1, so it is refused there.
    foreign_site = make_site()
    ok = foreign_site.dbctl("2.1", "--start-for-engine")
    assert ok.returncode == 0, ok.stderr
    assert foreign_site.dbctl("2.1", "--stop").returncode == 0
    foreign = os.path.join(backup_dir, "tractor-other-2.1.tgz")
    made = ansible.module("tractor_db", {"install_dir": foreign_site.installs("2.1"),
                                         "config_dir": foreign_site.config_dir, "state": "backup",
                                         "path": foreign, "verify": "archive"})
    assert not made.get("failed"), made
    proc = farm.play("downgrade", expect_ok=False, downgrade_version="2.1", downgrade_backup=foreign)
    assert f"{foreign} is not a backup of the job database in" in flat(proc) and "Nothing was changed" in flat(proc)
    assert (serving_version(site), pid_of(site), job_records(site)) == (serving, pid, records)
    for name in os.listdir(backup_dir):
        if name.startswith("tractor-other-"):
            os.unlink(os.path.join(backup_dir, name))

    site.write("emulator-faults", "pg-start-fails\n")
    proc = farm.play("downgrade", expect_ok=False, downgrade_version="2.1", downgrade_backup=backup)

    # (a) the cause, named
    assert proc.returncode != 0
    entry = farm.report("downgrade")["engines"][0]
    assert entry["result"] == "failed", entry
    assert "tractor-dbctl --start-for-engine failed" in entry["error"]
    assert "Unable to start the postgresql server" in entry["error"]
    assert "Unable to start the postgresql server" in flat(proc)
    # (b) stopped, with the restored database intact: the marker says which archive filled it
    assert not engine_processes(site) and serving_version(site) is None
    marker = json.load(open(os.path.join(site.data_dir, ".renderfarm-tractor-restore.psql.json")))
    assert marker["archive"] == backup and entry["database"]["path"] == "restored", entry
    # (c) exactly the jobs of the backup (the one spooled on 2.2 after it is gone, by the runbook)
    os.unlink(os.path.join(site.config_dir, "emulator-faults"))  # PostgreSQL is repaired
    assert job_records(site) == in_backup
    assert backup_problems(farm.backups) == []
    # ... and the old engine starts on it.
    farm.launch(("prod", "2.1"))
    assert EngineProc(site, None).status()["schema-version"] == "2.1-2"


# -- 8 --------------------------------------------------------------------------------------------
FAKE_SSH = """#!/bin/sh
# Stand-in for ssh (the test's): while {switch} is absent the "remote" command runs on this
# machine; once it exists the host is gone, and this says so as ssh does (exit 255).
if [ -e {switch} ]; then
    echo "ssh: connect to host $TRACTOR_FAKE_HOST port 22: Connection refused" >&2
    exit 255
fi
for last; do :; done
exec /bin/sh -c "$last"
"""


def test_08_host_unreachable_mid_batch_stops_the_rollout_and_a_rerun_resumes(farm, make_site):
    sites = {name: make_site() for name in ("a", "b", "c")}
    switch = os.path.join(farm.base, "b-is-unreachable")
    fake_ssh = os.path.join(farm.base, "fake-ssh")
    with open(fake_ssh, "w", encoding="utf-8") as handle:
        handle.write(FAKE_SSH.format(switch=switch))
    os.chmod(fake_ssh, 0o755)
    farm.add("a", sites["a"], "2.2")
    farm.add("b", sites["b"], "2.2", ansible_connection="ssh", ansible_host="127.0.0.1",
             ansible_ssh_executable=fake_ssh)
    farm.add("c", sites["c"], "2.2")
    farm.launch(*[(name, "2.2") for name in sites])
    for site in sites.values():
        spool_jobs(site)
    before = {name: job_records(site) for name, site in sites.items()}
    pids = {name: pid_of(site) for name, site in sites.items()}

    def lose_b(w):
        w.until(gone(sites["b"], "2.2"))
        open(switch, "w").close()
        w.note("b's engine stopped by the upgrade: b is unreachable from now on")

    watcher = Watcher("lose-b", lose_b)
    watcher.start()
    # Batch 1: a and b (b is lost in the middle of its upgrade), batch 2: c.
    proc = farm.play("upgrade", expect_ok=False, upgrade_version="2.4", upgrade_serial=[2, "100%"])
    watcher.finish()
    assert watcher.error is None, (watcher.error, watcher.events)

    output = flat(proc)
    assert proc.returncode != 0
    assert "b | UNREACHABLE!" in output and "Connection refused" in output  # (a) the cause
    report = {e["engine"]: e for e in farm.report("upgrade")["engines"]}
    assert report["a"]["result"] == "ok"
    assert report["b"]["result"] != "ok" and report["c"]["result"] != "ok", report
    # (b) a finished its batch; b is stopped with its database intact; the rollout stopped before c
    assert serving_version(sites["a"]) == "2.4"
    assert not engine_processes(sites["b"])
    assert serving_version(sites["c"]) == "2.2" and pid_of(sites["c"]) == pids["c"]
    assert not os.path.exists(os.path.join(sites["c"].data_dir, LOCK))
    # (c) nothing lost anywhere
    for name, site in sites.items():
        assert job_records(site) == before[name], name
    assert backup_problems(farm.backups) == []

    # The host is back. Its lock is the one of the finished run, whose controller process is gone:
    # a plain re-run takes it over and says so.
    os.unlink(switch)
    rerun = farm.play("upgrade", upgrade_version="2.4", upgrade_serial=[2, "100%"])
    report = {e["engine"]: e for e in farm.report("upgrade")["engines"]}
    assert report["a"]["result"] == "unchanged" and report["b"]["result"] == "ok" and report["c"]["result"] == "ok"
    assert "is gone" in report["b"]["lock_taken_over"]["reason"]
    assert "took over the lock of run " in flat(rerun)
    # The report draws the rollout of the three engines: batch 1 (a, b), then batch 2 (c).
    assert [report[name]["batch"] for name in "abc"] == [1, 1, 2]
    for name in "bc":
        times = report[name]["timeline"]
        assert times["started"] <= times["stopped"] <= times["healthy"] <= times["ended"], times
    assert report["c"]["timeline"]["started"] >= max(report[name]["timeline"]["ended"] for name in "ab")
    gantt = farm.report_markdown("upgrade").split("```mermaid\ngantt\n", 1)[1]
    assert gantt.index("section batch 1") < gantt.index("    a unchanged : active, ") < gantt.index("section batch 2")
    assert gantt.index("section batch 2") < gantt.index("    c ok : active, ") and "    b down : crit, " in gantt
    for name, site in sites.items():
        assert serving_version(site) == "2.4", name
        assert job_records(site) == before[name], name
    assert pid_of(sites["a"]) != pids["a"]
    assert backup_problems(farm.backups) == []


# -- 11 -------------------------------------------------------------------------------------------
def test_11_engines_sharing_a_port_or_directory_are_refused_before_any_change(farm, make_site):
    main, port, data, db = (make_site() for _ in range(4))
    owner = main.owner.pw_name
    port.write("tractor.config", '{"EngineOwner": "%s", "TractorDataDirectory": "%s", "ListenerPort": %d}\n'
               % (owner, port.data_dir, main.engine_port))
    data.write("tractor.config", '{"EngineOwner": "%s", "TractorDataDirectory": "%s", "ListenerPort": %d}\n'
               % (owner, main.data_dir, data.engine_port))
    db.write("db.config", '{"DBConnection": {"host": "localhost", "port": %d, "dbname": "tractor"}, "DBDataDir": "%s"}\n'
             % (db.db_port, main.db_dir))
    for name, site in (("main", main), ("same-port", port), ("same-data-dir", data), ("same-db-dir", db)):
        farm.add(name, site, "2.2")
    farm.launch(("main", "2.2"))
    spool_jobs(main)
    before, pid = job_records(main), pid_of(main)

    proc = farm.play("upgrade", expect_ok=False, upgrade_version="2.4")

    output = flat(proc)
    assert proc.returncode != 0
    assert f"main and same-port on" in output and f"use the same engine port {main.engine_port}" in output
    assert f"main and same-data-dir on" in output and f"share the TractorDataDirectory {main.data_dir}" in output
    assert f"main and same-db-dir on" in output and f"share the DBDataDir {main.db_dir}" in output
    assert "Nothing was changed" in output
    assert serving_version(main) == "2.2" and pid_of(main) == pid
    assert job_records(main) == before
    assert not os.path.exists(farm.backups)
    assert not os.path.exists(os.path.join(main.data_dir, LOCK))


# -- 12 -------------------------------------------------------------------------------------------
def test_12_a_target_version_that_is_not_installed_and_cannot_be_staged_is_refused_before_the_stop(farm, make_site):
    plain, staged = make_site(), make_site()
    bogus = os.path.join(farm.base, "Tractor-2.9-damaged.tar.gz")
    with open(bogus, "wb") as handle:
        handle.write(b"\x1f\x8b\x08\x00 this is not a tarball")
    farm.add("plain", plain, "2.2")                            # 2.9 not installed, nothing to stage
    farm.add("staged", staged, "2.2", upgrade_package=bogus)   # a package that does not unpack
    farm.launch(("plain", "2.2"), ("staged", "2.2"))
    for site in (plain, staged):
        spool_jobs(site)
    before = {"plain": job_records(plain), "staged": job_records(staged)}
    pids = {"plain": pid_of(plain), "staged": pid_of(staged)}

    proc = farm.play("upgrade", expect_ok=False, upgrade_version="2.9")

    output = flat(proc)
    assert proc.returncode != 0
    assert (f"plain: Tractor 2.9 is not installed at {farm.prefix}/Tractor-2.9 and no package or tarball was "
            "given to stage it") in output
    entry = {e["engine"]: e for e in farm.report("upgrade")["engines"]}["staged"]
    assert entry["result"] == "failed"
    # Staging runs before the stop: the failure of the unpacking is reported as it is.
    assert "Failed to find handler" in entry["error"] and "not recognized" in entry["error"], entry["error"]
    assert "staged | FAILED" in output or "fatal: [staged]" in output
    for name, site in (("plain", plain), ("staged", staged)):
        assert serving_version(site) == "2.2" and pid_of(site) == pids[name], name  # never stopped
        assert job_records(site) == before[name]
    assert not os.path.exists(os.path.join(farm.prefix, "Tractor-2.9"))
    assert backups(farm.backups) == []


# -- 15 -------------------------------------------------------------------------------------------
def test_15_ctrl_c_between_stop_and_start_then_a_rerun_brings_the_engine_back(farm, site):
    farm.add("prod", site, "2.2")
    farm.launch(("prod", "2.2"))
    spool_jobs(site)
    before = job_records(site)

    # The run is held inside its downtime (its copy job stopped) before the Ctrl-C, so that the
    # interrupt lands between the stop and the start however fast or slow the machine is.
    async_dir = str(farm.base / "async")
    run = farm.start_play("upgrade", env={"ANSIBLE_ASYNC_DIR": async_dir}, upgrade_version="2.4")
    job = wait_for(lambda: copy_job(async_dir), 600, lambda: "the copy of the stopped database\n" + run.output())
    os.kill(job["pid"], signal.SIGSTOP)
    try:
        assert not engine_processes(site, "2.2")  # the copy runs only once the engine is down
        run.signal_group(signal.SIGINT)  # Ctrl-C: SIGINT to the foreground process group
        rc = run.wait(300)
    finally:
        os.killpg(os.getpgid(job["pid"]), signal.SIGKILL)  # the job too (as a reboot of the host would)
    output = " ".join(run.output().split())

    assert rc != 0 and "User interrupted execution" in output, output[-3000:]
    assert not engine_processes(site) and serving_version(site) is None  # stopped ...
    assert job_records(site) == before                                    # ... with its database intact
    assert backup_problems(farm.backups) == []                            # no partial backup
    lock = json.load(open(os.path.join(site.data_dir, LOCK)))
    assert lock["controller_pid"] == run.proc.pid                         # the interrupted run's

    farm.play("upgrade", upgrade_version="2.4")  # a plain re-run: the lock of the interrupted run is taken over
    assert serving_version(site) == "2.4"
    assert job_records(site) == before
    entry = farm.report("upgrade")["engines"][0]
    assert entry["result"] == "ok" and entry["lock_taken_over"]["run_id"] == lock["run_id"]
    assert backup_problems(farm.backups) == []
    assert not os.path.exists(os.path.join(site.data_dir, LOCK))
    assert stat.S_IMODE(os.stat(backups(farm.backups)[-1]).st_mode) == 0o600


def copy_job(async_dir):
    """The progress of a tractor_db job copying the stopped database, if one runs."""
    for path in glob.glob(os.path.join(async_dir, "renderfarm-tractor-progress-*.json")):
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        if str(data.get("step") or "").startswith("copying the stopped job database"):
            return data
    return None


RESTART_MARK = ".renderfarm-tractor-backup-stopped.json"


def test_15_ctrl_c_during_a_backup_then_a_rerun_starts_the_engine_again(farm, site):
    """The backup playbook interrupted after it stopped the engine: the re-run starts the engine
    again, although it finds it stopped (the interrupted run left a mark saying it stopped it)."""
    farm.add("prod", site, "2.2")
    farm.launch(("prod", "2.2"))
    spool_jobs(site)
    before = job_records(site)
    mark = os.path.join(site.data_dir, RESTART_MARK)

    # held inside the downtime (its copy job stopped) before the Ctrl-C, as in the upgrade above
    async_dir = str(farm.base / "async-backup")
    run = farm.start_play("backup", env={"ANSIBLE_ASYNC_DIR": async_dir})
    job = wait_for(lambda: copy_job(async_dir), 600, lambda: "the copy of the stopped database\n" + run.output())
    os.kill(job["pid"], signal.SIGSTOP)
    try:
        assert not engine_processes(site, "2.2")
        run.signal_group(signal.SIGINT)
        rc = run.wait(300)
    finally:
        os.killpg(os.getpgid(job["pid"]), signal.SIGKILL)
    output = " ".join(run.output().split())

    assert rc != 0 and "User interrupted execution" in output, output[-3000:]
    assert not engine_processes(site) and serving_version(site) is None   # stopped ...
    assert job_records(site) == before                                     # ... with its database intact
    assert backup_problems(farm.backups) == []                             # no partial backup
    assert os.path.exists(mark)                                            # "the backup stopped it"

    rerun = farm.play("backup")  # a plain re-run: the lock of the interrupted run is taken over
    assert f"{mark} says an interrupted backup run stopped it" in flat(rerun)
    assert serving_version(site) == "2.2"                                  # back, serving
    assert job_records(site) == before
    entry = farm.report("backup")["engines"][0]
    assert entry["result"] == "ok", entry
    assert backup_problems(farm.backups) == [] and len(backups(farm.backups)) == 1
    assert not os.path.exists(mark) and not os.path.exists(os.path.join(site.data_dir, LOCK))

    # Without the mark (the engine was stopped by hand, not by a backup run), a backup leaves it stopped.
    stop_engine(site)
    farm.play("backup")
    assert not engine_processes(site) and serving_version(site) is None
    assert job_records(site) == before and len(backups(farm.backups)) == 2
