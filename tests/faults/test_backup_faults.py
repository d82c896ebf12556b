"""Faults around a backup: one run of playbooks/backup.yml, one fault per engine.

Five emulated engines run 2.2 with jobs; each gets one fault, and one backup run covers them all
(the backup play has no batches: every engine is backed up on its own).  Each test then checks its
engine independently of Ansible: the cause named in the output and the report, the engine's state,
and that the job database and the backup directory hold exactly what they held before.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from tractor_farm import Watcher, backup_problems, job_records, serving_version, spool_jobs, wait_for
from tractor_sites import EngineProc

# One worker runs the whole module (see conftest.py): its tests share one run.
pytestmark = pytest.mark.xdist_group("backup-round")

ENGINES = ("full", "locked", "stale", "owner", "dbdir")
LOCK = ".renderfarm-tractor.lock"
# Room for the preflights (free space >= the ~46 MiB job database), filled by another writer as
# soon as the backup's temporary archive appears.
TMPFS_SIZE = "64m"


@pytest.fixture(scope="module")
def tmpfs(world):
    path = os.path.join(world, "full-disk")
    os.makedirs(path)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "tmpfs", path], check=True)
    yield path
    subprocess.run(["umount", "-l", path], check=False)


@pytest.fixture(scope="module")
def backup_round(round_farm, tmpfs):
    farm = round_farm
    sites = {name: farm.make_site() for name in ENGINES}
    for name, site in sites.items():
        hostvars = {}
        if name == "full":  # 4: backups go to the tmpfs (verify archive, no copy first: only the archive on it)
            hostvars = {"backup_dir": tmpfs, "backup_verify": "archive", "backup_copy_while_stopped": False}
        farm.add(name, site, "2.2", **hostvars)
    farm.launch(*[(name, "2.2") for name in ENGINES])
    for site in sites.values():
        spool_jobs(site)
    before = {name: job_records(site) for name, site in sites.items()}
    pids = {name: EngineProc(site, None).status()["pid"] for name, site in sites.items()}

    # 9a: a lock held by a run that is still alive (a live process on this controller).
    holder = subprocess.Popen(["sleep", "900"])
    live_lock = {"run_id": "other-run-live", "controller_host": socket.gethostname(),
                 "controller_pid": holder.pid, "created": time.time(), "purpose": "backup 2.2"}
    with open(os.path.join(sites["locked"].data_dir, LOCK), "w", encoding="utf-8") as handle:
        json.dump(live_lock, handle)

    # 9b: a run killed (SIGKILL, like a crashed controller) while it held the lock.
    stale_lock_path = os.path.join(sites["stale"].data_dir, LOCK)
    killed = farm.start_play("backup", tractor_hosts="stale")
    wait_for(lambda: os.path.exists(stale_lock_path), 300, lambda: "the killed run's lock\n" + killed.output())
    killed.signal_group(signal.SIGKILL)
    killed.wait(60)
    with open(stale_lock_path, encoding="utf-8") as handle:
        stale_lock = json.load(handle)

    # 10a: tractor.config now names an EngineOwner that does not exist (the engine runs on).
    path = os.path.join(sites["owner"].config_dir, "tractor.config")
    text = open(path, encoding="utf-8").read()
    sites["owner"].write("tractor.config", text.replace(f'"EngineOwner": "{sites["owner"].owner.pw_name}"',
                                                        '"EngineOwner": "nosuchowner"'))
    # 10b: DBDataDir was chowned to root (e.g. files restored by hand as root). Mode 0755 keeps it
    # traversable: with 0700 the running PostgreSQL (the EngineOwner) loses its own directory and
    # shuts itself down at its next once-a-minute check of postmaster.pid, so on a slow run the
    # engine died of the fault injection, not of anything the backup did.
    os.chown(sites["dbdir"].db_dir, 0, 0)
    os.chmod(sites["dbdir"].db_dir, 0o755)
    # 4: the disk fills while the archive is written (another writer takes all the free space).
    def fill_the_disk(w):
        w.until(lambda: [n for n in os.listdir(os.path.join(tmpfs, "full")) if ".tmp" in n]
                if os.path.isdir(os.path.join(tmpfs, "full")) else None, interval=0.01)
        with open(os.path.join(tmpfs, "filler"), "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * (1 << 20))
            except OSError as exc:
                w.note(f"tmpfs filled while the backup was being written: {exc}")

    filler = Watcher("full", fill_the_disk)
    filler.start()
    try:
        proc = farm.play("backup", expect_ok=False)
    finally:
        filler.finish()
        os.chown(sites["dbdir"].db_dir, sites["dbdir"].owner.pw_uid, sites["dbdir"].owner.pw_gid)
        os.chmod(sites["dbdir"].db_dir, 0o700)
        holder.kill()
        holder.wait()
    report = {entry["engine"]: entry for entry in farm.report("backup")["engines"]}
    return dict(farm=farm, sites=sites, proc=proc, output=" ".join((proc.stdout + proc.stderr).split()),
                report=report, before=before, pids=pids, live_lock=live_lock, stale_lock=stale_lock,
                killed=killed, tmpfs=tmpfs, filler=filler)


def assert_failed_with(run, name, *words):
    entry = run["report"][name]
    assert entry["result"] == "failed", entry
    for word in words:
        assert word in entry["error"], entry["error"]
        assert word in run["output"]
    assert run["proc"].returncode != 0


def assert_untouched(run, name):
    """(b) the engine serves on, never stopped; (c) its jobs and the backup directory are as before."""
    site = run["sites"][name]
    assert serving_version(site) == "2.2"
    assert EngineProc(site, None).status()["pid"] == run["pids"][name]
    assert job_records(site) == run["before"][name]
    assert not os.path.exists(os.path.join(run["farm"].backups, name))


def test_04_disk_full_during_backup_leaves_no_partial_file(backup_round):
    run = backup_round
    site = run["sites"]["full"]
    assert run["filler"].error is None and run["filler"].events, (run["filler"].error, run["filler"].events)
    assert_failed_with(run, "full", "No space left on device", "the disk is full")
    assert backup_problems(run["tmpfs"]) == []
    assert [n for n in os.listdir(os.path.join(run["tmpfs"], "full"))] == []
    # The role started the engine it had stopped again, on the untouched database.
    assert serving_version(site) == "2.2"
    assert job_records(site) == run["before"]["full"]


def test_09_lock_held_by_a_live_run_is_refused(backup_round):
    run = backup_round
    assert_failed_with(run, "locked", "engine locked by another run: run other-run-live (backup 2.2)",
                       f"its controller process {run['live_lock']['controller_pid']} on", "-e tractor_lock_break=other-run-live")
    assert_untouched(run, "locked")
    with open(os.path.join(run["sites"]["locked"].data_dir, LOCK), encoding="utf-8") as handle:
        assert json.load(handle) == run["live_lock"]  # left alone


def test_09_lock_of_a_killed_run_is_taken_over_and_reported(backup_round):
    run = backup_round
    lock, site = run["stale_lock"], run["sites"]["stale"]
    assert lock["controller_pid"] == run["killed"].proc.pid  # the killed ansible-playbook took it
    # Its controller was this host and its process is gone: the next run takes the lock over
    # without any option, backs up, and says so in its report.
    entry = run["report"]["stale"]
    assert entry["result"] == "ok", entry
    reason = f"its controller process {lock['controller_pid']} on {lock['controller_host']} is gone"
    assert entry["lock_taken_over"] == {"run_id": lock["run_id"], "reason": reason}
    assert f"took over the lock of run {lock['run_id']}: {reason}" in run["output"]
    assert serving_version(site) == "2.2" and job_records(site) == run["before"]["stale"]
    assert backup_problems(run["farm"].backups) == [] and os.listdir(os.path.join(run["farm"].backups, "stale"))
    assert not os.path.exists(os.path.join(site.data_dir, LOCK))  # released by the run that took it over


def test_10_missing_engine_owner_is_refused(backup_round):
    run = backup_round
    assert_failed_with(run, "owner", "EngineOwner 'nosuchowner' does not exist")
    assert_untouched(run, "owner")


def test_10_job_database_dir_of_another_owner_is_refused(backup_round):
    run = backup_round
    site = run["sites"]["dbdir"]
    assert_failed_with(run, "dbdir", f"DBDataDir {site.db_dir} is owned by root, not by the EngineOwner "
                                     f"{site.owner.pw_name}", "Nothing was changed")
    assert_untouched(run, "dbdir")
