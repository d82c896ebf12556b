"""Shared machinery of `make bench`: emulated installs, job databases, engines, a poller, ansible.

Everything runs on this machine, as `make demo` does (demo/demo.py): engines of the emulator
(`emulator/`, a real PostgreSQL behind each) in directories under $BENCH_WORLD, driven either by
the collection's playbooks (local connection, direct service manager, tractor_become false) or by
the plain baselines in bench/baseline/.  Tools that must run as the EngineOwner (tractor-dbctl,
PostgreSQL) run as `tractor` when the bench runs as root, as tests/tractor_sites.py does.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import math
import os
import pwd
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
VENV_BIN = REPO / ".venv" / "bin"
WORLD = Path(os.environ.get("BENCH_WORLD", "/var/tmp/tractor-bench"))
PREFIX = WORLD / "opt" / "pixar"
# The interpreter modules run with on the "managed host" (this machine), as in demo/demo.py.
HOST_PYTHON = os.environ.get("BENCH_HOST_PYTHON", "/usr/bin/python3")
OLD, NEW = "2.1", "2.2"            # 2.1 -> 2.2 is the emulator's schema upgrade that rewrites every row
TASKS_PER_JOB = 50
LOGGED_JOBS = 100                  # the newest jobs keep their command logs (older ones were purged)
GOLDEN_RECIPE = 1                  # bump when golden() builds its databases differently
# One dbctl process lock for the whole bench world: one engine host.  It also keeps the bench's
# dbctl calls from queueing behind other users' emulated engines on a shared machine.
DBCTL_LOCK = WORLD / "tractor-dbctl.lock"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def owner() -> pwd.struct_passwd:
    name = "tractor" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    return pwd.getpwnam(name)


def env(**extra: str) -> dict:
    out = dict(os.environ, LC_ALL="C.UTF-8", TRACTOR_DBCTL_LOCKFILE=str(DBCTL_LOCK), ANSIBLE_FORCE_COLOR="0",
               PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    out.update(extra)
    return out


def as_owner(argv: list) -> list[str]:
    argv = [str(a) for a in argv]
    if os.geteuid() == 0:
        return ["runuser", "-u", owner().pw_name, "--"] + argv
    return argv


def run(argv: list, check: bool = True, quiet: bool = True, timeout: float = 1800, **kwargs) -> subprocess.CompletedProcess:
    argv = [str(a) for a in argv]
    kwargs.setdefault("env", env())
    proc = subprocess.run(argv, capture_output=quiet, text=True, timeout=timeout, check=False, cwd=kwargs.pop("cwd", REPO),
                          **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout or ''}\n{proc.stderr or ''}")
    return proc


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list, **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = run(argv, **kwargs)
    return time.perf_counter() - start, proc


def timed_cpu(argv: list, **kwargs) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and everything it waited for)."""
    cpu = children_cpu()
    seconds, _ = timed(argv, **kwargs)
    return seconds, children_cpu() - cpu


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                total += os.path.getsize(full)
    return total


def chown_tree(path: Path) -> None:
    entry = owner()
    for dirpath, dirs, files in os.walk(path):
        os.chown(dirpath, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.lchown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid)


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def load_average() -> float:
    return os.getloadavg()[0]


# --- installs ------------------------------------------------------------------------------------
def install(version: str) -> Path:
    root = PREFIX / f"Tractor-{version}"
    if not (root / "bin" / "tractor-dbctl").exists():
        run([VENV_BIN / "tractor-emulator", "install", "--version", version, "--prefix", PREFIX])
    return root


def tool(version: str, name: str) -> Path:
    return PREFIX / f"Tractor-{version}" / "bin" / name


