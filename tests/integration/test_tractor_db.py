"""renderfarm.tractor.tractor_db against the emulator: real ansible runs, real PostgreSQL.

Every state runs as check mode (reports changed; nothing changes, as the emulator's own
tractor-dbctl confirms) -> real run (changed; confirmed the same way) -> repeat (unchanged).
Modules run as the EngineOwner through ``become`` (su), except where a test says it runs as root,
in which case the module itself switches with runuser.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import tarfile

import pytest

V22 = "2.2"
V24 = "2.4"


# -- helpers ------------------------------------------------------------------------------------------
def args(site, version=V22, **kwargs):
    return dict(install_dir=site.installs(version), config_dir=site.config_dir, **kwargs)


def ok(proc):
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def running(site, version=V22) -> bool:
    """The emulator's tractor-dbctl --status, independently of the module."""
    err = ok(site.dbctl(version, "--status")).stderr
    assert "postgresql server" in err, err
    return "A postgresql server is running" in err


def show_params(site, version=V22) -> dict:
    out = ok(site.dbctl(version, "--show-params")).stdout
    return dict(line.split(" = ", 1) for line in out.splitlines())


def sql(site, query, version=V22) -> list[str]:
    return ok(site.dbctl(version, "--exec-sql", query)).stdout.splitlines()


def seed(site, version=V22, jidcounter=41):
    """A started database holding three jobs, the last jid used being ``jidcounter``."""
    ok(site.dbctl(version, "--start-for-engine"))
    ok(site.dbctl(version, "--set-job-counter", str(jidcounter)))
    ok(site.dbctl(version, "--exec-sql",
                  "INSERT INTO job (jid, title) VALUES "
                  f"({jidcounter - 2}, 'a'), ({jidcounter - 1}, 'b'), ({jidcounter}, 'c')"))


def backup_dir(site) -> str:
    path = os.path.join(site.base, "backups")
    os.makedirs(path, exist_ok=True)
    os.chown(path, site.owner.pw_uid, site.owner.pw_gid)
    os.chmod(path, 0o700)
    return path


def give(site, *paths):
    """Files the test made as root, handed to the EngineOwner the module runs as."""
    for path in paths:
        os.chown(path, site.owner.pw_uid, site.owner.pw_gid)


def listing(path) -> list[str]:
    return sorted(os.listdir(path))


def diff_has(result, before: dict, after: dict) -> bool:
    """The callback prints the module's diff (and drops it from the result) as a unified diff of JSON."""
    text = result["_output"]
    lines = [f'-    "{k}": {json.dumps(v)}' for k, v in before.items()]
    lines += [f'+    "{k}": {json.dumps(v)}' for k, v in after.items()]
    missing = [line for line in lines if not any(out.rstrip(",") == line for out in text.splitlines())]
    assert not missing, f"{missing} not in diff:\n{text}"
    return True


def changed(result) -> bool:
    assert not result.get("failed"), json.dumps(result, indent=2)
    return bool(result.get("changed"))


def failed(result) -> str:
    assert result.get("failed"), json.dumps(result, indent=2)
    return result["msg"]


def data_entries(site) -> list[str]:
    return sorted(os.listdir(site.db_dir)) if os.path.isdir(site.db_dir) else []


def assert_archive_layout(path):
    with gzip.open(path) as raw:
        assert raw.read(1)  # decompresses
    with tarfile.open(path, "r:gz") as archive:
        names = archive.getnames()
    assert {name.split("/", 1)[0] for name in names} == {"psql"}
    assert "psql/PG_VERSION" in names and "psql/global/pg_control" in names


