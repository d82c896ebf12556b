"""The per-engine lease: who may take it, and that of many takers at one moment exactly one wins."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess

import pytest

from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_lease as lease

HOST = "engine1"
NOW = 1_000_000.0


def holder(run_id, **extra):
    data = dict(run_id=run_id, controller_host="ctl", controller_pid=4242, controller_started="", controller_user="ops",
                purpose="upgrade 2.2 -> 2.4")
    data.update(extra)
    return data


def gone_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid  # reaped: no process has this pid until the kernel wraps around


@pytest.mark.parametrize("lock, state, words", [
    # another controller: only the lease counts
    (dict(holder("a"), expires=NOW + 5), "live", "its lease runs until"),
    (dict(holder("a"), expires=NOW - 5), "stale", "its lease expired 5 s ago"),
    # a lock of release 1.0.0 has no lease: created + stale_after
    (dict(holder("a"), created=NOW - 21000), "live", "its lease runs"),
    (dict(holder("a"), created=NOW - 22000), "stale", "expired"),
    # half-written by an older release
    (dict(run_id=None, unreadable=True, created=NOW - 10), "live", "not valid JSON"),
    (dict(run_id=None, unreadable=True, created=NOW - 30000), "stale", "not valid JSON"),
])
def test_judge_by_lease(lock, state, words):
    verdict, reason = lease.judge(lock, NOW, this_host=HOST)
    assert verdict == state and words in reason


def test_judge_a_controller_on_this_host_by_its_process():
    me = os.getpid()
    alive = dict(holder("a", controller_host=HOST, controller_pid=me,
                        controller_started=lease.process_start(me)), expires=NOW - 100)
    verdict, reason = lease.judge(alive, NOW, this_host=HOST)
    assert verdict == "live" and "lease expired 100 s ago but its controller process" in reason  # alive beats expiry
    dead = dict(alive, controller_pid=gone_pid(), expires=NOW + 3600)
    verdict, reason = lease.judge(dead, NOW, this_host=HOST)
    assert verdict == "stale" and "is gone" in reason  # gone beats a running lease
    reused = dict(alive, controller_started="1", expires=NOW + 3600)  # the pid now names another process
    assert lease.judge(reused, NOW, this_host=HOST)[0] == "stale"


def test_a_running_worker_keeps_the_lock_live():
    me = os.getpid()
    lock = dict(holder("a", controller_host=HOST, controller_pid=gone_pid()), expires=NOW - 100,
                workers=[dict(pid=me, started=lease.process_start(me), what="tractor_db state=backup")])
    verdict, reason = lease.judge(lock, NOW, this_host=HOST)
    assert verdict == "live" and "tractor_db state=backup" in reason
    lock["workers"][0]["pid"] = gone_pid()
    assert lease.judge(lock, NOW, this_host=HOST)[0] == "stale"


def test_take_renew_take_over_release(tmp_path):
    path = str(tmp_path / "lock")
    outcome, lock, previous = lease.take(path, holder("a"), 600, now=NOW, this_host=HOST)
    assert outcome == "taken" and previous == {} and read(path)["expires"] == NOW + 600
    outcome, lock, unused = lease.take(path, dict(run_id="a"), 900, now=NOW + 10, this_host=HOST)
    assert outcome == "renewed" and lock["controller_user"] == "ops" and lock["expires"] == NOW + 910
    with pytest.raises(lease.LeaseError) as refused:
        lease.take(path, holder("b"), 600, now=NOW + 20, this_host=HOST)
    assert "run a (upgrade 2.2 -> 2.4) from controller ctl, user ops, pid 4242" in str(refused.value)
    assert "tractor_lock_break=a" in str(refused.value) and read(path)["run_id"] == "a"
    outcome, unused, previous = lease.take(path, holder("b"), 600, now=NOW + 1000, this_host=HOST)
    assert outcome == "taken over" and previous["stale"] and previous["run_id"] == "a"
    outcome, unused, previous = lease.take(path, holder("c"), 600, break_run_id="b", now=NOW + 1001, this_host=HOST)
    assert outcome == "taken over" and previous["broken"]
    with pytest.raises(lease.LeaseError):
        lease.release(path, "b")
    assert lease.release(path, "c")[0] and not os.path.exists(path)
    assert lease.release(path, "c") == (False, {})


def test_check_mode_writes_nothing(tmp_path):
    path = str(tmp_path / "lock")
    assert lease.take(path, holder("a"), 600, check_mode=True)[0] == "taken"
    assert not os.path.exists(path)


def test_keeper_registers_renews_and_leaves(tmp_path):
    path = str(tmp_path / "lock")
    lease.take(path, holder("a"), 60)
    first = read(path)["expires"]
    with lease.LeaseKeeper(path, "a", 60, "tractor_db state=backup"):
        inside = read(path)
        assert [w["pid"] for w in inside["workers"]] == [os.getpid()] and inside["expires"] >= first
    assert read(path)["workers"] == [] and read(path)["run_id"] == "a"
    lease.take(path, holder("b"), 60, break_run_id="a")
    lost = []
    with lease.LeaseKeeper(path, "a", 60, "tractor_db state=copy", on_lost=lost.append) as keeper:
        pass
    assert keeper.lost and "no longer holds the lock" in lost[0] and read(path)["run_id"] == "b"


def contend(path, run_id, break_run_id, barrier, results):
    barrier.wait()
    try:
        outcome = lease.take(path, holder(run_id), 600, break_run_id=break_run_id)[0]
    except lease.LeaseError as exc:
        outcome = "refused: %s" % exc
    results.put((run_id, outcome))


def race(path, contenders, break_run_id=None):
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(len(contenders)), context.Queue()
    procs = [context.Process(target=contend, args=(path, name, break_run_id, barrier, results)) for name in contenders]
    for proc in procs:
        proc.start()
    outcomes = dict(results.get(timeout=120) for unused in procs)
    for proc in procs:
        proc.join()
    return outcomes


@pytest.mark.parametrize("round_", range(10))
def test_of_many_takers_exactly_one_wins(tmp_path, round_):
    path = str(tmp_path / "lock")
    outcomes = race(path, ["t%d" % i for i in range(6)])
    winners = [name for name, outcome in outcomes.items() if outcome == "taken"]
    assert len(winners) == 1 and read(path)["run_id"] == winners[0]
    assert all("engine locked by another run: run %s" % winners[0] in outcome
               for name, outcome in outcomes.items() if name != winners[0])


@pytest.mark.parametrize("round_", range(10))
def test_of_many_breakers_exactly_one_wins(tmp_path, round_):
    path = str(tmp_path / "lock")
    lease.take(path, holder("held", controller_host="elsewhere"), 3600)
    outcomes = race(path, ["b%d" % i for i in range(6)], break_run_id="held")
    winners = [name for name, outcome in outcomes.items() if outcome == "taken over"]
    assert len(winners) == 1 and read(path)["run_id"] == winners[0]
    # the others find the winner's lock, not the one they were asked to break
    assert all("You asked to break run held, which does not hold it" in outcome
               for name, outcome in outcomes.items() if name != winners[0])


def read(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
