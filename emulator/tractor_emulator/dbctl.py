"""Emulated ``tractor-dbctl`` (fact sheet §1).

Follows §1 closely: the option set of §1.2 (one operation per call, checked in the source's
order), the pre-checks of §1.3, the messages of §1.4 (progress on stderr; only --show-params,
--set-job-counter, --exec-sql and the log-file helpers print to stdout), the backup/restore
semantics of §1.5 (tar of the data dir, failure judged by tar's stderr) and the exit codes of §1.6.
Where §1 is silent the message is marked INVENTED and listed in emulator/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import os
import pwd
import re
import shutil
import subprocess
import sys
import time

from . import config as configmod
from . import faults, pg, schema, versions

# §1.2: the source checks the operations in this order and runs the first one set.
OPERATION_ORDER = (
    "status", "start", "stop", "start_for_engine", "stop_for_engine", "init", "build", "destroy",
    "check_upgrade", "upgrade", "exec_sql", "purge_jobs", "purge_archive_to_year_month", "vacuum",
    "backup", "restore", "log_filename", "get_log", "purge_logs", "logs_usage", "tail_log",
    "show_params", "update_params", "set_job_counter",
)

DEFAULT_LOCK_FILE = "/tmp/tractor-dbctl.lock"  # §1.3 item 5 (exact name unverified)

EMULATOR_PG_SETTINGS = """
# -- added by the renderfarm.tractor emulator (not by real Tractor) --
listen_addresses = 'localhost'
unix_socket_directories = ''
max_connections = 40
shared_buffers = 16MB
logging_collector = on
log_destination = 'csvlog'
log_directory = 'pg_log'
log_filename = 'log.%w'
log_truncate_on_rotation = on
log_rotation_age = 1d
"""

DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


class DBControlToolError(Exception):
    """Reported on stderr, exit 2 (§1.6)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tractor-dbctl", add_help=False,
        description="Control the Tractor job database server (renderfarm.tractor emulator).")
    ops = parser.add_argument_group("operations (one per call)")
    flag_ops = {
        "--status": "check the status of the postgresql server",
        "--start": "start the postgresql server",
        "--stop": "stop the postgresql server; don't run this if the engine is running",
        "--start-for-engine": "start the postgresql server and build/upgrade the schema as configured in db.config (used by engine)",
        "--stop-for-engine": "stop the postgresql server as configured in db.config (used by engine)",
        "--init": "initialize the postgresql data directory; server must not be running",
        "--build": "build the tractor database; server must be running",
        "--destroy": "remove the contents of the postgres database directory; server must not be running; DESTRUCTIVE WITHOUT WARNING!",
        "--check-upgrade": "check whether upgrades are required",
        "--upgrade": "update the database schema",
        "--purge-jobs": "remove all jobs (live and archived)",
        "--vacuum": "rebuild tables of non-deleted jobs; server must be stopped",
        "--log-filename": "print the current postgresql message log filename",
        "--get-log": "print the current postgresql message log",
        "--purge-logs": "remove postgresql message log files; server must be stopped",
        "--logs-usage": "report disk used by postgresql message logs",
        "--tail-log": "follow the postgresql message log",
        "--show-params": "show stored database parameters",
        "--update-params": "push config file parameters (DBArchiving) into the database",
    }
    for flag, text in flag_ops.items():
        ops.add_argument(flag, action="store_true", help=text)
    ops.add_argument("--exec-sql", metavar="SQL", help="execute the given SQL (uses db.config for the connection)")
    ops.add_argument("--purge-archive-to-year-month", metavar="YY-MM",
                     help="remove archived jobs up to and including YYYY-MM or YY-MM")
    ops.add_argument("--backup", metavar="FILE", help="write a backup to FILE; server must not be running")
    ops.add_argument("--restore", metavar="FILE", help="restore the database from FILE; server must not be running")
    ops.add_argument("--set-job-counter", metavar="N", type=int,
                     help="job ids continue from N; it must be greater than any job id used so far")
    mods = parser.add_argument_group("modifiers")
    mods.add_argument("--no-auto-upgrade", action="store_true",
                      help="prevent the automatic schema upgrade of --start-for-engine")
    mods.add_argument("--reset-job-counter", action="store_true", help="job ids restart at 1; only with --purge-jobs")
    mods.add_argument("--log-day", metavar="DAY", help="day for the log options (sunday-saturday or 0-6)")
    mods.add_argument("--config-dir", "--configdir", dest="config_dir", metavar="PATH",
                      help="path to the tractor config directory (mandatory)")
    mods.add_argument("-q", "--quiet", action="store_true")
    mods.add_argument("-v", "--verbose", action="store_true")
    mods.add_argument("-d", "--debug", action="store_true")
    mods.add_argument("-h", "--help", action="store_true")
    parser.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    return parser


