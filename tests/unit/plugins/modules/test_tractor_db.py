"""plugins/modules/tractor_db.py: decisions, parsing and every failure message.

The module runs for real (AnsibleModule, argument spec, check mode, exit/fail JSON); only
``AnsibleModule.run_command`` is replaced by FakeHost, which plays tractor-dbctl, pg_ctl, psql and
friends on real files in tmp_path, and the engine is a real local HTTP server when a test needs one.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import pwd
import shutil
import socket
import struct
import tarfile
import threading
from unittest import mock

import pytest
from ansible.module_utils import basic

from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_files as tf
from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_inspect as ti
from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_restore_check as trc
from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_targz as tz
from ansible_collections.renderfarm.tractor.plugins.modules import tractor_db

# meta/runtime.yml requires ansible-core 2.19, which has this helper.
from ansible.module_utils.testing import patch_module_args

ME = pwd.getpwuid(os.geteuid()).pw_name
SYSID = 6100000000000000001
BANNER = "Tractor 2.2 (Feb 15 2017 11:38:27 1715407 linux-emulated-release)\n"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another EngineOwner needs root")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the host ---------------------------------------------------------------------------------------------
class Site(object):
    def __init__(self, root, owner=ME):
        self.root = root
        self.install = os.path.join(root, "opt", "Tractor-2.2")
        os.makedirs(os.path.join(self.install, "bin"))
        os.makedirs(os.path.join(self.install, "config"))
        for tool in ("tractor-dbctl", "tractor-engine"):  # never run: FakeHost answers for them
            with open(os.path.join(self.install, "bin", tool), "w") as handle:
                handle.write("#!/bin/sh\nexit 99\n")
            os.chmod(os.path.join(self.install, "bin", tool), 0o755)
        self.config_dir = os.path.join(root, "config")
        os.makedirs(self.config_dir)
        self.data_dir = os.path.join(root, "data")
        os.makedirs(self.data_dir)
        self.db_dir = os.path.join(self.data_dir, "psql")
        self.backups = os.path.join(root, "backups")
        os.makedirs(self.backups)
        self.engine_port = free_port()
        self.db_port = free_port()
        self.write_config(owner)

    def write_config(self, owner):
        with open(os.path.join(self.config_dir, "tractor.config"), "w") as handle:
            handle.write('{"EngineOwner": "%s", "TractorDataDirectory": "%s", "ListenerPort": %d}\n'
                         % (owner, self.data_dir, self.engine_port))
        with open(os.path.join(self.config_dir, "db.config"), "w") as handle:
            handle.write('{"DBConnection": {"host": "localhost", "port": %d, "dbname": "tractor"}}\n' % self.db_port)

    def args(self, **kwargs):
        return dict(install_dir=self.install, config_dir=self.config_dir, **kwargs)

    def make_cluster(self, sysid=SYSID, path=None):
        data = path or self.db_dir
        os.makedirs(os.path.join(data, "global"), exist_ok=True)
        os.makedirs(os.path.join(data, "base"), exist_ok=True)
        with open(os.path.join(data, "PG_VERSION"), "w") as handle:
            handle.write("15\n")
        with open(os.path.join(data, "global", "pg_control"), "wb") as handle:
            handle.write(struct.pack("=Q", sysid) + b"\0" * 100)
        with open(os.path.join(data, "base", "table"), "wb") as handle:
            handle.write(b"rows" * 5000)
        os.chmod(data, 0o700)
        return data

    def archive(self, name="job-db.tgz", sidecars=True, sysid=SYSID, **manifest):
        """A backup archive of a cluster like this site's (written the native way)."""
        src = os.path.join(self.root, "src-%d" % sysid)
        if not os.path.isdir(src):
            self.make_cluster(sysid, os.path.join(src, "psql"))
        path = os.path.join(self.backups, name)
        with tf.AtomicFile(path) as out:
            written = tz.write_archive(os.path.join(src, "psql"), out)
            out.commit()
        if sidecars:
            with open(path + ".sha256", "w") as handle:
                handle.write(tf.format_sha256_line(written["sha256"], path))
            body = dict(sha256=written["sha256"], archive_size=written["size"], jidcounter="41",
                        schema_version="2.2-4", job_count=3, engine_version="2.2")
            body.update(manifest)
            with open(path + ".manifest.json", "w") as handle:
                json.dump(body, handle)
        return path