def assert_sidecars(site, path, method, jidcounter="41", job_count=3):
    mode = os.stat(path)
    assert stat.S_IMODE(mode.st_mode) == 0o600
    assert mode.st_uid == site.owner.pw_uid
    proc = subprocess.run(["sha256sum", "-c", os.path.basename(path) + ".sha256"], cwd=os.path.dirname(path),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(path + ".manifest.json", encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert manifest["method"] == method
    assert manifest["jidcounter"] == jidcounter and manifest["job_count"] == job_count
    assert manifest["schema_version"] == "2.2-4" and manifest["engine_version"] == V22
    assert manifest["engine_build"] == "1715407"
    assert manifest["params_source"] == "restore-verification" and manifest["verified"] == "restore"
    assert manifest["archive_size"] == os.path.getsize(path)
    assert manifest["source"]["db_data_dir"] == site.db_dir
    assert manifest["created"].endswith("Z") and manifest["top_level"] == "psql"
    return manifest


# -- started / stopped / status -------------------------------------------------------------------------
def test_started_stopped_status_as_engine_owner(site, ansible):
    # check mode: predicts the start, touches nothing (not even the missing data dir)
    result = ansible.module("tractor_db", args(site, state="started"), check=True, diff=True, become=True)
    assert changed(result)
    assert any(c.endswith("--start-for-engine") for c in result["commands"])
    assert diff_has(result, {"running": False}, {"running": True})
    assert not os.path.exists(site.db_dir)

    result = ansible.module("tractor_db", args(site, state="started"), become=True)
    assert changed(result)
    assert running(site)
    assert result["upgrade"]["to_version"] == "2.2-4"
    assert result["params"]["jidcounter"] == "0" == show_params(site)["jidcounter"]
    assert stat.S_IMODE(os.stat(site.db_dir).st_mode) == 0o700

    result = ansible.module("tractor_db", args(site, state="started"), become=True)
    assert not changed(result) and result["commands"] == []

    result = ansible.module("tractor_db", args(site), become=True)  # state=status is the default
    assert not changed(result)
    assert result["status"]["running"] and result["status"]["database_exists"]
    assert result["params"]["schema-version"] == "2.2-4"

    result = ansible.module("tractor_db", args(site, state="stopped"), check=True, diff=True, become=True)
    assert changed(result) and diff_has(result, {"running": True}, {"running": False})
    assert running(site)

    result = ansible.module("tractor_db", args(site, state="stopped"), become=True)
    assert changed(result)
    assert not running(site)

    result = ansible.module("tractor_db", args(site, state="stopped"), become=True)
    assert not changed(result)


def test_started_as_root_without_auto_upgrade_keeps_the_old_schema(site, ansible):
    seed(site, V22)
    ok(site.dbctl(V22, "--stop"))
    # as root: the module runs tractor-dbctl through runuser
    result = ansible.module("tractor_db", args(site, V24, state="started", auto_upgrade=False))
    assert changed(result)
    assert result["upgrade"] is None
    assert result["pending_upgrade"]["required"] is True
    assert result["pending_upgrade"]["from_version"] == "2.2-4"
    assert show_params(site, V24)["schema-version"] == "2.2-4"
    assert os.stat(os.path.join(site.db_dir, "postmaster.pid")).st_uid == site.owner.pw_uid
    result = ansible.module("tractor_db", args(site, V24, state="started", auto_upgrade=False))
    assert not changed(result)


# -- backup / absent / restore / verify, per method ------------------------------------------------------
@pytest.mark.parametrize("method, become", [("native", True), ("dbctl", False)], ids=["native-as-owner", "dbctl-as-root"])
def test_backup_destroy_restore_cycle(site, ansible, method, become):
    seed(site)
    dest = backup_dir(site)
    path = os.path.join(dest, f"job-db-{method}.tgz")
    backup = args(site, state="backup", path=path, method=method, stop_database=True)

    # -- backup: refused while the database runs (without stop_database)
    msg = failed(ansible.module("tractor_db", dict(backup, stop_database=False), become=become))
    assert "is running" in msg and "stop_database" in msg
    assert listing(dest) == [] and running(site)

    result = ansible.module("tractor_db", backup, check=True, diff=True, become=become)
    assert changed(result)
    assert diff_has(result, {"exists": False}, {"exists": True})
    assert any(c.endswith("--stop") for c in result["commands"])
    assert listing(dest) == [] and running(site)

    result = ansible.module("tractor_db", backup, become=become)
    assert changed(result)
    assert not running(site)
    assert listing(dest) == sorted([os.path.basename(path) + s for s in ("", ".manifest.json", ".sha256")])
    assert_archive_layout(path)
    manifest = assert_sidecars(site, path, method)
    assert result["backup"]["manifest"] == manifest and result["backup"]["created"] is True
    assert result["verification"]["scratch_removed"] is True
    if method == "dbctl":
        assert any("--backup" in c for c in result["commands"])
        assert manifest["tools"]["writer"].startswith("tractor-dbctl --backup")

    result = ansible.module("tractor_db", backup, become=become)
    assert not changed(result) and result["backup"]["created"] is False
    assert listing(dest) == sorted([os.path.basename(path) + s for s in ("", ".manifest.json", ".sha256")])

    # -- verify: read-only, and it reads (in check mode too; one mode per variant to save time)
    result = ansible.module("tractor_db", args(site, state="verify", path=path), check=method == "native",
                            become=become)
    assert not changed(result) and result["commands"] == []
    assert result["verification"]["jidcounter"] == "41" and result["verification"]["job_count"] == 3

    # -- absent: destroy, proven by the backup
    absent = args(site, state="absent", backup=path)
    before = data_entries(site)
    result = ansible.module("tractor_db", absent, check=True, diff=True, become=become)
    assert changed(result) and diff_has(result, {"data_dir_empty": False}, {"data_dir_empty": True})
    assert data_entries(site) == before
    result = ansible.module("tractor_db", absent, become=become)
    assert changed(result)
    assert data_entries(site) == [] and os.path.isdir(site.db_dir)
    result = ansible.module("tractor_db", absent, become=become)
    assert not changed(result)

    # -- restore into the emptied dir
    restore = args(site, state="restore", path=path)
    result = ansible.module("tractor_db", restore, check=True, diff=True, become=become)
    assert changed(result)
    assert any(c.endswith(f"--restore {path}") for c in result["commands"])
    assert not any(c.endswith("--destroy") for c in result["commands"])
    assert diff_has(result, {"data_dir_empty": True, "initialized": False}, {"data_dir_empty": False, "initialized": True})
    assert data_entries(site) == []
    result = ansible.module("tractor_db", restore, become=become)
    assert changed(result)
    assert "PG_VERSION" in data_entries(site)
    assert result["restore"]["sha256"] == manifest["sha256"]
    assert os.path.isfile(os.path.join(site.data_dir, ".renderfarm-tractor-restore.psql.json"))
    result = ansible.module("tractor_db", restore, become=become)
    assert not changed(result)

    # the restored database is the backed-up one, and the restore stays "done" once it is in use
    ok(site.dbctl(V22, "--start"))
    assert show_params(site)["jidcounter"] == "41"
    assert sql(site, "SELECT count(*) FROM job") == ["3"]
    result = ansible.module("tractor_db", restore, become=become)
    assert not changed(result)
    ok(site.dbctl(V22, "--stop"))


def test_emulator_dbctl_restores_a_native_archive(site, ansible):
    seed(site)
    ok(site.dbctl(V22, "--stop"))
    path = os.path.join(backup_dir(site), "native.tgz")
    result = ansible.module("tractor_db", args(site, state="backup", path=path, verify="archive"), become=True)
    assert changed(result)
    manifest = result["backup"]["manifest"]
    # verify: archive reads no job-database values, and says so instead of guessing
    assert manifest["params_source"] is None and manifest["jidcounter"] is None and manifest["verified"] == "archive"
    ok(site.dbctl(V22, "--destroy"))
    ok(site.dbctl(V22, "--restore", path))
    ok(site.dbctl(V22, "--start"))
    assert show_params(site)["jidcounter"] == "41"
    assert sql(site, "SELECT count(*) FROM job") == ["3"]
    ok(site.dbctl(V22, "--stop"))


def test_verified_archive_is_trusted_only_while_the_file_is_unchanged(site, ansible):
    """The downgrade's steps 4 and 5 pass the verification's read (verified_archive): an unchanged
    archive is not read again; a touched or replaced one is, and a replaced damaged copy is caught."""
    seed(site)
    ok(site.dbctl(V22, "--stop"))
    path = os.path.join(backup_dir(site), "db.tgz")
    assert changed(ansible.module("tractor_db", args(site, state="backup", path=path, verify="archive"), become=True))
    first = ansible.module("tractor_db", args(site, state="verify", path=path, verify="archive"), become=True)
    assert not changed(first) and "reused" not in first["archive"] and first["archive"]["identity"]
    earlier = first["archive"]

    # unchanged: trusted (check mode: the destroy is only planned, the reads are real)
    reused = ansible.module("tractor_db", args(site, state="absent", path=path, verified_archive=earlier),
                            check=True, become=True)
    assert changed(reused) and reused["archive"]["reused"] is True
    assert any("unchanged since the full read" in c for c in reused["checks"])
    restore = ansible.module("tractor_db", args(site, state="restore", path=path, force=True,
                                                verified_archive=earlier), check=True, become=True)
    assert changed(restore) and restore["archive"]["reused"] is True
    assert "PG_VERSION" in os.listdir(site.db_dir)  # check mode destroyed nothing

    # touched (same bytes, new mtime/ctime): read again
    os.utime(path)
    again = ansible.module("tractor_db", args(site, state="absent", path=path, verified_archive=earlier),
                           check=True, become=True)
    assert changed(again) and "reused" not in again["archive"]
    assert "changed since it was verified" in again["_stderr"]
    assert again["archive"]["sha256"] == earlier["sha256"]

    # replaced by a damaged copy of the same size and mtime: read again, and the damage is caught
    stat_before = os.stat(path)
    copy = path + ".new"
    with open(path, "rb") as handle:
        data = bytearray(handle.read())
    data[len(data) // 2] ^= 0xFF
    with open(copy, "wb") as handle:
        handle.write(data)
    give(site, copy)
    os.chmod(copy, 0o600)
    os.utime(copy, ns=(stat_before.st_atime_ns, stat_before.st_mtime_ns))
    os.replace(copy, path)
    msg = failed(ansible.module("tractor_db", args(site, state="absent", path=path, verified_archive=earlier),
                                become=True))
    assert "the sha256 of %s is" % path in msg or "damaged" in msg
    assert "PG_VERSION" in os.listdir(site.db_dir)  # nothing was destroyed


def test_verify_an_emulator_backup_and_catch_damage(site, ansible):
    seed(site)
    ok(site.dbctl(V22, "--stop"))
    dest = backup_dir(site)
    plain = os.path.join(dest, "dbctl-plain.tgz")
    ok(site.dbctl(V22, "--backup", plain))  # made outside the module: no .sha256, no manifest

    result = ansible.module("tractor_db", args(site, state="verify", path=plain), become=True)
    assert not changed(result)
    assert result["verification"]["jidcounter"] == "41" and "manifest" not in result
    assert result["archive"]["top_level"] == "psql"

    native = os.path.join(dest, "native.tgz")
    assert changed(ansible.module("tractor_db", args(site, state="backup", path=native, verify="archive"),
                                  become=True))

    # a flipped byte in the middle: the checksum file catches it
    flipped = os.path.join(dest, "flipped.tgz")
    shutil.copy(native, flipped)
    shutil.copy(native + ".sha256", flipped + ".sha256")
    with open(flipped + ".sha256", "r+", encoding="utf-8") as handle:
        line = handle.read().replace("native.tgz", "flipped.tgz")
        handle.seek(0)
        handle.write(line)
        handle.truncate()
    with open(flipped, "r+b") as handle:
        handle.seek(os.path.getsize(flipped) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    give(site, flipped, flipped + ".sha256")
    msg = failed(ansible.module("tractor_db", args(site, state="verify", path=flipped, verify="archive"),
                                become=True))
    assert "does not match" in msg and "flipped.tgz.sha256" in msg and "do not restore" in msg

    # the same damage without a checksum file: gzip's CRC/deflate checks catch it
    os.unlink(flipped + ".sha256")
    msg = failed(ansible.module("tractor_db", args(site, state="verify", path=flipped, verify="archive"),
                                become=True))
    assert "damaged" in msg

    # a truncated copy of the dbctl archive
    truncated = os.path.join(dest, "truncated.tgz")
    shutil.copy(plain, truncated)
    with open(truncated, "r+b") as handle:
        handle.truncate(os.path.getsize(truncated) * 2 // 3)
    give(site, truncated)
    msg = failed(ansible.module("tractor_db", args(site, state="verify", path=truncated, verify="archive"),
                                become=True))
    assert "damaged or not a gzip-compressed tar archive" in msg

    # restore refuses the damaged archive before touching anything
    ok(site.dbctl(V22, "--destroy"))
    msg = failed(ansible.module("tractor_db", args(site, state="restore", path=truncated), become=True))
    assert "damaged" in msg and data_entries(site) == []


def test_destroy_refusals(site, make_site, ansible):
    seed(site)
    msg = failed(ansible.module("tractor_db", args(site, state="absent"), become=True))
    assert "without a backup" in msg and "force" in msg
    ok(site.dbctl(V22, "--stop"))
    msg = failed(ansible.module("tractor_db", args(site, state="absent"), check=True, become=True))
    assert "without a backup" in msg

    # a verified backup, but of another cluster: refused (PostgreSQL system identifiers differ)
    other = make_site()
    seed(other)
    ok(other.dbctl(V22, "--stop"))
    foreign = os.path.join(backup_dir(other), "other.tgz")
    ok(other.dbctl(V22, "--backup", foreign))
    msg = failed(ansible.module("tractor_db", args(site, state="absent", backup=foreign, verify="archive")))
    assert "is not a backup of the database" in msg

    # refused while the database runs, even with force
    ok(site.dbctl(V22, "--start"))
    msg = failed(ansible.module("tractor_db", args(site, state="absent", force=True), become=True))
    assert "stop the engine and database first" in msg
    ok(site.dbctl(V22, "--stop"))
    assert "PG_VERSION" in data_entries(site)

    # force without a backup destroys (check mode first: nothing happens)
    result = ansible.module("tractor_db", args(site, state="absent", force=True), check=True, become=True)
    assert changed(result) and "PG_VERSION" in data_entries(site)
    assert changed(ansible.module("tractor_db", args(site, state="absent", force=True), become=True))
    assert data_entries(site) == []


def test_restore_refusals_and_force(site, ansible):
    seed(site)
    path = os.path.join(backup_dir(site), "job-db.tgz")
    assert changed(ansible.module("tractor_db", args(site, state="backup", path=path, stop_database=True,
                                                     verify="archive"), become=True))
    ok(site.dbctl(V22, "--start"))
    ok(site.dbctl(V22, "--exec-sql", "INSERT INTO job (jid, title) VALUES (42, 'after the backup')"))

    msg = failed(ansible.module("tractor_db", args(site, state="restore", path=path), become=True))
    assert "stop the engine and database first" in msg
    ok(site.dbctl(V22, "--stop"))

    msg = failed(ansible.module("tractor_db", args(site, state="restore", path=path), become=True))
    assert "is not empty" in msg and "force" in msg

    restore = args(site, state="restore", path=path, force=True)
    result = ansible.module("tractor_db", restore, check=True, become=True)
    assert changed(result)
    assert [c.rsplit(" ", 1)[-1] for c in result["commands"][:2]] == ["--destroy", path]
    ok(site.dbctl(V22, "--start"))
    assert sql(site, "SELECT count(*) FROM job") == ["4"]  # check mode changed nothing
    ok(site.dbctl(V22, "--stop"))

    assert changed(ansible.module("tractor_db", restore, become=True))
    ok(site.dbctl(V22, "--start"))
    assert sql(site, "SELECT count(*) FROM job") == ["3"]  # the job spooled after the backup is gone
    # the restored database moves on
    ok(site.dbctl(V22, "--exec-sql", "INSERT INTO job (jid, title) VALUES (43, 'after the restore')"))
    ok(site.dbctl(V22, "--stop"))
    # without force: left as it is, and said so
    plain = ansible.module("tractor_db", args(site, state="restore", path=path), become=True)
    assert not changed(plain) and "still holds the restore of" in plain["msg"]
    # force: the database ends equal to the archive again
    again = ansible.module("tractor_db", restore, become=True)
    assert changed(again) and "restores it again" in again["msg"]
    ok(site.dbctl(V22, "--start"))
    assert sql(site, "SELECT count(*) FROM job") == ["3"]
    ok(site.dbctl(V22, "--stop"))


def test_engine_running_blocks_backup_and_stop(site, ansible):
    engine = site.start_engine(V22)
    try:
        assert running(site)
        path = os.path.join(backup_dir(site), "job-db.tgz")
        msg = failed(ansible.module("tractor_db", args(site, state="backup", path=path, stop_database=True),
                                    check=True, become=True))
        assert "engine" in msg and "answers" in msg and "stop the engine first" in msg
        assert listing(os.path.dirname(path)) == []
        msg = failed(ansible.module("tractor_db", args(site, state="stopped"), become=True))
        assert "stop the engine first" in msg
        assert running(site)
    finally:
        engine.stop()
