"""The PostgreSQL server behind an emulated install.

Real Tractor bundles PostgreSQL in ``<install>/lib/psql/{bin,lib}`` (§1.1, §4.1).  The emulator
uses the host's server binaries instead (INVENTED): ``$TRACTOR_EMULATOR_PG_BINDIR``, else
``<install>/lib/psql/bin`` if a site put binaries there, else the newest
``/usr/lib/postgresql/<major>/bin`` (Debian's ``postgresql-<major>`` package).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import time


class PgError(Exception):
    pass


# -- initdb from a template (test speed only) -------------------------------------------------------
# INVENTED, emulator only: with $TRACTOR_EMULATOR_INITDB_CACHE naming a directory that EngineOwner
# can write, a new cluster is a copy of one that initdb made once (same binaries, same options) in
# that directory, with a new database system identifier, instead of an initdb of its own: an initdb
# takes seconds, a copy a fraction of one. The test suites set it; real sites and the Molecule
# hosts do not, and then every cluster is a plain initdb.
INITDB_CACHE_ENV = "TRACTOR_EMULATOR_INITDB_CACHE"


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _crc_offset(control: bytes) -> int:
    """Where global/pg_control keeps its CRC-32C (of the bytes before it): found rather than
    hard-coded, so that it holds for any PostgreSQL major version."""
    for offset in range(16, min(len(control), 1024) - 3, 4):
        if int.from_bytes(control[offset:offset + 4], sys.byteorder) == _crc32c(control[:offset]):
            return offset
    raise PgError("cannot find the CRC of global/pg_control")


# The system identifier is also in the long header of the first page of every WAL segment
# (XLogLongPageHeaderData.xlp_sysid, after the 24 bytes of the standard header); PostgreSQL
# refuses WAL whose identifier differs from pg_control's.
WAL_SYSID_OFFSET = 24


def set_system_identifier(data_dir: str, crc_offset: int) -> None:
    """Give a stopped cluster a new database system identifier, made as initdb makes one (seconds,
    microseconds, pid): in global/pg_control (its first uint64, then its CRC) and in the header of
    each WAL segment."""
    now = time.time_ns() // 1000
    sysid = (((now // 1_000_000) << 32) | ((now % 1_000_000) << 12) | (os.getpid() & 0xFFF)).to_bytes(8, sys.byteorder)
    path = os.path.join(data_dir, "global", "pg_control")
    with open(path, "r+b") as handle:
        control = bytearray(handle.read())
        old = bytes(control[0:8])
        control[0:8] = sysid
        control[crc_offset:crc_offset + 4] = _crc32c(bytes(control[:crc_offset])).to_bytes(4, sys.byteorder)
        segments = []
        wal_dir = os.path.join(data_dir, "pg_wal")
        for name in sorted(os.listdir(wal_dir)):
            segment = os.path.join(wal_dir, name)
            if len(name) == 24 and os.path.isfile(segment):
                with open(segment, "rb") as wal:
                    wal.seek(WAL_SYSID_OFFSET)
                    if wal.read(8) != old:
                        raise PgError(f"{segment}: no system identifier where one was expected")
                segments.append(segment)
        for segment in segments:
            with open(segment, "r+b") as wal:
                wal.seek(WAL_SYSID_OFFSET)
                wal.write(sysid)
        handle.seek(0)
        handle.write(control)


def init_from_template(server: "Server", initdb: list[str], data_dir: str, cache: str) -> str | None:
    """Fill ``data_dir`` (absent or empty) with a copy of the cluster that ``initdb`` (argv without
    -D) makes, initdb running only the first time for these binaries and options; None on
    success, else the error."""
    key = hashlib.sha256("\0".join([os.path.realpath(initdb[0])] + initdb[1:]).encode()).hexdigest()[:16]
    template = os.path.join(cache, f"initdb-{key}")
    if not os.path.isdir(template):
        building = f"{template}.{os.getpid()}.tmp"
        shutil.rmtree(building, ignore_errors=True)
        proc = server.run(initdb[:1] + ["-D", building] + initdb[1:])
        if proc.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            return proc.stderr.strip() or f"initdb exited {proc.returncode}"
        with open(os.path.join(building, "global", "pg_control"), "rb") as handle:
            offset = _crc_offset(handle.read())
        with open(os.path.join(building, "crc-offset"), "w", encoding="utf-8") as handle:
            handle.write(f"{offset}\n")
        try:
            os.rename(building, template)  # atomic: a racing process finds it whole or not at all
        except OSError:
            shutil.rmtree(building, ignore_errors=True)  # another process was first
    with open(os.path.join(template, "crc-offset"), encoding="utf-8") as handle:
        offset = int(handle.read())
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    proc = server.run(["cp", "-a", "--", os.path.join(template, "."), data_dir])
    if proc.returncode != 0:
        return proc.stderr.strip() or f"cp exited {proc.returncode}"
    os.unlink(os.path.join(data_dir, "crc-offset"))
    try:
        set_system_identifier(data_dir, offset)
    except (OSError, PgError) as exc:
        return str(exc)
    return None


def find_bindir(install_root: str) -> str:
    candidates = []
    if os.environ.get("TRACTOR_EMULATOR_PG_BINDIR"):
        candidates.append(os.environ["TRACTOR_EMULATOR_PG_BINDIR"])
    candidates.append(os.path.join(install_root, "lib", "psql", "bin"))

    def major(path: str) -> float:
        try:
            return float(path.split(os.sep)[-2])
        except ValueError:
            return 0.0

    candidates.extend(sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True))
    for path in candidates:
        if os.access(os.path.join(path, "pg_ctl"), os.X_OK) and os.access(os.path.join(path, "postgres"), os.X_OK):
            return path
    raise PgError(
        "No PostgreSQL server binaries found (looked in $TRACTOR_EMULATOR_PG_BINDIR, "
        f"{os.path.join(install_root, 'lib', 'psql', 'bin')} and /usr/lib/postgresql/*/bin). "
        "Install Debian's 'postgresql' package."
    )


class Server:
    """One cluster: pg_ctl/initdb/psql calls with argv lists, never a shell."""

    def __init__(self, bindir: str, data_dir: str, port: int, host: str = "localhost",
                 debug: bool = False):
        self.bindir = bindir
        self.data_dir = data_dir
        self.port = int(port)
        self.host = host
        self.debug = debug

    def tool(self, name: str) -> str:
        return os.path.join(self.bindir, name)

    def run(self, argv: list[str], check: bool = False, input_text: str | None = None) -> subprocess.CompletedProcess:
        if self.debug:
            sys.stderr.write("running: " + " ".join(argv) + "\n")
        env = dict(os.environ, LC_ALL="C", PGCONNECT_TIMEOUT="5")
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, input=input_text, check=False)
        if check and proc.returncode != 0:
            raise PgError((proc.stderr or proc.stdout).strip() or f"{argv[0]} exited {proc.returncode}")
        return proc

    # -- server state --------------------------------------------------------------------------
    def is_running(self) -> bool:
        """'running' = pg_ctl status rc 0 and 'server is running' in its output (§1.4)."""
        if not os.path.isdir(self.data_dir):
            return False
        proc = self.run([self.tool("pg_ctl"), "-D", self.data_dir, "status"])
        return proc.returncode == 0 and "server is running" in proc.stdout

    def is_reachable(self) -> bool:
        proc = self.run([self.tool("pg_isready"), "-h", self.host, "-p", str(self.port), "-U", "root", "-d", "postgres"])
        return proc.returncode == 0

    def psql(self, sql: str, dbname: str = "tractor", user: str = "root", separator: str = "|",
             single_transaction: bool = False) -> subprocess.CompletedProcess:
        argv = [self.tool("psql"), "-X", "-q", "-A", "-t", "-F", separator, "-v", "ON_ERROR_STOP=1",
                "-h", self.host, "-p", str(self.port), "-U", user, "-d", dbname]
        if single_transaction:
            argv.append("--single-transaction")
        argv += ["-f", "-"]
        return self.run(argv, input_text=sql)

    def query(self, sql: str, dbname: str = "tractor") -> list[list[str]]:
        proc = self.psql(sql, dbname=dbname)
        if proc.returncode != 0:
            raise PgError(proc.stderr.strip())
        return [line.split("|") for line in proc.stdout.splitlines() if line != ""]

    def database_exists(self, dbname: str) -> bool:
        rows = self.query(f"SELECT 1 FROM pg_database WHERE datname = '{dbname}'", dbname="postgres")
        return bool(rows)