# --- sites ---------------------------------------------------------------------------------------
class Site:
    """One engine: site config dir, data dir (psql/ + cmd-logs/), engine and database ports."""

    def __init__(self, name: str, base: Path | None = None):
        self.name = name
        self.base = base or WORLD / "sites" / name
        self.config_dir = self.base / "config"
        self.data_dir = self.base / "data"
        self.db_dir = self.data_dir / "psql"
        self.pidfile = self.data_dir / "tractor-engine.pid"
        self.log_file = self.data_dir / "engine.log"
        self.port = free_port()
        self.db_port = free_port()
        self.cmdlog_port = free_port()

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for path in (WORLD, WORLD / "sites", self.base, self.config_dir):
            if path.exists():
                path.chmod(0o755)
        entry = owner()
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        # Python literals, as tractor-dbctl reads them (fact sheet §2.1); sparse site files.
        # Engines on one host need their own ports, also for the command-log server (fact sheet §8).
        (self.config_dir / "tractor.config").write_text(json.dumps({
            "EngineOwner": entry.pw_name, "TractorDataDirectory": str(self.data_dir), "ListenerPort": self.port,
            "SiteCmdLogServerStartup": "'${TractorInstallDirectory}/bin/tractor-cmdlogger' --filetemplate="
                                       f"'${{TractorDataDirectory}}/cmd-logs/%u/J%j/T%t.log' --port={self.cmdlog_port}",
        }, indent=4) + "\n")
        (self.config_dir / "db.config").write_text(json.dumps({
            "DBConnection": {"host": "localhost", "port": self.db_port, "dbname": "tractor"},
        }, indent=4) + "\n")
        for name in ("tractor.config", "db.config"):
            (self.config_dir / name).chmod(0o644)

    def dbctl(self, version: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(as_owner([tool(version, "tractor-dbctl"), "--configdir", self.config_dir, *args]), check=check)

    def inventory_vars(self, version: str) -> dict:
        return {"tractor_version": version, "tractor_config_dir": str(self.config_dir)}

    # -- data -------------------------------------------------------------------------------------
    def clone_from(self, golden: "Site") -> None:
        """This site's data dir becomes a copy of golden's (cp -a keeps owners and modes)."""
        self.stop_everything()
        rmtree(self.data_dir)
        run(["cp", "-a", golden.data_dir, self.data_dir])
        # initdb wrote the absolute path of its includes.conf into postgresql.conf: point it here.
        conf = self.db_dir / "postgresql.conf"
        text = conf.read_text().replace(str(golden.db_dir), str(self.db_dir))
        conf.write_text(text)
        for stale in ("postmaster.pid", "tractor-engine.pid", "engine.log"):
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / stale).unlink()
            with contextlib.suppress(FileNotFoundError):
                (self.db_dir / stale).unlink()

    # -- engine -----------------------------------------------------------------------------------
    def start_engine(self, version: str, wait: bool = True) -> float:
        """What the tractor_engine module's direct service manager runs (as root: the engine drops to EngineOwner)."""
        argv = [tool(version, "tractor-engine"), f"--configdir={self.config_dir}", "--daemon",
                f"--pidfile={self.pidfile}", f"--log={self.log_file}"]
        start = time.perf_counter()
        run(argv)
        if wait:
            wait_healthy(self.port, version)
        return time.perf_counter() - start

    def engine_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def stop_everything(self) -> None:
        """Engine (SIGTERM, then SIGKILL) and the PostgreSQL server of this data dir, whatever state they are in."""
        pid = self.engine_pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, 30):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                wait_gone(pid, 10)
        if (self.db_dir / "postmaster.pid").exists():
            pg_ctl = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]
            run(as_owner([pg_ctl, "-D", self.db_dir, "stop", "-m", "fast", "-w", "-t", "60"]), check=False)

    def remove(self) -> None:
        self.stop_everything()
        rmtree(self.base)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def probe(port: int, timeout: float = 2.0) -> tuple[bool, str | None]:
    """One GET ctrl?q=status: (healthy, version from the Server header)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/Tractor/ctrl?q=status")
        reply = conn.getresponse()
        body = reply.read()
        server = reply.getheader("Server") or ""
        version = server.split("/", 1)[1].split()[0] if server.startswith("Pixar_Tractor/") else None
        ok = reply.status == 200 and json.loads(body).get("rc") == 0
        return ok, version
    except (OSError, ValueError, http.client.HTTPException):
        return False, None
    finally:
        conn.close()


def wait_healthy(port: int, version: str | None = None, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ok, seen = probe(port)
        if ok and (version is None or seen == version):
            return
        time.sleep(0.05)
    raise RuntimeError(f"engine on port {port} not healthy (version {version}) after {timeout}s")


class Poller:
    """ctrl?q=status every `interval` s; the unavailable window is measured from its answers.

    window = first healthy answer (of the wanted version) after the first failure, minus the last
    healthy answer before that failure (completion times).  Resolution: about `interval`.
    """

    def __init__(self, port: int, interval: float = 0.05, timeout: float = 2.0):
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self.samples: list[tuple[float, bool, str | None]] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        while not self.stop_event.is_set():
            started = time.perf_counter()
            ok, version = probe(self.port, self.timeout)
            self.samples.append((time.perf_counter(), ok, version))
            delay = self.interval - (time.perf_counter() - started)
            if delay > 0:
                self.stop_event.wait(delay)

    def __enter__(self) -> "Poller":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)

    def wait_until(self, version: str, timeout: float = 300) -> None:
        """Block until the poller has seen an outage and then a healthy answer of version."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.window(version) is not None:
                return
            time.sleep(0.05)
        raise RuntimeError(f"no recovery to version {version} seen on port {self.port}")

    def window(self, version: str | None = None) -> float | None:
        last_ok = None
        down = False
        for stamp, ok, seen in self.samples:
            if not down:
                if ok:
                    last_ok = stamp
                else:
                    down = True
            elif ok and (version is None or seen == version):
                return stamp - (last_ok if last_ok is not None else self.samples[0][0])
        return None


