"""The backup library (tractor_files, tractor_targz, tractor_inspect, tractor_restore_check): writer, checks, restore check."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import tarfile
import zlib

import pytest

from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_files as tf
from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_inspect as ti
from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_restore_check as trc
from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_targz as tz
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_files import ArchiveError

SYSID = 7301234567890123456


# -- fixtures -----------------------------------------------------------------------------------------
def make_cluster(root, name="psql", extra=None):
    """A directory shaped like a stopped PostgreSQL cluster."""
    data = os.path.join(root, name)
    os.makedirs(os.path.join(data, "global"))
    os.makedirs(os.path.join(data, "base", "1"))
    with open(os.path.join(data, "PG_VERSION"), "w") as handle:
        handle.write("15\n")
    with open(os.path.join(data, "global", "pg_control"), "wb") as handle:
        handle.write(struct.pack("=Q", SYSID) + b"\0" * 8184)
    with open(os.path.join(data, "base", "1", "1259"), "wb") as handle:
        handle.write(os.urandom(50000) + b"x" * 200000)
    for rel, content in (extra or {}).items():
        path = os.path.join(data, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)
    os.chmod(data, 0o700)
    return data


def write(path, src, **kwargs):
    with tf.AtomicFile(path) as out:
        result = tz.write_archive(src, out, **kwargs)
        out.commit()
    return result


def tar_gz(path, members):
    """A .tgz of hand-made members: (TarInfo kwargs, bytes or None)."""
    with tarfile.open(path, "w:gz") as tar:
        for info_kwargs, data in members:
            info = tarfile.TarInfo(info_kwargs.pop("name"))
            for key, value in info_kwargs.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def good_members(top="psql"):
    return [
        (dict(name=top, type=tarfile.DIRTYPE, mode=0o700), None),
        (dict(name=f"{top}/PG_VERSION"), b"15\n"),
        (dict(name=f"{top}/global", type=tarfile.DIRTYPE, mode=0o700), None),
        (dict(name=f"{top}/global/pg_control"), struct.pack("=Q", SYSID) + b"\0" * 8),
    ]


@pytest.fixture
def cluster(tmp_path):
    return make_cluster(str(tmp_path / "data"))


# -- ParallelGzipWriter ---------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 3])
def test_parallel_gzip_is_multi_member_and_decompresses_everywhere(tmp_path, workers):
    data = os.urandom(300000) + b"a" * 700000
    out = io.BytesIO()
    writer = tz.ParallelGzipWriter(out, level=6, workers=workers, block_size=100000)
    for start in range(0, len(data), 7777):
        writer.write(data[start:start + 7777])
    writer.close()
    assert writer.members == 10
    assert gzip.decompress(out.getvalue()) == data
    path = tmp_path / "x.gz"
    path.write_bytes(out.getvalue())
    if shutil.which("gzip"):
        proc = subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=False)
        assert proc.returncode == 0 and proc.stdout == data and proc.stderr == b""
    # every block is an independent member: the first one decompresses on its own
    first = zlib.decompressobj(31)
    assert first.decompress(out.getvalue()) == data[:100000] and first.eof


def test_parallel_gzip_output_does_not_depend_on_the_thread_count():
    data = os.urandom(250000) * 3
    outputs = set()
    for workers in (1, 2, 4):
        out = io.BytesIO()
        writer = tz.ParallelGzipWriter(out, workers=workers, block_size=65536)
        writer.write(data)
        writer.close()
        outputs.add(out.getvalue())
    assert len(outputs) == 1


def test_parallel_gzip_empty_input_is_a_valid_gzip_file():
    out = io.BytesIO()
    writer = tz.ParallelGzipWriter(out, workers=2)
    writer.close()
    assert gzip.decompress(out.getvalue()) == b"" and writer.members == 1


def test_parallel_gzip_bounds_blocks_in_flight_and_refuses_bad_settings():
    class Slow(io.BytesIO):
        pass
    writer = tz.ParallelGzipWriter(Slow(), workers=2, block_size=10)
    writer.write(b"x" * 1000)
    assert len(writer.pending) <= 4
    writer.close()
    with pytest.raises(ValueError):
        writer.write(b"more")
    with pytest.raises(ValueError):
        tz.ParallelGzipWriter(io.BytesIO(), level=10)
    with pytest.raises(ValueError):
        tz.ParallelGzipWriter(io.BytesIO(), block_size=0)


def test_parallel_gzip_raises_what_the_sink_raises():
    class Full(object):
        def write(self, data):
            raise OSError(28, "No space left on device")
    writer = tz.ParallelGzipWriter(Full(), workers=2, block_size=10)
    with pytest.raises(OSError) as err:
        writer.write(b"y" * 200)
        writer.close()
    writer.abort()
    assert tf.is_no_space(err.value)


# -- write_archive / AtomicFile -------------------------------------------------------------------------
def test_write_archive_has_the_tractor_dbctl_layout(tmp_path, cluster):
    path = str(tmp_path / "a.tgz")
    result = write(path, cluster, workers=2, block_size=65536)
    assert result["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert result["size"] == os.path.getsize(path)
    assert result["gzip_members"] > 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with tarfile.open(path, "r:gz") as tar:
        names = tar.getnames()
    assert names[0] == "psql" and {n.split("/")[0] for n in names} == {"psql"}
    assert "psql/PG_VERSION" in names and "psql/global/pg_control" in names
    if shutil.which("tar"):  # what tractor-dbctl --restore runs: tar xfz FILE -C <parent>
        out = tmp_path / "restore"
        out.mkdir()
        proc = subprocess.run(["tar", "xfz", path, "-C", str(out)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0 and proc.stderr == ""
        assert (out / "psql" / "base" / "1" / "1259").read_bytes() == open(
            os.path.join(cluster, "base", "1", "1259"), "rb").read()


def _stock_add_tree(tar, path, arcname):
    """The walk with tarfile's own gettarinfo (an account lookup per file), as a reference."""
    info = tar.gettarinfo(path, arcname)
    if info is None:
        return
    if info.isreg():
        with open(path, "rb") as handle:
            tar.addfile(info, handle)
    else:
        tar.addfile(info)
    if info.isdir():
        for name in sorted(os.listdir(path)):
            _stock_add_tree(tar, os.path.join(path, name), arcname + "/" + name)


