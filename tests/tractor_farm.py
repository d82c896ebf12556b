"""A farm of emulated engines that the real playbooks run against, and independent ways to inspect it.

Shared by tests/integration/test_playbooks.py and tests/faults/.  Each engine is a site of its own
(tests/tractor_sites.py: config dir, data dir, ports, PostgreSQL); engines are started and stopped
by the collection itself (tractor_engine, direct service manager); every outcome is read without
Ansible: with the emulator's tractor-dbctl, the engine's URL API and the files on disk.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time

from tractor_ansible import REPO, ansible_env, venv_tool
from tractor_sites import EngineProc

class Farm:
    """An inventory of emulated engines and helpers to inspect them."""

    def __init__(self, world, prefix, installs, ansible, tmp_path_factory):
        self.world = world
        self.prefix = prefix
        self.installs = installs
        self.ansible = ansible
        self.base = tmp_path_factory.mktemp("farm")
        os.chmod(self.base, 0o755)
        self.backups = os.path.join(world, f"backups-{os.path.basename(self.base)}")
        self.reports = os.path.join(self.base, "reports")
        self.engines: dict[str, dict] = {}
        self.extra_hosts: dict[str, dict] = {}
        self.running: list[subprocess.Popen] = []
        for version in ("2.2", "2.4"):  # what the tests move between
            installs(version)

    def add(self, name, site, version, staging=False, **hostvars):
        """An engine; ``staging=True`` also puts it in group tractor_staging."""
        self.installs(version)
        self.engines[name] = {"site": site, "staging": staging,
                              "vars": {"tractor_version": version, "tractor_config_dir": site.config_dir, **hostvars}}

    def site(self, name):
        return self.engines[name]["site"]

    def inventory(self, **extra_hostvars) -> str:
        hosts = {}
        for name, engine in self.engines.items():
            hosts[name] = dict(engine["vars"], **extra_hostvars.get(name, {}))
        staging = {name: {} for name, engine in self.engines.items() if engine.get("staging")}
        data = {
            "all": {"vars": {"report_dir": self.reports}},
            "tractor_engines": {"hosts": hosts, "children": {"tractor_staging": {"hosts": staging}}, "vars": {
                "ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3",
                "tractor_become": False, "tractor_install_prefix": self.prefix,
                "tractor_service_manager": "direct", "backup_dir": self.backups,
            }},
        }
        path = os.path.join(self.base, "inventory.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        return path

    def play(self, playbook, check=False, expect_ok=True, env=None, **extra_vars):
        proc = self.ansible.playbook(f"playbooks/{playbook}.yml", inventory=self.inventory(),
                                     extra_vars=extra_vars or None, check=check, env=env)
        if expect_ok:
            assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
        return proc

    def start_play(self, playbook, env=None, **extra_vars) -> "RunningPlay":
        """The playbook in the background, in a process group of its own (to be interrupted or killed)."""
        argv = [venv_tool("ansible-playbook"), f"playbooks/{playbook}.yml", "-i", self.inventory()]
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        log = os.path.join(self.base, f"{playbook}-{time.monotonic_ns()}.log")
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=REPO, env=ansible_env(env), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.running.append(proc)
        return RunningPlay(proc, log)

    def start(self, name, version):
        site = self.engines[name]["site"]
        result = self.ansible.module("tractor_engine", {
            "state": "started", "install_dir": self.installs(version), "config_dir": site.config_dir,
            "service_manager": "direct"})
        assert not result.get("failed"), result
        return EngineProc(site, None)

    def launch(self, *names_versions, timeout=180):
        """Start engines as the collection's direct service manager does (tractor-engine --daemon with
        its pid file and log in the data directory), all at once, then wait until each serves."""
        for name, version in names_versions:
            site = self.site(name)
            argv = [site.bin(version, "tractor-engine"), f"--configdir={site.config_dir}", "--daemon",
                    f"--pidfile={os.path.join(site.data_dir, 'tractor-engine.pid')}",
                    f"--log={os.path.join(site.data_dir, 'engine.log')}"]
            proc = site.run(argv, as_owner=False, timeout=60)
            assert proc.returncode == 0, f"{argv}: {proc.stdout}{proc.stderr}"
        for name, version in names_versions:
            site = self.site(name)
            wait_for(lambda: serving_version(site) == version, timeout,
                     lambda: f"{name}: the {version} engine to serve\n{engine_log(site)[-3000:]}", interval=0.3)

    def report(self, playbook) -> dict:
        found = sorted(glob.glob(os.path.join(self.reports, f"{playbook}-*", "report.json")), key=os.path.getmtime)
        assert found, f"no {playbook} report in {self.reports}"
        with open(found[-1], encoding="utf-8") as handle:
            return json.load(handle)

    def report_markdown(self, playbook) -> str:
        found = sorted(glob.glob(os.path.join(self.reports, f"{playbook}-*", "report.md")), key=os.path.getmtime)
        assert found, f"no {playbook} report.md in {self.reports}"
        with open(found[-1], encoding="utf-8") as handle:
            return handle.read()

    def cleanup(self):
        for proc in self.running:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=30)


class RunningPlay:
    """An ansible-playbook run started by Farm.start_play."""

    def __init__(self, proc: subprocess.Popen, log: str):
        self.proc = proc
        self.log = log

    def output(self) -> str:
        with open(self.log, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def signal_group(self, signum) -> None:
        """Like Ctrl-C in a terminal (SIGINT to the whole foreground group) or a kill of the run."""
        os.killpg(self.proc.pid, signum)

    def wait(self, timeout=900) -> int:
        return self.proc.wait(timeout=timeout)


# -- reading the farm without Ansible --------------------------------------------------------------
def params(site, version):
    out = site.dbctl(version, "--show-params").stdout
    return dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line)


def engine_status(site):
    """The emulator-only introspection body (version, pid, schema-version, ...), else None."""
    try:
        return EngineProc(site, None).call("emulator?q=status", timeout=5)[2]
    except OSError:
        return None


def serving_version(site):
    """The version the engine of the site serves (healthy ctrl?q=status, version from its Server
    header ``Pixar_Tractor/<major.minor> (...)``, fact sheet §6.1), else None."""
    try:
        status, headers, reply = EngineProc(site, None).call("ctrl?q=status", timeout=5)
    except OSError:
        return None
    if status != 200 or not isinstance(reply, dict) or reply.get("rc") != 0:
        return None
    server = headers.get("Server") or ""
    return server.split("/", 1)[1].split()[0] if server.startswith("Pixar_Tractor/") else None


def wait_done(engine, jid, timeout=90):
    return engine.wait_tasks(jid, lambda ts: ts and all(t["state"] == "done" for t in ts), timeout=timeout,
                             retrycount=False)  # any version: 2.1 has no Task.retrycount


def tree_digest(*roots) -> dict:
    """Names, sizes and contents of the files under roots (the job database files excluded: a
    running PostgreSQL writes them on its own)."""
    digest = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != "psql"]
            for name in filenames:
                path = os.path.join(dirpath, name)
                if name.endswith((".log", ".pid")):
                    digest[path] = "present"
                    continue
                with open(path, "rb") as handle:
                    digest[path] = hashlib.sha256(handle.read()).hexdigest()
    return digest


def engine_processes(site, version=None) -> list[int]:
    """pids of tractor-engine processes serving the site's config dir (of one version, if given)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().decode("utf-8", "replace").split("\0")
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    continue
        except (OSError, IndexError):
            continue
        if "tractor_emulator.launch" not in argv or "tractor-engine" not in argv:
            continue
        if not any(a in (f"--configdir={site.config_dir}", site.config_dir) for a in argv):
            continue
        if version is not None and argv[argv.index("--tractor-version") + 1] != version:
            continue
        found.append(int(entry))
    return sorted(found)


