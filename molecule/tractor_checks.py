"""Helpers for the testinfra verifiers of every Molecule scenario (molecule/*/tests, shared/tests).

The verifiers check the hosts themselves, not Ansible's return values: they ask the engines' URL
API from inside the container (as a Dashboard would), run tractor-dbctl as the EngineOwner, and
read files, packages and services. molecule/conftest.py puts this directory on sys.path, so a
test imports it with `import tractor_checks`.
"""

from __future__ import annotations

import json
import re
import shlex
import time

OWNER = "tractor"
PREFIX = "/opt/pixar"
CONFIG_DIR = "/opt/pixar/config"
DATA_DIR = "/var/spool/tractor"
BACKUP_DIR = "/var/backups/tractor"
STATE_PREPARED = "/var/lib/molecule/state-prepared.json"
STATE_CONVERGED = "/var/lib/molecule/state-converged.json"
# The drop-in tractor_engine writes to make the unit start another install (tractor_service.py).
INSTALL_DROPIN = "/etc/systemd/system/tractor-engine.service.d/50-renderfarm-tractor-install.conf"
SITE_UNIT = "/etc/systemd/system/tractor-engine.service"


def exec_start(host) -> str:
    """What systemd runs for the engine's unit (its ExecStart, drop-ins applied)."""
    return host.check_output("systemctl show -p ExecStart tractor-engine")


def starts_install(host, version: str) -> bool:
    """systemd would start <prefix>/Tractor-<version>/bin/tractor-engine, and no other install
    (the show output names the binary in path= and in argv[]=)."""
    named = set(re.findall(r"([^\s\"'=]*)/bin/tractor-engine", exec_start(host)))
    return named == {f"{PREFIX}/Tractor-{version}"}

_GET = ("import json, sys, urllib.request\n"
        "try:\n"
        "    reply = urllib.request.urlopen(sys.argv[1], timeout=10)\n"
        "    print(json.dumps({'status': reply.status, 'server': reply.headers.get('Server'), 'body': json.loads(reply.read())}))\n"
        "except Exception as exc:\n"
        "    print(json.dumps({'status': None, 'error': str(exc)}))\n")
# db?q=tractorselect(...) after a login, as tq sends it (fact sheet 6.6): argv = base URL, table, clause, cols
_SELECT = ("import json, sys, urllib.parse, urllib.request\n"
           "base, table, clause, cols = sys.argv[1:5]\n"
           "get = lambda q: json.load(urllib.request.urlopen(base + q, timeout=10))\n"
           "tsid = get('monitor?q=login&user=root')['tsid']\n"
           "query = \"tractorselect('%s', '%s', '%s', '', 0, 'f', '')\" % (table, clause.replace(\"'\", \"''\"), cols)\n"
           "print(json.dumps(get('db?q=%s&tsid=%s' % (urllib.parse.quote(query), tsid))))\n")
# The same columns as molecule/backup_restore/disaster.yml records.
JOB_COLS = "Job.jid,Job.title,Job.owner,Job.numtasks,Job.numdone,Job.pausetime,Job.spooltime"
TASK_COLS = "Task.jid,Task.tid,Task.title,Task.state"