def test_write_tar_stream_writes_what_tarfile_stream_mode_writes(cluster):
    """The plain-mode tar with a large copy buffer and names looked up once per id (bench/,
    docs/performance.md) is byte for byte the stream-mode GNU tar of tarfile's own gettarinfo."""
    os.symlink("base", os.path.join(cluster, "link-to-base"))
    os.link(os.path.join(cluster, "PG_VERSION"), os.path.join(cluster, "PG_VERSION.hardlink"))
    if os.geteuid() == 0:
        os.chown(os.path.join(cluster, "base"), 12345, 54321)  # ids without a name: empty names
    ours = io.BytesIO()
    tz.write_tar_stream(cluster, ours)
    reference = io.BytesIO()
    with tarfile.open(fileobj=reference, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        _stock_add_tree(tar, cluster, "psql")
    assert ours.getvalue() == reference.getvalue()
    with tarfile.open(fileobj=io.BytesIO(ours.getvalue())) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["psql/link-to-base"].issym() and members["psql/link-to-base"].linkname == "base"
    assert members["psql/PG_VERSION.hardlink"].islnk()
    if os.geteuid() == 0:
        assert members["psql/base"].uid == 12345 and members["psql/base"].uname == ""


def test_parallel_gzip_takes_any_bytes_like_chunks():
    data = os.urandom(50000) + b"b" * 150000
    out = io.BytesIO()
    writer = tz.ParallelGzipWriter(out, workers=2, block_size=30000)
    for start, kind in zip(range(0, len(data), 9000), [bytes, bytearray, memoryview] * 100):
        writer.write(kind(data[start:start + 9000]))
    writer.write(b"")
    writer.close()
    assert gzip.decompress(out.getvalue()) == data and writer.members == 7 and writer.bytes_in == len(data)


def test_write_archive_leaves_out_sockets(tmp_path, cluster):
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(cluster, ".s.PGSQL.5432"))
    try:
        result = write(str(tmp_path / "a.tgz"), cluster)
    finally:
        sock.close()
    assert result["skipped"] == ["psql/.s.PGSQL.5432"]