def wait_for(predicate, timeout, what, interval=0.1):
    """predicate()'s first true value; ``what`` (a string, or a callable giving one) names it on a timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")


def db_running(site, version="2.4") -> bool:
    return "is running on the data directory" in site.dbctl(version, "--status").stderr


def spool_jobs(site):
    """Two jobs (one task, two tasks) spooled to the site's running engine: the records a fault must not lose."""
    engine = EngineProc(site, None)
    engine.spool({"title": "one", "tasks": [{"title": "a", "argv": ["true"]}]})
    engine.spool({"title": "two", "tasks": [{"title": "b", "argv": ["true"]}, {"title": "c", "argv": ["true"]}]})


def stop_engine(site, database=False):
    """Stop the engine without Ansible (SIGTERM to the daemon); with ``database``, also wait for the
    PostgreSQL it shuts down (DBShutdown) to stop."""
    for pid in engine_processes(site):
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not engine_processes(site), 120, "the engine to exit")
    if database:
        wait_for(lambda: not db_running(site), 60, "PostgreSQL to stop")


def db_reachable(site) -> bool:
    """Whether PostgreSQL accepts connections on the site's DBConnection port."""
    try:
        with socket.create_connection(("localhost", site.db_port), timeout=2):
            return True
    except OSError:
        return False


