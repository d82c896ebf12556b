"""Contract tests of the emulated tractor-dbctl against the fact sheet (§1, §2, §4).

Real installs, a real PostgreSQL cluster per test, every call a real process run as EngineOwner.
Each test names the fact-sheet section whose behaviour it pins down.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import tarfile

import pytest

from tractor_emulator import versions

ALL_VERSIONS = list(versions.VERSIONS)


def ok(proc):
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def refused(proc, message):
    assert proc.returncode == 2, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert message in proc.stderr
    return proc


def params(site, version):
    out = ok(site.dbctl(version, "--show-params")).stdout
    return dict(line.split(" = ", 1) for line in out.splitlines())


# -- §1.4 --start-for-engine, §4.3 param rows -------------------------------------------------------
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_first_start_for_engine_initialises_starts_builds(site, version):
    proc = ok(site.dbctl(version, "--start-for-engine"))
    lines = proc.stderr.splitlines()
    # The order of a real first start (LOG-22, §1.4).
    assert lines[:4] == [
        f"Initializing postgres database directory {site.db_dir}.",
        f"Starting postgres server on the data directory {site.db_dir} and on port {site.db_port}.",
        "Building tractor database.",
        "Upgrading database schema from version {0} to version {0}.".format(versions.get(version).schema_version),
    ]
    assert lines[4:] == [
        "Applying upgrade 1 of 4: Drop all views.",
        "Applying upgrade 2 of 4: Drop all functions.",
        "Applying upgrade 3 of 4: Create all views.",
        "Applying upgrade 4 of 4: Create all functions.",
    ]
    assert proc.stdout == ""  # progress goes to stderr only (§1.4)
    shown = params(site, version)
    assert shown["jidcounter"] == "0"
    assert shown["schema-version"] == versions.get(version).schema_version
    assert shown["maxrecords"] == "10000" and shown["archiving"] == "1"
    assert len(shown["module-checksum"]) == 40


def test_schema_version_of_22_is_the_real_one(site):
    ok(site.dbctl("2.2", "--start-for-engine"))
    assert params(site, "2.2")["schema-version"] == "2.2-4"  # §4.3, LOG-22


def test_second_start_for_engine_on_running_server_needs_no_upgrade(site):
    ok(site.dbctl("2.2", "--start-for-engine"))
    proc = ok(site.dbctl("2.2", "--start-for-engine"))
    assert proc.stderr == ""  # DBUseExisting True: the running server is used, schema is current


# -- §1.4 --set-job-counter, §4.3 TractorNewJid ------------------------------------------------------
def test_set_job_counter_and_next_jid(site):
    ok(site.dbctl("2.2", "--start-for-engine"))
    proc = ok(site.dbctl("2.2", "--set-job-counter", "500"))
    assert proc.stdout.strip() == "The job counter will continue from 500."
    assert params(site, "2.2")["jidcounter"] == "500"
    lower = ok(site.dbctl("2.2", "--set-job-counter", "10"))  # still exit 0 (§1.6)
    assert lower.stdout.strip().startswith("The job counter was not updated.")
    assert params(site, "2.2")["jidcounter"] == "500"
    # increments then returns: the next spooled job gets N+1 (§4.3)
    assert ok(site.dbctl("2.2", "--exec-sql", "SELECT TractorNewJid()")).stdout.strip() == "501"
    assert params(site, "2.2")["jidcounter"] == "501"


def test_exec_sql_joins_columns_with_bar(site):
    ok(site.dbctl("2.2", "--start-for-engine"))
    proc = ok(site.dbctl("2.2", "--exec-sql", "SELECT 1, 'two', 3"))
    assert proc.stdout == "1|two|3\n"


# -- §1.4 --status, §1.6 exit 0 either way ------------------------------------------------------------
def test_status_running_and_not_running(site):
    ok(site.dbctl("2.2", "--start-for-engine"))
    running = ok(site.dbctl("2.2", "--status"))
    assert running.stderr.splitlines() == [
        f"A postgresql server is running on the data directory {site.db_dir}.",
        f"The postgresql server is reachable through port {site.db_port}.",
        "The database tractor exists.",
    ]
    stop = ok(site.dbctl("2.2", "--stop"))
    assert stop.stderr.startswith(f"Stopping postgres server on data directory {site.db_dir} with ")
    stopped = ok(site.dbctl("2.2", "--status"))
    assert stopped.stderr.strip() == f"A postgresql server is NOT running on the data directory {site.db_dir}."
    refused(site.dbctl("2.2", "--stop"), f"The postgresql server is NOT running on the data directory {site.db_dir}.")
    ok(site.dbctl("2.2", "--start"))
    refused(site.dbctl("2.2", "--start"), f"A postgresql server is already running on the data directory {site.db_dir}.")


# -- §1.5 backup / destroy / restore ------------------------------------------------------------------
def test_backup_destroy_restore_round_trip(site):
    ok(site.dbctl("2.2", "--start-for-engine"))
    ok(site.dbctl("2.2", "--set-job-counter", "500"))
    refused(site.dbctl("2.2", "--backup", os.path.join(site.data_dir, "early.tgz")),
            "The postgresql server is already running.  It must be shutdown with --stop before using --backup.")
    ok(site.dbctl("2.2", "--stop"))
    backup = os.path.join(site.data_dir, "job-db.tgz")
    proc = ok(site.dbctl("2.2", "--backup", backup))
    assert proc.stderr.strip() == f"Backing up data directory {site.db_dir}"
    with gzip.open(backup) as raw:
        assert raw.read(2)  # a gzip stream
    with tarfile.open(backup, "r:gz") as archive:
        tops = {name.split("/", 1)[0] for name in archive.getnames()}
    assert tops == {"psql"}  # single top-level entry psql/ (§1.5)

    refused(site.dbctl("2.2", "--restore", backup), f"{site.db_dir} is not an empty directory.")
    proc = ok(site.dbctl("2.2", "--destroy"))
    assert proc.stderr.strip() == f"Removing contents of data directory {site.db_dir}."
    assert os.path.isdir(site.db_dir) and os.listdir(site.db_dir) == []  # emptied, kept (§1.3)

    proc = ok(site.dbctl("2.2", "--restore", backup))
    assert proc.stderr.strip() == f"Restoring to data directory {site.db_dir}"
    ok(site.dbctl("2.2", "--start"))
    assert params(site, "2.2")["jidcounter"] == "500"
    refused(site.dbctl("2.2", "--restore", backup),
            "The postgresql server is already running.  It must be shutdown with --stop before using --restore.")
    refused(site.dbctl("2.2", "--destroy"), "It must be shutdown with --stop before using --destroy.")


def test_backup_failure_is_judged_by_tar_stderr(site):
    ok(site.dbctl("2.2", "--start-for-engine"))
    ok(site.dbctl("2.2", "--stop"))
    # The EngineOwner cannot write here: tar complains on stderr -> "Backup failed." (§1.5)
    target = os.path.join(site.base, "not-writable", "b.tgz") if os.geteuid() == 0 else "/proc/b.tgz"
    if os.geteuid() == 0:
        os.makedirs(os.path.dirname(target), mode=0o755)
    refused(site.dbctl("2.2", "--backup", target), "Backup failed.")


def test_restore_of_a_corrupt_archive_fails(site):
    ok(site.dbctl("2.2", "--start-for-engine"))
    ok(site.dbctl("2.2", "--stop"))
    backup = os.path.join(site.data_dir, "job-db.tgz")
    ok(site.dbctl("2.2", "--backup", backup))
    with open(backup, "r+b") as handle:
        handle.truncate(os.path.getsize(backup) // 2)
    ok(site.dbctl("2.2", "--destroy"))
    refused(site.dbctl("2.2", "--restore", backup), "Restore failed.")


# -- §8, §1.4 upgrades between versions; the newer-schema refusal (emulator invention) --------------
def test_21_database_upgraded_by_22_then_refused_by_21(site):
    ok(site.dbctl("2.1", "--start-for-engine"))
    ok(site.dbctl("2.1", "--exec-sql",
                  "INSERT INTO job (jid, owner, title, dirmap) SELECT TractorNewJid(), 'ann', 'shot ' || g, "
                  "'[]' FROM generate_series(1, 25) g"))
    ok(site.dbctl("2.1", "--stop"))
    proc = ok(site.dbctl("2.2", "--start-for-engine"))
    lines = proc.stderr.splitlines()
    assert lines[0] == f"Starting postgres server on the data directory {site.db_dir} and on port {site.db_port}."
    assert lines[1] == "Upgrading database schema from version 2.1-2 to version 2.2-4."
    steps = lines[2:]
    assert steps[0] == f"Applying upgrade 1 of {len(steps)}: Drop all views."
    assert steps[-1] == f"Applying upgrade {len(steps)} of {len(steps)}: Create all functions."
    assert any("rewrites every job" in s for s in steps)  # the one-way, per-job migration of §8
    shown = params(site, "2.2")
    assert shown["schema-version"] == "2.2-4" and shown["jidcounter"] == "25"
    count = ok(site.dbctl("2.2", "--exec-sql", "SELECT count(*), pg_typeof(min(dirmap::text)::json) FROM job"))
    assert count.stdout.strip() == "25|json"
    ok(site.dbctl("2.2", "--stop"))

    for op in ("--start-for-engine", "--start"):
        proc = refused(site.dbctl("2.1", op), "newer than this tractor-dbctl (Tractor 2.1")
        assert "schema version 2.2-4" in proc.stderr
        assert "A postgresql server is NOT running" in ok(site.dbctl("2.1", "--status")).stderr  # left stopped


def test_22_to_24_keeps_the_schema_and_back_again(site):
    # §8: the 2.3/2.4 release notes name no schema change; only the module checksum differs (§1.4),
    # which the real 2.2 start-up log shows as an upgrade "from version 2.2-4 to version 2.2-4".
    rebuild = ["Applying upgrade 1 of 4: Drop all views.",
               "Applying upgrade 2 of 4: Drop all functions.",
               "Applying upgrade 3 of 4: Create all views.",
               "Applying upgrade 4 of 4: Create all functions."]
    ok(site.dbctl("2.2", "--start-for-engine"))
    ok(site.dbctl("2.2", "--stop"))
    proc = ok(site.dbctl("2.4", "--start-for-engine"))
    assert proc.stderr.splitlines()[1:] == ["Upgrading database schema from version 2.2-4 to version 2.2-4."] + rebuild
    after_24 = params(site, "2.4")
    assert after_24["schema-version"] == "2.2-4"
    ok(site.dbctl("2.4", "--stop"))
    # The old tools accept the database again: nothing newer than they know, only their own views
    # and functions to rebuild (the downgrade that keeps the job database relies on this).
    proc = ok(site.dbctl("2.2", "--start-for-engine"))
    assert proc.stderr.splitlines()[1:] == ["Upgrading database schema from version 2.2-4 to version 2.2-4."] + rebuild
    back = params(site, "2.2")
    assert back["schema-version"] == "2.2-4" and back["module-checksum"] != after_24["module-checksum"]
    assert ok(site.dbctl("2.2", "--check-upgrade")).stderr.strip() == (
        "No upgrades are required to be compatible with schema version 2.2-4.")


def test_no_auto_upgrade_then_manual_upgrade(site):
    ok(site.dbctl("2.1", "--start-for-engine"))
    ok(site.dbctl("2.1", "--stop"))
    proc = ok(site.dbctl("2.2", "--start-for-engine", "--no-auto-upgrade"))
    # §6.6: the upgrade check is skipped entirely, nothing is printed about it
    assert "upgrade" not in proc.stderr.lower() and "schema" not in proc.stderr.lower(), proc.stderr
    assert proc.stdout == ""
    assert params(site, "2.2")["schema-version"] == "2.1-2"
    check = ok(site.dbctl("2.2", "--check-upgrade"))
    assert check.stderr.splitlines()[0] == (
        "The following upgrades need to be applied to upgrade the schema from version 2.1-2 to 2.2-4:")
    ok(site.dbctl("2.2", "--upgrade"))
    assert params(site, "2.2")["schema-version"] == "2.2-4"
    assert ok(site.dbctl("2.2", "--upgrade")).stderr.strip() == "The database schema is current."
    assert ok(site.dbctl("2.2", "--check-upgrade")).stderr.strip() == (
        "No upgrades are required to be compatible with schema version 2.2-4.")


def test_db_auto_upgrade_false_in_site_config(site):
    ok(site.dbctl("2.2", "--start-for-engine"))
    ok(site.dbctl("2.2", "--stop"))
    site.write_config(db_extra='    "DBAutoUpgrade": False,\n')
    proc = ok(site.dbctl("2.4", "--start-for-engine"))
    assert "upgrade" not in proc.stderr.lower() and "schema" not in proc.stderr.lower(), proc.stderr
    assert params(site, "2.4")["schema-version"] == "2.2-4"


def test_upgrade_refused_while_an_engine_is_connected(site):
    ok(site.dbctl("2.2", "--start-for-engine"))
    ok(site.dbctl("2.2", "--stop"))
    ok(site.dbctl("2.3", "--start-for-engine", "--no-auto-upgrade"))
    from tractor_emulator import pg

    bindir = pg.find_bindir(site.installs("2.3"))
    engine = subprocess.Popen(
        [os.path.join(bindir, "psql"), "-X", "-h", "localhost", "-p", str(site.db_port), "-U", "bootstrap", "tractor"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        engine.stdin.write("SELECT 1;\n")
        engine.stdin.flush()
        assert engine.stdout.readline().strip() == "?column?"
        refused(site.dbctl("2.3", "--upgrade"), "Unable to perform upgrade because an engine is connected.")
        # bootstrap is limited to one connection: a second engine cannot connect (§4.2)
        second = subprocess.run(
            [os.path.join(bindir, "psql"), "-X", "-h", "localhost", "-p", str(site.db_port), "-U", "bootstrap",
             "-c", "SELECT 1", "tractor"], capture_output=True, text=True)
        assert second.returncode != 0 and "too many connections" in second.stderr
    finally:
        engine.stdin.close()
        engine.wait(timeout=10)


# -- §1.3 pre-checks ------------------------------------------------------------------------------------
def test_engine_owner_mismatch_exits_2(site):
    if os.geteuid() == 0:  # run as root while EngineOwner is the unprivileged account
        proc, owner, user = site.dbctl("2.2", "--status", as_owner=False), site.owner.pw_name, "root"
    else:  # run as ourselves while EngineOwner names someone else
        site.write("tractor.config", '{"EngineOwner": "someoneelse", "TractorDataDirectory": "%s"}\n' % site.data_dir)
        proc, owner, user = site.dbctl("2.2", "--status"), "someoneelse", site.owner.pw_name
    refused(proc, f"tractor-dbctl is configured to be run by {owner}; the owner of this process is {user}.")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown the data dir to someone else")
def test_data_dir_owner_mismatch_exits_2(site):
    os.makedirs(site.db_dir)
    os.chown(site.db_dir, 0, 0)
    refused(site.dbctl("2.2", "--status"),
            f"The database data dir {site.db_dir} is owned by root; the owner of this process is {site.owner.pw_name}.")


def test_config_dir_is_mandatory_and_must_exist(site):
    proc = site.run([site.bin("2.2", "tractor-dbctl"), "--status"])
    refused(proc, "--config-dir must be specified.")
    missing = os.path.join(site.base, "nope")
    refused(site.run([site.bin("2.2", "tractor-dbctl"), "--config-dir", missing, "--status"]),
            f"Config dir {missing} does not exist")
    # both spellings are accepted (§1.2)
    ok(site.run([site.bin("2.2", "tractor-dbctl"), f"--config-dir={site.config_dir}", "--status"]))


def test_no_operation_help_and_bad_options(site):
    refused(site.dbctl("2.2"), "No operations were specified.  Use --help for options.")
    help_proc = site.dbctl("2.2", "-h")
    assert help_proc.returncode == 2 and "--start-for-engine" in help_proc.stdout  # help request exits 2 (§1.6)
    assert site.dbctl("2.2", "--no-such-option").returncode == 2
    assert site.dbctl("2.2", "--set-job-counter", "many").returncode == 2
    extra = site.dbctl("2.2", "--status", "stray-positional")
    assert extra.returncode == 2 and "usage" in extra.stdout.lower()


def test_only_the_first_operation_in_source_order_runs(site):
    # --status comes before --start in the source's order (§1.2): nothing is started.
    proc = ok(site.dbctl("2.2", "--start", "--status"))
    assert "NOT running" in proc.stderr


def test_json_literals_in_db_config_fail_like_dbctl(site):
    site.write("db.config", '{"DBInit": true}\n')
    proc = refused(site.dbctl("2.2", "--status"), "Problem evaluating config file")
    assert os.path.join(site.config_dir, "db.config") in proc.stderr


def test_missing_required_key_is_named_with_both_files(site, installs):
    stock = os.path.join(installs("2.2"), "config", "db.config")
    site.write("db.config", '{"DBConnection": {"host": "localhost", "port": %d}}\n' % site.db_port)
    # Required keys come from the stock file when the site file is sparse (§2.1): still fine.
    ok(site.dbctl("2.2", "--status"))
    # A stock file without DBDataDir: use a copied install to keep the shared one intact.
    import shutil
    copy = os.path.join(site.base, "Tractor-2.2")
    shutil.copytree(installs("2.2"), copy, symlinks=True)
    stock_copy = os.path.join(copy, "config", "db.config")
    text = open(stock, encoding="utf-8").read().replace('"DBDataDir"', '"NotDBDataDir"')
    with open(stock_copy, "w", encoding="utf-8") as handle:
        handle.write(text)
    proc = site.run([os.path.join(copy, "bin", "tractor-dbctl"), "--configdir", site.config_dir, "--status"])
    refused(proc, f"DBDataDir is not defined in config files {stock_copy} nor {os.path.join(site.config_dir, 'db.config')}")


def test_dbhost_must_be_localhost(site):
    site.write("db.config", '{"DBConnection": {"host": "dbserver", "port": %d, "dbname": "tractor"}}\n' % site.db_port)
    ok(site.dbctl("2.2", "--init"))
    refused(site.dbctl("2.2", "--start"), f"DBHost must be set to localhost in {os.path.join(site.config_dir, 'db.config')}")


def test_init_refuses_a_non_empty_directory(site):
    os.makedirs(site.db_dir)
    os.chown(site.db_dir, site.owner.pw_uid, site.owner.pw_gid)
    with open(os.path.join(site.db_dir, "stray"), "w", encoding="utf-8"):
        pass
    os.chown(os.path.join(site.db_dir, "stray"), site.owner.pw_uid, site.owner.pw_gid)
    refused(site.dbctl("2.2", "--init"), f"{site.db_dir} is not an empty directory.")


def test_db_init_false_and_missing_data_dir(site):
    site.write_config(db_extra='    "DBInit": False,\n')
    refused(site.dbctl("2.2", "--start-for-engine"),
            f"The postgresql data dir {site.db_dir} was not found and tractor-dbctl is not configured to create a new one.")


def test_stop_for_engine_honours_db_shutdown(site):
    ok(site.dbctl("2.2", "--start-for-engine"))
    site.write_config(db_extra='    "DBShutdown": False,\n')
    ok(site.dbctl("2.2", "--stop-for-engine"))
    assert "is running" in ok(site.dbctl("2.2", "--status")).stderr
    site.write_config()
    ok(site.dbctl("2.2", "--stop-for-engine"))
    assert "NOT running" in ok(site.dbctl("2.2", "--status")).stderr


def test_purge_jobs_and_reset_job_counter(site):
    ok(site.dbctl("2.2", "--start-for-engine"))
    ok(site.dbctl("2.2", "--exec-sql", "INSERT INTO job (jid, title) SELECT TractorNewJid(), 'j' FROM generate_series(1, 3)"))
    refused(site.dbctl("2.2", "--reset-job-counter"), "only valid together with --purge-jobs")
    proc = ok(site.dbctl("2.2", "--purge-jobs"))
    assert proc.stderr.strip() == "Purging."
    assert ok(site.dbctl("2.2", "--exec-sql", "SELECT count(*) FROM job")).stdout.strip() == "0"
    assert params(site, "2.2")["jidcounter"] == "3"
    ok(site.dbctl("2.2", "--purge-jobs", "--reset-job-counter"))
    assert params(site, "2.2")["jidcounter"] == "0"


# -- fault hooks (emulator only) -------------------------------------------------------------------------
def test_fault_schema_upgrade_fails_and_rolls_back(site):
    ok(site.dbctl("2.1", "--start-for-engine"))
    ok(site.dbctl("2.1", "--stop"))
    site.write("emulator-faults", "schema-upgrade-fails  # injected by the test\n")
    proc = refused(site.dbctl("2.2", "--start-for-engine"),
                   "Upgrade failed.  Run 'tractor-dbctl --upgrade --debug' or inspect the postgres logs for details.")
    assert "Applying upgrade 1 of" in proc.stderr and "Create all functions" not in proc.stderr
    os.unlink(os.path.join(site.config_dir, "emulator-faults"))
    ok(site.dbctl("2.1", "--start"))
    shown = params(site, "2.1")  # rolled back: still the 2.1 schema, readable by 2.1
    assert shown["schema-version"] == "2.1-2"


def test_fault_pg_start_fails(site):
    ok(site.dbctl("2.2", "--init"))
    proc = site.dbctl("2.2", "--start", env={"TRACTOR_EMULATOR_FAULTS": "pg-start-fails"})
    refused(proc, "Unable to start the postgresql server")
    assert "NOT running" in ok(site.dbctl("2.2", "--status")).stderr


def test_fault_backup_tar_fails(site):
    ok(site.dbctl("2.2", "--start-for-engine"))
    ok(site.dbctl("2.2", "--stop"))
    proc = site.dbctl("2.2", "--backup", os.path.join(site.data_dir, "b.tgz"),
                      env={"TRACTOR_EMULATOR_FAULTS": "backup-tar-fails"})
    refused(proc, "Backup failed.")


def test_log_helpers(site):
    ok(site.dbctl("2.2", "--start-for-engine"))
    name = ok(site.dbctl("2.2", "--log-filename", "--log-day", "monday")).stdout.strip()
    assert name == os.path.join(site.db_dir, "pg_log", "log.1.csv")
    refused(site.dbctl("2.2", "--log-filename", "--log-day", "someday"), "Invalid --log-day")


# -- the test harness's initdb template (emulator/README.md, INVENTED) ------------------------------
def test_clusters_copied_from_the_initdb_template_are_distinct_and_start(make_site, initdb_template_cache):
    """The suites make clusters by copying one initdb (TRACTOR_EMULATOR_INITDB_CACHE): each copy
    must still be a cluster of its own (system identifier, which tractor_db compares to refuse a
    backup of another cluster) that PostgreSQL accepts (pg_control's CRC, the WAL's identifier)."""
    from tractor_farm import pg_tool

    sites = [make_site(), make_site()]
    identifiers = []
    for site in sites:
        ok(site.dbctl("2.2", "--init"))
        control = ok(site.run([pg_tool("pg_controldata"), site.db_dir])).stdout
        identifiers.append([line.split(":", 1)[1].strip() for line in control.splitlines()
                            if line.startswith("Database system identifier")][0])
        ok(site.dbctl("2.2", "--start"))
        ok(site.dbctl("2.2", "--build"))
        assert params(site, "2.2")["schema-version"] == "2.2-4"
        ok(site.dbctl("2.2", "--stop"))
    assert identifiers[0] != identifiers[1]
    assert [name for name in os.listdir(initdb_template_cache) if name.startswith("initdb-")]  # copies, not initdb