def leftovers() -> list[int]:
    """Processes of an earlier, interrupted bench run: engines and PostgreSQL servers of $BENCH_WORLD/sites."""
    marker = str(WORLD / "sites") + "/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if marker in cmdline and ("tractor_emulator.launch" in cmdline or "/bin/postgres " in cmdline):
            found.append(int(entry))
    return found


def stop_leftovers() -> None:
    pids = leftovers()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        wait_gone(pid, 10)
    if pids:
        log(f"stopped {len(pids)} processes left by an earlier run")


# --- job databases ---------------------------------------------------------------------------------
def golden(tasks: int) -> Site:
    """A stopped Tractor 2.1 job database of `tasks` tasks with command logs, built once and kept.

    Filled set-wise by bench/fill.sql through `tractor-dbctl --exec-sql` as the EngineOwner.
    Rebuilt when the recipe changes (stamp: size, fill.sql and the emulator's schema.py).
    """
    site = Site(f"golden-{tasks}", WORLD / "golden" / str(tasks))
    recipe = hashlib.sha256()
    for part in (f"{GOLDEN_RECIPE} {tasks} {TASKS_PER_JOB} {LOGGED_JOBS}".encode(), (BENCH / "fill.sql").read_bytes(),
                 (REPO / "emulator" / "tractor_emulator" / "schema.py").read_bytes()):
        recipe.update(part)
    stamp = site.base / "recipe.sha256"
    if stamp.exists() and stamp.read_text() == recipe.hexdigest() and (site.db_dir / "PG_VERSION").exists():
        return site
    log(f"preparing the {tasks}-task job database (Tractor {OLD} schema)")
    site.remove()
    site.write_config()
    start = time.perf_counter()
    site.dbctl(OLD, "--start-for-engine")
    sql = f"\\set ntasks {tasks}\n\\set tpj {TASKS_PER_JOB}\n" + (BENCH / "fill.sql").read_text()
    site.dbctl(OLD, "--exec-sql", sql)
    site.dbctl(OLD, "--stop")
    jobs = tasks // TASKS_PER_JOB
    write_cmd_logs(site.data_dir / "cmd-logs", range(max(1, jobs - LOGGED_JOBS + 1), jobs + 1))
    chown_tree(site.data_dir / "cmd-logs")
    stamp.write_text(recipe.hexdigest())
    (site.base / "prepared.json").write_text(json.dumps({
        "tasks": tasks, "jobs": jobs, "seconds": round(time.perf_counter() - start, 2),
        "psql_bytes": dir_bytes(site.db_dir)}, indent=2))
    log(f"  {tasks} tasks: {dir_bytes(site.db_dir) / 1e6:.0f} MB in psql/, {time.perf_counter() - start:.1f} s")
    return site


def write_cmd_logs(root: Path, jids, tasks_per_job: int = TASKS_PER_JOB) -> None:
    """cmd-logs/<owner>/J<jid>/T<tid>.log as the engine writes them (fact sheet §3)."""
    for jid in jids:
        directory = root / f"artist{jid % 37}" / f"J{jid}"
        directory.mkdir(parents=True, exist_ok=True)
        for tid in range(1, tasks_per_job + 1):
            (directory / f"T{tid}.log").write_text(
                f"R90000 prman -t:4 -Progress beauty.{tid:04d}.rib (job {jid})\n"
                "R90002 0% ... 100%\nreal 812.3s user 3011.0s sys 12.1s\n")


def prepared_info(tasks: int) -> dict:
    return json.loads((WORLD / "golden" / str(tasks) / "prepared.json").read_text())


# --- ansible ---------------------------------------------------------------------------------------
COMMON_VARS = {
    "ansible_connection": "local",
    "ansible_python_interpreter": HOST_PYTHON,
    "tractor_become": False,
    "tractor_service_manager": "direct",
    "tractor_install_prefix": str(PREFIX),
}


def write_inventory(path: Path, hosts: dict, extra_vars: dict | None = None) -> Path:
    """hosts: name -> host vars.  All engines are on this machine (local connection)."""
    common = dict(COMMON_VARS, backup_dir=str(WORLD / "backups"), **(extra_vars or {}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        # pipelining: one process per task and no temporary module file (docs/performance.md); in
        # "all" so that the report plays on the controller (implicit localhost) have it too.
        "all": {"vars": {"report_dir": str(WORLD / "reports"), "ansible_pipelining": True}},
        "tractor_engines": {"hosts": hosts, "vars": common},
    }, indent=2))
    return path


