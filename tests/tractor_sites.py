"""Emulated Tractor sites for tests: config dir, data dir, ports, and the tools run as EngineOwner.

PostgreSQL refuses to run as root, and tractor-dbctl refuses to run as anyone but EngineOwner
(fact sheet §1.3).  So when the tests run as root (CI does) every dbctl call runs as the
unprivileged account ``tractor`` and otherwise as the current user.  Shared by every suite;
the fixtures are in tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

OWNER_NAME = "tractor"


# The emulator's initdb template cache (emulator/tractor_emulator/pg.py), set up by tests/conftest.py:
# the tools started here get it like those started through Ansible (which inherit the environment).
PASSED_THROUGH = ("TRACTOR_EMULATOR_INITDB_CACHE",)


def passed_through() -> dict:
    return {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}


# Ports for the servers of test sites come from below the kernel's ephemeral range: a port taken
# there with bind(0) is free only for the moment, and any outgoing connection (a client, psql, a
# restore check's scratch server) may get it as its source port before the site's server binds
# it. Each port is also claimed with a lock file for as long as this process lives, so two pytest
# workers never hand out the same one.
SITE_PORTS = range(20000, 32000)
PORT_LOCK_DIR = "/var/tmp/tractor-test-ports"
_claimed: list = []


def free_port() -> int:
    import fcntl
    import random
    os.makedirs(PORT_LOCK_DIR, exist_ok=True)
    for port in random.sample(SITE_PORTS, 200):
        handle = open(os.path.join(PORT_LOCK_DIR, str(port)), "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                handle.close()
                continue
        _claimed.append(handle)  # held until this process ends
        return port
    raise RuntimeError(f"no free port in {SITE_PORTS} after 200 tries")


class Site:
    """One engine's site: config dir, data dir, ports; runs the tools as EngineOwner."""

    def __init__(self, base: str, owner: pwd.struct_passwd, installs):
        self.base = base
        self.owner = owner
        self.installs = installs
        self.config_dir = os.path.join(base, "config")
        self.data_dir = os.path.join(base, "data")
        self.db_dir = os.path.join(self.data_dir, "psql")
        self.db_port = free_port()
        self.engine_port = free_port()
        self.cmdlog_port = free_port()
        self.processes: list[subprocess.Popen] = []
        for path in (self.config_dir, self.data_dir):
            os.makedirs(path)
            os.chown(path, owner.pw_uid, owner.pw_gid)
        self.write_config()

    def write_config(self, tractor_extra: str = "", db_extra: str = "") -> None:
        self.write("tractor.config", (
            "{\n"
            f'    "EngineOwner": "{self.owner.pw_name}",\n'
            f'    "TractorDataDirectory": "{self.data_dir}",\n'
            f'    "ListenerPort": {self.engine_port},\n'
            # Each engine on a host needs its own command-log server port (§8, multiple engines).
            '    "SiteCmdLogServerStartup": "\'${TractorInstallDirectory}/bin/tractor-cmdlogger\' '
            "--filetemplate='${TractorDataDirectory}/cmd-logs/%u/J%j/T%t.log' "
            f'--port={self.cmdlog_port}",\n'
            f"{tractor_extra}"
            "}\n"))
        self.write("db.config", (
            "{\n"
            f'    "DBConnection": {{"host": "localhost", "port": {self.db_port}, "dbname": "tractor"}},\n'
            f"{db_extra}"
            "}\n"))

    def write(self, name: str, text: str) -> None:
        path = os.path.join(self.config_dir, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, 0o644)

    def bin(self, version: str, tool: str) -> str:
        return os.path.join(self.installs(version), "bin", tool)

    def run(self, argv: list[str], as_owner: bool = True, env: dict | None = None, timeout: int = 120):
        kwargs = {}
        if as_owner and os.geteuid() == 0:
            kwargs = {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}
        full_env = {"PATH": "/usr/bin:/bin", "HOME": self.owner.pw_dir if as_owner else os.environ.get("HOME", "/"),
                    "USER": self.owner.pw_name if as_owner else os.environ.get("USER", "root"), "LANG": "C.UTF-8",
                    **passed_through()}
        full_env.update(env or {})
        return subprocess.run(argv, capture_output=True, text=True, cwd=self.base, env=full_env,
                              timeout=timeout, check=False, **kwargs)

    def dbctl(self, version: str, *args: str, **kwargs):
        return self.run([self.bin(version, "tractor-dbctl"), "--configdir", self.config_dir, *args], **kwargs)

    # -- engines and blades ----------------------------------------------------------------------
    def popen(self, argv: list[str], log_name: str, env: dict | None = None) -> subprocess.Popen:
        kwargs = {}
        if os.geteuid() == 0:
            kwargs = {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}
        full_env = {"PATH": "/usr/bin:/bin", "HOME": self.owner.pw_dir, "USER": self.owner.pw_name,
                    "LANG": "C.UTF-8", **passed_through()}
        full_env.update(env or {})
        log = open(os.path.join(self.base, log_name), "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.base, env=full_env,
                                start_new_session=True, **kwargs)
        log.close()
        self.processes.append(proc)
        return proc

    def start_engine(self, version: str, *args: str, wait: bool = True, env: dict | None = None) -> "EngineProc":
        proc = self.popen([self.bin(version, "tractor-engine"), "--configdir", self.config_dir, *args],
                          "engine.log", env=env)
        engine = EngineProc(self, proc)
        if wait:
            engine.wait_ready()
        return engine

    def start_blade(self, version: str, name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
        return self.popen([self.bin(version, "tractor-blade"), "--engine", f"127.0.0.1:{self.engine_port}",
                           "--hname", name, *args], f"blade-{name}.log", env=env)

    def engine_log(self) -> str:
        path = os.path.join(self.base, "engine.log")
        return open(path, encoding="utf-8", errors="replace").read() if os.path.exists(path) else ""

    def cleanup(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        # Engines and blades started by ansible (daemons, not our children) name this site's dirs.
        for pid in site_processes(self.base):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pg_ctl = None
        for candidate in sorted(os.listdir("/usr/lib/postgresql"), reverse=True) if os.path.isdir("/usr/lib/postgresql") else []:
            pg_ctl = os.path.join("/usr/lib/postgresql", candidate, "bin", "pg_ctl")
            break
        if pg_ctl and os.path.exists(os.path.join(self.db_dir, "postmaster.pid")):
            self.run([pg_ctl, "-D", self.db_dir, "stop", "-m", "immediate"])


def site_processes(marker: str) -> list[int]:
    """Emulator processes (engines, blades) whose command line mentions ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if marker in cmdline and "tractor_emulator.launch" in cmdline:
            found.append(int(entry))
    return found


class EngineProc:
    """A running tractor-engine and a tiny client of its URL API (§6)."""

    def __init__(self, site: Site, proc: subprocess.Popen):
        self.site = site
        self.proc = proc
        self.url = f"http://127.0.0.1:{site.engine_port}/Tractor/"
        self.tsid = None

    def call(self, verb_query: str, body: bytes | None = None, content_type: str | None = None,
             timeout: float = 30.0, session: bool = False):
        """GET/POST /Tractor/<verb_query>; returns (status, headers, json-or-bytes)."""
        url = self.url + verb_query
        if session:
            if self.tsid is None:
                self.tsid = self.call("monitor?q=login&user=" + self.site.owner.pw_name)[2]["tsid"]
            url += ("&" if "?" in url else "?") + "tsid=" + self.tsid
        request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                status, headers, data = reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as err:
            status, headers, data = err.code, err.headers, err.read()
        try:
            return status, headers, json.loads(data)
        except ValueError:
            return status, headers, data

    def status(self) -> dict:
        """The emulator-only introspection request (version, pid, schema-version, queue counts ...);
        the real ctrl?q=status body is only {"rc": 0, "msg": "ok"} (emulator/PROTOCOL.md)."""
        return self.call("emulator?q=status")[2]

    def select(self, table: str, clause: str = "", cols: str = "", sort: str = "", limit: int = 0,
               archives: bool = False) -> list[dict]:
        """db?q=tractorselect(...) (fact sheet §6.6); the rows, or an AssertionError with the reply."""
        def lit(text):
            return "'" + text.replace("'", "''") + "'"
        call = (f"tractorselect({lit(table)}, {lit(clause)}, {lit(cols)}, {lit(sort)}, {int(limit)}, "
                f"{lit('t' if archives else 'f')}, '')")
        status, _, reply = self.call("db?q=" + urllib.parse.quote(call), session=True)
        assert status == 200 and isinstance(reply, dict) and reply.get("rc") == 0, reply
        return reply["rows"]

    def wait_ready(self, timeout: float = 90.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"engine exited rc={self.proc.returncode}:\n{self.site.engine_log()}")
            try:
                reply = self.call("ctrl?q=status", timeout=5)
                if reply[0] == 200 and reply[2].get("rc") == 0:
                    return reply[2]
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"engine not ready after {timeout}s:\n{self.site.engine_log()}")

    def spool(self, job: dict) -> int:
        status, _, reply = self.call(
            f"spool?spvers=2.0&jobOwner={self.site.owner.pw_name}&hnm=test", json.dumps(job).encode(),
            "application/tractor-spool-json", session=True)
        assert status == 200 and reply["rc"] == 0, reply
        return reply["jid"]

    def tasks(self, jid: int, retrycount: bool = True) -> list[dict]:
        """The job's tasks through tractorselect, each with ``blade`` (its current invocation's).
        ``retrycount`` false leaves out that column, which 2.1's schema does not have."""
        rows = self.select("task", f"jid={int(jid)}",
                           "Task.jid,Task.tid,Task.title,Task.state,Task.statetime,"
                           + ("Task.retrycount," if retrycount else "") + "Invocation.bladeid", "Task.tid")
        for row in rows:
            row["blade"] = row.pop("bladeid", None) or ""
        return rows

    def wait_tasks(self, jid: int, predicate, timeout: float = 60.0, retrycount: bool = True) -> list[dict]:
        deadline = time.monotonic() + timeout
        tasks = []
        while time.monotonic() < deadline:
            tasks = self.tasks(jid, retrycount)
            if predicate(tasks):
                return tasks
            time.sleep(0.2)
        raise AssertionError(f"timed out; tasks: {tasks}\n{self.site.engine_log()}")

    def stop(self, timeout: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

