"""tractor_engine: decisions, parsing and every failure message, with run_command and HTTP faked.

Only ``AnsibleModule.run_command`` and ``EngineClient.request`` (the engine's URL API) are replaced.
Installs, config and data directories are real files under tmp_path, and "running engines" are
real processes: a stand-in ``<install>/bin/tractor-engine`` script that sleeps (and, on request,
ignores SIGTERM), so that pid files, /proc command lines, signals and zombies are the real thing.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import subprocess
import sys
import time

import pytest

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.renderfarm.tractor.plugins.modules import tractor_engine as te
from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_service as ts
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_engine_client import (
    EngineClient, EngineRefused, EngineUnavailable,
)

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core before 2.19
    import contextlib
    from unittest import mock

    @contextlib.contextmanager
    def patch_module_args(args=None):
        with mock.patch.object(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()):
            yield

ROOT = os.geteuid() == 0
OWNER = "nobody" if ROOT else pwd.getpwuid(os.geteuid()).pw_name
BUILDS = {"2.2": ("1715407", "Feb 15 2017 11:38:27"), "2.4": ("2091325", "Aug 17 2020 05:39:38")}
FAKE_ENGINE = """#!{python}
# stand-in tractor-engine: sleeps; ignores SIGTERM when the site asks for it
import os, signal, sys, time
configdir = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--configdir=")]
if configdir and os.path.exists(os.path.join(configdir[0], "hang-on-sigterm")):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if configdir:
    open(os.path.join(configdir[0], "ready-%d" % os.getpid()), "w").close()