def pg_tool(name) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    assert found, f"no PostgreSQL {name} under /usr/lib/postgresql"
    return found[-1]


def job_records(site, version="2.4") -> dict:
    """What the job database holds, read with SQL through psql (not the engine, not Ansible):
    {"jids": set, "tasks": set of (jid, tid, title), "jidcounter": str}.

    A stopped database server is started for the read (tractor-dbctl --start of ``version``: the
    newest one starts the schemas of every older version) and stopped again.
    """
    started = False
    if not db_reachable(site):
        proc = site.dbctl(version, "--start")
        assert proc.returncode == 0, f"cannot start the job database to read it:\n{proc.stderr}"
        started = True
    try:
        def sql(query):
            proc = site.run([pg_tool("psql"), "-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1",
                             "-h", "localhost", "-p", str(site.db_port), "-U", "root", "-d", "tractor", "-c", query])
            assert proc.returncode == 0, f"{query}: {proc.stderr}"
            return [line.split("|") for line in proc.stdout.splitlines() if line.strip()]
        jids = {int(row[0]) for row in sql("SELECT jid FROM job")}
        tasks = {(int(row[0]), int(row[1]), row[2]) for row in sql("SELECT jid, tid, title FROM task")}
        counter = sql("SELECT value FROM param WHERE name = 'jidcounter'")
    finally:
        if started:
            site.dbctl(version, "--stop")
    return {"jids": jids, "tasks": tasks, "jidcounter": counter[0][0] if counter else None}


def backup_problems(root) -> list[str]:
    """Partial or unfinished backup files under root: temporary files, archives without their
    .sha256 and manifest or whose sha256 does not match, sidecars without their archive."""
    problems = []
    if not os.path.isdir(root):
        return problems
    for dirpath, _, filenames in os.walk(root):
        names = set(filenames)
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            if ".tmp" in name or name.endswith((".partial", ".part", ".tractor-emulator-fault")):
                problems.append(f"temporary file left: {path}")
            elif name.endswith(".tgz"):
                for sidecar in (".sha256", ".manifest.json"):
                    if name + sidecar not in names:
                        problems.append(f"{path} has no {sidecar}")
                if name + ".sha256" in names:
                    with open(path + ".sha256", encoding="utf-8") as handle:
                        expected = handle.read().split()[0]
                    with open(path, "rb") as handle:
                        actual = hashlib.sha256(handle.read()).hexdigest()
                    if actual != expected:
                        problems.append(f"{path}: sha256 {actual} does not match its .sha256 ({expected})")
            elif name.endswith((".tgz.sha256", ".tgz.manifest.json")):
                archive = name.rsplit(".tgz", 1)[0] + ".tgz"
                if archive not in names:
                    problems.append(f"{path} without its archive {archive}")
    return problems


def backups(root) -> list[str]:
    return sorted(glob.glob(os.path.join(root, "*", "*.tgz")))


def engine_log(site) -> str:
    path = os.path.join(site.data_dir, "engine.log")
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


class Watcher(threading.Thread):
    """A background hand that injects a fault at the right moment of a running playbook.

    ``func(watcher)`` runs in the thread; it waits with ``watcher.until`` (which gives up when the
    test calls ``finish()``) and notes what it did with ``watcher.note``.
    """

    def __init__(self, name, func):
        super().__init__(name=name, daemon=True)
        self.func = func
        self.events: list[str] = []
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self.started_at = time.monotonic()

    def run(self):
        try:
            self.func(self)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def note(self, text):
        self.events.append(f"{time.monotonic() - self.started_at:6.1f}s {text}")

    def until(self, predicate, timeout=900, interval=0.1):
        deadline = time.monotonic() + timeout
        while not self.finished.is_set() and time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise WatcherGaveUp(f"{self.name}: gave up waiting; events: {self.events}")

    def finish(self, timeout=60):
        self.finished.set()
        self.join(timeout)
        return self


class WatcherGaveUp(Exception):
    pass
