"""renderfarm.tractor.tractor_engine against emulated engines: real processes, real PostgreSQL.

Every module call is a real ``ansible localhost -m renderfarm.tractor.tractor_engine`` run as root
(the engine starts as root, binds, then drops to the EngineOwner).  Each change is run in check
mode first (changed, nothing happened), then for real (changed, it happened), then again
(unchanged), as the anchors' integration-target rule asks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time

import urllib.error
import urllib.parse
import urllib.request

import pytest

MODULE = "tractor_engine"
STATE_FILE = ".renderfarm-tractor-paused-jobs.json"


# -- helpers -------------------------------------------------------------------------------------
def changed(result: dict) -> bool:
    assert not result.get("failed"), json.dumps(result, indent=2)
    return bool(result.get("changed"))


class Api:
    """A tiny client of the site's engine URL API (what tq and the Dashboard send, §6)."""

    def __init__(self, site):
        self.site = site
        self.url = f"http://127.0.0.1:{site.engine_port}/Tractor/"
        self.tsid = None

    def call(self, verb_query: str, body: bytes | None = None, content_type: str | None = None,
             timeout: float = 30.0, session: bool = False):
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
                code, headers, data = reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as err:
            code, headers, data = err.code, err.headers, err.read()
        try:
            return code, headers, json.loads(data)
        except ValueError:
            return code, headers, data

    def spool(self, job: dict) -> int:
        code, _, reply = self.call(f"spool?spvers=2.0&jobOwner={self.site.owner.pw_name}&hnm=test",
                                   json.dumps(job).encode(), "application/tractor-spool-json", session=True)
        assert code == 200 and reply["rc"] == 0, reply
        return reply["jid"]

    def select(self, table: str, clause: str, cols: str) -> list[dict]:
        """db?q=tractorselect(...) (fact sheet 6.6), as tq sends it."""
        def lit(text):
            return "'" + text.replace("'", "''") + "'"
        query = f"tractorselect({lit(table)}, {lit(clause)}, {lit(cols)}, '', 0, 'f', '')"
        code, _, reply = self.call("db?q=" + urllib.parse.quote(query), session=True)
        assert code == 200 and reply["rc"] == 0, reply
        return reply["rows"]

    def tasks(self, jid: int) -> list[dict]:
        return self.select("task", f"jid={jid}", "Task.jid,Task.tid,Task.state,Task.retrycount")

    def invocations(self, jid: int) -> list[dict]:
        return self.select("invocation", f"jid={jid}", "Invocation.tid,Invocation.iid,Invocation.current,"
                                                      "Invocation.stoptime,Invocation.rcode")

    def wait_tasks(self, jid: int, predicate, timeout: float = 60.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        tasks = []
        while time.monotonic() < deadline:
            tasks = self.tasks(jid)
            if predicate(tasks):
                return tasks
            time.sleep(0.2)
        raise AssertionError(f"timed out; tasks: {tasks}")


def engine_pids(site) -> list[int]:
    """tractor-engine processes serving this site's config dir."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if state != "Z" and any(os.path.basename(a) == "tractor-engine" for a in args) and (
                site.config_dir in args or f"--configdir={site.config_dir}" in args):
            pids.append(int(entry))
    return pids


@pytest.fixture
def esite(site):
    """A site whose engines (started by the module, detached) are killed at the end."""
    yield site
    for pid in engine_pids(site):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def args(site, version: str, **extra) -> dict:
    base = {"install_dir": site.installs(version), "config_dir": site.config_dir,
            "service_manager": "direct", "timeout": 90}
    base.update(extra)
    return base


def shown_diff(result: dict, before: str, after: str) -> bool:
    """The --diff text ansible printed: a '-' line with `before` and a '+' line with `after`."""
    lines = result["_output"].splitlines()
    assert "--- before" in lines and "+++ after" in lines, result["_output"]
    removed = [line for line in lines if line.startswith("-") and not line.startswith("---")]
    added = [line for line in lines if line.startswith("+") and not line.startswith("+++")]
    assert any(before in line for line in removed), result["_output"]
    assert any(after in line for line in added), result["_output"]
    return True


def api(site) -> Api:
    return Api(site)


def status(site) -> dict | None:
    """The emulator's own introspection (pid, version, schema-version ...: tests only), with the
    Server header of the real ctrl?q=status; None when nothing answers."""
    try:
        code, headers, body = api(site).call("ctrl?q=status", timeout=5)
        if not isinstance(body, dict):
            return None
        _code, _headers, inside = api(site).call("emulator?q=status", timeout=5)
    except OSError:
        return None
    return dict(inside, _server=headers.get("Server"), _code=code) if isinstance(inside, dict) else None


def jobs(site) -> dict[int, dict]:
    return {job["jid"]: job for job in api(site).select("job", "", "Job.jid,Job.title,Job.pausetime")}


def pause_job(site, jid: int) -> None:
    code, _, reply = api(site).call(f"queue?q=jattr&jid={jid}&set_pause=1", session=True)
    assert code == 200 and reply["rc"] == 0, reply


def write_faults(site, *faults: str) -> None:
    site.write("emulator-faults", "".join(f"{f}\n" for f in faults))


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def start(ansible, site, version="2.2", **extra) -> dict:
    result = ansible.module(MODULE, args(site, version, state="started", **extra))
    assert changed(result), result
    return result


# -- lifecycle: started / stopped / killed -------------------------------------------------------
def test_started_stopped_killed_check_real_repeat(ansible, esite):
    site = esite
    # started: check mode changes nothing, but validates the install
    result = ansible.module(MODULE, args(site, "2.2", state="started"), check=True, diff=True)
    assert changed(result)
    assert result["state"] == "running" and result["version"] == "2.2" and result["build"] == "1715407"
    assert any("--daemon" in c for c in result["commands"])
    assert shown_diff(result, '"state": "stopped"', '"state": "running"')
    assert result["service_manager"]["name"] == "direct"
    assert status(site) is None and not engine_pids(site)

    result = ansible.module(MODULE, args(site, "2.2", state="started"))
    assert changed(result)
    st = status(site)
    assert st["version"] == "2.2" and st["_server"].startswith("Pixar_Tractor/2.2")
    assert result["pid"] == st["pid"] and "schema_version" not in result
    assert result["tasks"] == {"blocked": 0, "ready": 0, "active": 0, "error": 0, "done": 0}
    pidfile = os.path.join(site.data_dir, "tractor-engine.pid")
    assert int(open(pidfile).read()) == result["pid"]
    assert os.stat(f"/proc/{result['pid']}").st_uid == site.owner.pw_uid  # dropped to EngineOwner
    assert os.path.exists(os.path.join(site.data_dir, "engine.log"))

    again = ansible.module(MODULE, args(site, "2.2", state="started"))
    assert not changed(again) and again["commands"] == [] and again["pid"] == result["pid"]

    # stopped
    result = ansible.module(MODULE, args(site, "2.2", state="stopped"), check=True)
    assert changed(result) and result["state"] == "stopped"
    assert status(site)["version"] == "2.2"
    result = ansible.module(MODULE, args(site, "2.2", state="stopped"), diff=True)
    assert changed(result) and not result["escalated"]
    assert shown_diff(result, '"state": "running"', '"state": "stopped"')
    assert status(site) is None and not engine_pids(site)
    assert "engine exit" in open(os.path.join(site.data_dir, "engine.log")).read()
    # the engine stopped PostgreSQL on its way out (DBShutdown True)
    assert "is NOT running" in site.dbctl("2.2", "--status").stderr
    assert not changed(ansible.module(MODULE, args(site, "2.2", state="stopped")))

    # killed: SIGKILL, PostgreSQL keeps running
    start(ansible, site)
    pid = status(site)["pid"]
    result = ansible.module(MODULE, args(site, "2.2", state="killed"), check=True)
    assert changed(result) and result["commands"][0] == f"kill -KILL {pid}"
    assert status(site)["pid"] == pid
    result = ansible.module(MODULE, args(site, "2.2", state="killed"))
    assert changed(result) and f"kill -KILL {pid}" in result["commands"]
    assert status(site) is None and not engine_pids(site)
    assert "engine exit" not in open(os.path.join(site.data_dir, "engine.log")).read().split("engine ready")[-1]
    assert "A postgresql server is running" in site.dbctl("2.2", "--status").stderr
    assert not changed(ansible.module(MODULE, args(site, "2.2", state="killed")))

    # a killed engine's PostgreSQL is reused by the next start (DBUseExisting)
    start(ansible, site)
    assert status(site)["version"] == "2.2"


def test_status_and_restarted(ansible, esite):
    site = esite
    result = ansible.module(MODULE, args(site, "2.2", state="status"))
    assert not changed(result) and result["state"] == "stopped" and result["pid"] is None
    start(ansible, site)
    result = ansible.module(MODULE, args(site, "2.2", state="status"))
    assert not changed(result) and result["state"] == "running" and result["version"] == "2.2"
    pid = result["pid"]
    restarted = ansible.module(MODULE, args(site, "2.2", state="restarted"))
    assert changed(restarted) and restarted["pid"] != pid and status(site)["pid"] == restarted["pid"]


def test_stops_an_engine_started_by_hand(ansible, esite):
    """No pid file: the engine is found by its command line (tractor-engine --configdir <dir>)."""
    site = esite
    engine = site.start_engine("2.2")
    result = ansible.module(MODULE, args(site, "2.2", state="stopped"))
    assert changed(result) and result["commands"] == [f"kill -TERM {engine.proc.pid}"]
    assert engine.proc.wait(timeout=30) == 0


# -- upgrade -------------------------------------------------------------------------------------
def test_started_with_another_version_upgrades(ansible, esite):
    site = esite
    start(ansible, site, "2.2")
    jid = api(site).spool({"title": "survives the upgrade", "tasks": [{"title": "t", "argv": ["true"]}]})
    old_pid = status(site)["pid"]

    check = ansible.module(MODULE, args(site, "2.4", state="started"), check=True, diff=True)
    assert changed(check)
    assert shown_diff(check, '"version": "2.2"', '"version": "2.4"')
    assert check["commands"][0] == f"kill -TERM {old_pid}"
    assert status(site)["version"] == "2.2"

    log_path = os.path.join(site.data_dir, "engine.log")
    rebuilds = open(log_path).read().count("Upgrading database schema from version 2.2-4 to version 2.2-4.")
    result = ansible.module(MODULE, args(site, "2.4", state="started"), diff=True)
    assert changed(result)
    assert result["previous_version"] == "2.2" and result["version"] == "2.4" and result["build"] == "2091325"
    assert shown_diff(result, '"version": "2.2"', '"version": "2.4"')
    st = status(site)
    assert st["_server"].startswith("Pixar_Tractor/2.4") and st["schema-version"] == "2.2-4"  # §8: same schema
    assert jid in jobs(site)
    # the 2.4 tools rebuilt the views and functions for their module checksum
    log = open(log_path).read()
    assert log.count("Upgrading database schema from version 2.2-4 to version 2.2-4.") == rebuilds + 1

    assert not changed(ansible.module(MODULE, args(site, "2.4", state="started")))


def test_downgrade_without_restore_fails_with_the_engine_log(ansible, esite):
    """2.1 refuses the 2.2 schema: the health check fails and quotes the engine's reason."""
    site = esite
    start(ansible, site, "2.2")
    result = ansible.module(MODULE, args(site, "2.1", state="started", timeout=20))
    assert result.get("failed")
    assert "did not become healthy" in result["msg"] or "exited during start-up" in result["msg"]
    assert "Look at the engine log" in result["msg"] and "Last log lines:" in result["msg"]
    assert any("which is newer than this tractor-dbctl" in line for line in result["log_tail"]), result["log_tail"]
    assert result["changed"] is True  # the 2.2 engine was stopped


# -- dispatching -----------------------------------------------------------------------------------
def test_job_pause_pauses_and_resumes_exactly_its_jobs(ansible, esite):
    site = esite
    start(ansible, site, "2.2")
    client = api(site)
    sleeper = {"tasks": [{"title": "t", "argv": ["sleep", "1"]}]}
    a = client.spool(dict(sleeper, title="a"))
    b = client.spool(dict(sleeper, title="b"))
    by_user = client.spool(dict(sleeper, title="paused by a user"))
    finished = client.spool({"title": "nothing to run", "tasks": [{"title": "group"}]})
    pause_job(site, by_user)
    state_file = os.path.join(site.data_dir, STATE_FILE)
    pause = args(site, "2.2", dispatching="paused")

    result = ansible.module(MODULE, pause, check=True)
    assert changed(result) and result["dispatching"]["paused_now"] == [a, b]
    assert f"queue?q=jattr&jid={a}&set_pause=1" in result["commands"]
    assert jobs(site)[a]["pausetime"] is None and not os.path.exists(state_file)

    result = ansible.module(MODULE, pause, diff=True)
    assert changed(result) and result["dispatching"]["paused_jobs"] == [a, b]
    now = jobs(site)
    assert now[a]["pausetime"] and now[b]["pausetime"] and now[by_user]["pausetime"]
    assert now[finished]["pausetime"] is None
    assert json.load(open(state_file))["paused_jobs"] == [a, b]
    assert shown_diff(result, '"paused_jobs": []', f"{b}")

    assert not changed(ansible.module(MODULE, pause))

    late = client.spool(dict(sleeper, title="spooled after the pause"))
    result = ansible.module(MODULE, pause)
    assert changed(result) and result["dispatching"]["paused_now"] == [late]
    assert json.load(open(state_file))["paused_jobs"] == [a, b, late]

    resume = args(site, "2.2", dispatching="running")
    result = ansible.module(MODULE, resume, check=True)
    assert changed(result) and jobs(site)[a]["pausetime"] and os.path.exists(state_file)

    result = ansible.module(MODULE, resume)
    assert changed(result) and result["dispatching"]["resumed_now"] == [a, b, late]
    now = jobs(site)
    assert all(now[j]["pausetime"] is None for j in (a, b, late))
    assert now[by_user]["pausetime"]  # paused by a user: stays paused
    assert not os.path.exists(state_file)

    assert not changed(ansible.module(MODULE, resume))


def test_engine_switch(ansible, esite):
    site = esite
    start(ansible, site, "2.4")
    pause = args(site, "2.4", dispatching="paused", dispatch_method="engine_switch")
    result = ansible.module(MODULE, pause, check=True)
    assert changed(result) and result["commands"] == ["ctrl?q=dispatching&pause=1"]
    assert status(site)["dispatching"]["paused"] is False
    result = ansible.module(MODULE, pause)
    assert changed(result) and result["dispatching"]["engine_paused"] is True
    assert status(site)["dispatching"]["paused"] is True
    assert not changed(ansible.module(MODULE, pause))
    resume = args(site, "2.4", dispatching="running", dispatch_method="engine_switch")
    assert changed(ansible.module(MODULE, resume))
    assert status(site)["dispatching"]["paused"] is False
    assert not changed(ansible.module(MODULE, resume))


def test_start_paused(ansible, esite):
    site = esite
    result = start(ansible, site, "2.4", start_paused=True)
    assert "--paused" in result["commands"][-1]
    assert status(site)["dispatching"]["paused"] is True
    # the module reads the invented engine-wide switch only with dispatch_method=engine_switch
    assert result["dispatching"]["engine_paused"] is None


def test_dispatching_needs_a_running_engine(ansible, esite):
    result = ansible.module(MODULE, args(esite, "2.2", dispatching="paused"))
    assert result.get("failed") and "need a running engine" in result["msg"]


# -- downgrade steps 1-3: pause, retry active (with a real blade), kill ----------------------------
def test_pause_retry_active_kill(ansible, esite):
    site = esite
    start(ansible, site, "2.4")
    site.start_blade("2.4", "blade-a")
    marker = os.path.join(site.data_dir, "runs")
    client = api(site)
    jid = client.spool({"title": "retry me", "tasks": [
        {"title": "t", "argv": ["sh", "-c", f"echo run >> {marker}; sleep 60"]}]})
    client.wait_tasks(jid, lambda ts: ts[0]["state"] == "active", timeout=30)

    step12 = args(site, "2.4", dispatching="paused", retry_active=True)
    result = ansible.module(MODULE, step12, check=True)
    assert changed(result) and result["retried_tasks"] == 1
    assert any(c.endswith("--force --yes retry active") for c in result["commands"])
    assert client.tasks(jid)[0]["state"] == "active"

    result = ansible.module(MODULE, step12)
    assert changed(result) and result["retried_tasks"] == 1
    assert result["dispatching"]["paused_jobs"] == [jid] and result["dispatching"]["confirmed"]
    # When the module returned, the blade had killed the command and told the engine so.
    assert result["retry"]["confirmed"] and result["retry"]["tasks"] == [[jid, 1]]
    assert [inv["stoptime"] is not None and inv["current"] in (False, "f") for inv in client.invocations(jid)] == [True]
    task = client.tasks(jid)[0]
    assert task["state"] == "ready" and task["retrycount"] == 1  # retried, and held by the pause
    time.sleep(3)
    assert client.tasks(jid)[0]["state"] == "ready"

    assert not changed(ansible.module(MODULE, step12))  # paused: nothing active, nothing to retry

    # resuming reruns the retried command on the blade
    assert changed(ansible.module(MODULE, args(site, "2.4", dispatching="running")))
    wait_for(lambda: os.path.exists(marker) and open(marker).read().count("run") == 2, 30,
             "the retried command to run again")
    client.wait_tasks(jid, lambda ts: ts[0]["state"] == "active", timeout=30)

    # all three downgrade steps in one task, in the runbook's order
    result = ansible.module(MODULE, args(site, "2.4", dispatching="paused", retry_active=True, state="killed"))
    assert changed(result) and result["retried_tasks"] == 1 and result["state"] == "stopped"
    assert result["commands"][-1].startswith("kill -KILL") or "kill -KILL" in " ".join(result["commands"])
    assert status(site) is None
    again = ansible.module(MODULE, args(site, "2.4", dispatching="paused", retry_active=True, state="killed"))
    assert not changed(again)


def test_a_blade_that_polls_every_30_s_makes_step_2_wait(ansible, esite):
    """A blade hears of the retry only at its next poll: the kill of step 3 waits for it, not the clock."""
    site = esite
    start(ansible, site, "2.4")
    site.start_blade("2.4", "slow", "--poll", "30")
    client = api(site)
    jid = client.spool({"title": "slow blade", "tasks": [{"title": "t", "argv": ["sleep", "600"]}]})
    client.wait_tasks(jid, lambda ts: ts[0]["state"] == "active", timeout=90)

    result = ansible.module(MODULE, args(site, "2.4", dispatching="paused", retry_active=True, state="killed",
                                         confirm_timeout=180))
    assert changed(result) and result["state"] == "stopped" and result["retry"]["confirmed"]
    assert any("waiting for 1 command(s) to end on their blades" in line for line in result["progress"])
    lines = open(os.path.join(site.base, "blade-slow.log"), encoding="utf-8").read().splitlines()
    asked = [i for i, line in enumerate(lines) if f"engine asked to kill J{jid} T1 " in line]
    reported = [i for i, line in enumerate(lines) if re.search(rf"J{jid} T1 \S+ \S+: reported rc=", line)]
    lost = [i for i, line in enumerate(lines) if "unreachable" in line]
    assert asked and reported and (not lost or asked[0] < reported[0] < lost[0]), "\n".join(lines[-30:])


def test_retry_times_out_with_the_engine_up_when_no_blade_reports(ansible, esite):
    """The blade is stopped (SIGSTOP) while its command runs: step 2 gives up, step 3 never runs."""
    site = esite
    start(ansible, site, "2.4")
    blade = site.start_blade("2.4", "frozen")
    client = api(site)
    jid = client.spool({"title": "frozen blade", "tasks": [{"title": "t", "argv": ["sleep", "600"]}]})
    client.wait_tasks(jid, lambda ts: ts[0]["state"] == "active", timeout=60)
    os.killpg(blade.pid, signal.SIGSTOP)
    try:
        result = ansible.module(MODULE, args(site, "2.4", dispatching="paused", retry_active=True, state="killed",
                                             confirm_timeout=3))
    finally:
        os.killpg(blade.pid, signal.SIGCONT)
    assert result.get("failed") and "1 command(s) still run" in result["msg"] and "on blade frozen" in result["msg"]
    assert status(site)["version"] == "2.4"                 # step 3 did not run
    assert jobs(site)[jid]["pausetime"]                      # the jobs stay paused
    assert not any(c.startswith("kill ") for c in result["commands"])


# -- stop escalation and health failure ----------------------------------------------------------
def test_stop_escalates_to_sigkill(ansible, esite):
    site = esite
    start(ansible, site, "2.2")
    pid = status(site)["pid"]
    write_faults(site, "engine-hangs-on-sigterm")
    stop = args(site, "2.2", state="stopped", stop_timeout=2)

    result = ansible.module(MODULE, stop, check=True)
    assert changed(result) and not result["escalated"] and status(site)["pid"] == pid

    result = ansible.module(MODULE, stop)
    assert changed(result) and result["escalated"] is True
    assert result["commands"][:2] == [f"kill -TERM {pid}", f"kill -KILL {pid} (no exit 2 s after SIGTERM)"]
    assert any("--stop-for-engine" in c for c in result["commands"])
    assert status(site) is None and not engine_pids(site)
    assert "SIGTERM ignored" in open(os.path.join(site.data_dir, "engine.log")).read()
    # what the engine would have done on exit: PostgreSQL stopped (DBShutdown True)
    assert "is NOT running" in site.dbctl("2.2", "--status").stderr
    assert not changed(ansible.module(MODULE, stop))


def test_stop_without_escalation_fails(ansible, esite):
    site = esite
    start(ansible, site, "2.2")
    write_faults(site, "engine-hangs-on-sigterm")
    result = ansible.module(MODULE, args(site, "2.2", state="stopped", stop_timeout=1, escalate=False))
    assert result.get("failed") and "did not exit within 1 s" in result["msg"] and "escalate=false" in result["msg"]
    assert status(site)["version"] == "2.2"


def test_unhealthy_engine_fails_with_log_tail(ansible, esite):
    site = esite
    write_faults(site, "engine-unhealthy")
    # The timeout must outlast the engine's own start (initdb of a fresh cluster) on a busy machine,
    # so that what is left is the engine answering 503.
    result = ansible.module(MODULE, args(site, "2.2", state="started", timeout=20))
    assert result.get("failed")
    msg = result["msg"]
    assert "tractor-engine 2.2 did not become healthy within 20 s" in msg
    assert "HTTP 503" in msg and "engine-unhealthy" in msg
    assert os.path.join(site.data_dir, "engine.log") in msg and "Last log lines:" in msg
    assert "tractor-dbctl --configdir" in msg
    assert any("engine ready" in line for line in result["log_tail"])
    assert result["changed"] is True


def test_missing_install_fails_in_check_mode(ansible, esite, tmp_path):
    site = esite
    broken = os.path.join(site.base, "Tractor-9.9")
    os.makedirs(os.path.join(broken, "bin"))
    result = ansible.module(MODULE, {"install_dir": broken, "config_dir": site.config_dir, "state": "started",
                                     "service_manager": "direct"}, check=True)
    assert result.get("failed") and "tractor-engine is missing or not executable" in result["msg"]


# -- SysV init script from the install's lib/SystemServices ------------------------------------------
@pytest.fixture
def sysv(esite, installs):
    """The 2.2 init script copied to <site>/init.d, its settings in <site>/sysconfig/pixar."""
    site = esite
    init_dir = os.path.join(site.base, "init.d")
    os.makedirs(init_dir)
    script = os.path.join(init_dir, "tractor-engine")
    shutil.copy(os.path.join(installs("2.2"), "lib", "SystemServices", "tractor-engine"), script)
    os.chmod(script, 0o755)
    settings = os.path.join(site.base, "sysconfig", "pixar")
    os.makedirs(os.path.dirname(settings))
    with open(settings, "w", encoding="utf-8") as handle:
        handle.write("# site settings\n"
                     f"TRACTOR_CONFIG_DIR={site.config_dir}\n"
                     f"TRACTOR_ENGINE_PIDFILE={site.data_dir}/sysv-engine.pid\n"
                     f'TRACTOR_ENGINE_OPTIONS="--log={site.data_dir}/sysv-engine.log"\n'
                     "TRACTOR_STOP_TIMEOUT=10\n")
    env = {"PIXAR_SYSCONFIG": settings}  # the emulated script's settings-path override (a test hook)
    yield site, script, settings, env
    subprocess.run(["sh", script, "stop"], env=dict(os.environ, **env), capture_output=True, timeout=60)


def test_sysv_start_upgrade_stop(ansible, sysv):
    site, script, settings, env = sysv
    common = {"service_manager": "sysv", "init_script": script, "service_settings": settings}

    def init_status():
        return subprocess.run(["sh", script, "status"], env=dict(os.environ, **env), capture_output=True).returncode

    assert init_status() == 3
    result = ansible.module(MODULE, args(site, "2.2", state="started", **common), check=True, env=env)
    assert changed(result) and result["commands"][-1] == f"{script} start"
    assert "TRACTOR_INSTALL_DIR=" not in open(settings).read() and init_status() == 3

    result = ansible.module(MODULE, args(site, "2.2", state="started", **common), diff=True, env=env)
    assert changed(result) and result["service_manager"]["name"] == "sysv"
    assert result["pidfile"] == f"{site.data_dir}/sysv-engine.pid"
    assert result["log_file"] == f"{site.data_dir}/sysv-engine.log"
    text = open(settings).read()
    assert f"TRACTOR_INSTALL_DIR={site.installs('2.2')}" in text
    assert text.startswith("# site settings\n")  # the rest of the file is kept
    assert init_status() == 0 and status(site)["version"] == "2.2"
    assert result["pid"] == int(open(f"{site.data_dir}/sysv-engine.pid").read())
    assert shown_diff(result, '"TRACTOR_INSTALL_DIR": null', f'"TRACTOR_INSTALL_DIR": "{site.installs("2.2")}"')

    assert not changed(ansible.module(MODULE, args(site, "2.2", state="started", **common), env=env))

    # auto picks the init script when it exists (no systemd here)
    auto = ansible.module(MODULE, args(site, "2.2", state="status", service_manager="auto", init_script=script,
                                       service_settings=settings), env=env)
    assert auto["service_manager"]["name"] == "sysv" and auto["state"] == "running"

    # another version: the settings point at the new install, the same (2.2) init script starts it
    result = ansible.module(MODULE, args(site, "2.4", state="started", **common), env=env)
    assert changed(result) and result["previous_version"] == "2.2" and result["version"] == "2.4"
    # the install is selected before anything is stopped
    assert result["commands"] == [f"set TRACTOR_INSTALL_DIR={site.installs('2.4')} in {settings}", f"{script} stop",
                                  f"{script} start"]
    assert f"TRACTOR_INSTALL_DIR={site.installs('2.4')}" in open(settings).read()
    assert status(site)["_server"].startswith("Pixar_Tractor/2.4") and init_status() == 0

    result = ansible.module(MODULE, args(site, "2.4", state="stopped", **common), check=True, env=env)
    assert changed(result) and init_status() == 0
    result = ansible.module(MODULE, args(site, "2.4", state="stopped", **common), env=env)
    assert changed(result) and result["commands"] == [f"{script} stop"]
    assert init_status() == 3 and status(site) is None
    assert not changed(ansible.module(MODULE, args(site, "2.4", state="stopped", **common), env=env))

    # killed with sysv: SIGKILL to the pid from the script's pid file; status then says "dead" (1)
    ansible.module(MODULE, args(site, "2.4", state="started", **common), env=env)
    pid = status(site)["pid"]
    result = ansible.module(MODULE, args(site, "2.4", state="killed", **common), env=env)
    assert changed(result) and result["commands"] == [f"kill -KILL {pid}"]  # sysv: the pid file stays
    assert init_status() == 1
    assert not changed(ansible.module(MODULE, args(site, "2.4", state="killed", **common), env=env))
    assert re.search(r"^TRACTOR_STOP_TIMEOUT=10$", open(settings).read(), re.M)


def test_sysv_script_with_the_install_hard_coded_is_refused_before_the_stop(ansible, sysv):
    site, script, settings, env = sysv
    common = {"service_manager": "sysv", "init_script": script, "service_settings": settings}
    assert changed(ansible.module(MODULE, args(site, "2.2", state="started", **common), env=env))
    pid = status(site)["pid"]
    # the site edits its script to run 2.2 by path, as many do
    text = open(script).read().replace("$TRACTOR_INSTALL_DIR/bin/", f"{site.installs('2.2')}/bin/")
    assert f"{site.installs('2.2')}/bin/" in text
    with open(script, "w") as handle:
        handle.write(text)
    before = open(settings).read()
    result = ansible.module(MODULE, args(site, "2.4", state="started", **common), env=env)
    assert result.get("failed") and result["commands"] == []
    assert result["msg"].startswith(f"{script} cannot be made to start {site.installs('2.4')}: the init script runs "
                                    f"{site.installs('2.2')}/bin/tractor-engine itself")
    assert "Nothing was stopped" in result["msg"] and "service_manager=direct" in result["msg"]
    assert status(site)["pid"] == pid and status(site)["version"] == "2.2" and open(settings).read() == before