time.sleep(120)
"""


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


def banner(version):
    build, date = BUILDS[version]
    return "Tractor %s (%s %s linux-emulated-release)" % (version, date, build)


# -- fakes -----------------------------------------------------------------------------------------
SELECT_RE = re.compile(r"^tractorselect\('(\w+)', '((?:[^']|'')*)', '([^']*)', '([^']*)', (\w+), '([tf])', '([^']*)'\)$")


class FakeEngine:
    """The engine's URL API as EngineClient.request sees it, in the shapes of fact sheet 6.6.

    ctrl?q=status answers {"rc": 0, "msg": "ok"}; lists come from db?q=tractorselect(...) with the
    clauses the module sends ('' for jobs, 'state=active' for tasks, 'jid=N or ...' for
    invocations).  A retried command ends on its blade after `kill_after` invocation listings
    (None: its blade never kills it).
    """

    def __init__(self):
        self.up = False
        self.version, self.build = "2.2", BUILDS["2.2"][0]
        self.health = "ok"            # ok | 503 | foreign
        self.pid = None
        self.paused = False           # engine-wide switch (invented URL)
        self.switch_supported = True
        self.jobs = {}
        self.tasks = []
        self.invocations = []
        self.kill_after = 1
        self.select_reply = None      # table -> reply dict to answer instead (odd shapes)
        self.calls = []
        self.refuse_jattr = set()
        self.ignore_jattr = set()     # jids whose pause is accepted but never takes effect

    def request(self, client, verb, params=None, data=None, content_type=None, session=False):
        params = dict(params or {})
        self.calls.append((verb, params))
        if self.pid and not te.pid_alive(self.pid):  # a dead engine answers nothing
            self.up, self.pid = False, None
        if not self.up:
            raise EngineUnavailable("engine at %s does not answer: [Errno 111] Connection refused" % client.address)
        headers = {"Server": "Pixar_Tractor/%s (%s %s linux-emulated-release)"
                   % (self.version, BUILDS.get(self.version, ("", "x"))[1], self.build)}
        query = params.get("q")
        if (verb, query) == ("ctrl", "status"):
            if self.health == "503":
                raise EngineRefused("engine unhealthy (emulator fault engine-unhealthy)",
                                    {"rc": 1, "msg": "engine unhealthy"}, headers=headers, status=503)
            if self.health == "foreign":
                return {"rc": 0}, {"Server": "nginx"}
            return {"rc": 0, "msg": "ok"}, headers
        if verb == "db":
            return self.select(query), headers
        if (verb, query) == ("queue", "jattr"):
            jid = int(params["jid"])
            if jid in self.refuse_jattr or jid not in self.jobs:
                raise EngineRefused("no such job %d" % jid, {"rc": 2}, headers=headers, status=200)
            if jid not in self.ignore_jattr:
                self.jobs[jid]["pausetime"] = "2026-12-06 10:00:00" if int(params["set_pause"]) else None
            return {"rc": 0}, headers
        if (verb, query) == ("ctrl", "dispatching"):
            if not self.switch_supported:
                raise EngineRefused("unknown request ctrl?q=dispatching", {"rc": 404}, headers=headers, status=404)
            if "pause" in params:
                self.paused = params["pause"] == "1"
            return {"rc": 0, "dispatching": {"paused": self.paused}}, headers
        raise AssertionError("unexpected request %s %s" % (verb, params))

    def select(self, query):
        match = SELECT_RE.match(query or "")
        assert match, "not a tractorselect request: %r" % query
        table, clause, cols = match.group(1), match.group(2), match.group(3)
        if self.select_reply and table in self.select_reply:
            return self.select_reply[table]
        if table == "job":
            assert clause == ""
            rows = [dict(job, numblocked=0, numready=job["numtasks"] - job["numdone"], numactive=0, numerror=0)
                    for job in self.jobs.values()]
        elif table == "task":
            assert clause == "state=active"
            rows = [dict(task) for task in self.tasks if task["state"] == "active"]
        elif table == "invocation":
            jids = set(int(part.strip()[4:]) for part in clause.split(" or "))
            for inv in self.invocations:
                if inv.get("kill_in") is not None and inv["stoptime"] is None:
                    inv["kill_in"] -= 1
                    if inv["kill_in"] < 0:
                        inv.update(stoptime="2026-12-06 10:00:01", current=False)
                        for task in self.tasks:
                            if (task["jid"], task["tid"]) == (inv["jid"], inv["tid"]):
                                task["state"] = "ready"
            rows = [dict((k, v) for k, v in inv.items() if k != "kill_in") for inv in self.invocations
                    if inv["jid"] in jids]
        else:
            raise AssertionError(table)
        wanted = [c.split(".", 1)[1] for c in cols.split(",") if c]
        return {"rc": 0, "msg": "%d rows" % len(rows), "rows": [dict((k, row[k]) for k in wanted) for row in rows]}

    def retry_active(self):
        """What tq retry active makes the engine do: each running command gets a pending kill."""
        for inv in self.invocations:
            if inv["current"] and inv["stoptime"] is None and self.kill_after is not None:
                inv["kill_in"] = self.kill_after

    def add_job(self, jid, numtasks=1, numdone=0, paused=False):
        self.jobs[jid] = {"jid": jid, "numtasks": numtasks, "numdone": numdone,
                          "pausetime": "2026-01-01 00:00:00" if paused else None}

    def add_running(self, jid, tid, blade="rack1"):
        """An active task whose command runs on a blade."""
        self.tasks.append({"jid": jid, "tid": tid, "state": "active"})
        self.invocations.append({"jid": jid, "tid": tid, "cid": tid, "iid": 1, "current": True,
                                 "stoptime": None, "bladeid": blade})

    def requests(self, verb, query):
        return [p for v, p in self.calls if v == verb and p.get("q") == query]

    def selects(self, table):
        return [p["q"] for v, p in self.calls if v == "db" and p["q"].startswith("tractorselect('%s'" % table)]


class Runner:
    """run_command: tractor-engine --version/--daemon, init scripts, systemctl, tq, dbctl."""

    def __init__(self, env):
        self.env = env
        self.calls = []
        self.results = {}          # basename or (basename, action) -> (rc, out, err)
        self.start = "ok"          # ok | dies | fail
        self.sysv_running = False
        self.systemd_active = "inactive"

    def __call__(self, module, args, **kwargs):
        argv = [str(a) for a in args]
        if os.path.basename(argv[0]) in ("runuser", "setpriv"):
            argv = argv[argv.index("--") + 1:]
        self.calls.append((argv, kwargs))
        name = os.path.basename(argv[0])
        key = (name, argv[1] if len(argv) > 1 else None)
        if name == "tq" and argv[-2:] == ["retry", "active"] and self.results.get("tq", (0,))[0] == 0:
            self.env.engine.retry_active()
        if key in self.results:
            return self.results[key]
        if name in self.results:
            return self.results[name]
        if name == "tractor-engine" and argv[1:] == ["--version"]:
            return 0, banner(os.path.basename(os.path.dirname(os.path.dirname(os.path.realpath(argv[0])))).split("-")[1]) + "\n", ""
        if name == "tractor-engine" and "--daemon" in argv:
            return self.daemon(argv)
        if name == "tractor-engine" and key[1] in ("start", "stop", "status"):  # the init script
            return self.init_script(argv, key[1])
        if name == "systemctl":
            return self.systemctl(argv)
        return 0, "", ""

    def daemon(self, argv):
        pidfile = [a.split("=", 1)[1] for a in argv if a.startswith("--pidfile=")][0]
        if self.start == "fail":
            return 1, "", "tractor-engine: cannot open the log file /nope/engine.log: Permission denied\n"
        proc = self.env.spawn(argv[0], argv[1:])
        if self.start == "dies":
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        else:
            version = os.path.basename(os.path.dirname(os.path.dirname(os.path.realpath(argv[0])))).split("-")[1]
            self.env.engine.up, self.env.engine.pid = True, proc.pid
            self.env.engine.version, self.env.engine.build = version, BUILDS[version][0]
        with open(pidfile, "w") as handle:
            handle.write("%d\n" % proc.pid)
        return 0, "", ""

    def init_script(self, argv, action):
        if action == "status":
            return (0, "running", "") if self.sysv_running else (3, "tractor-engine is stopped.", "")
        if action == "start":
            self.sysv_running = True
            self.env.engine.up = True
            install = ts.parse_settings(open(self.env.settings).read())["TRACTOR_INSTALL_DIR"]
            version = os.path.basename(install).split("-")[1]
            self.env.engine.version, self.env.engine.build = version, BUILDS[version][0]
            return 0, "Starting tractor-engine: ok", ""
        self.sysv_running = False
        self.env.engine.up = False
        return 0, "Stopping tractor-engine: ok.", ""

    def unit_texts(self):
        """The unit file, then the drop-ins: what `systemctl cat` prints."""
        texts = [open(os.path.join(te.SYSTEMD_UNIT_DIRS[0], "tractor-engine.service")).read()]
        dropins = os.path.join(te.SYSTEMD_DROPIN_ROOT, "tractor-engine.service.d")
        for name in sorted(os.listdir(dropins)) if os.path.isdir(dropins) else []:
            texts.append(open(os.path.join(dropins, name)).read())
        return texts

    def exec_start(self):
        """The ExecStart systemd would run (the last one set, as systemd reads unit and drop-ins)."""
        line = None
        for text in self.unit_texts():
            for raw in text.splitlines():
                if raw.startswith("ExecStart="):
                    line = raw.split("=", 1)[1] or None
        return line

    def systemctl(self, argv):
        action = argv[1]
        if action == "is-active":
            return (0 if self.systemd_active == "active" else 3), self.systemd_active + "\n", ""
        if action == "cat":
            return 0, "\n".join(self.unit_texts()), ""
        if action == "daemon-reload":
            return 0, "", ""
        if action == "show" and argv[2] == "--property=ExecStart":
            line = self.exec_start()
            return 0, "ExecStart={ path=%s ; argv[]=%s ; ignore_errors=no }\n" % (line.split()[0], line), ""
        if action == "show":
            return 0, ("4242\n" if self.systemd_active == "active" else "0\n"), ""
        if action == "start":
            self.systemd_active = "active"
            self.env.engine.up = True
            version = re.search(r"Tractor-(\d+\.\d+)/bin/tractor-engine", self.exec_start()).group(1)
            self.env.engine.version, self.env.engine.build = version, BUILDS[version][0]
            return 0, "", ""
        if action == "stop":
            if not self.env.systemd_hangs:
                self.systemd_active = "inactive"
                self.env.engine.up = False
            return 0, "", ""
        if action == "kill":
            self.systemd_active = "failed"
            self.env.engine.up = False
            return 0, "", ""
        raise AssertionError(argv)

    def argvs(self, name=None):
        return [a for a, _kwargs in self.calls if name is None or os.path.basename(a[0]) == name]


class Env:
    """A site on disk, the fakes, and a way to run the module."""

    def __init__(self, tmp_path, monkeypatch):
        self.tmp = tmp_path
        self.installs = {}
        for version in ("2.2", "2.4"):
            root = tmp_path / ("Tractor-%s" % version)
            (root / "bin").mkdir(parents=True)
            (root / "config").mkdir()
            engine = root / "bin" / "tractor-engine"
            engine.write_text(FAKE_ENGINE.format(python=sys.executable))
            engine.chmod(0o755)
            tq = root / "bin" / "tq"
            tq.write_text("#!/bin/sh\n")
            tq.chmod(0o755)
            (root / "bin" / "tractor-dbctl").write_text("#!/bin/sh\n")
            (root / "bin" / "tractor-dbctl").chmod(0o755)
            (root / "config" / "tractor.config").write_text(
                '{"EngineOwner": "tractor", "ListenerPort": 80, "TractorDataDirectory": "/var/spool/tractor"}\n')
            (root / "config" / "db.config").write_text(
                '{"DBStartup": True, "DBUseExisting": True, "DBAutoUpgrade": True, "DBInit": True, '
                '"DBShutdown": True, "DBArchiving": True, "DBDataDir": "${TractorDataDirectory}/psql", '
                '"DBConnection": {"host": "localhost", "port": 9876, "dbname": "tractor"}}\n')
            self.installs[version] = str(root)
        self.config_dir = tmp_path / "config"
        self.data_dir = tmp_path / "data"
        self.config_dir.mkdir()
        self.data_dir.mkdir()
        (self.config_dir / "tractor.config").write_text(
            '{"EngineOwner": "%s", "TractorDataDirectory": "%s", "ListenerPort": 18080}\n' % (OWNER, self.data_dir))
        self.pidfile = str(self.data_dir / "tractor-engine.pid")
        self.log = str(self.data_dir / "engine.log")
        self.state_file = str(self.data_dir / te.PAUSED_JOBS_FILE)
        self.settings = str(tmp_path / "sysconfig" / "tractor-engine")
        self.init_script = str(tmp_path / "init.d" / "tractor-engine")
        self.systemd_hangs = False
        self.procs = []
        self.engine = FakeEngine()
        self.runner = Runner(self)
        engine = self.engine
        monkeypatch.setattr(EngineClient, "request",
                            lambda client, verb, params=None, data=None, content_type=None, session=False:
                            engine.request(client, verb, params, data, content_type, session))
        runner = self.runner

        def run_command(module, args, **kw):
            return runner(module, args, **kw)
        monkeypatch.setattr(AnsibleModule, "run_command", run_command)
        monkeypatch.setattr(AnsibleModule, "exit_json", self._exit)
        monkeypatch.setattr(AnsibleModule, "fail_json", self._fail)
        monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda module, name, required=False, opt_dirs=None:
                            "/usr/bin/%s" % name)
        monkeypatch.setattr(te, "POLL", 0.05)
        monkeypatch.setattr(te, "CONFIRM_POLL", 0.05)
        monkeypatch.setattr(te, "ZOMBIE_GRACE", 0.1)
        monkeypatch.setattr(te, "KILL_WAIT", 5)
        monkeypatch.setattr(te, "SYSTEMD_RUNTIME_DIR", str(tmp_path / "run-systemd-system"))
        monkeypatch.setattr(te, "SYSTEMD_UNIT_DIRS", (str(tmp_path / "units"),))
        monkeypatch.setattr(te, "SYSTEMD_DROPIN_ROOT", str(tmp_path / "etc-systemd-system"))

    @staticmethod
    def _exit(module, **kwargs):
        raise ExitJson(kwargs)

    @staticmethod
    def _fail(module, msg, **kwargs):
        kwargs["msg"] = msg
        raise FailJson(kwargs)

    def spawn(self, program, args, ignore_term=False):
        if ignore_term:
            (self.config_dir / "hang-on-sigterm").write_text("")
        proc = subprocess.Popen([program] + list(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        deadline = time.monotonic() + 10
        ready = self.config_dir / ("ready-%d" % proc.pid)
        while time.monotonic() < deadline:  # until its signal handling is set up
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.02)
        return proc

    def running_engine(self, version="2.2", pidfile=True, ignore_term=False, program=None):
        """A live stand-in engine of `version`, as if started before the task."""
        proc = self.spawn(program or os.path.join(self.installs[version], "bin", "tractor-engine"),
                          ["--configdir=%s" % self.config_dir, "--daemon"], ignore_term=ignore_term)
        if pidfile:
            with open(self.pidfile, "w") as handle:
                handle.write("%d\n" % proc.pid)
        self.engine.up, self.engine.pid = True, proc.pid
        self.engine.version, self.engine.build = version, BUILDS[version][0]
        return proc

    def args(self, release="2.2", **extra):
        base = {"install_dir": self.installs[release], "config_dir": str(self.config_dir),
                "service_manager": "direct", "timeout": 2}
        base.update(extra)
        return base

    def run(self, check=False, **args):
        self.warnings_before = len(ansible_warnings.get_warning_messages())
        args = dict(args)
        if check:
            args["_ansible_check_mode"] = True
        with patch_module_args(args):
            with pytest.raises((ExitJson, FailJson)) as info:
                te.main()
        result = info.value.args[0]
        result["failed"] = isinstance(info.value, FailJson)
        return result

    def ok(self, check=False, **args):
        result = self.run(check=check, **args)
        assert not result["failed"], result["msg"]
        return result

    def fails(self, check=False, **args):
        result = self.run(check=check, **args)
        assert result["failed"], result
        return result

    def warnings(self):
        """What the last run warned (module.warn)."""
        return list(ansible_warnings.get_warning_messages())[self.warnings_before:]

    def cleanup(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def env(tmp_path, monkeypatch):
    environment = Env(tmp_path, monkeypatch)
    yield environment
    environment.cleanup()


# -- pure functions --------------------------------------------------------------------------------
@pytest.mark.parametrize("requested, booted, unit, script_ok, expected", [
    ("direct", True, "/usr/lib/systemd/system/tractor-engine.service", True, "direct"),
    ("sysv", False, None, False, "sysv"),
    ("auto", True, "/usr/lib/systemd/system/tractor-engine.service", True, "systemd"),
    ("auto", True, None, True, "sysv"),
    ("auto", False, "/usr/lib/systemd/system/tractor-engine.service", True, "sysv"),
    ("auto", False, "/usr/lib/systemd/system/tractor-engine.service", False, "direct"),
    ("auto", True, None, False, "direct"),
])
def test_choose_service_manager(requested, booted, unit, script_ok, expected):
    name, reason = ts.choose_service_manager(requested, booted, unit, "/etc/init.d/tractor-engine", script_ok)
    assert name == expected
    assert reason
    if requested == "auto" and expected == "direct":
        assert "no executable init script /etc/init.d/tractor-engine" in reason


def test_choose_service_manager_reasons():
    assert ts.choose_service_manager("auto", False, None, "/x", False)[1] == \
        "systemd is not the init system, no executable init script /x"
    assert ts.choose_service_manager("auto", True, None, "/x", False)[1] == \
        "no systemd unit installed, no executable init script /x"
    assert ts.choose_service_manager("direct", True, "/u", "/x", True)[1] == "requested"


def test_parse_settings():
    text = ('# comment TRACTOR_INSTALL_DIR=/no\n'
            'TRACTOR_INSTALL_DIR=/opt/pixar/Tractor-2.2\n'
            'export TRACTOR_CONFIG_DIR="/site config"\n'
            "OPTIONS='--log=/var/log/e.log --debug'\n"
            'TRACTOR_ENGINE_OPTIONS="--log=/x.log"  \n'
            'PLAIN=value # trailing comment\n'
            'not an assignment\n')
    assert ts.parse_settings(text) == {
        "TRACTOR_INSTALL_DIR": "/opt/pixar/Tractor-2.2", "TRACTOR_CONFIG_DIR": "/site config",
        "OPTIONS": "--log=/var/log/e.log --debug", "TRACTOR_ENGINE_OPTIONS": "--log=/x.log", "PLAIN": "value"}
    assert ts.parse_settings(None) == {}


def test_update_settings_rewrites_in_place_and_appends():
    text = ("# The installation\n"
            "TRACTOR_INSTALL_DIR=/opt/pixar/Tractor-2.2\n"
            "OPTIONS=\"\"\n"
            "TRACTOR_INSTALL_DIR=/opt/pixar/Tractor-2.1\n")
    new = ts.update_settings(text, {"TRACTOR_INSTALL_DIR": "/opt/pixar/Tractor-2.4",
                                    "TRACTOR_CONFIG_DIR": "/site/with space"})
    lines = new.splitlines()
    assert lines[0] == "# The installation"
    assert lines[1] == "TRACTOR_INSTALL_DIR=/opt/pixar/Tractor-2.2"    # the last assignment wins...
    assert lines[3] == "TRACTOR_INSTALL_DIR=/opt/pixar/Tractor-2.4"    # ...so that one is rewritten
    assert lines[-1] == 'TRACTOR_CONFIG_DIR="/site/with space"'
    assert ts.parse_settings(new)["TRACTOR_INSTALL_DIR"] == "/opt/pixar/Tractor-2.4"
    assert ts.parse_settings(new)["TRACTOR_CONFIG_DIR"] == "/site/with space"
    assert ts.update_settings(new, {"TRACTOR_INSTALL_DIR": "/opt/pixar/Tractor-2.4",
                                    "TRACTOR_CONFIG_DIR": "/site/with space"}) == new
    assert ts.update_settings("", {"A": "b"}).endswith("A=b\n")


def test_parse_unit_environment():
    unit = ('[Service]\n'
            'Environment="TRACTOR_INSTALL_DIR=/opt/pixar/Tractor-2.4"\n'
            'Environment="TRACTOR_CONFIG_DIR=/cfg" "OPTIONS="\n'
            'EnvironmentFile=-/etc/sysconfig/tractor-engine\n')
    assert ts.parse_unit_environment(unit) == {"TRACTOR_INSTALL_DIR": "/opt/pixar/Tractor-2.4",
                                               "TRACTOR_CONFIG_DIR": "/cfg", "OPTIONS": ""}


@pytest.mark.parametrize("options, expected", [
    ("--log=/var/log/tractor-engine.log", "/var/log/tractor-engine.log"),
    ("--debug --log /var/log/e.log", "/var/log/e.log"),
    ("--log='/var/log/q.log'", "/var/log/q.log"),
    ("--debug", None),
    ("", None),
    (None, None),
])
def test_log_option(options, expected):
    assert ts.log_option(options) == expected


def test_started_from_stopped_runs_the_engine_directly(env):
    result = env.ok(**env.args("2.2", state="started"))
    assert result["changed"] and result["state"] == "running"
    assert result["version"] == "2.2" and result["build"] == "1715407" and result["previous_version"] is None
    engine = os.path.join(env.installs["2.2"], "bin", "tractor-engine")
    starts = [a for a in env.runner.argvs("tractor-engine") if "--daemon" in a]
    assert starts == [[engine, "--configdir=%s" % env.config_dir, "--daemon", "--pidfile=%s" % env.pidfile,
                       "--log=%s" % env.log]]
    assert result["commands"] == [" ".join(starts[0])]
    assert result["pid"] == env.engine.pid == int(open(env.pidfile).read())
    assert result["address"] == "localhost:18080" and "uptime" not in result and "schema_version" not in result
    assert result["tasks"] == {"blocked": 0, "ready": 0, "active": 0, "error": 0, "done": 0}
    assert result["service_manager"] == {"name": "direct", "reason": "requested"}
    assert result["diff"]["before"]["state"] == "stopped" and result["diff"]["after"]["version"] == "2.2"


def test_started_check_mode_starts_nothing_but_checks_the_install(env):
    result = env.ok(check=True, **env.args("2.2", state="started", start_paused=True))
    assert result["changed"] and result["state"] == "running" and result["pid"] is None
    assert result["commands"][-1].endswith("--paused")
    assert env.runner.argvs("tractor-engine") == [[os.path.join(env.installs["2.2"], "bin", "tractor-engine"),
                                                   "--version"]]
    assert not env.engine.up


def test_started_same_version_is_no_change(env):
    proc = env.running_engine("2.2")
    result = env.ok(**env.args("2.2", state="started"))
    assert not result["changed"] and result["commands"] == []
    assert result["pid"] == proc.pid and result["previous_version"] == "2.2"
    assert proc.poll() is None


def test_started_other_version_stops_and_starts(env):
    old = env.running_engine("2.2")
    result = env.ok(**env.args("2.4", state="started"))
    assert result["changed"] and result["previous_version"] == "2.2" and result["version"] == "2.4"
    assert result["commands"][0] == "kill -TERM %d" % old.pid
    assert result["commands"][1] == "remove pid file %s" % env.pidfile
    assert "--daemon" in result["commands"][2] and "Tractor-2.4" in result["commands"][2]
    assert old.wait(timeout=5) == -signal.SIGTERM
    assert result["diff"]["before"]["version"] == "2.2" and result["diff"]["after"]["version"] == "2.4"
    assert result["diff"]["before"]["pid"] == old.pid and result["diff"]["after"]["pid"] == env.engine.pid


def test_started_other_version_check_mode(env):
    old = env.running_engine("2.2")
    result = env.ok(check=True, **env.args("2.4", state="started"))
    assert result["changed"] and result["version"] == "2.4" and result["pid"] is None
    assert result["commands"][0] == "kill -TERM %d" % old.pid
    assert not any("stale" in c for c in result["commands"])
    assert old.poll() is None and os.path.exists(env.pidfile)


def test_started_same_version_other_build_restarts(env):
    env.running_engine("2.2")
    env.engine.build = "1614082"
    result = env.ok(**env.args("2.2", state="started"))
    assert result["changed"] and result["build"] == "1715407"


def test_engine_found_without_pidfile_by_its_command_line(env):
    proc = env.running_engine("2.2", pidfile=False)
    result = env.ok(**env.args("2.2", state="stopped"))
    assert result["changed"] and result["commands"] == ["kill -TERM %d" % proc.pid]
    assert proc.wait(timeout=5) == -signal.SIGTERM


def test_restarted_always_restarts(env):
    old = env.running_engine("2.2")
    result = env.ok(**env.args("2.2", state="restarted"))
    assert result["changed"] and result["commands"][0] == "kill -TERM %d" % old.pid
    assert result["pid"] != old.pid


def test_stale_pidfile_is_removed_before_a_start(env):
    with open(env.pidfile, "w") as handle:
        handle.write("999999\n")
    result = env.ok(**env.args("2.2", state="started"))
    assert result["commands"][0] == "remove stale pid file %s" % env.pidfile


# -- stopping, escalation, kill ----------------------------------------------------------------------
def test_stopped(env):
    proc = env.running_engine("2.2")
    result = env.ok(check=True, **env.args("2.2", state="stopped"))
    assert result["changed"] and result["state"] == "stopped" and proc.poll() is None
    result = env.ok(**env.args("2.2", state="stopped"))
    assert result["changed"] and not result["escalated"] and result["state"] == "stopped"
    assert proc.wait(timeout=5) == -signal.SIGTERM
    assert not os.path.exists(env.pidfile)
    env.engine.up = False
    assert not env.ok(**env.args("2.2", state="stopped"))["changed"]
    assert not env.runner.argvs("tractor-dbctl")  # a clean stop: the engine stops PostgreSQL itself


def test_stop_escalates_to_sigkill(env):
    proc = env.running_engine("2.2", ignore_term=True)
    result = env.ok(**env.args("2.2", state="stopped", stop_timeout=1))
    assert result["escalated"] is True and result["changed"]
    assert result["commands"][:2] == ["kill -TERM %d" % proc.pid, "kill -KILL %d (no exit 1 s after SIGTERM)" % proc.pid]
    assert proc.wait(timeout=5) == -signal.SIGKILL
    assert env.warnings() == ["the engine (pid %d) did not exit within 1 s of SIGTERM/stop; it was killed with SIGKILL"
                              % proc.pid]
    # what the engine runs on its way out: tractor-dbctl --stop-for-engine, as the EngineOwner
    dbctl = env.runner.argvs("tractor-dbctl")
    assert dbctl == [[os.path.join(env.installs["2.2"], "bin", "tractor-dbctl"), "--configdir",
                      str(env.config_dir), "--stop-for-engine"]]


def test_stop_escalation_warns_when_dbctl_fails(env):
    env.running_engine("2.2", ignore_term=True)
    env.runner.results["tractor-dbctl"] = (2, "", "The postgresql server is NOT running on the data directory x.\n")
    result = env.ok(**env.args("2.2", state="stopped", stop_timeout=0))
    assert result["escalated"]
    assert any("--stop-for-engine exited 2 after the engine was killed; check PostgreSQL with tractor-dbctl --status: "
               "The postgresql server is NOT running" in w for w in env.warnings())


def test_stop_without_escalation_fails(env):
    proc = env.running_engine("2.2", ignore_term=True)
    result = env.fails(**env.args("2.2", state="stopped", stop_timeout=1, escalate=False))
    assert result["msg"].startswith("the engine (pid %d) did not exit within 1 s of the stop request; it is still "
                                    "running (escalate=false). Look at %s" % (proc.pid, env.log))
    assert result["escalated"] is False and proc.poll() is None


def test_killed(env):
    proc = env.running_engine("2.4")
    result = env.ok(check=True, **env.args("2.4", state="killed"))
    assert result["changed"] and result["commands"][0] == "kill -KILL %d" % proc.pid and proc.poll() is None
    result = env.ok(**env.args("2.4", state="killed"))
    assert result["changed"] and result["commands"][0] == "kill -KILL %d" % proc.pid
    assert proc.wait(timeout=5) == -signal.SIGKILL
    assert not env.runner.argvs("tractor-dbctl")  # PostgreSQL left running, as with any killed engine
    env.engine.up = False
    assert not env.ok(**env.args("2.4", state="killed"))["changed"]


def test_stop_of_a_remote_engine_fails(env):
    env.engine.up = True  # answers, but no local process
    result = env.fails(**env.args("2.2", state="stopped", engine="render-engine:80"))
    assert "no local tractor-engine process serving %s was found: is engine pointing at another host?" \
        % env.config_dir in result["msg"]


# -- health ----------------------------------------------------------------------------------------
def test_unhealthy_start_fails_with_the_log_tail(env):
    with open(env.log, "w") as handle:
        handle.write("".join("12:00:%02d NOTICE line %d\n" % (n, n) for n in range(30)))
    env.engine.health = "503"
    result = env.fails(**env.args("2.2", state="started", timeout=1))
    msg = result["msg"]
    assert msg.startswith("tractor-engine 2.2 did not become healthy within 1 s: ctrl?q=status was refused "
                          "(HTTP 503): engine unhealthy (emulator fault engine-unhealthy). Look at the engine log "
                          "%s, the PostgreSQL log %s/psql/logfile and `tractor-dbctl --configdir %s --status`."
                          % (env.log, env.data_dir, env.config_dir))
    assert msg.endswith("Last log lines:\n" + "\n".join("12:00:%02d NOTICE line %d" % (n, n) for n in range(20, 30)))
    assert len(result["log_tail"]) == te.LOG_TAIL_LINES and result["log_tail"][-1] == "12:00:29 NOTICE line 29"
    assert result["changed"] is True and result["commands"]


def test_start_answering_as_another_version_fails(env):
    env.runner.start = "ok"
    original = env.runner.daemon

    def wrong_version(argv):
        out = original(argv)
        env.engine.version, env.engine.build = "2.2", BUILDS["2.2"][0]
        return out
    env.runner.daemon = wrong_version
    result = env.fails(**env.args("2.4", state="started", timeout=1))
    assert "did not become healthy within 1 s: the engine at localhost:18080 answers as Tractor 2.2 " \
           "(build 1715407), not 2.4 (build 2091325)" in result["msg"]


def test_engine_exiting_during_start_up_fails_at_once(env):
    env.runner.start = "dies"
    with open(env.log, "w") as handle:
        handle.write("SEVERE the job database has schema version 2.4-1, newer than this engine\n")
    started = time.monotonic()
    result = env.fails(**env.args("2.2", state="started", timeout=30))
    assert time.monotonic() - started < 10
    assert result["msg"].startswith("tractor-engine 2.2 (pid %d) exited during start-up. Look at the engine log"
                                    % int(open(env.pidfile).read()))
    assert "newer than this engine" in result["msg"]


def test_start_command_failing(env):
    env.runner.start = "fail"
    result = env.fails(**env.args("2.2", state="started"))
    assert result["msg"].startswith("tractor-engine --daemon failed (rc=1). Look at the engine log")
    assert result["rc"] == 1 and "Permission denied" in result["stderr"] and "--daemon" in result["cmd"]


def test_running_engine_that_never_answers_is_not_restarted(env):
    elsewhere = env.tmp / "local" / "bin"       # no Tractor-<version> in its command line either
    elsewhere.mkdir(parents=True)
    program = elsewhere / "tractor-engine"
    program.write_text(FAKE_ENGINE.format(python=sys.executable))
    program.chmod(0o755)
    proc = env.running_engine("2.2", program=str(program))
    env.engine.up = False
    result = env.fails(**env.args("2.4", state="started", timeout=1))
    assert result["msg"].startswith("an engine runs (pid %d) but has not answered at localhost:18080 within 1 s, "
                                    "so its version is unknown and the module will not restart it" % proc.pid)
    assert proc.poll() is None


# -- preflight failures ------------------------------------------------------------------------------
def test_missing_engine_binary(env):
    os.unlink(os.path.join(env.installs["2.4"], "bin", "tractor-engine"))
    result = env.fails(check=True, **env.args("2.4", state="started"))
    assert result["msg"] == ("%s/bin/tractor-engine is missing or not executable: install Tractor  in %s, or point "
                             "install_dir at the install to run" % (env.installs["2.4"], env.installs["2.4"]))


def test_version_option_must_match_the_install(env):
    result = env.fails(**env.args("2.4", state="started", version="2.2"))
    assert result["msg"] == ("%s is the install of Tractor 2.4, not of the requested version 2.2: fix version or "
                             "install_dir" % env.installs["2.4"])


@pytest.mark.parametrize("reply", [(127, "", "python3: not found\n"), (0, "tractor-engine 2.2.0\n", ""),
                                   (0, "Tractor 2.4 (Aug 17 2020 05:39:38 2091325 linux)\n", "")])
def test_version_banner_never_blocks_a_start(env, reply):
    """The output of tractor-engine --version is not public (fact sheet 6.5): the directory decides."""
    env.runner.results[("tractor-engine", "--version")] = reply
    result = env.ok(**env.args("2.2", state="started"))
    assert result["version"] == "2.2" and result["build"] == "1715407"   # from the Server header
    assert env.warnings() == ([] if "2.4" not in reply[1] else [
        "tractor-engine --version names Tractor 2.4, but the install is 2.2; the running engine's Server header "
        "decides after the start"])


def test_install_not_named_after_its_version_needs_the_version_option(env, tmp_path):
    custom = tmp_path / "tractor-current"
    custom.mkdir()
    (custom / "bin").symlink_to(env.installs["2.2"] + "/bin")
    (custom / "config").symlink_to(env.installs["2.2"] + "/config")
    result = env.fails(**env.args("2.2", state="started", install_dir=str(custom)))
    assert result["msg"] == ("%s is not named Tractor-<version>, so its version is unknown: set the version option: "
                             "fix version or install_dir" % custom)
    result = env.ok(**env.args("2.2", state="started", install_dir=str(custom), version="2.2"))
    assert result["version"] == "2.2"


def test_missing_data_dir(env):
    os.rmdir(env.data_dir)
    result = env.fails(check=True, **env.args("2.2", state="started"))
    assert result["msg"].startswith("TractorDataDirectory %s does not exist: create it, owned by the EngineOwner"
                                    % env.data_dir)


@pytest.mark.skipif(not ROOT, reason="the EngineOwner checks apply to a start as root")
def test_engine_owner_checks(env):
    (env.config_dir / "tractor.config").write_text(
        '{"EngineOwner": "no-such-user-xyz", "TractorDataDirectory": "%s", "ListenerPort": 18080}\n' % env.data_dir)
    result = env.fails(**env.args("2.2", state="started"))
    assert result["msg"].startswith("EngineOwner no-such-user-xyz does not exist on this host")
    (env.config_dir / "tractor.config").write_text(
        '{"EngineOwner": "", "TractorDataDirectory": "%s", "ListenerPort": 18080}\n' % env.data_dir)
    result = env.fails(**env.args("2.2", state="started"))
    assert "needs EngineOwner set to an unprivileged account" in result["msg"]


def test_start_paused_needs_direct(env):
    os.makedirs(os.path.dirname(env.init_script))
    with open(env.init_script, "w") as handle:
        handle.write("#!/bin/sh\n")
    os.chmod(env.init_script, 0o755)
    result = env.fails(**env.args("2.2", state="started", start_paused=True, service_manager="sysv",
                                  init_script=env.init_script, service_settings=env.settings))
    assert result["msg"].startswith("start_paused needs service_manager=direct")


def test_port_taken_by_something_else(env):
    env.engine.up, env.engine.health = True, "foreign"
    result = env.fails(**env.args("2.2", state="started"))
    assert result["msg"].startswith("localhost:18080 is in use by something that is not a Tractor engine")


def test_status_cannot_change_anything(env):
    result = env.fails(**env.args("2.2", state="status", dispatching="paused"))
    assert result["msg"].startswith("state=status only reports")


def test_bad_timeouts(env):
    assert env.fails(**env.args("2.2", state="stopped", stop_timeout=-1))["msg"].startswith("stop_timeout must be")


def test_dispatching_needs_a_running_engine(env):
    result = env.fails(**env.args("2.2", dispatching="paused"))
    assert result["msg"] == ("dispatching and retry_active need a running engine; none serves %s at localhost:18080"
                             % env.config_dir)


def test_status_report(env):
    result = env.ok(**env.args("2.2", state="status"))
    assert not result["changed"] and result["state"] == "stopped" and result["version"] is None
    env.running_engine("2.4")
    result = env.ok(**env.args("2.2"))
    assert not result["changed"] and result["state"] == "running" and result["version"] == "2.4"


# -- dispatching -------------------------------------------------------------------------------------
def test_job_pause_and_resume(env):
    env.running_engine("2.2")
    env.engine.add_job(1)
    env.engine.add_job(2, numtasks=3, numdone=1)
    env.engine.add_job(3, paused=True)                 # paused by a user
    env.engine.add_job(4, numtasks=1, numdone=1)       # finished
    pause = env.args("2.2", dispatching="paused")

    result = env.ok(check=True, **pause)
    assert result["changed"] and result["dispatching"]["paused_now"] == [1, 2]
    assert result["dispatching"]["confirmed"] is False
    assert result["commands"] == ["queue?q=jattr&jid=1&set_pause=1", "queue?q=jattr&jid=2&set_pause=1",
                                  "record paused jobs [1, 2] in %s" % env.state_file]
    assert not env.engine.requests("queue", "jattr") and not os.path.exists(env.state_file)

    result = env.ok(**pause)
    assert result["changed"] and result["dispatching"]["paused_jobs"] == [1, 2]
    assert result["dispatching"]["confirmed"] is True
    assert result["progress"][-1].endswith("every unfinished job reads back as paused")
    assert [p["jid"] for p in env.engine.requests("queue", "jattr")] == [1, 2]
    assert json.load(open(env.state_file))["paused_jobs"] == [1, 2]
    assert result["diff"]["before"]["paused_jobs"] == [] and result["diff"]["after"]["paused_jobs"] == [1, 2]
    # only the confirmed list request: no monitor?q=jobs, no field of ctrl?q=status
    assert not env.engine.requests("monitor", "jobs")

    result = env.ok(**pause)
    assert not result["changed"] and result["commands"] == []

    env.engine.add_job(5)
    env.engine.jobs[2]["pausetime"] = None              # a user resumed one of ours
    del env.engine.jobs[1]                              # and deleted another
    listings = len(env.engine.selects("job"))
    result = env.ok(**pause)
    assert result["changed"] and result["dispatching"]["paused_now"] == [2, 5]
    # one listing to pause, one to read back (which also tells which recorded jobs still exist)
    assert len(env.engine.selects("job")) - listings == 2
    assert json.load(open(env.state_file))["paused_jobs"] == [2, 5]

    resume = env.args("2.2", dispatching="running")
    result = env.ok(check=True, **resume)
    assert result["changed"] and os.path.exists(env.state_file)
    calls = len(env.engine.requests("queue", "jattr"))
    result = env.ok(**resume)
    assert result["changed"] and result["dispatching"]["resumed_now"] == [2, 5]
    # reading the resume back is no change: only the requests that changed something are listed
    assert result["commands"] == ["queue?q=jattr&jid=2&set_pause=0", "queue?q=jattr&jid=5&set_pause=0",
                                  "remove %s" % env.state_file]
    assert [(p["jid"], p["set_pause"]) for p in env.engine.requests("queue", "jattr")[calls:]] == [(2, 0), (5, 0)]
    assert env.engine.jobs[3]["pausetime"]             # the user's pause stays
    assert not os.path.exists(env.state_file)
    assert not env.ok(**resume)["changed"]


def test_jobs_spooled_during_the_pause_are_paused_too(env, monkeypatch):
    env.running_engine("2.2")
    env.engine.add_job(1)
    real = env.engine.request

    def spool_meanwhile(client, verb, params=None, *args, **kwargs):
        reply = real(client, verb, params, *args, **kwargs)
        if verb == "queue" and 6 not in env.engine.jobs:
            env.engine.add_job(6)                       # a job spooled between the pause and the read-back
        return reply
    monkeypatch.setattr(env.engine, "request", spool_meanwhile)
    result = env.ok(**env.args("2.2", dispatching="paused"))
    assert result["dispatching"]["paused_now"] == [1, 6] and result["dispatching"]["confirmed"]
    assert all(job["pausetime"] for job in env.engine.jobs.values())


def test_a_pause_that_never_reads_back_fails_with_the_engine_up(env):
    env.running_engine("2.2")
    env.engine.add_job(1)
    env.engine.add_job(2)
    env.engine.ignore_jattr.add(2)
    result = env.fails(**env.args("2.2", dispatching="paused", confirm_timeout=1))
    assert result["msg"].startswith("jobs 2 still read back as unpaused ")
    assert "the engine is still up. Pause them in the Dashboard or with tq pause, then run the task again" \
        in result["msg"]
    assert result["unpaused"] == [2] and env.engine.up
    assert not os.path.exists(env.state_file)


@pytest.mark.parametrize("reply, why", [
    # the real shape of monitor?q=jobs (fact sheet 6.6), as if the engine answered that
    ({"users": {"ann": {"1": {"data": {"user": "ann", "jid": 1}}}}}, 'no "rows" list'),
    ({"rc": 0, "msg": "ok", "rows": {"jid": 1}}, '"rows" is a dict'),
    ({"rc": 0, "rows": [[1, None, 1, 0]]}, "row 0 is a list, not an object"),
    ({"rc": 0, "rows": [{"jid": 1, "numtasks": 1, "numdone": 0}]}, "row 0 lacks pausetime"),
    ({"rc": 0, "rows": [{"jid": "one", "pausetime": None, "numtasks": 1, "numdone": 0}]}, "jid is 'one', not a number"),
    (["jid", 1], "a list, not an object"),
])
def test_job_pause_fails_closed_on_a_reply_it_does_not_know(env, reply, why):
    env.running_engine("2.2")
    env.engine.add_job(1)
    env.engine.select_reply = {"job": reply}
    result = env.fails(**env.args("2.2", dispatching="paused"))
    assert why in result["msg"] and "nothing was changed on the strength of it" in result["msg"]
    assert result["msg"].startswith("pause the unfinished jobs failed: the reply to ")
    assert not env.engine.requests("queue", "jattr") and not os.path.exists(env.state_file)
    assert result["commands"] == []


def test_job_pause_fails_on_an_engine_error_reply(env, monkeypatch):
    env.running_engine("2.2")
    env.engine.add_job(1)
    real = env.engine.request

    def refused(client, verb, params=None, *args, **kwargs):
        if verb == "db":
            raise EngineRefused("tractorselect: unknown column pausetime", {"rc": 1}, status=200)
        return real(client, verb, params, *args, **kwargs)
    monkeypatch.setattr(env.engine, "request", refused)
    result = env.fails(**env.args("2.2", dispatching="paused"))
    assert result["msg"] == ("pause the unfinished jobs failed: tractorselect: unknown column pausetime. Nothing more "
                             "was changed; the engine is left as it is")
    assert not env.engine.requests("queue", "jattr")


def test_job_resume_warns_about_refused_jobs(env):
    env.running_engine("2.2")
    env.engine.add_job(7, paused=True)
    with open(env.state_file, "w") as handle:
        json.dump({"paused_jobs": [7]}, handle)
    env.engine.refuse_jattr.add(7)
    result = env.ok(**env.args("2.2", dispatching="running"))
    assert result["changed"] and result["dispatching"]["resumed_now"] == []
    assert env.warnings() == ["job 7 could not be unpaused: no such job 7"]


def test_corrupt_paused_jobs_record(env):
    env.running_engine("2.2")
    with open(env.state_file, "w") as handle:
        handle.write("{not json")
    result = env.fails(**env.args("2.2", dispatching="running"))
    assert result["msg"].startswith("cannot read the paused-jobs record %s" % env.state_file)


def test_engine_switch(env):
    env.running_engine("2.4")
    pause = env.args("2.4", dispatching="paused", dispatch_method="engine_switch")
    result = env.ok(check=True, **pause)
    assert result["changed"] and result["commands"] == ["ctrl?q=dispatching&pause=1"] and not env.engine.paused
    result = env.ok(**pause)
    assert result["changed"] and env.engine.paused and result["dispatching"]["engine_paused"] is True
    assert result["diff"]["before"]["engine_paused"] is False
    assert not env.ok(**pause)["changed"]
    result = env.ok(**env.args("2.4", dispatching="running", dispatch_method="engine_switch"))
    assert result["changed"] and not env.engine.paused
    # job_pause never reads the invented switch
    calls = len(env.engine.requests("ctrl", "dispatching"))
    result = env.ok(**env.args("2.4", dispatching="paused"))
    assert result["dispatching"]["engine_paused"] is None and len(env.engine.requests("ctrl", "dispatching")) == calls


def test_engine_switch_not_answered(env):
    env.running_engine("2.4")
    env.engine.switch_supported = False
    result = env.fails(**env.args("2.4", dispatching="paused", dispatch_method="engine_switch"))
    assert result["msg"] == ("ctrl?q=dispatching failed: unknown request ctrl?q=dispatching. Nothing more was changed; "
                             "the engine is left as it is")


def test_dispatching_after_a_start_in_check_mode(env):
    result = env.ok(check=True, **env.args("2.2", state="started", dispatching="paused"))
    assert result["commands"][-1].startswith("pause dispatching after the start (job_pause; the jobs cannot be listed")


# -- retry_active ------------------------------------------------------------------------------------
def test_retry_active_waits_until_the_blades_have_killed_the_commands(env):
    env.running_engine("2.4")
    env.engine.add_running(1, 1, blade="rack1")
    env.engine.tasks.append({"jid": 1, "tid": 2, "state": "ready"})
    env.engine.add_running(2, 1, blade="rack2")
    env.engine.kill_after = 3                           # the blades hear of it three looks later
    env.runner.results["tq"] = (0, "   1  1 ann  frame 1  active retried\n   2  1 bob  frame 1  active retried\n", "")
    retry = env.args("2.4", retry_active=True, engine_user="wrangler", engine_password="s3cret")

    result = env.ok(check=True, **retry)
    assert result["changed"] and result["retried_tasks"] == 2 and not env.runner.argvs("tq")
    assert result["retry"] == {"tasks": [[1, 1], [2, 1]], "confirmed": False,
                               "commands": ["J1 T1 C1 I1 on blade rack1", "J2 T1 C1 I1 on blade rack2"]}

    result = env.ok(**retry)
    tq = os.path.join(env.installs["2.4"], "bin", "tq")
    argv = [tq, "--engine", "localhost:18080", "--user", "wrangler", "--force", "--yes", "retry", "active"]
    assert env.runner.argvs("tq") == [argv] and result["commands"] == [" ".join(argv)]
    assert "s3cret" not in " ".join(argv)
    assert [kw.get("environ_update") for a, kw in env.runner.calls if a[0] == tq] == [{"TRACTOR_PASSWORD": "s3cret"}]
    assert result["changed"] and result["retried_tasks"] == 2 and result["retry"]["confirmed"] is True
    # the module returned only once every retried command had ended on its blade
    assert all(inv["stoptime"] and not inv["current"] for inv in env.engine.invocations)
    assert len(env.engine.selects("invocation")) == 1 + 1 + 4     # check mode, before the retry, 4 looks
    assert result["progress"][-1].endswith("every retried command has ended")
    assert any("waiting for 2 command(s) to end on their blades" in line for line in result["progress"])

    result = env.ok(**retry)
    assert not result["changed"] and result["retried_tasks"] == 0 and len(env.runner.argvs("tq")) == 1


def test_retry_active_times_out_with_the_engine_up_and_names_the_commands(env):
    env.running_engine("2.4")
    env.engine.add_job(1, paused=True)
    env.engine.add_running(1, 4, blade="rack9")
    env.engine.kill_after = None                        # its blade never hears of the retry
    result = env.fails(**env.args("2.4", retry_active=True, confirm_timeout=1, state="killed"))
    assert result["msg"].startswith("after tq retry active, 1 command(s) still run ")
    assert "J1 T4 C4 I1 on blade rack9" in result["msg"] and "The engine is still up" in result["msg"]
    assert result["still_running"] == ["J1 T4 C4 I1 on blade rack9"]
    assert env.engine.up and te.pid_alive(env.engine.pid)          # step 3 never ran
    assert not any(c.startswith("kill ") for c in result["commands"])


def test_retry_active_with_no_active_task_sends_nothing(env):
    env.running_engine("2.4")
    env.engine.tasks = [{"jid": 1, "tid": t, "state": "done"} for t in range(1, 50)]
    result = env.ok(**env.args("2.4", retry_active=True))
    assert not result["changed"] and result["retried_tasks"] == 0 and not env.runner.argvs("tq")
    assert not env.engine.requests("monitor", "tasks") and not env.engine.selects("invocation")


@pytest.mark.parametrize("table, reply, why", [
    ("task", {"rc": 0, "msg": "ok"}, 'no "rows" list'),
    ("task", {"rc": 0, "rows": [{"jid": 1, "tid": 1, "state": 3}]}, "state is 3, not a task state"),
    ("invocation", {"rc": 0, "rows": [{"jid": 1, "tid": 1, "cid": 1, "iid": 1, "current": "maybe",
                                       "stoptime": None, "bladeid": "b"}]}, "current is 'maybe', not a boolean"),
    ("invocation", {"rc": 0, "rows": [{"jid": 1, "tid": 1, "cid": 1, "iid": 1, "current": True}]},
     "row 0 lacks stoptime, bladeid"),
])
def test_retry_active_fails_closed_on_a_reply_it_does_not_know(env, table, reply, why):
    env.running_engine("2.4")
    env.engine.add_running(1, 1)
    env.engine.select_reply = {table: reply}
    result = env.fails(**env.args("2.4", retry_active=True))
    assert why in result["msg"] and result["msg"].startswith("retry the active tasks failed: the reply to ")
    assert not env.runner.argvs("tq")


def test_retry_active_failure(env):
    env.running_engine("2.4")
    env.engine.add_running(1, 1)
    env.runner.results["tq"] = (2, "", "tq: engine localhost:18080 refused the login\n")
    result = env.fails(**env.args("2.4", retry_active=True))
    assert result["msg"] == ("tq retry active failed (rc=2); the engine is left as it is: tq: engine localhost:18080 "
                             "refused the login")
    assert result["rc"] == 2 and result["cmd"].endswith("--force --yes retry active")


def test_downgrade_steps_run_in_the_runbook_order(env):
    proc = env.running_engine("2.4")
    env.engine.add_job(1)
    env.engine.add_running(1, 1)
    result = env.ok(**env.args("2.4", dispatching="paused", retry_active=True, state="killed"))
    assert [c.split("&")[0].split()[0] for c in result["commands"][:3]] == \
        ["queue?q=jattr", "record", os.path.join(env.installs["2.4"], "bin", "tq")]
    assert result["commands"][3] == "kill -KILL %d" % proc.pid
    # the kill came after the retried command had ended
    assert result["retry"]["confirmed"] and env.engine.invocations[0]["stoptime"]
    env.engine.up = False
    again = env.ok(**env.args("2.4", dispatching="paused", retry_active=True, state="killed"))
    assert not again["changed"]
    assert env.warnings() == ["no engine serves %s: dispatching/retry_active skipped" % env.config_dir]


# -- sysv ----------------------------------------------------------------------------------------------
def make_init_script(env, program='"$TRACTOR_INSTALL_DIR/bin/tractor-engine"'):
    os.makedirs(os.path.dirname(env.init_script))
    with open(env.init_script, "w") as handle:
        handle.write("#!/bin/sh\nTRACTOR_ENGINE_PIDFILE=/var/run/tractor-engine.pid\n"
                     'TRACTOR_ENGINE_OPTIONS="--log=/var/log/tractor-engine.log"\n'
                     "TRACTOR_INSTALL_DIR=/opt/pixar/Tractor-2.2\n"
                     '[ -r "%s" ] && . "%s"\n'
                     "program=%s\n" % (env.settings, env.settings, program))
    os.chmod(env.init_script, 0o755)
    os.makedirs(os.path.dirname(env.settings))
    with open(env.settings, "w") as handle:
        handle.write("# site settings\nTRACTOR_ENGINE_OPTIONS=\"--log=%s\"\n" % env.log)


def test_sysv_auto_start_and_upgrade(env):
    make_init_script(env)
    common = dict(service_manager="auto", init_script=env.init_script, service_settings=env.settings)
    result = env.ok(**env.args("2.2", state="started", **common))
    assert result["service_manager"] == {"name": "sysv", "reason": "init script %s exists" % env.init_script}
    assert result["changed"] and result["commands"] == [
        "set TRACTOR_INSTALL_DIR=%s in %s" % (env.installs["2.2"], env.settings),
        "%s start" % env.init_script]
    assert result["pidfile"] == "/var/run/tractor-engine.pid" and result["log_file"] == env.log
    settings = ts.parse_settings(open(env.settings).read())
    assert settings["TRACTOR_INSTALL_DIR"] == env.installs["2.2"] and "TRACTOR_CONFIG_DIR" not in settings
    assert open(env.settings).read().startswith("# site settings\n")
    assert result["diff"]["after"]["service_settings"]["TRACTOR_INSTALL_DIR"] == env.installs["2.2"]

    assert not env.ok(**env.args("2.2", state="started", **common))["changed"]

    result = env.ok(**env.args("2.4", state="started", **common))
    # the install is selected (and read back) before the running engine is stopped
    assert result["commands"] == ["set TRACTOR_INSTALL_DIR=%s in %s" % (env.installs["2.4"], env.settings),
                                  "%s stop" % env.init_script,
                                  "%s start" % env.init_script]
    assert result["previous_version"] == "2.2" and result["version"] == "2.4"

    result = env.ok(**env.args("2.4", state="stopped", **common))
    assert result["commands"] == ["%s stop" % env.init_script] and result["state"] == "stopped"


@pytest.mark.parametrize("program, why", [
    ("/opt/pixar/Tractor-2.2/bin/tractor-engine", "the init script runs /opt/pixar/Tractor-2.2/bin/tractor-engine "
                                                  "itself, so it always starts that install"),
    ("/usr/local/sbin/start-tractor", "the init script names no .../bin/tractor-engine"),
])
def test_sysv_script_that_cannot_be_steered_is_refused_before_the_stop(env, program, why):
    make_init_script(env, program=program)
    env.runner.sysv_running = True
    env.running_engine("2.2")
    common = dict(service_manager="sysv", init_script=env.init_script, service_settings=env.settings)
    result = env.fails(**env.args("2.4", state="started", **common))
    assert result["msg"].startswith("%s cannot be made to start %s: %s" % (env.init_script, env.installs["2.4"], why))
    assert "Nothing was stopped." in result["msg"]
    assert "or use service_manager=direct" in result["msg"]
    assert result["commands"] == [] and env.runner.sysv_running and env.engine.up
    assert "TRACTOR_INSTALL_DIR" not in open(env.settings).read()


def test_sysv_missing_script(env):
    result = env.fails(**env.args("2.2", state="started", service_manager="sysv", init_script=env.init_script))
    assert result["msg"].startswith("init script %s is missing or not executable: copy it from %s/lib/SystemServices/"
                                    "tractor-engine" % (env.init_script, env.installs["2.2"]))


def test_sysv_status_error_is_a_warning(env):
    make_init_script(env)
    env.runner.results[("tractor-engine", "status")] = (4, "", "weird\n")
    result = env.ok(**env.args("2.2", state="status", service_manager="sysv", init_script=env.init_script,
                               service_settings=env.settings))
    assert result["state"] == "stopped"
    assert env.warnings() == ["%s status exited 4 (expected 0 or 3): weird" % env.init_script]


# -- systemd -------------------------------------------------------------------------------------------
def make_systemd(env, unit=True):
    os.makedirs(te.SYSTEMD_RUNTIME_DIR)
    if unit:
        os.makedirs(te.SYSTEMD_UNIT_DIRS[0])
        with open(os.path.join(te.SYSTEMD_UNIT_DIRS[0], "tractor-engine.service"), "w") as handle:
            # as a site writes it: the version hard-coded in ExecStart
            handle.write('[Service]\nEnvironment="OPTIONS="\nEnvironmentFile=-/etc/sysconfig/tractor-engine\n'
                         'ExecStart=%s/bin/tractor-engine --configdir=%s $OPTIONS\n' % (env.installs["2.2"], env.config_dir))


def test_systemd_auto_start_upgrade_and_stop(env):
    make_systemd(env)
    common = dict(service_settings=env.settings)
    result = env.ok(**env.args("2.2", state="started", service_manager="auto", **common))
    assert result["service_manager"]["name"] == "systemd" and result["pidfile"] is None and result["log_file"] is None
    assert env.runner.argvs("systemctl")[-3:-2] == [["/usr/bin/systemctl", "start", "tractor-engine.service"]]
    assert result["pid"] == 4242

    dropin = os.path.join(te.SYSTEMD_DROPIN_ROOT, "tractor-engine.service.d", "50-renderfarm-tractor-install.conf")
    assert not os.path.exists(dropin)          # the unit already starts 2.2
    wanted = "%s/bin/tractor-engine --configdir=%s $OPTIONS" % (env.installs["2.4"], env.config_dir)

    result = env.ok(check=True, **env.args("2.4", state="started", service_manager="systemd", **common))
    assert result["commands"][0] == "write %s (ExecStart=%s); systemctl daemon-reload" % (dropin, wanted)
    assert not os.path.exists(dropin) and env.engine.version == "2.2"

    result = env.ok(**env.args("2.4", state="started", service_manager="systemd", **common))
    # the drop-in is written and read back (systemctl show) before the engine is stopped
    assert result["commands"] == ["write %s (ExecStart=%s); systemctl daemon-reload" % (dropin, wanted),
                                  "/usr/bin/systemctl daemon-reload",
                                  "/usr/bin/systemctl stop --no-block tractor-engine.service",
                                  "/usr/bin/systemctl start tractor-engine.service"]
    calls = [a[1:3] for a in env.runner.argvs("systemctl")]
    assert calls.index(["show", "--property=ExecStart"]) < calls.index(["stop", "--no-block"])
    assert open(dropin).read().splitlines()[-2:] == ["ExecStart=", "ExecStart=" + wanted]
    assert result["version"] == "2.4" and result["diff"]["after"]["service_settings"] == {"ExecStart": wanted}
    assert not os.path.exists(env.settings)     # the settings file is not written under systemd

    # the rollback: back to 2.2 through the same drop-in
    result = env.ok(**env.args("2.2", state="started", service_manager="systemd", **common))
    assert result["version"] == "2.2" and env.runner.exec_start().startswith(env.installs["2.2"] + "/bin/tractor-engine")
    assert not env.ok(**env.args("2.2", state="started", service_manager="systemd", **common))["changed"]

    result = env.ok(**env.args("2.4", state="stopped", service_manager="systemd", **common))
    assert result["commands"] == ["/usr/bin/systemctl stop --no-block tractor-engine.service"]


@pytest.mark.parametrize("exec_start", ["/usr/local/sbin/start-tractor --engine", ""])
def test_systemd_unit_that_cannot_be_steered_is_refused_before_the_stop(env, exec_start):
    make_systemd(env)
    env.ok(**env.args("2.2", state="started", service_manager="systemd"))
    unit = os.path.join(te.SYSTEMD_UNIT_DIRS[0], "tractor-engine.service")
    text = open(unit).read().replace("ExecStart=%s/bin/tractor-engine" % env.installs["2.2"], "ExecStart=" + exec_start)
    with open(unit, "w") as handle:
        handle.write(text)
    result = env.fails(**env.args("2.4", state="started", service_manager="systemd"))
    assert result["msg"].startswith("tractor-engine.service cannot be made to start %s: " % env.installs["2.4"])
    assert "Nothing was stopped" in result["msg"] and result["commands"] == []
    assert env.runner.systemd_active == "active" and env.engine.version == "2.2"


def test_systemd_dropin_overridden_by_another_is_undone_and_refused(env):
    make_systemd(env)
    env.ok(**env.args("2.2", state="started", service_manager="systemd"))
    later = os.path.join(te.SYSTEMD_DROPIN_ROOT, "tractor-engine.service.d", "90-site.conf")
    os.makedirs(os.path.dirname(later))
    with open(later, "w") as handle:       # a site drop-in that sorts after ours pins 2.2
        handle.write("[Service]\nExecStart=\nExecStart=%s/bin/tractor-engine\n" % env.installs["2.2"])
    result = env.fails(**env.args("2.4", state="started", service_manager="systemd"))
    assert "systemctl show still reports" in result["msg"] and "Nothing was stopped" in result["msg"]
    assert sorted(os.listdir(os.path.dirname(later))) == ["90-site.conf"]     # ours removed again
    assert env.runner.systemd_active == "active" and env.engine.version == "2.2"


def test_systemd_stop_escalates_with_systemctl_kill_or_signal(env):
    make_systemd(env)
    env.runner.systemd_active = "active"
    env.engine.up = True
    env.systemd_hangs = True
    proc = env.running_engine("2.2", pidfile=False, ignore_term=True)
    env.runner.results[("systemctl", "show")] = (0, "%d\n" % proc.pid, "")
    result = env.ok(**env.args("2.2", state="stopped", service_manager="systemd", stop_timeout=0))
    assert result["escalated"] and "kill -KILL %d (no exit 0 s after SIGTERM)" % proc.pid in result["commands"]


def test_systemd_required_but_not_running(env):
    result = env.fails(**env.args("2.2", state="started", service_manager="systemd"))
    assert result["msg"].startswith("service_manager=systemd, but systemd is not the running init system")


def test_systemd_unit_missing(env):
    make_systemd(env, unit=False)
    result = env.fails(**env.args("2.2", state="started", service_manager="systemd"))
    assert result["msg"].startswith("systemd unit tractor-engine.service is not installed: copy %s/lib/SystemServices/"
                                    "systemd/tractor-engine.service" % env.installs["2.2"])


def test_unhealthy_systemd_start_reads_the_journal(env):
    make_systemd(env)
    env.engine.health = "503"
    env.runner.results["journalctl"] = (0, "Nov 28 engine[1]: SEVERE something\n", "")
    result = env.fails(**env.args("2.2", state="started", service_manager="systemd", timeout=1,
                                  service_settings=env.settings))
    assert "Look at the engine log journalctl -u tractor-engine.service" in result["msg"]
    assert result["log_tail"] == ["Nov 28 engine[1]: SEVERE something"]


def test_systemd_engine_dying_during_start_fails_at_once(env):
    make_systemd(env)
    original = env.runner.systemctl

    def start_then_die(argv):
        out = original(argv)
        if argv[1] == "start":
            env.runner.systemd_active, env.engine.up = "failed", False
        return out
    env.runner.systemctl = start_then_die
    started = time.monotonic()
    result = env.fails(**env.args("2.2", state="started", service_manager="systemd", timeout=30,
                                  service_settings=env.settings))
    assert time.monotonic() - started < 10
    assert result["msg"].startswith("tractor-engine 2.2 exited during start-up (tractor-engine.service is no longer "
                                    "active)")


def test_engine_outside_the_service_manager_is_reported_and_stopped_with_signals(env):
    make_init_script(env)
    proc = env.running_engine("2.2", pidfile=False)
    result = env.ok(**env.args("2.2", state="stopped", service_manager="sysv", init_script=env.init_script,
                               service_settings=env.settings))
    assert result["commands"] == ["kill -TERM %d" % proc.pid]
    assert env.warnings() == [
        "the engine (pid %d) runs, but not under sysv (started by hand or by another service manager?)" % proc.pid,
        "the engine (pid %d) was not started by sysv; stopped with SIGTERM" % proc.pid]


def test_engine_args_only_with_direct(env):
    make_init_script(env)
    env.ok(**env.args("2.2", state="started", service_manager="sysv", init_script=env.init_script,
                      service_settings=env.settings, engine_args=["--debug"]))
    assert env.warnings() == ["engine_args are only used with service_manager=direct; the sysv service takes its "
                              "options from %s" % env.settings]


def test_engine_args_are_passed_to_a_direct_start(env):
    result = env.ok(**env.args("2.2", state="started", engine_args=["--debug", "--nshippers=4"]))
    assert result["commands"][-1].endswith("--log=%s --debug --nshippers=4" % env.log)


def test_links_planted_in_the_data_dir_are_not_followed(env, tmp_path):
    env.running_engine("2.2")
    env.engine.add_job(1)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(str(victim), "%s.tmp-%d" % (env.state_file, os.getpid()))
    env.ok(**env.args("2.2", dispatching="paused"))
    assert victim.read_text() == "precious\n"
    assert json.load(open(env.state_file))["paused_jobs"] == [1]
    os.symlink(str(victim), str(tmp_path / "link.log"))
    assert te.tail_file(str(tmp_path / "link.log")) == ["(%s is a symbolic link; not read)" % (tmp_path / "link.log")]