def test_atomic_file_commit_and_discard(tmp_path):
    final = tmp_path / "out.tgz"
    with tf.AtomicFile(str(final), mode=0o600) as out:
        out.write(b"data")
        temp = out.path
        assert os.path.basename(temp).startswith(".out.tgz.tmp-")
        out.commit()
    assert final.read_bytes() == b"data" and not os.path.exists(temp)
    with pytest.raises(RuntimeError):
        with tf.AtomicFile(str(tmp_path / "never.tgz")) as out:
            out.write(b"half")
            raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == ["out.tgz"]
    with tf.AtomicFile(str(tmp_path / "uncommitted")) as out:
        out.write(b"x")
        out.finish()
    assert sorted(os.listdir(tmp_path)) == ["out.tgz"]


def test_write_text_atomic(tmp_path):
    path = str(tmp_path / "a.tgz.sha256")
    tf.write_text_atomic(path, tf.format_sha256_line("ab" * 32, "/x/a.tgz"))
    assert open(path).read() == "ab" * 32 + "  a.tgz\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


# -- sidecars -------------------------------------------------------------------------------------------
def test_parse_sha256_file():
    digest = "0123456789abcdef" * 4
    assert tf.parse_sha256_file(f"{digest}  a.tgz\n") == digest
    assert tf.parse_sha256_file(f"{digest.upper()} *a.tgz\n", "/b/a.tgz") == digest
    other = "f" * 64
    assert tf.parse_sha256_file(f"{other}  b.tgz\n{digest}  a.tgz\n", "/x/a.tgz") == digest
    with pytest.raises(ValueError, match="no line names a.tgz"):
        tf.parse_sha256_file(f"{other}  b.tgz\n{other}  c.tgz\n", "/x/a.tgz")
    with pytest.raises(ValueError, match="sha256"):
        tf.parse_sha256_file("not a checksum\n")


def test_read_sidecars(tmp_path):
    path = str(tmp_path / "a.tgz")
    assert tf.read_sidecars(path) == (None, None)
    (tmp_path / "a.tgz.sha256").write_text("junk\n")
    with pytest.raises(ArchiveError, match="cannot read the checksum file"):
        tf.read_sidecars(path)
    (tmp_path / "a.tgz.sha256").write_text("a" * 64 + "  a.tgz\n")
    (tmp_path / "a.tgz.manifest.json").write_text("{not json")
    with pytest.raises(ArchiveError, match="cannot read the manifest"):
        tf.read_sidecars(path)
    (tmp_path / "a.tgz.manifest.json").write_text("[1]")
    with pytest.raises(ArchiveError, match="JSON object"):
        tf.read_sidecars(path)
    (tmp_path / "a.tgz.manifest.json").write_text(json.dumps({"sha256": "a" * 64}))
    assert tf.read_sidecars(path) == ("a" * 64, {"sha256": "a" * 64})


# -- inspect_archive ------------------------------------------------------------------------------------
def test_inspect_a_good_archive(tmp_path, cluster):
    path = str(tmp_path / "a.tgz")
    written = write(path, cluster, block_size=65536, workers=2)
    info = ti.inspect_archive(path, top="psql")
    assert info["problems"] == []
    assert info["sha256"] == written["sha256"] and info["size"] == written["size"]
    assert info["top_level"] == "psql" and info["pg_version"] == "15"
    assert info["system_identifier"] == str(SYSID)
    assert info["members"] == written["members"] and info["file_bytes"] == written["file_bytes"]
    assert info["postmaster_pid"] is False