def ansible_env(collections: Path | None = None, timings: Path | None = None, **extra: str) -> dict:
    """Environment of an ansible run; `collections` points renderfarm.tractor at another tree."""
    out = env(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="default",
              ANSIBLE_CALLBACK_RESULT_FORMAT="yaml", ANSIBLE_RETRY_FILES_ENABLED="False",
              ANSIBLE_LOCAL_TEMP=str(WORLD / "ansible-tmp"), ANSIBLE_REMOTE_TEMP=str(WORLD / "ansible-tmp"))
    if collections is not None:
        out["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    if timings is not None:
        out.update(ANSIBLE_CALLBACK_PLUGINS=str(BENCH / "callback_plugins"), ANSIBLE_CALLBACKS_ENABLED="task_timer",
                   BENCH_TASK_TIMES=str(timings))
    out.update(extra)
    return out


def playbook(name: str, inventory: Path, extra: dict, collections: Path | None = None,
             timings: Path | None = None, forks: int | None = None, env_extra: dict | None = None,
             log_to: Path | None = None) -> float:
    books = (collections / "ansible_collections" / "renderfarm" / "tractor" / "playbooks") if collections else REPO / "playbooks"
    argv = [VENV_BIN / "ansible-playbook", books / name, "-i", inventory, "-e", json.dumps(extra)]
    if forks:
        argv += ["--forks", str(forks)]
    if timings is not None:
        # the callback cannot create it (sections overhead and fleet run first in a fresh world)
        timings.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = run(argv, check=False, env=ansible_env(collections, timings, **(env_extra or {})))
    elapsed = time.perf_counter() - start
    if log_to is not None:
        log_to.parent.mkdir(parents=True, exist_ok=True)
        log_to.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise RuntimeError(f"ansible-playbook {name} failed (rc={proc.returncode}):\n{tail}")
    return elapsed


def collection_tree_at(ref: str) -> Path:
    """An ansible_collections/ tree holding renderfarm.tractor as of git `ref` (for before/after)."""
    sha = run(["git", "rev-parse", ref]).stdout.strip()
    root = WORLD / "collections" / sha[:12]
    target = root / "ansible_collections" / "renderfarm" / "tractor"
    if not (target / "galaxy.yml").exists():
        rmtree(root)
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha, "plugins", "roles", "playbooks", "meta", "galaxy.yml"],
                                 cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "xf", "-", "-C", str(target)], input=archive, check=True)
    return root


# --- statistics ------------------------------------------------------------------------------------
def summary(values: list[float]) -> dict:
    values = [float(v) for v in values]
    med = statistics.median(values)
    return {
        "n": len(values), "median": round(med, 4), "min": round(min(values), 4), "max": round(max(values), 4),
        "spread_pct": round(100 * (max(values) - min(values)) / med, 1) if med else None,
        "stdev": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "values": [round(v, 4) for v in values],
    }


def ratio(numerator: dict, denominator: float | dict) -> float:
    den = denominator["median"] if isinstance(denominator, dict) else denominator
    return round(numerator["median"] / den, 3) if den else math.nan


def linear_fit(xs: list[float], ys: list[float]) -> dict:
    """Least squares y = a + b x: slope b, intercept a, R^2."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    slope = sxy / sxx if sxx else 0.0
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys))
    return {"slope_s_per_100k_tasks": round(slope * 100000, 4), "intercept_s": round(intercept, 4),
            "r2": round(1 - ss_res / ss_tot, 4) if ss_tot else None, "points": n}


def machine() -> dict:
    info = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gib"] = round(int(mem) / 1024 / 1024, 1)
    with contextlib.suppress(OSError):
        info["kernel"] = Path("/proc/sys/kernel/osrelease").read_text().strip()
    with contextlib.suppress(OSError, ValueError):
        # 1: the CPU is shared between sessions, not between threads (see docs/performance.md)
        info["sched_autogroup"] = int(Path("/proc/sys/kernel/sched_autogroup_enabled").read_text())
    with contextlib.suppress(Exception):
        info["os"] = [l.split("=", 1)[1].strip('"') for l in Path("/etc/os-release").read_text().splitlines()
                      if l.startswith("PRETTY_NAME=")][0]
    with contextlib.suppress(Exception):
        st = os.statvfs(WORLD)
        info["world_filesystem_free_gib"] = round(st.f_bavail * st.f_frsize / 2 ** 30, 1)
    with contextlib.suppress(Exception):
        pg = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))[-1]
        info["postgresql"] = run([pg, "--version"]).stdout.strip()
    with contextlib.suppress(Exception):
        info["ansible_core"] = run([VENV_BIN / "ansible", "--version"]).stdout.splitlines()[0]
    with contextlib.suppress(Exception):
        info["host_python"] = run([HOST_PYTHON, "--version"]).stdout.strip()
    with contextlib.suppress(Exception):
        info["gzip"] = run(["gzip", "--version"]).stdout.splitlines()[0]
        info["tar"] = run(["tar", "--version"]).stdout.splitlines()[0]
    return info
