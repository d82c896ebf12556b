"""Contract tests of the emulated tractor-engine (fact sheet §6, §7.2, §8, §4.2).

Real engine processes on free ports with their own PostgreSQL.  Where a test needs a blade it
speaks the blade protocol itself over HTTP (emulator/PROTOCOL.md); the real tractor-blade has its
own tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time

import pytest

from tractor_emulator import versions


def fake_blade_run(engine, name="b1"):
    """Take one command as a blade would; returns the command dict or None."""
    return engine.call(f"task?q=nextcmd&blade={name}&slots=1")[2]["cmd"]


def finish(engine, cmd, rc=0, name="b1"):
    return engine.call(
        f"task?q=cstatus&jid={cmd['jid']}&tid={cmd['tid']}&cid={cmd['cid']}&iid={cmd['iid']}&rc={rc}&blade={name}")[2]


def pg_running(site, version="2.2") -> bool:
    return "is running" in site.dbctl(version, "--status").stderr


def tasks_and_invocations(engine, jid):
    tasks = engine.select("task", f"jid={jid}", "jid,tid,state,retrycount")
    invocations = engine.select("invocation", f"jid={jid}", "jid,tid,cid,iid,current,stoptime,rcode")
    return tasks, invocations


# -- §6.1, §6.5 version banner and header --------------------------------------------------------
# LOG-22: "Tractor 2.2 (Feb 15 2017 11:38:27 1715407 linux-ix86-64-gcc44icc150-release)"
BANNER = r"Tractor {v} \(\w{{3}} [ \d]\d \d{{4}} \d\d:\d\d:\d\d \d+ \S+\)"


@pytest.mark.parametrize("version", ["2.2", "2.4"])
def test_status_and_version_header(site, version):
    engine = site.start_engine(version)
    status, headers, reply = engine.call("ctrl?q=status")
    assert status == 200 and reply == {"rc": 0, "msg": "ok"}  # only rc is public (§6.6)
    assert headers["Server"].startswith(f"Pixar_Tractor/{version} (")  # §6.1
    assert re.fullmatch(r"Pixar_Tractor/" + BANNER.format(v=re.escape(version))[len("Tractor "):],
                        headers["Server"]), headers["Server"]
    assert headers["Content-Type"].startswith("application/json")
    banner = site.run([site.bin(version, "tractor-engine"), "--version"])
    assert banner.returncode == 0 and re.fullmatch(BANNER.format(v=re.escape(version)), banner.stdout.strip())
    assert banner.stdout.strip() in site.engine_log()  # the same banner opens the log (§7.2)
    login = engine.call("monitor?q=login&user=ann")[2]
    assert login["login"] == "ok" and login["user"] == "ann" and login["engine"] == banner.stdout.strip()
    # the emulator-only introspection request (PROTOCOL.md)
    info = engine.status()
    assert info["rc"] == 0 and info["version"] == version and info["engine"] == banner.stdout.strip()
    assert info["dispatching"] == {"paused": False} and info["schema-version"] == versions.get(version).schema_version


def test_sigterm_stops_postgres_and_sigkill_leaves_it_running(site):
    engine = site.start_engine("2.2")
    assert engine.stop() == 0
    assert not pg_running(site)  # --stop-for-engine with DBShutdown True (§1.2, §2.3)
    assert "engine exit" in site.engine_log()
    engine = site.start_engine("2.2")
    engine.kill()
    assert pg_running(site)  # a killed engine leaves PostgreSQL up, as a real one would


def test_db_shutdown_false_keeps_postgres_after_sigterm(site):
    site.write_config(db_extra='    "DBShutdown": False,\n')
    engine = site.start_engine("2.2")
    assert engine.stop() == 0
    assert pg_running(site)


# -- §4.2 one engine per database ----------------------------------------------------------------
def test_second_engine_on_the_same_database_fails_clearly(site, make_site):
    first = site.start_engine("2.2")
    other = make_site()
    # Same database (data dir and PG port), different HTTP port: a copy of the first site's configs.
    other.write("tractor.config", open(os.path.join(site.config_dir, "tractor.config")).read().replace(
        str(site.engine_port), str(other.engine_port)))
    other.write("db.config", open(os.path.join(site.config_dir, "db.config")).read())
    second = other.start_engine("2.2", wait=False)
    assert second.proc.wait(timeout=60) == 1
    assert "another engine is already connected to the job database" in other.engine_log()
    assert first.status()["rc"] == 0


# -- §8 upgrade at start-up, refusal of newer schema -----------------------------------------------
def test_new_engine_upgrades_old_database_and_old_engine_refuses_it(site):
    # 2.1 -> 2.2 is the real one-way migration (§8)
    engine = site.start_engine("2.1")
    jid = engine.spool({"title": "before", "tasks": [{"title": "t", "argv": ["true"]}]})
    assert engine.stop() == 0
    engine = site.start_engine("2.2")
    assert "Upgrading database schema from version 2.1-2 to version 2.2-4." in site.engine_log()
    assert engine.status()["schema-version"] == "2.2-4"
    assert engine.spool({"title": "after", "tasks": [{"title": "t", "argv": ["true"]}]}) == jid + 1
    assert engine.stop() == 0
    old = site.start_engine("2.1", wait=False)
    assert old.proc.wait(timeout=60) == 1
    assert "newer than this tractor-dbctl (Tractor 2.1" in site.engine_log()


def test_old_engine_runs_on_the_database_of_a_newer_one_with_the_same_schema(site):
    # 2.4 keeps 2.2's schema (§8): each engine's dbctl only rebuilds its views and functions
    engine = site.start_engine("2.2")
    first = engine.spool({"title": "on 2.2", "tasks": [{"title": "t", "argv": ["true"]}]})
    assert engine.stop() == 0
    engine = site.start_engine("2.4")
    assert "Upgrading database schema from version 2.2-4 to version 2.2-4." in site.engine_log()
    second = engine.spool({"title": "on 2.4", "tasks": [{"title": "t", "argv": ["true"]}]})
    assert second == first + 1
    assert engine.stop() == 0
    engine = site.start_engine("2.2")
    assert {row["jid"] for row in engine.select("job", "", "Job.jid")} == {first, second}
    assert engine.spool({"title": "back on 2.2", "tasks": [{"title": "t", "argv": ["true"]}]}) == second + 1
    assert engine.stop() == 0


def test_engine_refuses_schema_it_must_not_upgrade(site):
    engine = site.start_engine("2.2")
    assert engine.stop() == 0
    site.write_config(db_extra='    "DBAutoUpgrade": False,\n')
    new = site.start_engine("2.3", wait=False)
    assert new.proc.wait(timeout=60) == 1
    assert "must be upgraded to 2.2-4" in site.engine_log()  # same schema, another module checksum


def test_requests_block_while_the_schema_upgrade_runs(site):
    engine = site.start_engine("2.2")
    assert engine.stop() == 0
    site.write("emulator-faults", "schema-upgrade-slow=0.5\n")  # 4 steps -> about 2 s of upgrade
    seen = len(site.engine_log())  # the 2.2 build logged the same line (LOG-22)
    new = site.start_engine("2.3", wait=False)
    deadline = time.monotonic() + 30
    while "from version 2.2-4 to version 2.2-4" not in site.engine_log()[seen:]:  # listener up, upgrade running
        assert time.monotonic() < deadline, site.engine_log()
        time.sleep(0.05)
    began = time.monotonic()
    reply = new.call("emulator?q=status", timeout=60)[2]
    waited = time.monotonic() - began
    assert reply["rc"] == 0 and reply["schema-version"] == "2.2-4"  # answered only once upgraded
    log = site.engine_log()[seen:]
    assert log.index("Applying upgrade 4 of 4") < log.rindex("engine ready")
    assert waited > 0.3, waited


# -- dispatch, pause, retry (§6.3, §6.4, §8 downgrade steps 1-2) -------------------------------------
def test_dispatch_and_completion_over_the_blade_protocol(site):
    engine = site.start_engine("2.2")
    jid = engine.spool({"title": "j", "tasks": [
        {"title": "parent", "argv": ["true"], "subtasks": [{"title": "child", "cmds": [
            {"argv": ["echo", "a"]}, {"argv": ["echo", "b"]}]}]}]})
    first = fake_blade_run(engine)
    assert (first["tid"], first["argv"]) == (2, ["echo", "a"])  # the child runs before its parent
    assert fake_blade_run(engine) is None  # parent blocked, child busy
    assert finish(engine, first) == {"rc": 0, "ignored": False}
    second = fake_blade_run(engine)
    assert (second["tid"], second["argv"]) == (2, ["echo", "b"])
    finish(engine, second)
    parent = fake_blade_run(engine)
    assert parent["tid"] == 1
    finish(engine, parent)
    job = engine.select("job", f"jid={jid}", "numtasks,numdone,stoptime")[0]
    assert (job["numtasks"], job["numdone"]) == (2, 2) and job["stoptime"] is not None
    status = engine.status()
    assert status["queue"]["tasks"]["done"] == 2


def test_error_exit_marks_task_error_and_jretry_error_reruns(site):
    engine = site.start_engine("2.2")
    jid = engine.spool({"title": "j", "tasks": [{"title": "bad", "argv": ["false"]}]})
    cmd = fake_blade_run(engine)
    finish(engine, cmd, rc=1)
    assert engine.tasks(jid)[0]["state"] == "error"
    reply = engine.call(f"queue?q=jretry&jid={jid}&tsubset=error", session=True)[2]
    assert reply == {"rc": 0, "retried": [1]}
    again = fake_blade_run(engine)
    assert again["iid"] == 2


def test_engine_wide_pause_stops_new_dispatch_only(site):
    engine = site.start_engine("2.2")
    jid = engine.spool({"title": "j", "tasks": [{"title": "a", "argv": ["true"]}, {"title": "b", "argv": ["true"]}]})
    running = fake_blade_run(engine)
    assert engine.call("ctrl?q=dispatching&pause=1")[2]["rc"] == 1  # needs a session
    assert engine.call("ctrl?q=dispatching")[2]["rc"] == 1  # reading the state needs one too
    assert engine.call("ctrl?q=dispatching", session=True)[2] == {"rc": 0, "dispatching": {"paused": False}}
    assert engine.call("ctrl?q=dispatching&pause=1", session=True)[2] == {"rc": 0, "dispatching": {"paused": True}}
    assert engine.call("ctrl?q=dispatching", session=True)[2] == {"rc": 0, "dispatching": {"paused": True}}
    assert engine.status()["dispatching"]["paused"] is True
    assert fake_blade_run(engine) is None  # nothing new is dispatched
    assert finish(engine, running)["ignored"] is False  # the running command still reports
    engine.call("ctrl?q=dispatching&pause=0", session=True)
    assert engine.call("ctrl?q=dispatching", session=True)[2] == {"rc": 0, "dispatching": {"paused": False}}
    assert fake_blade_run(engine)["tid"] == 2
    assert engine.tasks(jid)[0]["state"] == "done"


def test_paused_at_start_up(site):
    engine = site.start_engine("2.2", "--paused")
    engine.spool({"title": "j", "tasks": [{"title": "a", "argv": ["true"]}]})
    assert engine.call("ctrl?q=dispatching", session=True)[2] == {"rc": 0, "dispatching": {"paused": True}}
    assert fake_blade_run(engine) is None


def heartbeat(engine, running, name="b1"):
    return engine.call(f"btrack?q=heartbeat&blade={name}", json.dumps({"running": running}).encode(),
                       "application/json")[2]


@pytest.mark.parametrize("how", ["jretry", "tretry"])
def test_retried_active_task_stays_active_until_the_blade_reports_the_kill(site, how):
    """§6.3 jretry tsubset=active / tretry, inferred [I]: the engine cannot know the command stopped
    before its blade says so.  No blade process here: the test plays the blade."""
    engine = site.start_engine("2.2")
    jid = engine.spool({"title": "j", "tasks": [{"title": "a", "argv": ["sleep", "60"]}]})
    cmd = fake_blade_run(engine)
    running = [{k: cmd[k] for k in ("jid", "tid", "cid", "iid")}]
    assert heartbeat(engine, running) == {"rc": 0, "kill": []}
    if how == "jretry":
        assert engine.call(f"queue?q=jretry&jid={jid}&tsubset=active", session=True)[2] == {"rc": 0, "retried": [1]}
    else:
        assert engine.call(f"queue?q=tretry&jid={jid}&tid=1", session=True)[2] == {"rc": 0}
    # the blade has not reported: still active, the invocation still current and running
    tasks, invocations = tasks_and_invocations(engine, jid)
    assert tasks == [{"jid": jid, "tid": 1, "state": "active", "retrycount": 0}]
    assert invocations == [{"jid": jid, "tid": 1, "cid": 1, "iid": 1, "current": True, "stoptime": None,
                            "rcode": None}]
    assert engine.select("job", f"jid={jid}", "numactive,numready") == [{"numactive": 1, "numready": 0}]
    assert engine.select("task", "active", "jid,tid") == [{"jid": jid, "tid": 1}]
    assert fake_blade_run(engine) is None  # nothing to dispatch while it is active
    # a second retry before the blade reports changes nothing
    engine.call(f"queue?q=tretry&jid={jid}&tid=1", session=True)
    assert engine.status()["pending-kills"] == running
    # the next heartbeat tells the blade to kill it, as many times as it asks
    assert heartbeat(engine, running)["kill"] == running
    assert heartbeat(engine, running)["kill"] == running
    assert tasks_and_invocations(engine, jid)[0][0]["state"] == "active"
    # the blade reports the end of the killed command: only now is the task ready again
    assert finish(engine, cmd, rc=-15) == {"rc": 0, "ignored": False}
    tasks, invocations = tasks_and_invocations(engine, jid)
    assert tasks == [{"jid": jid, "tid": 1, "state": "ready", "retrycount": 1}]
    assert invocations[0]["current"] is False and invocations[0]["rcode"] == -15
    assert invocations[0]["stoptime"] is not None
    assert engine.select("job", f"jid={jid}", "numactive,numready") == [{"numactive": 0, "numready": 1}]
    assert engine.status()["pending-kills"] == []
    assert heartbeat(engine, [])["kill"] == []
    assert finish(engine, cmd, rc=-15)["ignored"] is True  # a repeated report is ignored
    # the rerun: pause and unpause the job on the way (§6.3 jattr)
    engine.call(f"queue?q=jattr&jid={jid}&set_pause=1", session=True)
    assert fake_blade_run(engine) is None  # paused job
    engine.call(f"queue?q=jattr&jid={jid}&set_pause=0", session=True)
    again = fake_blade_run(engine)
    assert again["iid"] == 2
    finish(engine, again, rc=0)
    assert tasks_and_invocations(engine, jid)[0] == [{"jid": jid, "tid": 1, "state": "done", "retrycount": 1}]


def test_pending_kill_is_lost_when_the_engine_restarts(site):
    """In memory only (INVENTED): after a restart the task stays active and its command runs on."""
    engine = site.start_engine("2.2")
    jid = engine.spool({"title": "j", "tasks": [{"title": "a", "argv": ["sleep", "60"]}]})
    cmd = fake_blade_run(engine)
    running = [{k: cmd[k] for k in ("jid", "tid", "cid", "iid")}]
    engine.call(f"queue?q=jretry&jid={jid}&tsubset=active", session=True)
    assert engine.stop() == 0
    engine = site.start_engine("2.2")
    assert heartbeat(engine, running)["kill"] == []
    assert tasks_and_invocations(engine, jid)[0][0]["state"] == "active"
    assert finish(engine, cmd, rc=0)["ignored"] is False  # the command ran to its end
    assert tasks_and_invocations(engine, jid)[0][0]["state"] == "done"


def test_interrupt_stops_at_once(site):
    """jinterrupt (kept as it was): the invocation is stopped and the task in error at once; the
    blade is told to kill it at its next heartbeat and its late report is ignored."""
    engine = site.start_engine("2.2")
    jid = engine.spool({"title": "j", "tasks": [{"title": "a", "argv": ["sleep", "60"]}]})
    cmd = fake_blade_run(engine)
    running = [{k: cmd[k] for k in ("jid", "tid", "cid", "iid")}]
    assert engine.call(f"queue?q=jinterrupt&jid={jid}", session=True)[2] == {"rc": 0, "interrupted": [1]}
    tasks, invocations = tasks_and_invocations(engine, jid)
    assert tasks[0]["state"] == "error" and invocations[0]["current"] is False and invocations[0]["rcode"] == -15
    assert heartbeat(engine, running)["kill"] == running
    assert finish(engine, cmd, rc=-15)["ignored"] is True


def test_unknown_job_and_bad_requests(site):
    engine = site.start_engine("2.2")
    assert engine.call("queue?q=jretry&jid=999&tsubset=active", session=True)[2] == {"rc": 2, "msg": "no such job 999"}
    assert engine.call("queue?q=nosuch")[0] == 404
    status, _, reply = engine.call("spool?jobOwner=x", b"{not json", "application/tractor-spool-json", session=True)
    assert reply["rc"] == 1 and "not JSON" in reply["msg"]
    reply = engine.call("spool?jobOwner=x", json.dumps({"tasks": [{"argv": "sleep 1"}]}).encode(),
                        "application/tractor-spool-json", session=True)[2]
    assert reply["rc"] == 1 and "argv list" in reply["msg"]


def test_cmd_log_intake_appends_and_is_served(site):
    engine = site.start_engine("2.2")
    engine.call("task?q=log&jid=7&tid=1&owner=ann&blade=b1", b"first\n", "application/octet-stream")
    engine.call("task?q=log&jid=7&tid=1&owner=ann&blade=b1", b"second\n", "application/octet-stream")
    path = os.path.join(site.data_dir, "cmd-logs", "ann", "J7", "T1.log")
    assert open(path, "rb").read() == b"first\nsecond\n"  # §3 layout; appends
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{site.engine_port}/tractor/cmd-logs/ann/J7/T1.log") as reply:
        assert reply.status == 200 and reply.read() == b"first\nsecond\n"


# -- two engines on one host (§8 multiple engines) ---------------------------------------------------
def test_two_versions_side_by_side(site, make_site):
    staging = make_site()
    production = site.start_engine("2.2")
    candidate = staging.start_engine("2.4")
    assert production.status()["version"] == "2.2" and candidate.status()["version"] == "2.4"
    jid_a = production.spool({"title": "p", "tasks": [{"title": "a", "argv": ["true"]}]})
    jid_b = candidate.spool({"title": "s", "tasks": [{"title": "a", "argv": ["true"]}]})
    assert jid_a == jid_b == 1  # separate databases, separate counters


# -- fault hooks ----------------------------------------------------------------------------------------
def test_fault_engine_exit_after(site):
    engine = site.start_engine("2.2", env={"TRACTOR_EMULATOR_FAULTS": "engine-exit-after=8"})
    assert engine.proc.wait(timeout=30) == 1
    assert pg_running(site)  # crashed: PostgreSQL left running


def test_fault_engine_hangs_on_sigterm(site):
    site.write("emulator-faults", "engine-hangs-on-sigterm\n")
    engine = site.start_engine("2.2")
    engine.proc.send_signal(15)
    with pytest.raises(subprocess.TimeoutExpired):
        engine.proc.wait(timeout=3)
    engine.kill()


def test_fault_engine_unhealthy(site):
    site.write("emulator-faults", "engine-unhealthy\n")
    engine = site.start_engine("2.2", wait=False)
    deadline = time.monotonic() + 60
    while True:
        try:
            status, headers, reply = engine.call("ctrl?q=status", timeout=5)
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert status == 503 and reply["rc"] == 1


def test_concurrent_clients_are_served(site):
    engine = site.start_engine("2.2")
    results = []

    def spool():
        results.append(engine.spool({"title": "c", "tasks": [{"title": "a", "argv": ["true"]}]}))

    threads = [threading.Thread(target=spool) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(1, 9))
