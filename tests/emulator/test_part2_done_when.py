"""The "Done when" of emulator part 2, end to end with the installed tools: tractor-engine,
tractor-blade, tractor-spool and tq as separate real processes (fact sheet §5, §6, §7, §8).
"""

from __future__ import annotations

import json
import os
import re
import time


def spool(site, version, job: dict) -> int:
    path = os.path.join(site.base, f"job-{time.monotonic_ns()}.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(job, handle)
    os.chmod(path, 0o644)
    proc = site.run([site.bin(version, "tractor-spool"), "--engine", f"127.0.0.1:{site.engine_port}", path])
    assert proc.returncode == 0, proc.stderr
    return int(re.search(r"jid: (\d+)", proc.stdout).group(1))


def tq(site, version, *args):
    return site.run([site.bin(version, "tq"), "--engine", f"127.0.0.1:{site.engine_port}", *args])


def test_three_sleep_tasks_complete_on_one_blade_with_logs(site):
    engine = site.start_engine("2.2")
    status = engine.status()  # the emulator-only introspection request
    # §6.5 banner, as in LOG-22: "Tractor 2.2 (Feb 15 2017 11:38:27 1715407 linux-...-release)"
    assert status["version"] == "2.2" and re.fullmatch(r"Tractor 2\.2 \(\w{3} [ \d]\d \d{4} [\d:]{8} \d+ \S+\)",
                                                       status["engine"]), status["engine"]
    site.start_blade("2.2", "blade-a")
    jid = spool(site, "2.2", {"title": "three", "tasks": [
        {"title": f"frame {n}", "argv": ["sh", "-c", f"echo frame {n}; sleep 1"]} for n in (1, 2, 3)]})
    tasks = engine.wait_tasks(jid, lambda ts: all(t["state"] == "done" for t in ts), timeout=60)
    assert [t["blade"] for t in tasks] == ["blade-a"] * 3
    for task in tasks:
        log = os.path.join(site.data_dir, "cmd-logs", site.owner.pw_name, f"J{jid}", f"T{task['tid']}.log")
        assert open(log).read().strip() == f"frame {task['tid']}"


def test_restart_as_24_while_a_20_second_task_runs(site):
    engine = site.start_engine("2.2")
    site.start_blade("2.2", "blade-a")
    jid = spool(site, "2.2", {"title": "long", "tasks": [{"title": "t", "argv": ["sleep", "20"]}]})
    engine.wait_tasks(jid, lambda ts: ts[0]["state"] == "active", timeout=30)
    assert engine.stop() == 0  # a clean stop, as an upgrade does
    new = site.start_engine("2.4")  # same config dir: upgrades the schema at start-up (§8)
    assert new.status()["version"] == "2.4"
    assert new.tasks(jid)[0]["state"] == "active"  # the task kept running through the restart
    new.wait_tasks(jid, lambda ts: ts[0]["state"] == "done", timeout=60)
    assert spool(site, "2.4", {"title": "next", "tasks": [{"title": "t", "argv": ["true"]}]}) == jid + 1


def test_tq_retry_active_and_default_columns(site):
    engine = site.start_engine("2.4")
    site.start_blade("2.4", "blade-a")
    marker = os.path.join(site.data_dir, "runs")
    jid = spool(site, "2.4", {"title": "retry me", "tasks": [
        {"title": "t", "argv": ["sh", "-c", f"echo run >> {marker}; sleep 30"]}]})
    engine.wait_tasks(jid, lambda ts: ts[0]["state"] == "active", timeout=30)
    proc = tq(site, "2.4", "--yes", "--force", "retry", "active")
    assert proc.returncode == 0 and "retried" in proc.stdout, proc.stdout + proc.stderr
    deadline = time.monotonic() + 30
    while not (os.path.exists(marker) and open(marker).read().count("run") == 2):
        assert time.monotonic() < deadline, "the active command was not rerun"
        time.sleep(0.2)
    jobs = tq(site, "2.4", "jobs")
    assert jobs.returncode == 0
    assert jobs.stdout.splitlines()[0].split() == ["jid", "user", "title", "pri", "blkd", "redy", "actv",
                                                   "err", "done", "spooled"]
    assert set(jobs.stdout.splitlines()[1].strip()) <= {"=", " "}  # separator line of = (§5)
    tasks = tq(site, "2.4", "tasks")
    assert tasks.stdout.splitlines()[0].split() == ["jid", "tid", "user", "title", "state", "statetime", "blade"]
    assert str(jid) in tasks.stdout and "active" in tasks.stdout


def test_two_engines_side_by_side_each_with_its_blade(site, make_site):
    staging = make_site()
    production = site.start_engine("2.2")
    candidate = staging.start_engine("2.4")
    site.start_blade("2.2", "prod-blade")
    staging.start_blade("2.4", "staging-blade")
    jid_p = spool(site, "2.2", {"title": "p", "tasks": [{"title": "t", "argv": ["true"]}]})
    jid_s = spool(staging, "2.4", {"title": "s", "tasks": [{"title": "t", "argv": ["true"]}]})
    done = lambda ts: ts[0]["state"] == "done"  # noqa: E731
    assert production.wait_tasks(jid_p, done)[0]["blade"] == "prod-blade"
    assert candidate.wait_tasks(jid_s, done)[0]["blade"] == "staging-blade"
    assert production.status()["version"] == "2.2" and candidate.status()["version"] == "2.4"