def test_inspect_flags_a_running_servers_pid_file(tmp_path):
    cluster = make_cluster(str(tmp_path / "d"), extra={"postmaster.pid": b"123\n"})
    path = str(tmp_path / "a.tgz")
    write(path, cluster)
    assert ti.inspect_archive(path, "psql")["postmaster_pid"] is True


@pytest.mark.parametrize("members, expected", [
    (good_members("pgdata"), "top-level directory is pgdata/, not psql/"),
    (good_members() + good_members("other")[:1], "more than one top-level entry: other, psql"),
    (good_members() + [(dict(name="/etc/passwd"), b"x")], "/etc/passwd: absolute path"),
    (good_members() + [(dict(name="psql/../../evil"), b"x")], '".." in the path'),
    (good_members() + [(dict(name="psql/ln", type=tarfile.SYMTYPE, linkname="/etc"), None)],
     "link to the absolute path /etc"),
    (good_members() + [(dict(name="psql/ln", type=tarfile.SYMTYPE, linkname="../../etc"), None)],
     "leads outside the archive"),
    (good_members() + [(dict(name="psql/hl", type=tarfile.LNKTYPE, linkname="other/x"), None)],
     "hard link to other/x, outside psql/"),
    (good_members() + [(dict(name="psql/fifo", type=tarfile.FIFOTYPE), None)], "special file"),
    (good_members()[:1] + good_members()[2:], "no PG_VERSION"),
    (good_members()[:2], "no global/ directory"),
    ([], "the archive is empty"),
])
def test_inspect_structure_problems(tmp_path, members, expected):
    path = tar_gz(str(tmp_path / "bad.tgz"), [(dict(m), d) for m, d in members])
    info = ti.inspect_archive(path, top="psql")
    assert any(expected in problem for problem in info["problems"]), info["problems"]


def test_inspect_accepts_a_symlink_inside_the_tree(tmp_path):
    members = good_members() + [(dict(name="psql/pg_tblspc", type=tarfile.DIRTYPE), None),
                                (dict(name="psql/pg_tblspc/ln", type=tarfile.SYMTYPE, linkname="../global"), None)]
    path = tar_gz(str(tmp_path / "ok.tgz"), members)
    assert ti.inspect_archive(path, top="psql")["problems"] == []


def test_inspect_caps_the_problem_list(tmp_path):
    members = good_members() + [(dict(name=f"/abs/{i}"), b"x") for i in range(50)]
    info = ti.inspect_archive(tar_gz(str(tmp_path / "many.tgz"), members), top="psql")
    assert len([p for p in info["problems"] if "absolute path" in p]) == ti.MAX_PROBLEMS


