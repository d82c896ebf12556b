"""Faults whose guard is a module: tractor_db (backup, restore) and tractor_engine (stop).

Each module call is a real ``ansible localhost -m renderfarm.tractor.<module>`` run against an
emulated engine (real PostgreSQL, real processes); what the job database holds is read with SQL
(tractor-dbctl --exec-sql), and the files with os/hashlib, never through the module's own answer.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess

import pytest

from tractor_farm import (
    backup_problems, db_running, engine_processes, job_records, serving_version, spool_jobs, stop_engine,
)
from tractor_sites import EngineProc

# One worker runs the whole module (see conftest.py): its tests share one run.
pytestmark = pytest.mark.xdist_group("restore-site")


def db_files(site) -> dict:
    """Every file of the (stopped) PostgreSQL data directory with its sha256: proof nothing was destroyed."""
    digest = {}
    for dirpath, _, filenames in os.walk(site.db_dir):
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as handle:
                digest[os.path.relpath(path, site.db_dir)] = hashlib.sha256(handle.read()).hexdigest()
    return digest


def db_args(site, version="2.2", **args):
    return {"install_dir": site.installs(version), "config_dir": site.config_dir, **args}


# -- 4: disk full while the checksum and manifest are written --------------------------------------------
@pytest.fixture
def tmpfs_mount(world):
    mounted = []

    def mount(size_bytes, owner):
        path = os.path.join(world, f"tmpfs-{len(mounted)}-{os.getpid()}")
        os.makedirs(path)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755,uid={owner.pw_uid},"
                        f"gid={owner.pw_gid}", "tmpfs", path], check=True)
        mounted.append(path)
        return path
    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", path], check=False)


def test_04_disk_full_while_writing_the_checksum_and_manifest(farm, site, ansible, tmpfs_mount):
    """The archive fits, its sidecars do not: no sidecar without archive, no temporary file, no traceback."""
    farm.add("prod", site, "2.2")
    farm.launch(("prod", "2.2"))
    spool_jobs(site)
    stop_engine(site, database=True)
    probe_dir = os.path.join(site.base, "probe")
    os.makedirs(probe_dir)
    os.chown(probe_dir, site.owner.pw_uid, site.owner.pw_gid)  # the EngineOwner writes backups
    first = ansible.module("tractor_db", db_args(site, state="backup", path=f"{probe_dir}/db.tgz", verify="archive"))
    assert not first.get("failed"), first
    size = os.path.getsize(f"{probe_dir}/db.tgz")
    pages = -(-size // 4096)
    full = tmpfs_mount(pages * 4096, site.owner)  # room for the archive, not one page more
    before_files = db_files(site)
    result = ansible.module("tractor_db", db_args(site, state="backup", path=f"{full}/db.tgz", verify="archive",
                                                  free_space_factor=0))
    assert result.get("failed") and result["_status"] == "FAILED", result
    assert "Traceback" not in result.get("msg", "") and "MODULE FAILURE" not in result.get("msg", ""), result
    assert result["msg"].startswith(f"writing the checksum and manifest of {full}/db.tgz failed"), result["msg"]
    assert "No space left on device" in result["msg"] and "the disk is full" in result["msg"]
    assert os.listdir(full) == []  # no archive, no sidecar, no temporary file
    assert db_files(site) == before_files
    before = job_records(site)
    assert before["jids"] == {1, 2} and before["jidcounter"] == "2"


# -- 5 and 6: restore refuses before destroying anything -------------------------------------------------
@pytest.fixture(scope="module")
def restore_site(round_farm, ansible):
    """A stopped engine whose database holds three jobs, and a good backup made after the second."""
    farm = round_farm
    site = farm.make_site()
    farm.add("prod", site, "2.2")
    farm.launch(("prod", "2.2"))
    spool_jobs(site)
    stop_engine(site, database=True)
    good_dir = os.path.join(site.base, "backups")
    os.makedirs(good_dir)
    os.chown(good_dir, site.owner.pw_uid, site.owner.pw_gid)
    good = os.path.join(good_dir, "tractor-prod-2.2.tgz")
    result = ansible.module("tractor_db", db_args(site, state="backup", path=good, verify="archive"))
    assert not result.get("failed"), result
    farm.launch(("prod", "2.2"))
    EngineProc(site, None).spool({"title": "after the backup", "tasks": [{"title": "d", "argv": ["true"]}]})
    stop_engine(site, database=True)
    return dict(site=site, good=good)


def damaged_copy(good, how):
    """A copy of the backup (with its .sha256 and manifest) damaged after it was written, beside it
    (where the EngineOwner can read it: only the archive checks stand between it and a restore)."""
    directory = os.path.join(os.path.dirname(os.path.dirname(good)), f"damaged-{how}")
    os.makedirs(directory)
    os.chown(directory, *owner_ids(good))
    copy = os.path.join(directory, os.path.basename(good))
    for suffix in ("", ".sha256", ".manifest.json"):
        shutil.copy2(good + suffix, copy + suffix)
    data = bytearray(open(copy, "rb").read())
    if how == "flipped-header-byte":
        data[5] ^= 0xFF  # gzip MTIME: every gzip CRC still passes, only the sha256 can tell
    elif how == "flipped-data-byte":
        data[len(data) // 2] ^= 0x01
    elif how == "truncated":
        data = data[: len(data) * 2 // 3]
    with open(copy, "wb") as handle:
        handle.write(data)
    for path in (copy, copy + ".sha256", copy + ".manifest.json"):
        os.chown(path, *owner_ids(good))
    return copy


def owner_ids(path):
    st = os.stat(path)
    return st.st_uid, st.st_gid


EXPECTED_CAUSE = {
    "flipped-header-byte": "was changed or damaged after the backup",
    "flipped-data-byte": "The file is damaged or incomplete",
    "truncated": "The file is damaged or incomplete",
}


@pytest.mark.parametrize("how", sorted(EXPECTED_CAUSE))
def test_05_damaged_backup_is_refused_before_anything_is_destroyed(restore_site, ansible, how):
    site = restore_site["site"]
    damaged = damaged_copy(restore_site["good"], how)
    if how == "flipped-header-byte":
        gzip.decompress(open(damaged, "rb").read())  # the damage is invisible to gzip itself
    files = db_files(site)
    # force: true -- only the archive check stands between the damaged file and the destroy.
    result = ansible.module("tractor_db", db_args(site, state="restore", path=damaged, force=True))
    assert result.get("failed"), result
    assert EXPECTED_CAUSE[how] in result["msg"] and "do not restore it" in result["msg"], result["msg"]
    assert damaged in result["msg"]
    assert not any("--destroy" in c or "--restore" in c for c in result.get("commands", [])), result["commands"]
    assert db_files(site) == files  # not one byte of the database changed
    records = job_records(site)
    assert records["jids"] == {1, 2, 3} and records["jidcounter"] == "3"
    assert len(records["tasks"]) == 4


def test_06_restore_into_a_non_empty_data_dir_without_force_is_refused(restore_site, ansible):
    site = restore_site["site"]
    files = db_files(site)
    result = ansible.module("tractor_db", db_args(site, state="restore", path=restore_site["good"]))
    assert result.get("failed"), result
    assert f"{site.db_dir} is not empty (it holds a PostgreSQL cluster): restoring would replace it" in result["msg"]
    assert "force: true" in result["msg"]
    assert result.get("commands") == []
    assert db_files(site) == files
    records = job_records(site)
    assert records["jids"] == {1, 2, 3} and records["jidcounter"] == "3"
    assert backup_problems(os.path.dirname(restore_site["good"])) == []


# -- 13: an engine that ignores SIGTERM ----------------------------------------------------------------
def test_13_engine_hanging_on_sigterm_is_killed_after_the_stop_timeout(farm, site, ansible):
    farm.add("prod", site, "2.2")
    farm.launch(("prod", "2.2"))
    spool_jobs(site)
    before = job_records(site)
    pid = EngineProc(site, None).status()["pid"]
    site.write("emulator-faults", "engine-hangs-on-sigterm\n")
    args = db_args(site, state="stopped", service_manager="direct", stop_timeout=3)

    # escalate=false: the module gives up after stop_timeout and leaves the engine as it is.
    kept = ansible.module("tractor_engine", dict(args, escalate=False))
    assert kept.get("failed"), kept
    assert f"the engine (pid {pid}) did not exit within 3 s of the stop request; it is still running " \
           "(escalate=false)" in kept["msg"]
    assert serving_version(site) == "2.2" and EngineProc(site, None).status()["pid"] == pid

    # escalate=true (the default, and what the roles use with stop_timeout 60): SIGKILL, then what
    # the engine itself runs on exit (tractor-dbctl --stop-for-engine) stops PostgreSQL.
    result = ansible.module("tractor_engine", args)
    assert not result.get("failed"), result
    assert result["changed"] and result["escalated"] is True and result["state"] == "stopped"
    # (the ad-hoc callback prints a module's warnings on stderr, "[WARNING]: ...", wrapped)
    warnings = " ".join(" ".join(result.get("warnings", []) + [result["_stderr"]]).split())
    assert f"the engine (pid {pid}) did not exit within 3 s of SIGTERM/stop; it was killed with SIGKILL" in warnings
    assert not engine_processes(site)
    assert not db_running(site)  # stopped with its database intact:
    assert job_records(site) == before