class _ParseError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would exit 2 itself; we want our own message path
        raise _ParseError(message)


def parse_args(argv: list[str]) -> argparse.Namespace:
    base = build_parser()
    parser = _Parser(prog=base.prog, add_help=False, parents=[base], description=base.description)
    return parser.parse_args(argv), parser


class DbCtl:
    def __init__(self, version: str, install_root: str, opts: argparse.Namespace):
        self.info = versions.get(version)
        self.install_root = os.path.abspath(install_root)
        self.opts = opts
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.cfg: configmod.MergedConfig | None = None
        self.server: pg.Server | None = None
        self.we_started = False

    # -- output ----------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if not self.opts.quiet:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

    def debug(self, message: str) -> None:
        if self.opts.debug or (self.cfg is not None and self.cfg.db.get("DBDebug")):
            sys.stderr.write(message + "\n")

    @staticmethod
    def out(message: str) -> None:
        sys.stdout.write(message + "\n")
        sys.stdout.flush()

    # -- §1.3 pre-checks ----------------------------------------------------------------------------
    def precheck(self) -> None:
        config_dir = self.opts.config_dir
        if not config_dir:
            raise DBControlToolError("--config-dir must be specified.")
        if not os.path.isdir(config_dir):
            raise DBControlToolError(f"Config dir {config_dir} does not exist")
        try:
            self.cfg = configmod.MergedConfig(self.install_root, os.path.abspath(config_dir))
            self.cfg.require()
        except configmod.ConfigError as exc:
            raise DBControlToolError(str(exc)) from None
        owner = self.cfg.engine_owner
        if owner and owner != self.user:
            raise DBControlToolError(
                f"tractor-dbctl is configured to be run by {owner}; the owner of this process is {self.user}.")
        # §1.3 item 4.  The real tool dies with a traceback when the dir is missing [I]; but a real
        # first start creates it (LOG-22), so the emulator checks the owner only when it exists.
        if os.path.exists(self.data_dir):
            try:
                dir_owner = pwd.getpwuid(os.stat(self.data_dir).st_uid).pw_name
            except KeyError:
                dir_owner = str(os.stat(self.data_dir).st_uid)
            if dir_owner != self.user:
                raise DBControlToolError(
                    f"The database data dir {self.data_dir} is owned by {dir_owner}; "
                    f"the owner of this process is {self.user}.")
        try:
            bindir = pg.find_bindir(self.install_root)
        except pg.PgError as exc:
            raise DBControlToolError(str(exc)) from None
        conn = self.cfg.connection
        self.server = pg.Server(bindir, self.data_dir, conn["port"], debug=self.opts.debug)

    @property
    def data_dir(self) -> str:
        assert self.cfg is not None
        return self.cfg.db_data_dir

    @property
    def dbname(self) -> str:
        assert self.cfg is not None
        return str(self.cfg.connection["dbname"])

    def fault(self, name: str) -> bool:
        return faults.on(name, self.opts.config_dir)

    def require_localhost(self) -> None:
        if self.cfg.connection.get("host") != "localhost":
            _, site = self.cfg.paths("db.config")
            raise DBControlToolError(f"DBHost must be set to localhost in {site}")

    def require_running(self) -> None:
        if not self.server.is_running():
            raise DBControlToolError("The postgresql server is not running.  It may be started with --start.")

    def require_stopped(self, operation: str) -> None:
        if self.server.is_running():
            raise DBControlToolError(
                f"The postgresql server is already running.  It must be shutdown with --stop before using {operation}.")

    # -- server start/stop --------------------------------------------------------------------------
    def write_includes(self) -> None:
        """includes.conf is rewritten at every start (§3)."""
        text = (f"include_if_exists='{os.path.join(self.install_root, 'config', 'postgresql.conf')}'\n"
                f"include_if_exists='{os.path.join(os.path.abspath(self.opts.config_dir), 'postgresql.conf')}'\n")
        with open(os.path.join(self.data_dir, "includes.conf"), "w", encoding="utf-8") as handle:
            handle.write(text)

    def start_server(self) -> None:
        self.require_localhost()
        port = self.server.port
        self.write_includes()
        self.log(f"Starting postgres server on the data directory {self.data_dir} and on port {port}.")
        options = f"-p {port}"
        if self.fault("pg-start-fails"):
            options += " -c tractor_emulator_fault=pg-start-fails"
        argv = [self.server.tool("pg_ctl"), "-D", self.data_dir, "-o", options,
                "-l", os.path.join(self.data_dir, "logfile"), "-w", "-t", "30", "start"]
        proc = self.server.run(argv)
        if proc.returncode != 0 or not self.server.is_running():
            self.debug(proc.stdout + proc.stderr)
            # INVENTED message: the real text for a failed start is not public.
            raise DBControlToolError(
                f"Unable to start the postgresql server on the data directory {self.data_dir}; "
                f"see {os.path.join(self.data_dir, 'logfile')}.")
        self.we_started = True

    def stop_server(self) -> None:
        argv = [self.server.tool("pg_ctl"), "-D", self.data_dir, "stop", "-m", "fast"]
        self.log(f"Stopping postgres server on data directory {self.data_dir} with {' '.join(argv)}")
        proc = self.server.run(argv + ["-w", "-t", "60"])
        if proc.returncode != 0:
            raise DBControlToolError(f"Unable to stop the postgresql server: {proc.stderr.strip()}")

    def wait_reachable(self) -> None:
        for _ in range(20):
            if self.server.is_reachable():
                return
            time.sleep(0.25)
        raise DBControlToolError(f"The postgresql server is NOT reachable through port {self.server.port}.")

    # -- schema helpers ---------------------------------------------------------------------------------
    def params(self) -> dict[str, str]:
        return {row[0]: row[1] for row in self.server.query("SELECT name, value FROM param", self.dbname)}

    def refuse_newer(self, stored: str) -> None:
        if versions.schema_key(stored) > versions.schema_key(self.info.schema_version):
            # INVENTED: why a downgrade needs a restore (emulator/README.md).
            raise DBControlToolError(
                f"The job database has schema version {stored}, which is newer than this tractor-dbctl "
                f"(Tractor {self.info.version}, schema version {self.info.schema_version}) supports.  "
                f"Restore a backup made with Tractor {self.info.version}, or use a newer tractor-dbctl.")

    def pending_steps(self) -> tuple[str, list[schema.Step]]:
        params = self.params()
        stored = params.get("schema-version", "0")
        self.refuse_newer(stored)
        return stored, schema.upgrade_steps(stored, params.get("module-checksum"), self.info.version)

    def engine_connected(self) -> bool:
        rows = self.server.query(
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{self.dbname}' AND usename = 'bootstrap'",
            "postgres")
        return int(rows[0][0]) > 0

    def apply_upgrades(self, stored: str, steps: list[schema.Step]) -> None:
        target = self.info.schema_version
        self.log(f"Upgrading database schema from version {stored} to version {target}.")
        fail_after = (len(steps) + 1) // 2 if self.fault("schema-upgrade-fails") else None
        slow = faults.value("schema-upgrade-slow", self.opts.config_dir, default="2")
        script = ["BEGIN;"]
        for index, step in enumerate(steps, 1):
            script.append(f"\\echo @@step {index}")
            script.append(step.sql)
            if slow is not None:
                script.append(f"SELECT pg_sleep({float(slow)});")
            if fail_after == index:
                script.append("DO $$ BEGIN RAISE EXCEPTION 'tractor emulator fault: schema-upgrade-fails'; END $$;")
        script.append(f"UPDATE param SET value = '{target}' WHERE name = 'schema-version';")
        script.append("DELETE FROM param WHERE name = 'module-checksum';")
        script.append(f"INSERT INTO param (name, value) VALUES ('module-checksum', '{self.info.module_checksum}');")
        script.append("COMMIT;")
        argv = [self.server.tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.server.host,
                "-p", str(self.server.port), "-U", "root", "-d", self.dbname, "-f", "-"]
        self.debug("running: " + " ".join(argv))
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=dict(os.environ, LC_ALL="C"))
        proc.stdin.write("\n".join(script) + "\n")
        proc.stdin.close()
        for line in proc.stdout:
            match = re.match(r"@@step (\d+)", line)
            if match:
                index = int(match.group(1))
                self.log(f"Applying upgrade {index} of {len(steps)}: {steps[index - 1].description}")
        errors = proc.stderr.read()
        if proc.wait() != 0:
            self.debug(errors.strip())
            raise DBControlToolError(
                "Upgrade failed.  Run 'tractor-dbctl --upgrade --debug' or inspect the postgres logs for details.")

    def build_database(self) -> None:
        if self.server.database_exists(self.dbname):
            raise DBControlToolError(f"The database {self.dbname} already exists.")  # INVENTED
        self.log("Building tractor database.")
        proc = self.server.psql(schema.ROLES_SQL + f"\nCREATE DATABASE {self.dbname};\n", dbname="postgres")
        if proc.returncode != 0:
            raise DBControlToolError(f"Unable to build the tractor database: {proc.stderr.strip()}")
        proc = self.server.psql(schema.build_sql(self.info.version, self.cfg.flag("DBArchiving", False)),
                                dbname=self.dbname, single_transaction=True)
        if proc.returncode != 0:
            raise DBControlToolError(f"Unable to build the tractor database: {proc.stderr.strip()}")

    # -- operations -------------------------------------------------------------------------------------
    def op_status(self) -> None:
        if self.server.is_running():
            self.log(f"A postgresql server is running on the data directory {self.data_dir}.")
            if self.server.is_reachable():
                self.log(f"The postgresql server is reachable through port {self.server.port}.")
                if self.server.database_exists(self.dbname):
                    self.log(f"The database {self.dbname} exists.")
                else:
                    self.log(f"The database {self.dbname} does NOT exist.")
            else:
                self.log(f"The postgresql server is NOT reachable through port {self.server.port}.")
        else:
            self.log(f"A postgresql server is NOT running on the data directory {self.data_dir}.")

    def op_start(self) -> None:
        self.require_localhost()
        if self.server.is_running():
            raise DBControlToolError(f"A postgresql server is already running on the data directory {self.data_dir}.")
        self.start_server()
        self.guard_newer_schema()

    def guard_newer_schema(self) -> None:
        """Refuse (and undo our own start) when the stored schema is newer than we know."""
        try:
            self.wait_reachable()
            if self.server.database_exists(self.dbname):
                self.refuse_newer(self.params().get("schema-version", "0"))
        except DBControlToolError:
            if self.we_started:
                self.stop_server()
            raise

    def op_stop(self) -> None:
        self.require_localhost()
        if not self.server.is_running():
            raise DBControlToolError(f"The postgresql server is NOT running on the data directory {self.data_dir}.")
        self.stop_server()

    def op_start_for_engine(self) -> None:
        cfg = self.cfg
        if not os.path.isfile(os.path.join(self.data_dir, "postgresql.conf")):
            if not cfg.flag("DBInit", False):
                raise DBControlToolError(
                    f"The postgresql data dir {self.data_dir} was not found and tractor-dbctl "
                    "is not configured to create a new one.")
            self.init_cluster()
        if self.server.is_running():
            if not cfg.flag("DBUseExisting", False):
                raise DBControlToolError(
                    f"A postgresql server is already running on the data directory {self.data_dir} "
                    "and DBUseExisting is False.")  # INVENTED wording
        elif cfg.flag("DBStartup", False):
            self.start_server()
        else:
            raise DBControlToolError(
                f"The postgresql server is NOT running on the data directory {self.data_dir} "
                "and DBStartup is False.")  # INVENTED wording
        try:
            self.wait_reachable()
            if not self.server.database_exists(self.dbname):
                self.build_database()
            languages = {row[0] for row in self.server.query("SELECT lanname FROM pg_language", self.dbname)}
            if "plpgsql" not in languages:  # the real tool also requires plpython2u (§1.4)
                raise DBControlToolError("The database language plpgsql is not installed.")
            if cfg.flag("DBAutoUpgrade", True) and not self.opts.no_auto_upgrade:
                stored, steps = self.pending_steps()
                if steps:
                    self.apply_upgrades(stored, steps)
            else:
                # §6.6: the real tool skips the upgrade check entirely and prints nothing about it.
                # Only the (INVENTED) refusal of a newer schema still applies, as for --start.
                self.refuse_newer(self.params().get("schema-version", "0"))
        except DBControlToolError:
            if self.we_started:
                self.stop_server()
            raise

    def op_stop_for_engine(self) -> None:
        # stops only if DBShutdown is true and the server runs (§1.2)
        if self.cfg.flag("DBShutdown", False) and self.server.is_running():
            self.require_localhost()
            self.stop_server()

    def init_cluster(self) -> None:
        if self.server.is_running():
            raise DBControlToolError(
                f"A postgresql server is running on the data directory {self.data_dir}.  "
                "It must first be stopped with --stop.")
        if os.path.isdir(self.data_dir) and os.listdir(self.data_dir):
            raise DBControlToolError(f"{self.data_dir} is not an empty directory.")
        self.log(f"Initializing postgres database directory {self.data_dir}.")
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        initdb = [self.server.tool("initdb"), "--username", "root", "--auth", "trust", "--encoding", "UTF8",
                  "--locale", "C", "--no-sync"]
        cache = os.environ.get(pg.INITDB_CACHE_ENV)
        if cache:
            error = pg.init_from_template(self.server, initdb, self.data_dir, cache)
        else:
            proc = self.server.run(initdb[:1] + ["-D", self.data_dir] + initdb[1:])
            error = proc.stderr.strip() if proc.returncode != 0 else None
        if error is not None:
            raise DBControlToolError(f"Unable to initialize {self.data_dir}: {error}")
        with open(os.path.join(self.data_dir, "postgresql.conf"), "a", encoding="utf-8") as handle:
            handle.write(EMULATOR_PG_SETTINGS)
            handle.write(f"include_if_exists='{os.path.join(self.data_dir, 'includes.conf')}'\n")

    def op_init(self) -> None:
        self.init_cluster()

    def op_build(self) -> None:
        self.require_running()
        self.build_database()

    def op_destroy(self) -> None:
        if self.server.is_running():
            raise DBControlToolError(
                f"A postgresql server is running on the data directory {self.data_dir}.  "
                "It must be shutdown with --stop before using --destroy.")
        if not os.path.isdir(self.data_dir):
            raise DBControlToolError(f"{self.data_dir} does not exist.")
        self.log(f"Removing contents of data directory {self.data_dir}.")
        for name in os.listdir(self.data_dir):  # the dir itself stays (§1.3 item 4)
            path = os.path.join(self.data_dir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)

    def op_check_upgrade(self) -> None:
        self.require_running()
        stored, steps = self.pending_steps()
        if not steps:
            self.log(f"No upgrades are required to be compatible with schema version {self.info.schema_version}.")
            return
        self.log("The following upgrades need to be applied to upgrade the schema from version "
                 f"{stored} to {self.info.schema_version}:")
        for step in steps:
            self.log(f"  {step.description}")

    def op_upgrade(self) -> None:
        self.require_running()
        if self.engine_connected():
            raise DBControlToolError("Unable to perform upgrade because an engine is connected.")
        stored, steps = self.pending_steps()
        if not steps:
            self.log("The database schema is current.")
            return
        self.apply_upgrades(stored, steps)

    def op_exec_sql(self) -> None:
        self.require_running()
        proc = self.server.psql(self.opts.exec_sql, dbname=self.dbname)
        if proc.returncode != 0:
            raise DBControlToolError(proc.stderr.strip())
        for line in proc.stdout.splitlines():
            self.out(line)

    def op_purge_jobs(self) -> None:
        self.require_running()
        self.log("Purging.")
        sql = "SELECT TractorPurgeArchive(); SELECT TractorPurgeLive();"
        if self.opts.reset_job_counter:
            sql += " SELECT TractorResetJobCounter();"
        proc = self.server.psql(sql, dbname=self.dbname, single_transaction=True)
        if proc.returncode != 0:
            raise DBControlToolError(f"Purge failed: {proc.stderr.strip()}")

    def op_purge_archive_to_year_month(self) -> None:
        match = re.fullmatch(r"(\d{2}|\d{4})-(\d{1,2})", self.opts.purge_archive_to_year_month or "")
        year = int(match.group(1)) if match else 0
        year = year + 2000 if match and len(match.group(1)) == 2 else year
        month = int(match.group(2)) if match else 0
        if not match or not 2000 <= year <= 2099 or not 1 <= month <= 12:
            raise DBControlToolError(
                f"Invalid year-month {self.opts.purge_archive_to_year_month!r}; use YY-MM or YYYY-MM "
                "with a year from 2000 to 2099 and a month from 1 to 12.")
        self.require_running()
        self.log(f"Purging archive to {year:04d}-{month:02d}.")
        rows = self.server.query(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND "
            "relname ~ '^(job|task|command|invocation)_[0-9]{4}_[0-9]{2}$'", self.dbname)
        doomed = [r[0] for r in rows if (int(r[0][-7:-3]), int(r[0][-2:])) <= (year, month)]
        if doomed:
            proc = self.server.psql("".join(f"DROP TABLE {name};" for name in doomed), dbname=self.dbname)
            if proc.returncode != 0:
                raise DBControlToolError(proc.stderr.strip())

    def op_vacuum(self) -> None:
        self.require_stopped("--vacuum")
        self.start_server()
        try:
            self.wait_reachable()
            self.log("Vacuuming.")
            proc = self.server.psql("VACUUM FULL;", dbname=self.dbname)
            if proc.returncode != 0:
                raise DBControlToolError(proc.stderr.strip())
        finally:
            self.stop_server()

    def op_backup(self) -> None:
        self.require_stopped("--backup")
        target = self.opts.backup
        parent, base = os.path.split(self.data_dir.rstrip("/"))
        self.log(f"Backing up data directory {self.data_dir}")
        argv = ["tar", "cfz", target, "-C", parent, base]
        if self.fault("backup-tar-fails"):
            argv.append(f"{base}.tractor-emulator-fault")  # a missing member: tar complains on stderr
        proc = self.server.run(argv)
        # §1.5: failure is decided by whether tar wrote anything to stderr, not by its exit code.
        if proc.stderr.strip():
            self.debug(proc.stderr.strip())
            raise DBControlToolError("Backup failed.")

    def op_restore(self) -> None:
        self.require_stopped("--restore")
        if os.path.isdir(self.data_dir) and os.listdir(self.data_dir):
            raise DBControlToolError(f"{self.data_dir} is not an empty directory.")
        parent = os.path.dirname(self.data_dir.rstrip("/"))
        self.log(f"Restoring to data directory {self.data_dir}")
        proc = self.server.run(["tar", "xfz", self.opts.restore, "-C", parent])
        if proc.stderr.strip():
            self.debug(proc.stderr.strip())
            raise DBControlToolError("Restore failed.")

    def log_path(self) -> str:
        day = self.opts.log_day
        if day is None:
            index = (datetime.date.today().weekday() + 1) % 7  # 0 = Sunday (§1.4)
        elif day.isdigit() and 0 <= int(day) <= 6:
            index = int(day)
        elif day.lower() in DAYS:
            index = DAYS.index(day.lower())
        else:
            raise DBControlToolError(f"Invalid --log-day {day!r}; use sunday-saturday or 0-6.")
        return os.path.join(self.data_dir, "pg_log", f"log.{index}.csv")

    def op_log_filename(self) -> None:
        self.out(self.log_path())

    def op_get_log(self) -> None:
        path = self.log_path()
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                sys.stdout.write(handle.read())
        except OSError:
            raise DBControlToolError(f"{path} does not exist.") from None

    def op_purge_logs(self) -> None:
        self.require_stopped("--purge-logs")
        shutil.rmtree(os.path.join(self.data_dir, "pg_log"), ignore_errors=True)

    def op_logs_usage(self) -> None:
        total = 0
        for dirpath, _, files in os.walk(os.path.join(self.data_dir, "pg_log")):
            total += sum(os.path.getsize(os.path.join(dirpath, name)) for name in files)
        self.out(f"{total} bytes in {os.path.join(self.data_dir, 'pg_log')}")

    def op_tail_log(self) -> None:
        raise DBControlToolError("--tail-log is not emulated; use --get-log.")

    def op_show_params(self) -> None:
        self.require_running()
        for name, value in self.server.query("SELECT name, value FROM param", self.dbname):
            self.out(f"{name} = {value}")

    def op_update_params(self) -> None:
        self.require_running()
        archiving = 1 if self.cfg.flag("DBArchiving", False) else 0
        self.server.query(f"UPDATE param SET value = '{archiving}' WHERE name = 'archiving'", self.dbname)

    def op_set_job_counter(self) -> None:
        self.require_running()
        value = int(self.opts.set_job_counter)
        rows = self.server.query(
            f"UPDATE param SET value = '{value}' WHERE name = 'jidcounter' AND value::bigint < {value} "
            "RETURNING value", self.dbname)
        if rows:
            self.out(f"The job counter will continue from {value}.")
        else:
            self.out("The job counter was not updated.  The new job counter must be larger than the "
                     "jidcounter displayed with the --show-params option.")


class _Lock:
    """The process lock of §1.3 item 5 (flock on a file in /tmp)."""

    def __init__(self, path: str):
        self.path = path
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o666)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def main(version: str, install_root: str, argv: list[str]) -> int:
    try:
        opts, parser = parse_args(argv)
    except _ParseError as exc:
        sys.stderr.write(f"tractor-dbctl: {exc}\n")
        return 2
    if opts.help or opts.extra:
        parser.print_help(sys.stdout)
        return 2
    if opts.reset_job_counter and not opts.purge_jobs:
        sys.stderr.write("--reset-job-counter is only valid together with --purge-jobs.\n")
        return 2
    chosen = [name for name in OPERATION_ORDER if getattr(opts, name) not in (None, False)]
    if not chosen:
        sys.stderr.write("No operations were specified.  Use --help for options.\n")
        return 2
    tool = DbCtl(version, install_root, opts)
    try:
        tool.precheck()
        with _Lock(os.environ.get("TRACTOR_DBCTL_LOCKFILE", DEFAULT_LOCK_FILE)):
            getattr(tool, f"op_{chosen[0]}")()
    except (DBControlToolError, pg.PgError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    return 0
