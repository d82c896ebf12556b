"""The PostgreSQL server behind an emulated install.

Real Tractor bundles PostgreSQL in ``<install>/lib/psql/{bin,lib}`` (§1.1, §4.1).  The emulator
uses the host's server binaries instead (INVENTED): ``$TRACTOR_EMULATOR_PG_BINDIR``, else
``<install>/lib/psql/bin`` if a site put binaries there, else the newest
``/usr/lib/postgresql/<major>/bin`` (Debian's ``postgresql-<major>`` package).
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys


class PgError(Exception):
    pass


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