class Engine:
    """An engine as seen from inside its host: its URL API and its tools."""

    def __init__(self, host, address: str = "127.0.0.1:80", config_dir: str = CONFIG_DIR,
                 data_dir: str = DATA_DIR):
        self.host = host
        self.address = address
        self.config_dir = config_dir
        self.data_dir = data_dir

    def get(self, query: str) -> dict:
        url = f"http://{self.address}/Tractor/{query}"
        return json.loads(self.host.check_output("python3 -c %s %s", _GET, url))

    def status(self) -> dict:
        """A healthy ctrl?q=status, then the emulator's own introspection (version, pid, starttime,
        schema-version: emulator?q=status, a test hook that the collection never uses)."""
        reply = self.get("ctrl?q=status")
        assert reply["status"] == 200, f"{self.host.backend.hostname} {self.address}: engine does not answer: {reply}"
        inside = self.get("emulator?q=status")
        assert inside["status"] == 200, inside
        return inside["body"]

    def select(self, table: str, clause: str, cols: str) -> list[dict]:
        reply = json.loads(self.host.check_output("python3 -c %s %s %s %s %s", _SELECT,
                                                  f"http://{self.address}/Tractor/", table, clause, cols))
        assert reply["rc"] == 0, reply
        return reply["rows"]

    def jobs(self) -> list[dict]:
        return self.select("job", "", JOB_COLS)

    def tasks(self, jid: int) -> list[dict]:
        return self.select("task", f"jid={jid}", TASK_COLS)

    def params_api(self) -> dict:
        """The param rows through the engine (tq params)."""
        return {row["name"]: row["value"] for row in self.select("param", "", "Param.name,Param.value")}

    def job(self, title_prefix: str) -> dict:
        found = [j for j in self.jobs() if j["title"].startswith(title_prefix)]
        assert found, f"no job titled {title_prefix!r} on {self.host.backend.hostname}: {self.jobs()}"
        return found[-1]

    def wait_tasks(self, jid: int, state: str, timeout: float = 300) -> list[dict]:
        deadline = time.monotonic() + timeout
        tasks: list[dict] = []
        while time.monotonic() < deadline:
            tasks = self.tasks(jid)
            if tasks and all(t["state"] == state for t in tasks):
                return tasks
            time.sleep(3)
        raise AssertionError(f"{self.host.backend.hostname}: job {jid} tasks not {state} after {timeout}s: {tasks}")

    def cmd_log(self, owner: str, jid: int, tid: int = 1) -> str:
        return self.host.file(f"{self.data_dir}/cmd-logs/{owner}/J{jid}/T{tid}.log").content_string

    def spool(self, version: str, title: str, argv: list[str], user: str = OWNER) -> int:
        job = json.dumps({"title": title, "tasks": [{"title": "t", "argv": argv}]})
        path = f"/var/lib/molecule/jobs/verify-{int(time.time() * 1000)}.json"
        self.host.check_output("printf %%s %s > %s", job, path)
        out = self.host.check_output(f"{PREFIX}/Tractor-{version}/bin/tractor-spool --engine {self.address} "
                                     f"--user {user} {path}")
        return int(out.split("jid:")[1].split()[0].rstrip(","))

    def dbctl(self, version: str, *args: str):
        argv = " ".join(shlex.quote(a) for a in args)
        return self.host.run(f"runuser -u {OWNER} -- {PREFIX}/Tractor-{version}/bin/tractor-dbctl "
                             f"--configdir {self.config_dir} {argv}")

    def params(self, version: str) -> dict:
        result = self.dbctl(version, "--show-params")
        assert result.rc == 0, result.stderr
        return dict(line.split(" = ", 1) for line in result.stdout.splitlines() if " = " in line)


def backups(host, engine_name: str) -> list[dict]:
    """The backups of one engine (inventory host name) under the backup directory, oldest first."""
    listing = host.run(f"ls -1tr {BACKUP_DIR}/{engine_name}/ 2>/dev/null").stdout.split()
    found = []
    for name in listing:
        if name.endswith(".tgz"):
            path = f"{BACKUP_DIR}/{engine_name}/{name}"
            manifest = host.file(path + ".manifest.json")
            found.append({"path": path, "manifest": json.loads(manifest.content_string) if manifest.exists else None,
                          "sha256": host.file(path + ".sha256").content_string.split()[0]
                          if host.file(path + ".sha256").exists else None})
    return found


def site_state(host) -> dict:
    return json.loads(host.check_output("/usr/local/sbin/tractor-site-state"))


def state_differences(before, after, path=""):
    """Lines naming every difference between two tractor-site-state outputs."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after)):
            yield from state_differences(before.get(key, "<missing>"), after.get(key, "<missing>"), f"{path}/{key}")
    elif before != after:
        yield f"{path}: {before!r} -> {after!r}"


def assert_unchanged_since(host, saved: str, what: str) -> None:
    before = json.loads(host.file(saved).content_string)
    differences = list(state_differences(before, site_state(host)))
    assert not differences, f"{what} changed {host.backend.hostname}:\n" + "\n".join(differences)
