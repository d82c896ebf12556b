"""Tests of the emulated tractor-blade against the real emulated engine (fact sheet §3, §6, §7.5).

Real processes throughout: an installed engine with its own PostgreSQL, installed blades (run as
EngineOwner by the ``site`` fixture), real commands.  The blade/engine exchange is the INVENTED
blade protocol of emulator/PROTOCOL.md.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tractor_emulator import versions

POLL = "0.2"  # seconds between the blade's exchanges (INVENTED --poll), to keep the tests quick


def workdir(site) -> str:
    """A directory the commands (running as EngineOwner) can write markers into."""
    path = os.path.join(site.base, "work")
    os.makedirs(path, exist_ok=True)
    os.chown(path, site.owner.pw_uid, site.owner.pw_gid)
    return path


def cmd_log(site, jid: int, tid: int) -> str:
    """The task's log in the §3 layout: <data>/cmd-logs/<owner>/J<jid>/T<tid>.log."""
    path = os.path.join(site.data_dir, "cmd-logs", site.owner.pw_name, f"J{jid}", f"T{tid}.log")
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def blade_log(site, name: str) -> str:
    path = os.path.join(site.base, f"blade-{name}.log")
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def states(tasks) -> list[str]:
    return [t["state"] for t in tasks]


def wait_file(path: str, timeout: float = 30.0) -> str:
    def read():
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            return text if text.endswith("\n") else ""
        except OSError:
            return ""
    return wait_for(read, timeout, path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(") ", 1)[1][0] != "Z"  # a zombie has finished
    except OSError:
        return False


# -- command line (§7.5, DOC-BLADE) --------------------------------------------------------------------
def test_version_and_help(site):
    info = versions.get("2.4")
    result = site.run([site.bin("2.4", "tractor-blade"), "--version"])
    assert result.returncode == 0
    assert result.stdout.startswith(f"tractor-blade 2.4 (") and info.build in result.stdout
    result = site.run([site.bin("2.4", "tractor-blade"), "-h"])
    assert result.returncode == 0
    for option in ("--engine", "--slots", "--hname", "--profile", "--log", "--daemon", "--pidfile", "-L"):
        assert option in result.stdout
    result = site.run([site.bin("2.4", "tractor-blade"), "--no-such-option"])
    assert result.returncode == 2 and "--no-such-option" in result.stderr


# -- dispatch, output, exit status (§3, §6) -----------------------------------------------------------
def test_command_runs_and_its_output_lands_in_cmd_logs(site):
    engine = site.start_engine("2.2")
    work = workdir(site)
    jid = engine.spool({"title": "hello", "tasks": [
        {"title": "one", "argv": ["sh", "-c", "echo out; echo err >&2; "
                                  "echo env $TR_ENV_JID $TR_ENV_TID $TR_ENV_CID $TR_ENV_IID $TR_ENV_OWNER"]},
        {"title": "two", "cmds": [{"argv": ["sh", "-c", f"pwd > {work}/pwd.txt; echo first"]},
                                  {"argv": ["echo", "second"]}]},
    ]})
    site.start_blade("2.2", "b1", "--poll", POLL, "--slots", "2")
    tasks = engine.wait_tasks(jid, lambda ts: states(ts) == ["done", "done"])
    assert {t["blade"] for t in tasks} == {"b1"}
    out = cmd_log(site, jid, 1)
    assert "out\n" in out and "err\n" in out  # stdout and stderr merged into the one log
    assert f"env {jid} 1 1 1 {site.owner.pw_name}\n" in out
    assert cmd_log(site, jid, 2) == "first\nsecond\n"  # a task's commands in order, one log per task
    assert wait_file(os.path.join(work, "pwd.txt")).strip() == site.base  # no spool cwd: the blade's cwd
    blades = {b["name"]: b for b in engine.select("blade", "", "name,version,numslots,port,status")}
    assert blades["b1"]["version"] == "2.2" and blades["b1"]["numslots"] == 2
    assert blades["b1"]["port"] == 9005 and blades["b1"]["status"] == "up"
    feed = {b["hnm"]: b for b in engine.call("monitor?q=blades")[2]["blades"]}  # the Dashboard's (§6.6)
    assert (feed["b1"]["vers"], feed["b1"]["note"], feed["b1"]["lp"]) == ("2.2", "up", 9005)
    log = blade_log(site, "b1")
    assert "registered as 'b1'" in log and f"J{jid} T1 C1 I1: reported rc=0" in log


def test_two_blades_on_one_host_share_the_work(site):
    engine = site.start_engine("2.2")
    jid = engine.spool({"title": "pair", "tasks": [
        {"title": f"t{n}", "argv": ["sh", "-c", "sleep 1.5; echo $TR_ENV_TID"]} for n in range(4)]})
    site.start_blade("2.2", "left", "--poll", POLL)
    site.start_blade("2.2", "right", "--poll", POLL)
    tasks = engine.wait_tasks(jid, lambda ts: states(ts) == ["done"] * 4)
    assert {t["blade"] for t in tasks} == {"left", "right"}
    for task in tasks:
        assert cmd_log(site, jid, task["tid"]) == f"{task['tid']}\n"


def test_nonzero_exit_marks_the_task_error(site):
    engine = site.start_engine("2.2")
    jid = engine.spool({"title": "bad", "tasks": [
        {"title": "exit3", "argv": ["sh", "-c", "echo boom; exit 3"]},
        {"title": "missing", "argv": ["/nonexistent/render-tool", "-x"]},
        {"title": "after-error", "cmds": [{"argv": ["false"]}, {"argv": ["echo", "never"]}]},
    ]})
    site.start_blade("2.2", "b1", "--poll", POLL)
    engine.wait_tasks(jid, lambda ts: states(ts) == ["error", "error", "error"])
    assert cmd_log(site, jid, 1) == "boom\n"
    assert "cannot launch" in cmd_log(site, jid, 2)  # INVENTED message, rc 127 like sh
    assert "never" not in cmd_log(site, jid, 3)  # an error stops the task's later commands
    log = blade_log(site, "b1")
    assert f"J{jid} T1 C1 I1: reported rc=3" in log and f"J{jid} T2 C2 I1: reported rc=127" in log


def test_blade_started_before_the_engine_waits_for_it(site):
    blade = site.start_blade("2.2", "early", "--poll", POLL)
    wait_for(lambda: "unreachable" in blade_log(site, "early"), 10, "the blade to try the engine")
    engine = site.start_engine("2.2")
    jid = engine.spool({"title": "late", "tasks": [{"title": "t", "argv": ["echo", "late engine"]}]})
    engine.wait_tasks(jid, lambda ts: states(ts) == ["done"])
    assert cmd_log(site, jid, 1) == "late engine\n"
    assert blade.poll() is None


# -- engine restart while commands run (§7.5, §8) -----------------------------------------------------
@pytest.mark.parametrize("restart_version", ["2.2", "2.4"])
def test_engine_killed_while_a_command_runs(site, restart_version):
    """The command keeps running, its output and status wait for the engine, and the blade
    re-registers with the new engine -- also when that one is a newer version (§7.5, DOC-UPG)."""
    engine = site.start_engine("2.2")
    work = workdir(site)
    release = os.path.join(work, "release")
    jid = engine.spool({"title": "long", "tasks": [{"title": "frame", "argv": [
        "sh", "-c", f"echo $$ > {work}/pid; echo started; "
                    f"while [ ! -e {release} ]; do sleep 0.1; done; echo finished; exit 0"]}]})
    site.start_blade("2.2", "b1", "--poll", POLL)
    engine.wait_tasks(jid, lambda ts: states(ts) == ["active"])
    pid = int(wait_file(os.path.join(work, "pid")))
    wait_for(lambda: "started" in cmd_log(site, jid, 1), 10, "first output")

    engine.kill()
    time.sleep(1.0)
    assert alive(pid)  # a command running when the engine stops keeps running
    with open(release, "w", encoding="utf-8"):
        pass
    wait_for(lambda: not alive(pid), 10, "the command to finish while the engine is down")
    wait_for(lambda: "unreachable" in blade_log(site, "b1"), 10, "the blade to notice")

    engine = site.start_engine(restart_version)
    tasks = engine.wait_tasks(jid, lambda ts: states(ts) == ["done"])
    assert tasks[0]["blade"] == "b1"
    assert cmd_log(site, jid, 1) == "started\nfinished\n"  # every byte, once, in order
    assert engine.select("blade", "name=b1", "status") == [{"status": "up"}]
    log = blade_log(site, "b1")
    assert log.count("registered as 'b1'") == 2 and "answers again" in log
    # the blade keeps working for the new engine
    jid2 = engine.spool({"title": "next", "tasks": [{"title": "t", "argv": ["echo", "more"]}]})
    engine.wait_tasks(jid2, lambda ts: states(ts) == ["done"])
    assert cmd_log(site, jid2, 1) == "more\n"


# -- kill requests: retry of an active task (§6.3, DOC-UPG downgrade step 2) ---------------------------
def test_retry_kills_the_running_command_and_reruns_it(site):
    engine = site.start_engine("2.2")
    work = workdir(site)
    marker = os.path.join(work, "ran-once")
    script = (f"if [ -e {marker} ]; then echo second run $TR_ENV_IID; exit 0; fi; touch {marker}; "
              f"echo $$ > {work}/pid; echo first run $TR_ENV_IID; "
              "trap 'echo terminated; exit 143' TERM; sleep 60 & wait")
    jid = engine.spool({"title": "retry", "tasks": [{"title": "t", "argv": ["sh", "-c", script]}]})
    site.start_blade("2.2", "b1", "--poll", POLL)
    engine.wait_tasks(jid, lambda ts: states(ts) == ["active"])
    pid = int(wait_file(os.path.join(work, "pid")))
    wait_for(lambda: "first run 1" in cmd_log(site, jid, 1), 10, "first output")

    reply = engine.call(f"queue?q=tretry&jid={jid}&tid=1", session=True)[2]
    assert reply["rc"] == 0
    engine.wait_tasks(jid, lambda ts: states(ts) == ["done"], timeout=30)
    assert not alive(pid)
    # retries append to the same log (§3): first run, its TERM handler, the rerun
    assert cmd_log(site, jid, 1) == "first run 1\nterminated\nsecond run 2\n"
    log = blade_log(site, "b1")
    assert f"engine asked to kill J{jid} T1 C1 I1" in log
    assert f"J{jid} T1 C1 I1: reported rc=143\n" in log  # the report the retry waited for
    first = engine.select("invocation", f"jid={jid} and iid=1", "current,rcode,stoptime")[0]
    assert first["current"] is False and first["rcode"] == 143 and first["stoptime"] is not None


def test_retried_task_stays_active_until_a_slow_blade_kills_the_command(site):
    """[I] The task is active, its invocation current and unstopped, until the blade reports the
    kill; a blade with a long poll interval makes that visible."""
    engine = site.start_engine("2.2")
    work = workdir(site)
    jid = engine.spool({"title": "slow", "tasks": [{"title": "t", "argv": [
        "sh", "-c", f"echo $$ > {work}/pid; sleep 60"]}]})
    site.start_blade("2.2", "b1", "--poll", "4")
    engine.wait_tasks(jid, lambda ts: states(ts) == ["active"])
    pid = int(wait_file(os.path.join(work, "pid")))
    assert engine.call(f"queue?q=jretry&jid={jid}&tsubset=active", session=True)[2]["retried"] == [1]
    invocation = "jid,tid,cid,iid,current,stoptime,rcode"
    assert engine.tasks(jid)[0]["state"] == "active" and alive(pid)
    assert engine.select("invocation", f"jid={jid}", invocation) == [
        {"jid": jid, "tid": 1, "cid": 1, "iid": 1, "current": True, "stoptime": None, "rcode": None}]
    # the blade's next heartbeat kills it; its report makes the task ready and it runs again
    tasks = engine.wait_tasks(jid, lambda ts: ts[0]["retrycount"] == 1, timeout=30)
    assert tasks[0]["state"] in ("ready", "active")
    assert not alive(pid)
    first = engine.select("invocation", f"jid={jid} and iid=1", invocation)[0]
    assert first["current"] is False and first["rcode"] == -15 and first["stoptime"] is not None
    log = blade_log(site, "b1")
    assert f"engine asked to kill J{jid} T1 C1 I1" in log and f"J{jid} T1 C1 I1: reported rc=-15\n" in log


def test_kill_escalates_to_sigkill(site):
    engine = site.start_engine("2.2")
    work = workdir(site)
    jid = engine.spool({"title": "stubborn", "tasks": [{"title": "t", "argv": [
        "sh", "-c", f"trap '' TERM; echo $$ > {work}/pid; echo stubborn; sleep 60"]}]})
    site.start_blade("2.2", "b1", "--poll", POLL)
    engine.wait_tasks(jid, lambda ts: states(ts) == ["active"])
    pid = int(wait_file(os.path.join(work, "pid")))
    engine.call(f"queue?q=jinterrupt&jid={jid}", session=True)
    time.sleep(2)
    assert alive(pid)  # ignores SIGTERM ...
    wait_for(lambda: not alive(pid), 10, "SIGKILL after the grace period")  # ... not SIGKILL
    wait_for(lambda: f"J{jid} T1 C1 I1: reported rc=-9" in blade_log(site, "b1"), 10, "the report")
    assert engine.tasks(jid)[0]["state"] == "error"


# -- the blade-loses-engine fault hook (emulator-only) -----------------------------------------------
def test_blade_loses_engine_fault_delays_but_keeps_the_result(site):
    engine = site.start_engine("2.2")
    jid = engine.spool({"title": "lost", "tasks": [{"title": "t", "argv": ["sh", "-c", "echo done quickly"]}]})
    site.start_blade("2.2", "b1", "--poll", POLL, env={"TRACTOR_EMULATOR_FAULTS": "blade-loses-engine=4"})
    engine.wait_tasks(jid, lambda ts: states(ts) == ["active"])
    started = time.monotonic()
    time.sleep(2)
    # the command finished long ago, but the blade cannot tell the engine yet
    assert engine.tasks(jid)[0]["state"] == "active" and cmd_log(site, jid, 1) == ""
    engine.wait_tasks(jid, lambda ts: states(ts) == ["done"], timeout=30)
    assert time.monotonic() - started > 2.5
    assert cmd_log(site, jid, 1) == "done quickly\n"
    log = blade_log(site, "b1")
    assert "fault blade-loses-engine" in log and log.count("registered as 'b1'") == 2
    # only the first dispatch triggers it: the next job runs at once
    jid2 = engine.spool({"title": "after", "tasks": [{"title": "t", "argv": ["echo", "x"]}]})
    engine.wait_tasks(jid2, lambda ts: states(ts) == ["done"], timeout=10)


# -- stopping the blade (§7.3 services stop it with SIGTERM) --------------------------------------------
def test_sigterm_kills_running_commands_reports_and_exits_0(site):
    engine = site.start_engine("2.2")
    work = workdir(site)
    jid = engine.spool({"title": "stop", "tasks": [{"title": "t", "argv": [
        "sh", "-c", f"echo $$ > {work}/pid; echo working; sleep 60"]}]})
    blade = site.start_blade("2.2", "b1", "--poll", POLL)
    engine.wait_tasks(jid, lambda ts: states(ts) == ["active"])
    pid = int(wait_file(os.path.join(work, "pid")))
    blade.send_signal(signal.SIGTERM)
    assert blade.wait(timeout=15) == 0
    assert not alive(pid)
    tasks = engine.wait_tasks(jid, lambda ts: states(ts) == ["error"], timeout=5)  # rc -15 delivered
    assert tasks[0]["state"] == "error"
    assert cmd_log(site, jid, 1) == "working\n"
    log = blade_log(site, "b1")
    assert f"J{jid} T1 C1 I1: reported rc=-15" in log and "tractor-blade exits" in log


def test_daemon_pidfile_and_log_file(site):
    engine = site.start_engine("2.2")
    work = workdir(site)
    pidfile, logfile = os.path.join(work, "blade.pid"), os.path.join(work, "blade.log")
    launcher = site.start_blade("2.2", "d1", "--poll", POLL, "--daemon", "--pidfile", pidfile, "--log", logfile)
    assert launcher.wait(timeout=15) == 0  # the launcher returns once the daemon is up
    pid = int(open(pidfile, encoding="utf-8").read())
    assert alive(pid)
    jid = engine.spool({"title": "d", "tasks": [{"title": "t", "argv": ["echo", "from daemon"]}]})
    engine.wait_tasks(jid, lambda ts: states(ts) == ["done"])
    assert cmd_log(site, jid, 1) == "from daemon\n"
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), 15, "the daemon to exit")
    assert not os.path.exists(pidfile)
    text = open(logfile, encoding="utf-8").read()
    assert "registered as 'd1'" in text and "tractor-blade exits" in text