def test_inspect_damage_is_an_error_that_still_reports_the_sha256(tmp_path, cluster):
    path = str(tmp_path / "a.tgz")
    write(path, cluster)
    size = os.path.getsize(path)
    flipped = str(tmp_path / "flipped.tgz")
    shutil.copy(path, flipped)
    with open(flipped, "r+b") as handle:
        handle.seek(size // 2)
        byte = handle.read(1)
        handle.seek(size // 2)
        handle.write(bytes([byte[0] ^ 0x55]))
    with pytest.raises(ArchiveError, match="is damaged or not a gzip-compressed tar archive") as err:
        ti.inspect_archive(flipped, "psql")
    assert err.value.info["sha256"] == hashlib.sha256(open(flipped, "rb").read()).hexdigest()
    assert err.value.info["size"] == size

    truncated = str(tmp_path / "truncated.tgz")
    shutil.copy(path, truncated)
    with open(truncated, "r+b") as handle:
        handle.truncate(size - 100)
    with pytest.raises(ArchiveError, match="EOFError|damaged"):
        ti.inspect_archive(truncated, "psql")

    not_gzip = tmp_path / "plain.tar"
    not_gzip.write_bytes(b"hello" * 100)
    with pytest.raises(ArchiveError, match="damaged or not a gzip"):
        ti.inspect_archive(str(not_gzip), "psql")
    with pytest.raises(ArchiveError, match="cannot read"):
        ti.inspect_archive(str(tmp_path / "missing.tgz"), "psql")


# -- safe_extract / identity ----------------------------------------------------------------------------
def test_safe_extract_restores_files_with_private_modes(tmp_path, cluster):
    path = str(tmp_path / "a.tgz")
    write(path, cluster)
    dest = tmp_path / "out"
    dest.mkdir()
    count = ti.safe_extract(path, str(dest), "psql")
    assert count > 3
    assert (dest / "psql" / "PG_VERSION").read_text() == "15\n"
    assert stat.S_IMODE(os.stat(dest / "psql" / "global").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(dest / "psql" / "PG_VERSION").st_mode) & 0o077 == 0
    identity = ti.data_dir_identity(str(dest / "psql"))
    assert identity["system_identifier"] == str(SYSID)
    assert identity["pg_version_inode"] == os.stat(dest / "psql" / "PG_VERSION").st_ino
    assert ti.data_dir_identity(str(tmp_path / "nothing")) is None


def test_safe_extract_refuses_bad_members(tmp_path):
    path = tar_gz(str(tmp_path / "bad.tgz"), good_members() + [(dict(name="psql/../x"), b"x")])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ArchiveError, match="refusing to extract"):
        ti.safe_extract(path, str(dest), "psql")
    assert not (tmp_path / "x").exists()


def test_system_identifier():
    assert ti.system_identifier(struct.pack("=Q", 42) + b"rest") == "42"
    assert ti.system_identifier(b"short") is None


# -- PostgreSQL binaries --------------------------------------------------------------------------------
def fake_bindir(path):
    os.makedirs(path)
    for tool in ("pg_ctl", "postgres", "psql"):
        tool_path = os.path.join(path, tool)
        with open(tool_path, "w") as handle:
            handle.write("#!/bin/sh\n")
        os.chmod(tool_path, 0o755)
    return path


def test_pg_major():
    assert trc.pg_major("postgres (PostgreSQL) 15.5 (Debian 15.5-0+deb12u1)") == "15"
    assert trc.pg_major("postgres (PostgreSQL) 9.3.25") == "9.3"
    assert trc.pg_major("postgres (PostgreSQL) 16") == "16"
    assert trc.pg_major("nothing") is None


def test_find_pg_bindir_order_and_major(tmp_path):
    install = tmp_path / "Tractor-2.4"
    bundled = fake_bindir(str(install / "lib" / "psql" / "bin"))
    env_dir = fake_bindir(str(tmp_path / "env" / "bin"))
    debian = str(tmp_path / "usr-lib-postgresql" / "*" / "bin")
    candidates = trc.pg_bindir_candidates(str(install), None, {trc.PG_BINDIR_ENV: env_dir}, debian)
    assert candidates[:2] == [env_dir, bundled]
    versions = {env_dir: "postgres (PostgreSQL) 15.4", bundled: "postgres (PostgreSQL) 9.3.25"}
    assert trc.find_pg_bindir(str(install), environ={trc.PG_BINDIR_ENV: env_dir}, debian_glob=debian) == (env_dir, None)
    assert trc.find_pg_bindir(str(install), want_major="9.3", version_of=versions.get,
                              environ={trc.PG_BINDIR_ENV: env_dir}, debian_glob=debian) == (bundled, "9.3")
    with pytest.raises(ArchiveError, match="no PostgreSQL 12 server binaries.*PostgreSQL 15.*set pg_bindir"):
        trc.find_pg_bindir(str(install), want_major="12", version_of=versions.get,
                           environ={trc.PG_BINDIR_ENV: env_dir}, debian_glob=debian)


def test_find_pg_bindir_override_is_used_or_refused(tmp_path):
    override = fake_bindir(str(tmp_path / "mine"))
    assert trc.find_pg_bindir(None, override=override, version_of=lambda p: "postgres 15.1",
                              environ={}, debian_glob="/nonexistent/*") == (override, "15")
    with pytest.raises(ArchiveError, match="holds PostgreSQL 15, but the archived cluster needs 9.3"):
        trc.find_pg_bindir(None, want_major="9.3", override=override, version_of=lambda p: "postgres 15.1",
                           environ={}, debian_glob="/nonexistent/*")
    with pytest.raises(ArchiveError, match="does not hold pg_ctl, postgres and psql"):
        trc.find_pg_bindir(None, override=str(tmp_path), environ={}, debian_glob="/nonexistent/*")
    with pytest.raises(ArchiveError, match="no PostgreSQL server binaries .* found"):
        trc.find_pg_bindir(str(tmp_path / "none"), environ={}, debian_glob="/nonexistent/*")


def test_debian_dirs_sort_newest_first(tmp_path):
    for major in ("9.6", "13", "15"):
        fake_bindir(str(tmp_path / "pg" / major / "bin"))
    found = trc.pg_bindir_candidates(None, None, {}, str(tmp_path / "pg" / "*" / "bin"))
    assert [p.split(os.sep)[-2] for p in found] == ["15", "13", "9.6"]


# -- RestoreCheck ----------------------------------------------------------------------------------------
class FakePg(object):
    """Stands in for pg_ctl/psql: records argv, answers queries."""

    def __init__(self, start_rc=0, psql_fail=None, params=None):
        self.calls = []
        self.start_rc = start_rc
        self.psql_fail = psql_fail
        self.params = params or {"jidcounter": "41", "schema-version": "2.2-4", "module-checksum": "c" * 40}

    def __call__(self, argv):
        self.calls.append(list(argv))
        tool = os.path.basename(argv[0])
        if tool == "pg_ctl" and argv[-1] == "start":
            data = argv[argv.index("-D") + 1]
            if self.start_rc == 0:
                with open(os.path.join(data, "postmaster.pid"), "w") as handle:
                    handle.write("1\n")
                return 0, "server started\n", ""
            return self.start_rc, "", "pg_ctl: could not start server\n"
        if tool == "pg_ctl" and "stop" in argv:
            data = argv[argv.index("-D") + 1]
            if os.path.exists(os.path.join(data, "postmaster.pid")):
                os.unlink(os.path.join(data, "postmaster.pid"))
            return 0, "server stopped\n", ""
        if tool == "psql":
            sql = argv[-1]
            if self.psql_fail and self.psql_fail in sql:
                return 2, "", 'ERROR:  relation "job" does not exist\n'
            if sql == trc.CHECK_QUERY:
                rows = [f"param\x1f{k}\x1f{v}" for k, v in sorted(self.params.items())]
                rows += ["live\x1f3\x1f", "all\x1f5\x1f", "server\x1f15.5\x1f"]
                return 0, "".join(row + "\n" for row in rows), ""
        raise AssertionError(f"unexpected command {argv}")


def test_restore_check_reads_params_and_cleans_up(tmp_path, cluster):
    path = str(tmp_path / "a.tgz")
    write(path, make_cluster(str(tmp_path / "src"), extra={"postmaster.opts": b"x", "postmaster.pid": b"9\n"}))
    scratch_parent = tmp_path / "scratch"
    scratch_parent.mkdir()
    fake = FakePg()
    check = trc.RestoreCheck(path, "psql", str(scratch_parent), "/pg/bin", fake, port=5999)
    found = check.run_check()
    assert found["jidcounter"] == "41" and found["schema_version"] == "2.2-4"
    assert found["job_count"] == 3 and found["job_count_with_archive"] == 5 and found["server_version"] == "15.5"
    assert any("postmaster.pid" in note for note in found["notes"])
    assert os.listdir(scratch_parent) == [] and check.scratch_removed is True
    start = fake.calls[0]
    assert start[:2] == ["/pg/bin/pg_ctl", "-D"] and start[-1] == "start"
    options = start[start.index("-o") + 1]
    for setting in ("-p 5999", "listen_addresses=localhost", "unix_socket_directories=''",
                    "default_transaction_read_only=on", "archive_mode=off", "data_directory='"):
        assert setting in options
    assert "dbname=tractor" in fake.calls[1][fake.calls[1].index("-d") + 1]
    assert "stop" in fake.calls[-1]


def test_restore_check_failures_still_stop_and_clean_up(tmp_path, cluster):
    path = str(tmp_path / "a.tgz")
    write(path, cluster)
    scratch_parent = tmp_path / "scratch"
    scratch_parent.mkdir()
    fake = FakePg(start_rc=1)
    with pytest.raises(ArchiveError, match="PostgreSQL did not start on the restored copy") as err:
        trc.RestoreCheck(path, "psql", str(scratch_parent), "/pg/bin", fake, port=5999).run_check()
    assert err.value.info["rc"] == 1
    assert os.listdir(scratch_parent) == []

    fake = FakePg(psql_fail="ONLY job")
    with pytest.raises(ArchiveError, match='psql on the restored copy .* failed .*relation "job" does not exist'):
        trc.RestoreCheck(path, "psql", str(scratch_parent), "/pg/bin", fake, port=5999).run_check()
    assert "stop" in fake.calls[-1] and os.listdir(scratch_parent) == []


def test_restore_check_of_an_archive_with_another_top_level(tmp_path):
    path = tar_gz(str(tmp_path / "x.tgz"), good_members("pgdata"))
    scratch_parent = tmp_path / "scratch"
    scratch_parent.mkdir()
    with pytest.raises(ArchiveError, match="refusing to extract"):
        trc.RestoreCheck(path, "psql", str(scratch_parent), "/pg/bin", FakePg(), port=1).run_check()
    assert os.listdir(scratch_parent) == []


# -- manifest ---------------------------------------------------------------------------------------------
def test_manifest_never_guesses():
    info = dict(sha256="s", size=10, pg_version="15", system_identifier="1", top_level="psql", members=3,
                file_bytes=99)
    manifest = tf.build_manifest("/b/a.tgz", info, "native", source={}, engine={"version": "2.2"},
                                 params_source=None, verification=None, tools={})
    assert manifest["archive"] == "a.tgz" and manifest["engine_version"] == "2.2"
    for key in ("jidcounter", "schema_version", "job_count", "params", "verified", "engine_build"):
        assert manifest[key] is None
    assert manifest["format_version"] == tf.MANIFEST_FORMAT_VERSION


def test_compare_manifest():
    manifest = dict(sha256="a", archive_size=10, jidcounter="41", job_count=3)
    assert tf.compare_manifest(None, {}) == []
    assert tf.compare_manifest(manifest, dict(sha256="a", size=10)) == []
    assert tf.compare_manifest(manifest, dict(sha256="b", size=11)) == [
        "sha256 is b, the manifest says a", "archive_size is 11, the manifest says 10"]
    assert tf.compare_manifest(manifest, dict(sha256="a", size=10), dict(jidcounter="40", job_count=3)) == [
        "jidcounter read from the restored copy is 40, the manifest says 41"]


def test_small_helpers(tmp_path, cluster):
    assert tf.dir_size(cluster) == 3 + 8192 + 250000
    assert tf.human_size(512) == "512 B" and tf.human_size(3 * 1024 * 1024) == "3.0 MiB"
    assert tf.sidecar_paths("/b/a.tgz") == ("/b/a.tgz.sha256", "/b/a.tgz.manifest.json")
    assert trc.sh_quote("it's") == "'it'\"'\"'s'"
    assert tf.same_filesystem(str(tmp_path), cluster) and not tf.same_filesystem("/nonexistent", cluster)
    assert tf.free_bytes(str(tmp_path)) > 0 and 0 < trc.free_port() < 65536
    assert tf.utc_now().endswith("Z") and len(tf.utc_now()) == 20
    assert tf.file_sha256(os.path.join(cluster, "PG_VERSION")) == hashlib.sha256(b"15\n").hexdigest()