class FakeHost(object):
    """What run_command would run: tractor-dbctl, pg_ctl, psql, test, tractor-engine, postgres, tar."""

    def __init__(self, site):
        self.site = site
        self.calls = []
        self.users = []          # accounts runuser switched to
        self.running = False
        self.reachable = True
        self.database_exists = True
        self.params = {"jidcounter": "41", "schema-version": "2.2-4", "archiving": "1", "module-checksum": "c" * 40}
        self.fail = {}           # dbctl operation -> (rc, stderr)
        self.upgrade_output = ""
        self.check_upgrade = "No upgrades are required to be compatible with schema version 2.2-4.\n"
        self.test_rc = 0
        self.backup_writes = True
        self.restore_extracts = True
        self.pg_start_rc = 0
        self.jobs = 3

    def ops(self):
        return [c[3] for c in self.calls if os.path.basename(c[0]) == "tractor-dbctl"]

    def __call__(self, module, args, **kwargs):
        argv = list(args)
        if os.path.basename(argv[0]) == "runuser":
            assert argv[1] == "-u" and argv[3] == "--"
            self.users.append(argv[2])
            argv = argv[4:]
        self.calls.append(argv)
        tool = os.path.basename(argv[0])
        handler = getattr(self, "do_" + tool.replace("-", "_"), None)
        if handler is None:
            raise AssertionError("unexpected command %r" % argv)
        return handler(argv)

    # tractor-dbctl --configdir DIR OP [ARG]
    def do_tractor_dbctl(self, argv):
        assert argv[1:3] == ["--configdir", self.site.config_dir], argv
        op = argv[3]
        if op in self.fail:
            rc, err = self.fail[op]
            return rc, "", err
        d = self.site.db_dir
        if op == "--status":
            if not self.running:
                return 0, "", "A postgresql server is NOT running on the data directory %s.\n" % d
            err = "A postgresql server is running on the data directory %s.\n" % d
            if self.reachable:
                err += "The postgresql server is reachable through port %d.\n" % self.site.db_port
                err += "The database tractor %s.\n" % ("exists" if self.database_exists else "does NOT exist")
            else:
                err += "The postgresql server is NOT reachable through port %d.\n" % self.site.db_port
            return 0, "", err
        if op == "--start-for-engine":
            if not os.path.exists(os.path.join(d, "PG_VERSION")):
                self.site.make_cluster()
            self.running = self.database_exists = True
            return 0, "", "Starting postgres server on the data directory %s and on port %d.\n%s" % (
                d, self.site.db_port, self.upgrade_output)
        if op == "--stop":
            assert self.running
            self.running = False
            return 0, "", "Stopping postgres server on data directory %s with pg_ctl\n" % d
        if op == "--show-params":
            return 0, "".join("%s = %s\n" % item for item in self.params.items()), ""
        if op == "--check-upgrade":
            return 0, "", self.check_upgrade
        if op == "--backup":
            assert not self.running
            if self.backup_writes:
                with open(argv[4], "wb") as out:
                    tz.write_archive(d, out)
            return 0, "", "Backing up data directory %s\n" % d
        if op == "--destroy":
            assert not self.running
            for name in os.listdir(d):
                path = os.path.join(d, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
            return 0, "", "Removing contents of data directory %s.\n" % d
        if op == "--restore":
            assert not self.running and not os.listdir(d)
            if self.restore_extracts:
                with tarfile.open(argv[4], "r:gz") as tar:
                    extra = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
                    tar.extractall(os.path.dirname(d), **extra)
            return 0, "", "Restoring to data directory %s\n" % d
        raise AssertionError("unexpected dbctl operation %r" % argv)

    def do_test(self, argv):
        return self.test_rc, "", ""

    # cp -a [--reflink=always] SRC DST: a real copy; reflinks only when the test says the
    # filesystem has them (cp fails at once otherwise, as on ext4 or tmpfs)
    reflinks = False

    def do_cp(self, argv):
        src, dst = argv[-2], argv[-1]
        if "--reflink=always" in argv and not self.reflinks:
            os.makedirs(dst)  # what cp leaves behind before it gives up
            return 1, "", "cp: failed to clone '%s': Operation not supported\n" % dst
        shutil.copytree(src, dst, symlinks=True)
        return 0, "", ""

    def do_sync(self, argv):
        assert argv[1] == "-f"
        return 0, "", ""

    def do_tractor_engine(self, argv):
        assert argv[1:] == ["--version"]
        return 0, BANNER, ""

    def do_postgres(self, argv):
        return 0, "postgres (PostgreSQL) 15.5\n", ""

    def do_tar(self, argv):
        return 0, "tar (GNU tar) 1.34\nCopyright\n", ""

    def do_pg_ctl(self, argv):
        data = argv[argv.index("-D") + 1]
        if argv[-1] == "start":
            if self.pg_start_rc:
                return self.pg_start_rc, "", "pg_ctl: could not start server\n"
            open(os.path.join(data, "postmaster.pid"), "w").close()
            return 0, "server started\n", ""
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            os.unlink(os.path.join(data, "postmaster.pid"))
        return 0, "server stopped\n", ""

    def do_psql(self, argv):
        sql = argv[-1]
        if sql.startswith("SELECT 'param', name::text, value::text FROM param"):  # the one check query
            rows = ["param\x1f%s\x1f%s" % item for item in sorted(self.params.items())]
            rows += ["live\x1f%d\x1f" % self.jobs, "all\x1f%d\x1f" % self.jobs, "server\x1f15.5\x1f"]
            return 0, "".join(row + "\n" for row in rows), ""
        raise AssertionError(sql)


@pytest.fixture
def site(tmp_path):
    return Site(str(tmp_path))


@pytest.fixture
def host(site):
    fake = FakeHost(site)
    with mock.patch.object(basic.AnsibleModule, "run_command", autospec=True, side_effect=fake):
        yield fake


@pytest.fixture
def pg_bindir(tmp_path):
    path = tmp_path / "pgbin"
    path.mkdir()
    for tool in ("pg_ctl", "postgres", "psql"):
        (path / tool).write_text("#!/bin/sh\n")
        (path / tool).chmod(0o755)
    return str(path)


@pytest.fixture
def run(capsys):
    def run_module(args, check=False, diff=False):
        args = dict(args)
        if check:
            args["_ansible_check_mode"] = True
        if diff:
            args["_ansible_diff"] = True
        reset_module_warnings()
        with patch_module_args(args):
            with pytest.raises(SystemExit):
                tractor_db.main()
        out = capsys.readouterr().out
        return json.loads(out)
    return run_module


def reset_module_warnings():
    """Module warnings are process-global (and de-duplicated) in ansible-core: start each run clean,
    so that a test does not depend on which tests ran before it in the same process."""
    from ansible.module_utils.common import warnings as module_warnings
    for name in ("_global_warnings", "_global_deprecations"):
        store = getattr(module_warnings, name, None)
        if store is not None:
            store.clear()


def warnings(result):
    """Warning texts: plain strings before ansible-core 2.19, WarningSummary objects since."""
    texts = []
    for item in result.get("warnings", []):
        if isinstance(item, dict):
            item = (item.get("event") or item).get("msg", "")
        texts.append(item)
    return texts


def failed(result):
    assert result.get("failed"), json.dumps(result, indent=2)
    return result["msg"]


def ok(result):
    assert not result.get("failed"), json.dumps(result, indent=2)
    return result


@contextlib.contextmanager
def listener(port, engine=True):
    """A real engine stand-in (ctrl?q=status with the Server header) or a silent TCP listener."""
    if engine:
        class Handler(http.server.BaseHTTPRequestHandler):
            def version_string(self):
                return "Pixar_Tractor/2.4 (Aug 17 2020 05:39:38 2091325 linux-x)"

            def do_GET(self):
                body = json.dumps({"rc": 0, "msg": "ok"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()
    else:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(5)
        stop = threading.Event()

        def serve():
            sock.settimeout(0.1)
            while not stop.is_set():
                try:
                    conn, _addr = sock.accept()
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>")
                    conn.close()
                except OSError:
                    pass
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            sock.close()


# -- pure helpers -------------------------------------------------------------------------------------------
def test_marker_lives_beside_the_data_directory():
    assert tractor_db.marker_path("/var/spool/tractor/psql/") == "/var/spool/tractor/.renderfarm-tractor-restore.psql.json"


def test_marker_matches_only_the_same_extraction():
    identity = dict(system_identifier="1", pg_version_inode=2, pg_version_ctime_ns=3)
    marker = dict(sha256="s", db_data_dir="/d/psql", identity=identity)
    assert tractor_db.marker_matches(marker, "s", "/d/psql", dict(identity))
    assert not tractor_db.marker_matches(marker, "other", "/d/psql", identity)
    assert not tractor_db.marker_matches(marker, "s", "/e/psql", identity)
    assert not tractor_db.marker_matches(marker, "s", "/d/psql", dict(identity, pg_version_ctime_ns=4))
    assert not tractor_db.marker_matches(None, "s", "/d/psql", identity)
    assert not tractor_db.marker_matches(marker, "s", "/d/psql", None)


# -- status / started / stopped --------------------------------------------------------------------------
def test_status_of_a_missing_data_dir_does_not_run_dbctl(site, host, run):
    result = ok(run(site.args()))
    assert result["changed"] is False and result["status"]["data_dir_exists"] is False
    assert host.ops() == []  # the real tractor-dbctl crashes on a missing DBDataDir


def test_status_running_returns_params(site, host, run):
    site.make_cluster()
    host.running = True
    result = ok(run(site.args(state="status")))
    assert result["status"] == dict(data_dir=site.db_dir, data_dir_exists=True, data_dir_empty=False,
                                    initialized=True, running=True, reachable=True, database_exists=True,
                                    system_identifier=str(SYSID))  # read from global/pg_control
    assert result["params"]["jidcounter"] == "41" and result["commands"] == []


def test_status_unreadable_data_dir(site, host, run):
    site.make_cluster()
    with mock.patch.object(tractor_db.os, "listdir", side_effect=PermissionError(13, "Permission denied")):
        msg = failed(run(site.args()))
    assert "cannot read the data directory" in msg and "as root" in msg


def test_started_runs_start_for_engine_and_parses_the_upgrade(site, host, run):
    host.upgrade_output = ("Upgrading database schema from version 2.1-2 to version 2.2-4.\n"
                           "Applying upgrade 1 of 2: Add column.\nApplying upgrade 2 of 2: Create all views.\n")
    result = ok(run(site.args(state="started"), diff=True))
    assert result["changed"] is True
    assert result["upgrade"] == dict(from_version="2.1-2", to_version="2.2-4",
                                     steps=["Add column.", "Create all views."])
    assert result["commands"][0] == "create %s (mode 0700, owner %s)" % (site.db_dir, ME)
    assert result["commands"][1].endswith("--start-for-engine")
    assert oct(os.stat(site.db_dir).st_mode & 0o777) == "0o700"
    assert result["diff"]["before"]["running"] is False and result["diff"]["after"]["running"] is True
    assert result["params"]["schema-version"] == "2.2-4"


def test_started_check_mode_changes_nothing(site, host, run):
    result = ok(run(site.args(state="started"), check=True))
    assert result["changed"] is True and host.ops() == []
    assert not os.path.exists(site.db_dir)
    assert result["status"]["running"] is True and result["upgrade"] is None


def test_started_is_idempotent(site, host, run):
    site.make_cluster()
    host.running = True
    result = ok(run(site.args(state="started")))
    assert result["changed"] is False and "--start-for-engine" not in host.ops()


def test_started_without_auto_upgrade(site, host, run):
    site.make_cluster()
    host.check_upgrade = ("The following upgrades need to be applied to upgrade the schema from version 2.1-2 "
                          "to 2.2-4:\n  Create all views.\n  Create all functions.\n")
    result = ok(run(site.args(state="started", auto_upgrade=False)))
    assert result["commands"][-1].endswith("--start-for-engine --no-auto-upgrade")
    assert result["pending_upgrade"] == dict(required=True, from_version="2.1-2", to_version="2.2-4",
                                             steps=["Create all views.", "Create all functions."])
    assert any("needs upgrades from 2.1-2 to 2.2-4" in w for w in warnings(result))


def test_started_failures(site, host, run, tmp_path):
    site.make_cluster()
    host.running, host.reachable = True, False
    assert "is not reachable through port %d" % site.db_port in failed(run(site.args(state="started")))
    host.running, host.reachable = False, True
    host.fail["--start-for-engine"] = (2, "Unable to start the postgresql server on the data directory x.\n")
    result = run(site.args(state="started"))
    assert failed(result) == "tractor-dbctl --start-for-engine failed: Unable to start the postgresql server on the data directory x."
    assert result["rc"] == 2 and result["cmd"].endswith("--start-for-engine")
    del host.fail["--start-for-engine"]
    host.check_upgrade = "gibberish"
    assert "unrecognised tractor-dbctl --check-upgrade output" in failed(
        run(site.args(state="started", auto_upgrade=False)))


def test_started_with_a_missing_parent(tmp_path, run):
    site = Site(str(tmp_path))
    shutil.rmtree(site.data_dir)
    fake = FakeHost(site)
    with mock.patch.object(basic.AnsibleModule, "run_command", autospec=True, side_effect=fake):
        msg = failed(run(site.args(state="started")))
    assert "the parent %s of DBDataDir" % site.data_dir in msg and "create TractorDataDirectory" in msg


def test_stopped(site, host, run):
    site.make_cluster()
    assert ok(run(site.args(state="stopped")))["changed"] is False
    host.running = True
    result = ok(run(site.args(state="stopped"), check=True))
    assert result["changed"] is True and host.running and result["commands"][0].endswith("--stop")
    result = ok(run(site.args(state="stopped")))
    assert result["changed"] is True and not host.running and result["status"]["running"] is False


def test_stopped_refused_while_the_engine_answers(site, host, run):
    site.make_cluster()
    host.running = True
    with listener(site.engine_port):
        result = run(site.args(state="stopped"))
        msg = failed(result)
        assert "the Tractor engine 2.4 answers at localhost:%d" % site.engine_port in msg
        assert "stop the engine first" in msg and "force: true" in msg
        assert result["engine"]["version"] == "2.4" and host.running
        ok(run(site.args(state="stopped", force=True)))
        assert not host.running


def test_something_else_on_the_engine_port(site, host, run):
    site.make_cluster()
    host.running = True
    with listener(site.engine_port, engine=False):
        msg = failed(run(site.args(state="stopped")))
    assert "something listens on the engine port localhost:%d" % site.engine_port in msg
    assert "set the engine option" in msg


# -- backup ------------------------------------------------------------------------------------------------
def test_backup_native_with_restore_verification(site, host, run, pg_bindir):
    site.make_cluster()
    path = os.path.join(site.backups, "job-db.tgz")
    result = ok(run(site.args(state="backup", path=path, pg_bindir=pg_bindir, workers=2)))
    assert result["changed"] is True and result["backup"]["created"] is True
    assert sorted(os.listdir(site.backups)) == ["job-db.tgz", "job-db.tgz.manifest.json", "job-db.tgz.sha256"]
    manifest = json.load(open(path + ".manifest.json"))
    assert manifest == result["backup"]["manifest"]
    assert manifest["sha256"] == tf.file_sha256(path) and manifest["archive_size"] == os.path.getsize(path)
    assert manifest["jidcounter"] == "41" and manifest["job_count"] == 3 and manifest["schema_version"] == "2.2-4"
    assert manifest["params_source"] == "restore-verification" and manifest["verified"] == "restore"
    assert manifest["engine_version"] == "2.2" and manifest["engine_build"] == "1715407"
    assert manifest["system_identifier"] == str(SYSID) and manifest["method"] == "native"
    assert manifest["tools"]["postgres"] == "15.5"
    assert open(path + ".sha256").read() == "%s  job-db.tgz\n" % manifest["sha256"]
    assert [c.split(" ")[0] for c in result["commands"]] == ["write", "write", "write", "rename"]
    assert result["verification"]["scratch_removed"] is True
    assert [os.path.basename(c[0]) for c in host.calls if os.path.basename(c[0]) in ("pg_ctl", "psql")] == \
        ["pg_ctl", "psql", "pg_ctl"]  # one psql run reads everything

    again = ok(run(site.args(state="backup", path=path, pg_bindir=pg_bindir)))
    assert again["changed"] is False and again["backup"]["manifest"] == manifest and again["commands"] == []


def test_backup_stops_the_database_and_reads_live_params_with_verify_archive(site, host, run):
    site.make_cluster()
    host.running = True
    path = os.path.join(site.backups, "job-db.tgz")
    result = ok(run(site.args(state="backup", path=path, stop_database=True, verify="archive")))
    assert host.ops() == ["--status", "--show-params", "--stop", "--status"]
    manifest = result["backup"]["manifest"]
    assert manifest["params_source"] == "live-database-before-stop" and manifest["jidcounter"] == "41"
    assert manifest["verified"] == "archive" and manifest["job_count"] is None


def test_backup_without_any_read_of_the_data_says_so(site, host, run):
    site.make_cluster()
    path = os.path.join(site.backups, "job-db.tgz")
    manifest = ok(run(site.args(state="backup", path=path, verify="archive")))["backup"]["manifest"]
    assert manifest["params_source"] is None and manifest["jidcounter"] is None and manifest["params"] is None


def test_backup_check_mode_writes_nothing(site, host, run, pg_bindir):
    site.make_cluster()
    host.running = True
    path = os.path.join(site.backups, "job-db.tgz")
    result = ok(run(site.args(state="backup", path=path, stop_database=True, pg_bindir=pg_bindir), check=True,
                    diff=True))
    assert result["changed"] is True and host.running and os.listdir(site.backups) == []
    assert result["commands"][0].endswith("--stop") and result["commands"][1].startswith("write %s" % path)
    assert result["diff"]["before"]["exists"] is False and result["diff"]["after"]["exists"] is True
    assert "--stop" not in host.ops()


def test_copy_while_stopped_then_archive_the_copy(site, host, run, pg_bindir):
    site.make_cluster()
    host.running = True
    copy = os.path.join(site.backups, ".copy-job-db")
    # check mode: planned, nothing copied, the server still running
    planned = ok(run(site.args(state="copy", path=copy, stop_database=True), check=True))
    assert planned["changed"] is True and host.running and not os.path.exists(copy)
    assert planned["commands"][0].endswith("--stop") and planned["commands"][1].startswith("copy %s" % site.db_dir)
    # refused while the server runs, unless stop_database
    assert "stop it first" in failed(run(site.args(state="copy", path=copy)))

    made = ok(run(site.args(state="copy", path=copy, stop_database=True)))
    assert made["changed"] is True and not host.running
    assert sorted(os.listdir(copy)) == ["psql", "renderfarm-tractor-copy.json"]
    assert made["db_copy"]["method"] == "copy" and made["db_copy"]["system_identifier"] == str(SYSID)  # no reflinks here
    assert sorted(os.listdir(os.path.join(copy, "psql"))) == sorted(os.listdir(site.db_dir))
    again = ok(run(site.args(state="copy", path=copy)))
    assert again["changed"] is False and again["db_copy"]["created"] == made["db_copy"]["created"]

    # the engine serves again meanwhile: the archive comes from the copy, which is then removed
    host.running = True
    path = os.path.join(site.backups, "job-db.tgz")
    result = ok(run(site.args(state="backup", path=path, source=copy, pg_bindir=pg_bindir)))
    assert result["backup"]["created"] is True and not os.path.exists(copy) and host.running
    assert host.ops().count("--stop") == 1  # the copy's: the archive of the copy left the server alone
    manifest = result["backup"]["manifest"]
    assert manifest["source"]["copy"] == copy and manifest["top_level"] == "psql"
    assert manifest["params_source"] == "restore-verification" and manifest["jidcounter"] == "41"
    commands = result["commands"]
    assert commands.index("remove the copy %s" % copy) < [i for i, c in enumerate(commands) if c.startswith("rename")][0]
    # the copy was left in the page cache (no sync in the downtime): the archive step put it on disk first
    assert made["db_copy"]["synced"] is False and made["db_copy"]["boot_id"] == tf.boot_id()
    assert commands[0] == "put the copy %s on disk (fsync of every file)" % copy


def test_a_copy_not_on_disk_at_a_restart_is_not_archived(site, host, run, pg_bindir):
    site.make_cluster()
    copy = os.path.join(site.backups, ".copy-job-db")
    ok(run(site.args(state="copy", path=copy)))
    marker = os.path.join(copy, "renderfarm-tractor-copy.json")
    data = json.load(open(marker))
    json.dump(dict(data, boot_id="an-earlier-boot"), open(marker, "w"))
    path = os.path.join(site.backups, "job-db.tgz")
    msg = failed(run(site.args(state="backup", path=path, source=copy, pg_bindir=pg_bindir)))
    assert "was taken before this machine last started" in msg and "Nothing was changed" in msg
    assert os.path.isdir(copy) and not os.path.exists(path)
    # once on disk (synced), the boot does not matter
    json.dump(dict(data, boot_id="an-earlier-boot", synced=True), open(marker, "w"))
    result = ok(run(site.args(state="backup", path=path, source=copy, pg_bindir=pg_bindir)))
    assert result["backup"]["created"] is True and not os.path.exists(copy)
    assert not [c for c in result["commands"] if "fsync" in c]


def test_copy_uses_reflinks_and_refuses_leftovers_and_strangers(site, host, run):
    site.make_cluster()
    host.reflinks = True
    copy = os.path.join(site.backups, ".copy-a")
    assert ok(run(site.args(state="copy", path=copy)))["db_copy"]["method"] == "reflink"
    # an interrupted copy (no marker) is not taken for a copy
    os.makedirs(os.path.join(site.backups, ".copy-b", "psql"))
    msg = failed(run(site.args(state="copy", path=os.path.join(site.backups, ".copy-b"))))
    assert "holds no finished copy" in msg and "remove it" in msg
    msg = failed(run(site.args(state="backup", path=os.path.join(site.backups, "x.tgz"),
                               source=os.path.join(site.backups, ".copy-b"))))
    assert "is not a finished copy" in msg and not os.path.exists(os.path.join(site.backups, "x.tgz"))
    # tractor-dbctl --backup archives DBDataDir itself, never a copy
    msg = failed(run(site.args(state="backup", path=os.path.join(site.backups, "x.tgz"), source=copy,
                               method="dbctl")))
    assert "source needs method=native" in msg and os.path.isdir(copy)


def test_backup_by_dbctl(site, host, run):
    site.make_cluster()
    path = os.path.join(site.backups, "job-db.tgz")
    result = ok(run(site.args(state="backup", path=path, method="dbctl", verify="archive")))
    backup_call = [c for c in host.calls if c[3:4] == ["--backup"]][0]
    assert os.path.dirname(backup_call[4]) == site.backups and backup_call[4] != path
    assert sorted(os.listdir(site.backups)) == ["job-db.tgz", "job-db.tgz.manifest.json", "job-db.tgz.sha256"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    manifest = result["backup"]["manifest"]
    assert manifest["method"] == "dbctl" and manifest["tools"]["tar"] == "tar (GNU tar) 1.34"


def test_backup_by_dbctl_that_writes_nothing(site, host, run):
    site.make_cluster()
    host.backup_writes = False
    msg = failed(run(site.args(state="backup", path=os.path.join(site.backups, "x.tgz"), method="dbctl")))
    assert "reported success but wrote no file" in msg and "no archive was left" in msg
    assert os.listdir(site.backups) == []


def test_backup_that_does_not_restore_leaves_nothing(site, host, run, pg_bindir):
    site.make_cluster()
    host.pg_start_rc = 1
    result = run(site.args(state="backup", path=os.path.join(site.backups, "x.tgz"), pg_bindir=pg_bindir))
    msg = failed(result)
    assert "does not restore: PostgreSQL did not start on the restored copy" in msg
    assert "The data directory was not changed; no archive was left at" in msg
    assert result["rc"] == 1 and result["verification"]["scratch_removed"] is True
    assert os.listdir(site.backups) == []


def test_backup_disk_full_leaves_nothing(site, host, run):
    site.make_cluster()
    with mock.patch.object(tz, "write_archive", side_effect=OSError(28, "No space left on device")):
        msg = failed(run(site.args(state="backup", path=os.path.join(site.backups, "x.tgz"), verify="archive")))
    assert "No space left on device" in msg and "the disk is full" in msg
    assert os.listdir(site.backups) == []


@pytest.mark.parametrize("case, expected", [
    ("dest-missing", "the backup directory %(root)s/nope does not exist: create it first"),
    ("path-is-dir", "is a directory: give the archive file name"),
    ("inside-data-dir", "is inside DBDataDir"),
    ("workers", "workers must be at least 1, not 0"),
    ("level", "compression_level must be 1 (fastest) to 9 (smallest), not 11"),
    ("no-cluster", "holds no PostgreSQL cluster (no PG_VERSION): nothing to back up"),
    ("db-running", "the job database server is running on %(db)s: stop it first"),
    ("space", "not enough free space in %(root)s/backups"),
    ("existing-no-sidecars", "already exists but has no"),
    ("existing-bad-sha", "already exists but its sha256"),
    ("existing-junk-sidecar", "already exists and cannot read the checksum file"),
])
def test_backup_refusals(site, host, run, case, expected):
    if case != "no-cluster":
        site.make_cluster()
    path = os.path.join(site.backups, "x.tgz")
    args = site.args(state="backup", path=path, verify="archive")
    if case == "dest-missing":
        args["path"] = os.path.join(site.root, "nope", "x.tgz")
    elif case == "path-is-dir":
        args["path"] = site.backups
    elif case == "inside-data-dir":
        args["path"] = os.path.join(site.db_dir, "x.tgz")
    elif case == "workers":
        args["workers"] = 0
    elif case == "level":
        args["compression_level"] = 11
    elif case == "db-running":
        host.running = True
    elif case == "space":
        args["free_space_factor"] = 1e15
    elif case.startswith("existing"):
        site.archive("x.tgz", sidecars=case != "existing-no-sidecars")
        if case == "existing-bad-sha":
            with open(path, "ab") as handle:
                handle.write(b"junk")
        if case == "existing-junk-sidecar":
            with open(path + ".sha256", "w") as handle:
                handle.write("junk\n")
    before = sorted(os.listdir(site.backups))
    msg = failed(run(args))
    assert expected % dict(root=site.root, db=site.db_dir) in msg, msg
    assert sorted(os.listdir(site.backups)) == before and "--stop" not in host.ops()


def test_backup_refused_while_the_engine_answers_in_check_mode_too(site, host, run):
    site.make_cluster()
    with listener(site.engine_port):
        msg = failed(run(site.args(state="backup", path=os.path.join(site.backups, "x.tgz")), check=True))
    assert "answers at localhost:%d: stop the engine first" % site.engine_port in msg and "before a backup" in msg


@as_root
def test_backup_refused_when_the_engine_owner_cannot_write_the_destination(tmp_path, run):
    site = Site(str(tmp_path), owner="nobody")
    site.make_cluster()
    fake = FakeHost(site)
    fake.test_rc = 1
    with mock.patch.object(basic.AnsibleModule, "run_command", autospec=True, side_effect=fake):
        msg = failed(run(site.args(state="backup", path=os.path.join(site.backups, "x.tgz"))))
    assert "the EngineOwner nobody cannot write the backup directory" in msg
    assert "nobody" in fake.users  # the write test ran as the EngineOwner, through runuser
    assert any(os.path.basename(c[0]) == "test" and "-w" in c for c in fake.calls)


@as_root
def test_unknown_engine_owner(tmp_path, run):
    site = Site(str(tmp_path), owner="no-such-user-xyz")
    fake = FakeHost(site)
    with mock.patch.object(basic.AnsibleModule, "run_command", autospec=True, side_effect=fake):
        msg = failed(run(site.args()))
    assert "EngineOwner 'no-such-user-xyz' does not exist on this host" in msg


def test_backup_verification_needs_a_scratch_dir_and_space(site, host, run, pg_bindir):
    site.make_cluster()
    path = os.path.join(site.backups, "x.tgz")
    msg = failed(run(site.args(state="backup", path=path, scratch_dir="/nonexistent/scratch")))
    assert "scratch_dir /nonexistent/scratch does not exist" in msg
    with mock.patch.object(tf, "free_bytes", side_effect=[10 ** 12, 10]):
        msg = failed(run(site.args(state="backup", path=path, pg_bindir=pg_bindir)))
    assert "not enough free space in %s for the restore check" % site.backups in msg
    assert "use verify: archive" in msg


def test_backup_room_is_the_archive_and_one_more_copy_checked_before_anything(site, host, run, pg_bindir):
    """The rule of tf.backup_needs: archive (size x factor) plus the scratch copy of the restore check,
    both on the backup directory's filesystem; refused before the database is touched."""
    site.make_cluster()
    path = os.path.join(site.backups, "x.tgz")
    with mock.patch.object(tf, "dir_size", return_value=1000), \
            mock.patch.object(tf, "free_bytes", return_value=1500):
        result = run(site.args(state="backup", path=path, pg_bindir=pg_bindir))
    msg = failed(result)
    assert "1.5 KiB free, 2.0 KiB needed for the archive (1000 B), and a copy of the database beside it " \
           "(1000 B): the scratch copy of its restore check" in msg, msg
    assert not os.listdir(site.backups)
    # archive only: 1x is enough
    assert tf.backup_needs(1000, 1.0, "archive")["needed"] == 1000
    # a copy taken first, then removed before the restore check: never both
    assert tf.backup_needs(1000, 1.0, "restore", copy_first=True) == dict(archive=1000, copy=1000, scratch=1000,
                                                                          needed=2000)
    # archiving a copy already made: the scratch reuses its room; a scratch elsewhere needs none here
    assert tf.backup_needs(1000, 1.0, "restore", copy_made=True)["needed"] == 1000
    assert tf.backup_needs(1000, 0.5, "restore", scratch_apart=True)["needed"] == 500


def test_pg_binaries_not_found(site, host, run, tmp_path):
    path = site.archive()
    msg = failed(run(site.args(state="verify", path=path, pg_bindir=str(tmp_path))))
    assert "pg_bindir %s does not hold pg_ctl, postgres and psql" % tmp_path in msg


# -- verify ------------------------------------------------------------------------------------------------
def test_verify_archive_and_restore_levels(site, host, run, pg_bindir):
    path = site.archive()
    result = ok(run(site.args(state="verify", path=path, verify="archive")))
    assert result["changed"] is False and result["checks"][0] == "sha256 matches %s.sha256" % path
    assert "verification" not in result and result["archive"]["system_identifier"] == str(SYSID)
    result = ok(run(site.args(state="verify", path=path, pg_bindir=pg_bindir), check=True))
    assert result["verification"]["jidcounter"] == "41" and result["checks"][-1].startswith("restores:")
    assert result["changed"] is False and result["commands"] == []


def test_verify_without_sidecars_warns(site, host, run):
    path = site.archive(sidecars=False)
    result = ok(run(site.args(state="verify", path=path, verify="archive")))
    assert any("has no %s.sha256 file" % path in w for w in warnings(result))


def test_verify_failures(site, host, run, pg_bindir):
    assert "archive %s/none.tgz not found" % site.backups in failed(
        run(site.args(state="verify", path=os.path.join(site.backups, "none.tgz"))))
    assert "is not a regular file" in failed(run(site.args(state="verify", path=site.backups)))
    assert "state is verify but all of the following are missing: path" in failed(run(site.args(state="verify")))

    path = site.archive()
    with open(path, "r+b") as handle:  # a flipped byte
        handle.seek(os.path.getsize(path) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    msg = failed(run(site.args(state="verify", path=path, verify="archive")))
    assert "does not match %s.sha256" % path in msg or "the sha256 of %s is" % path in msg
    assert "do not restore it" in msg

    path = site.archive("size.tgz", archive_size=1)
    msg = failed(run(site.args(state="verify", path=path, verify="archive")))
    assert "does not match its manifest" in msg and "the manifest says 1" in msg

    path = site.archive("counter.tgz", jidcounter="40")
    msg = failed(run(site.args(state="verify", path=path, pg_bindir=pg_bindir)))
    assert "the restored copy of %s does not match its manifest: jidcounter read from the restored copy is 41" % path in msg

    path = os.path.join(site.backups, "junk.tgz")
    shutil.copy(site.archive("src.tgz"), path)
    with open(path + ".manifest.json", "w") as handle:
        handle.write("{")
    assert "cannot read the manifest" in failed(run(site.args(state="verify", path=path)))


def test_verify_rejects_an_archive_for_another_data_dir_name(site, host, run):
    src = site.make_cluster(path=os.path.join(site.root, "other", "pgdata"))
    path = os.path.join(site.backups, "pgdata.tgz")
    with tf.AtomicFile(path) as out:
        tz.write_archive(src, out)
        out.commit()
    msg = failed(run(site.args(state="verify", path=path, verify="archive")))
    assert "cannot be restored into %s: the top-level directory is pgdata/, not psql/" % site.db_dir in msg


def test_verify_restore_check_io_error(site, host, run, pg_bindir):
    path = site.archive()
    with mock.patch.object(trc, "safe_extract", side_effect=OSError(28, "No space left on device")):
        msg = failed(run(site.args(state="verify", path=path, pg_bindir=pg_bindir)))
    assert "the restore check of %s failed in %s" % (path, site.backups) in msg


# -- restore -----------------------------------------------------------------------------------------------
def test_restore_into_an_empty_dir_then_idempotent(site, host, run):
    path = site.archive()
    os.makedirs(site.db_dir)
    result = ok(run(site.args(state="restore", path=path), check=True, diff=True))
    assert result["changed"] is True and os.listdir(site.db_dir) == []
    assert result["commands"][0].endswith("--restore %s" % path)
    assert not os.path.exists(tractor_db.marker_path(site.db_dir))
    assert result["diff"]["after"]["restored_from"]["archive"] == path

    result = ok(run(site.args(state="restore", path=path)))
    assert result["changed"] is True and host.ops()[-2:] == ["--restore", "--status"]
    assert os.path.exists(os.path.join(site.db_dir, "PG_VERSION"))
    marker = json.load(open(tractor_db.marker_path(site.db_dir)))
    assert marker["sha256"] == tf.file_sha256(path) and marker["identity"]["system_identifier"] == str(SYSID)
    assert result["restore"] == marker

    host.running = True  # in use since: still the same restore
    result = ok(run(site.args(state="restore", path=path)))
    assert result["changed"] is False and host.ops().count("--restore") == 1
    assert "still holds the restore of %s" % path in result["msg"] and "force: true" in result["msg"]

    # force: the database must end equal to the archive, so it is restored again (not a silent ok)
    host.running = False
    result = ok(run(site.args(state="restore", path=path, force=True)))
    assert result["changed"] is True and host.ops().count("--restore") == 2 and "--destroy" in host.ops()
    assert "restores it again" in result["msg"]


def test_restore_into_a_missing_dir_creates_it(site, host, run):
    path = site.archive()
    result = ok(run(site.args(state="restore", path=path)))
    assert result["commands"][0].startswith("create %s" % site.db_dir)


def test_restore_force_replaces_and_warns_about_versions(site, host, run):
    path = site.archive(engine_version="2.1")
    site.make_cluster(sysid=99)
    result = ok(run(site.args(state="restore", path=path, force=True)))
    assert host.ops()[-3:] == ["--destroy", "--restore", "--status"]
    assert any("was made with Tractor 2.1; this is the 2.2 install" in w for w in warnings(result))
    assert ti.data_dir_identity(site.db_dir)["system_identifier"] == str(SYSID)


def test_restore_refusals(site, host, run):
    path = site.archive()
    site.make_cluster(sysid=99)
    host.running = True
    assert "stop the engine and database first (state=stopped) before a restore" in failed(
        run(site.args(state="restore", path=path)))
    host.running = False
    msg = failed(run(site.args(state="restore", path=path)))
    assert "%s is not empty (it holds a PostgreSQL cluster)" % site.db_dir in msg and "set force: true" in msg
    with listener(site.engine_port):
        assert "before a restore" in failed(run(site.args(state="restore", path=path, force=True)))
    with mock.patch.object(tf, "free_bytes", return_value=0), \
            mock.patch.object(tf, "dir_size", return_value=0):
        assert "not enough free space in %s to restore" % site.data_dir in failed(
            run(site.args(state="restore", path=path, force=True)))
    host.restore_extracts = False
    msg = failed(run(site.args(state="restore", path=path, force=True)))
    assert "finished but %s holds no cluster" % site.db_dir in msg


def test_restore_refuses_a_damaged_archive_before_touching_anything(site, host, run):
    path = site.archive()
    site.make_cluster(sysid=99)
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)
    msg = failed(run(site.args(state="restore", path=path, force=True)))
    assert "damaged" in msg and host.ops() == []


@as_root
def test_restore_refused_when_the_engine_owner_cannot_read_the_archive(tmp_path, run):
    site = Site(str(tmp_path), owner="nobody")
    path = site.archive()
    fake = FakeHost(site)
    fake.test_rc = 1
    with mock.patch.object(basic.AnsibleModule, "run_command", autospec=True, side_effect=fake):
        msg = failed(run(site.args(state="restore", path=path, scratch_dir=site.backups, verify="archive")))
    assert "the EngineOwner nobody cannot read %s" % path in msg


# -- absent ------------------------------------------------------------------------------------------------
def test_absent(site, host, run):
    path = site.archive()
    assert ok(run(site.args(state="absent")))["changed"] is False  # nothing there
    site.make_cluster()
    with open(tractor_db.marker_path(site.db_dir), "w") as handle:
        handle.write("{}")
    result = ok(run(site.args(state="absent", backup=path), check=True))
    assert result["changed"] is True and os.path.exists(os.path.join(site.db_dir, "PG_VERSION"))
    result = ok(run(site.args(state="absent", backup=path)))
    assert result["changed"] is True and os.listdir(site.db_dir) == []
    assert result["commands"][0].endswith("--destroy")
    assert not os.path.exists(tractor_db.marker_path(site.db_dir))
    assert ok(run(site.args(state="absent", backup=path)))["changed"] is False


def test_absent_refusals(site, host, run):
    path = site.archive()
    site.make_cluster(sysid=42)
    msg = failed(run(site.args(state="absent")))
    assert "refusing to destroy the job database in %s without a backup" % site.db_dir in msg
    msg = failed(run(site.args(state="absent", backup=path)))
    assert "is not a backup of the database in %s: its PostgreSQL system identifier is %d" % (site.db_dir, SYSID) in msg
    host.running = True
    msg = failed(run(site.args(state="absent", force=True)))
    assert "stop the engine and database first (state=stopped) before destroying the job database" in msg
    assert host.ops().count("--destroy") == 0
    host.running = False
    assert ok(run(site.args(state="absent", backup=path, force=True)))["changed"] is True


def test_absent_stops_a_running_server_only_with_stop_database_and_after_the_checks(site, host, run):
    path = site.archive()
    site.make_cluster(sysid=42)
    host.running = True
    # another cluster's backup: refused before anything changes, the server keeps running
    msg = failed(run(site.args(state="absent", backup=path, stop_database=True)))
    assert "is not a backup of the database" in msg and host.running is True
    assert "--stop" not in host.ops() and "--destroy" not in host.ops()
    site.make_cluster()  # now the archive is this cluster's backup
    host.running = True
    planned = ok(run(site.args(state="absent", backup=path, stop_database=True), check=True))
    assert host.running is True and [c.split()[-1] for c in planned["commands"]] == ["--stop", "--destroy"]
    result = ok(run(site.args(state="absent", backup=path, stop_database=True)))
    assert result["changed"] is True and host.running is False and os.listdir(site.db_dir) == []
    assert [c.split()[-1] for c in result["commands"]] == ["--stop", "--destroy"]
    assert result["status"]["running"] is False


def test_destroy_and_restore_forget_the_paused_jobs_record(site, host, run):
    record = os.path.join(site.data_dir, ".renderfarm-tractor-paused-jobs.json")
    path = site.archive()
    site.make_cluster()
    with open(record, "w") as handle:
        handle.write('{"paused_jobs": [7]}')
    planned = ok(run(site.args(state="absent", backup=path), check=True))
    assert os.path.exists(record) and any("paused-jobs record" in c for c in planned["commands"])
    result = ok(run(site.args(state="absent", backup=path)))
    assert not os.path.exists(record) and any("paused-jobs record" in c for c in result["commands"])
    with open(record, "w") as handle:
        handle.write('{"paused_jobs": [7]}')
    result = ok(run(site.args(state="restore", path=path)))
    assert result["changed"] is True and not os.path.exists(record)
    # a restore that changes nothing (the marker says this archive) leaves a record alone
    with open(record, "w") as handle:
        handle.write('{"paused_jobs": [8]}')
    again = ok(run(site.args(state="restore", path=path)))
    assert again["changed"] is False and os.path.exists(record)


def test_absent_without_pg_control_warns(site, host, run):
    path = site.archive()
    site.make_cluster()
    os.unlink(os.path.join(site.db_dir, "global", "pg_control"))
    result = ok(run(site.args(state="absent", backup=path)))
    assert any("cannot check that" in w for w in warnings(result))


# -- the engine probe ----------------------------------------------------------------------------------------
def test_tcp_listening():
    port = free_port()
    assert tractor_db.tcp_listening("localhost", port, 1) is False
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen(1)
        assert tractor_db.tcp_listening("127.0.0.1", port, 1) is True


def test_an_unusable_engine_address_is_no_proof_the_engine_is_down(site, host, run):
    site.make_cluster()
    host.running = True
    msg = failed(run(site.args(state="stopped", engine="no-such-host.invalid:80")))
    assert "cannot tell whether the engine at no-such-host.invalid:80 runs" in msg
    assert "not host:port" in failed(run(site.args(state="stopped", engine="localhost:http")))
    assert host.running


def test_backup_checks_for_postgresql_binaries_before_stopping_anything(site, host, run, tmp_path):
    site.make_cluster()
    host.running = True
    msg = failed(run(site.args(state="backup", path=os.path.join(site.backups, "x.tgz"), stop_database=True,
                               pg_bindir=str(tmp_path))))
    assert "does not hold pg_ctl, postgres and psql" in msg
    assert host.running and "--stop" not in host.ops() and os.listdir(site.backups) == []


def test_paths_must_be_absolute(site, host, run):
    assert "path must be an absolute path, not backups/x.tgz" in failed(
        run(site.args(state="backup", path="backups/x.tgz")))
    assert "scratch_dir must be an absolute path" in failed(
        run(site.args(state="verify", path="/x.tgz", scratch_dir="scratch")))


# -- verified_archive: one full read per run ----------------------------------------------------------------
def test_verified_archive_spares_a_second_read_of_an_unchanged_file(site, host, run, monkeypatch):
    path = site.archive()
    earlier = ok(run(site.args(state="verify", path=path, verify="archive")))["archive"]
    assert earlier["identity"]["size"] == os.path.getsize(path)

    def no_second_read(*args, **kwargs):
        raise AssertionError("the archive was read again")
    monkeypatch.setattr(tractor_db.archive_inspect, "inspect_archive", no_second_read)
    site.make_cluster()
    result = ok(run(site.args(state="absent", backup=path, verified_archive=earlier)))
    assert result["changed"] is True and result["archive"]["reused"] is True
    assert any(c.startswith("unchanged since the full read of this run") for c in result["checks"])
    assert result["checks"][0] == "sha256 matches %s.sha256" % path  # the sidecar is still compared
    result = ok(run(site.args(state="restore", path=path, verified_archive=earlier, force=True)))
    assert result["changed"] is True and result["archive"]["reused"] is True


def test_verified_archive_of_a_changed_file_is_not_trusted(site, host, run):
    path = site.archive()
    earlier = ok(run(site.args(state="verify", path=path, verify="archive")))["archive"]
    stat_before = os.stat(path)
    with open(path, "r+b") as handle:  # a flipped byte, then the old modification time set back
        handle.seek(os.path.getsize(path) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(stat_before.st_atime_ns, stat_before.st_mtime_ns))
    site.make_cluster()
    result = run(site.args(state="absent", backup=path, verified_archive=earlier))
    assert "do not restore it" in failed(result)
    assert any("changed since it was verified (ctime_ns)" in w for w in warnings(result))
    assert os.path.exists(os.path.join(site.db_dir, "PG_VERSION"))  # nothing destroyed


@pytest.mark.parametrize("change", ["other path", "problems", "no identity", "forged sha256"])
def test_verified_archive_that_does_not_fit_is_not_trusted(site, host, run, change):
    path = site.archive()
    other = site.archive("other.tgz")
    earlier = ok(run(site.args(state="verify", path=other if change == "other path" else path,
                               verify="archive")))["archive"]
    if change == "problems":
        earlier["problems"] = ["absolute path /etc"]
    elif change == "no identity":
        earlier.pop("identity")
    elif change == "forged sha256":
        earlier["sha256"] = "0" * 64
    site.make_cluster()
    result = run(site.args(state="absent", backup=path, verified_archive=earlier))
    if change == "forged sha256":  # identity fits, but the .sha256 sidecar still disagrees
        assert "the sha256 of %s is %s" % (path, "0" * 64) in failed(result)
        assert os.path.exists(os.path.join(site.db_dir, "PG_VERSION"))
        return
    result = ok(result)
    assert "reused" not in result["archive"] and result["changed"] is True
    assert any("is read again" in w for w in warnings(result))
