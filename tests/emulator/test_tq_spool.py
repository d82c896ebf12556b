"""Contract tests of the emulated ``tq`` and ``tractor-spool`` (fact sheet §5, §6.2, §6.3) against a
real emulated engine and a real emulated blade, through the installed ``bin/`` launchers.

Each test names the §5 behaviour it pins down: default columns and headers, search-clause
aliases, ``--yes``/``--force``, the prompt, ``not job owner; use tq --force``, pause/unpause,
delete, "no tasks found" and exit code 2 when the engine cannot be reached.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from tractor_sites import free_port

VERSION = "2.4"
JOB_HEADER = ["jid", "user", "title", "pri", "blkd", "redy", "actv", "err", "done", "spooled"]
TASK_HEADER = ["jid", "tid", "user", "title", "state", "statetime", "blade"]
SHORT_TIME = re.compile(r"^\d\d/\d\d\|\d\d:\d\d$")


class Farm:
    """One site with an engine and (optionally) a blade; runs tq / tractor-spool as EngineOwner."""

    def __init__(self, site, blade: bool = True):
        self.site = site
        self.engine = site.start_engine(VERSION)
        self.blade = site.start_blade(VERSION, "b1", "--poll", "0.2") if blade else None
        # a directory the blade's commands (running as EngineOwner) can write side effects to
        self.work = os.path.join(site.base, "work")
        os.makedirs(self.work)
        os.chmod(self.work, 0o777)
        self.release = os.path.join(self.work, "release")

    def start_blade(self):
        self.blade = self.site.start_blade(VERSION, "b1", "--poll", "0.2")

    def run(self, tool: str, *args: str, input: str = "", env: dict | None = None):
        kwargs = {}
        if os.geteuid() == 0:
            kwargs = {"user": self.site.owner.pw_uid, "group": self.site.owner.pw_gid, "extra_groups": []}
        full_env = {"PATH": "/usr/bin:/bin", "HOME": self.site.owner.pw_dir, "USER": self.site.owner.pw_name,
                    "LANG": "C.UTF-8", "TRACTOR_ENGINE": f"127.0.0.1:{self.site.engine_port}"}
        full_env.update(env or {})
        return subprocess.run([self.site.bin(VERSION, tool), *args], input=input, capture_output=True,
                              text=True, cwd=self.work, env=full_env, timeout=120, check=False, **kwargs)

    def tq(self, *args: str, **kwargs):
        return self.run("tq", *args, **kwargs)

    def spool(self, job: dict, *args: str, name: str = "job.json") -> int:
        path = os.path.join(self.work, name)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(job, handle)
        os.chmod(path, 0o644)
        result = self.run("tractor-spool", *args, path)
        assert result.returncode == 0, result.stderr
        match = re.fullmatch(r"OK job script accepted, jid: (\d+)\n", result.stdout)
        assert match, result.stdout
        return int(match.group(1))

    def marker_job(self, name: str, title: str = "waits") -> tuple[dict, str]:
        """A one-task job whose command appends a line to a marker file, then waits (at most 60 s)
        for the release file."""
        marker = os.path.join(self.work, name)
        script = (f"echo run >> {marker}; i=0; "
                  f"while [ ! -e {self.release} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done")
        return {"title": title, "priority": 10, "tasks": [{"title": "t1", "argv": ["sh", "-c", script]}]}, marker

    def job(self, jid: int) -> dict | None:
        jobs = self.engine.select("job", f"jid={jid}", archives=True)
        return jobs[0] if jobs else None

    def close(self):
        with open(self.release, "w", encoding="utf-8"):
            pass




def lines_of(path: str) -> list[str]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return handle.read().splitlines()


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def farm(site):
    farm = Farm(site)
    yield farm
    farm.close()


@pytest.fixture
def farm_no_blade(site):
    farm = Farm(site, blade=False)
    yield farm
    farm.close()


def table(stdout: str) -> tuple[list[str], list[str]]:
    lines = stdout.splitlines()
    return lines[0].split(), lines[2:]


# -- §6.3 spool, §5 default columns --------------------------------------------------------------
def test_spool_then_jobs_and_tasks_print_the_default_columns(farm):
    jid = farm.spool({"title": "shot10", "priority": 100, "tasks": [
        {"title": "frame1", "argv": ["true"]},
        {"title": "frame2", "cmds": [{"argv": ["echo", "two"]}, {"argv": ["true"]}]},
    ]})
    farm.engine.wait_tasks(jid, lambda tasks: all(t["state"] == "done" for t in tasks))

    jobs = farm.tq("jobs", f"jid={jid}")
    assert jobs.returncode == 0, jobs.stderr
    lines = jobs.stdout.splitlines()
    assert lines[0].split() == JOB_HEADER
    assert set(lines[1].replace(" ", "")) == {"="} and len(lines[1].split()) == len(JOB_HEADER)
    assert len(lines) == 3
    fields = lines[2].split()
    owner = farm.site.owner.pw_name
    # zero counts print blank (§5 --zeros), so a finished job shows only its done count
    assert fields[:4] == [str(jid), owner, "shot10", "100"] and fields[4] == "2"
    assert SHORT_TIME.match(fields[-1])
    zeros = farm.tq("--zeros", "jobs", "--nh", f"jid={jid}").stdout.split()
    assert zeros[4:9] == ["0", "0", "0", "0", "2"]

    tasks = farm.tq("tasks", f"jid={jid}")
    assert tasks.returncode == 0, tasks.stderr
    header, rows = table(tasks.stdout)
    assert header == TASK_HEADER
    assert [row.split() for row in rows] == [
        [str(jid), "1", owner, "frame1", "done", rows[0].split()[5], "b1"],
        [str(jid), "2", owner, "frame2", "done", rows[1].split()[5], "b1"],
    ]
    assert all(SHORT_TIME.match(row.split()[5]) for row in rows)

    # machine-readable form: no header, chosen columns, delimiter; "done" alias (§5)
    ids = farm.tq("jobs", "--nh", "-c", "jid,user", "--delimiter", ",", "done")
    assert f"{jid},{owner}" in ids.stdout.splitlines()
    assert farm.tq("jobs", "--nh", "-c", "jid", "active or error").stdout == ""

    params = farm.tq("params")
    assert params.returncode == 0 and params.stdout.splitlines()[0].split() == ["name", "value"]
    assert any(line.split()[:1] == ["schema-version"] for line in params.stdout.splitlines())
    blades = farm.tq("blades")
    header, rows = table(blades.stdout)
    assert header == ["name", "port", "profile", "load", "disk", "mem", "start", "nimby"]
    assert rows and rows[0].split()[0] == "b1"


def test_lists_read_through_tractorselect(farm):
    """§6.6: the clause, columns, sort and limit go to the engine; its errors are tq's (exit 2)."""
    first = farm.spool({"title": "a", "priority": 5, "tasks": [{"title": "t", "argv": ["true"]}]})
    second = farm.spool({"title": "b", "priority": 9, "tasks": [{"title": "t", "cmds": [
        {"argv": ["echo", "x y"]}, {"argv": ["true"]}]}]})
    farm.engine.wait_tasks(second, lambda tasks: tasks[0]["state"] == "done")
    farm.engine.wait_tasks(first, lambda tasks: tasks[0]["state"] == "done")
    assert farm.tq("jobs", "--nh", "-c", "jid", "-s", "-pri").stdout.split() == [str(second), str(first)]
    assert farm.tq("jobs", "--nh", "-c", "jid", "-s", "-jid", "--limit", "1").stdout.split() == [str(second)]
    invos = farm.tq("invocations", f"jid={second}")
    assert invos.returncode == 0, invos.stderr
    header, rows = table(invos.stdout)
    assert header == ["jid", "tid", "cid", "iid", "blade", "start", "stop", "rc", "argv"]
    assert [row.split()[:5] for row in rows] == [[str(second), "1", "1", "1", "b1"], [str(second), "1", "2", "1", "b1"]]
    cmds = farm.tq("commands", "--nh", "-c", "cid,argv", f"jid={second}")
    assert cmds.stdout.splitlines() == ["   1 echo 'x y'", "   2 true"]
    bad = farm.tq("tasks", "nosuch=1")
    assert bad.returncode == 2 and bad.stdout == "" and "nosuch" in bad.stderr
    assert farm.tq("jobs", "-c", "jid,nosuch").returncode == 2
    stats = farm.tq("queuestats")
    assert stats.stdout.splitlines() == ["jobs: 2", "tasks: blocked=0 ready=0 active=0 error=0 done=2",
                                         "blades: registered=1 up=1"]


def test_spool_options_and_errors(farm):
    jid = farm.spool({"title": "orig", "tasks": [{"argv": ["true"]}]}, "--title", "renamed", "-p", "7",
                     "--jobowner", "ann")
    job = farm.job(jid)
    assert (job["title"], job["priority"], job["owner"]) == ("renamed", 7.0, "ann")
    alf = os.path.join(farm.work, "job.alf")
    with open(alf, "w", encoding="utf-8") as handle:
        handle.write("Job -title {x} -subtasks {}\n")
    result = farm.run("tractor-spool", alf)
    assert result.returncode == 2 and ".alf" in result.stderr
    bad = os.path.join(farm.work, "bad.json")
    with open(bad, "w", encoding="utf-8") as handle:
        json.dump({"title": "x", "tasks": [{"argv": ["echo", 1]}]}, handle)
    result = farm.run("tractor-spool", bad)
    assert result.returncode == 2 and "argv" in result.stderr
    assert farm.run("tractor-spool", "--print", bad).returncode == 2


# -- §5 tq --yes --force retry active ------------------------------------------------------------
def test_yes_force_retry_active_reruns_the_running_command(farm):
    job, marker = farm.marker_job("retry.marker")
    jid = farm.spool(job)
    wait_for(lambda: lines_of(marker) == ["run"], what="first run")
    farm.engine.wait_tasks(jid, lambda tasks: tasks[0]["state"] == "active")

    result = farm.tq("--yes", "--force", "retry", "active")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert len(out) == 1 and out[0].split()[:2] == [str(jid), "1"] and out[0].endswith(" retried")
    wait_for(lambda: lines_of(marker) == ["run", "run"], what="second run")  # ran twice
    tasks = farm.engine.wait_tasks(jid, lambda tasks: tasks[0]["state"] == "active")
    assert tasks[0]["retrycount"] == 1

    # kill (§5 task op): the running command is interrupted, the task ends in error
    result = farm.tq("--yes", "kill", f"jid={jid} and active")
    assert result.returncode == 0 and result.stdout.rstrip().endswith(" killed")
    farm.engine.wait_tasks(jid, lambda tasks: tasks[0]["state"] == "error")
    # nothing active any more: "no tasks found", exit 0 (§5)
    result = farm.tq("--yes", "retry", f"jid={jid} and active")
    assert (result.returncode, result.stdout) == (0, "no tasks found\n")


# -- §5 prompts -----------------------------------------------------------------------------------
def test_prompt_answered_no_does_nothing_and_empty_answer_means_yes(farm):
    job, marker = farm.marker_job("prompt.marker")
    jid = farm.spool(job)
    wait_for(lambda: lines_of(marker) == ["run"], what="first run")

    result = farm.tq("retry", f"jid={jid} and active", input="n\n")
    assert result.returncode == 0, result.stderr
    assert "Retry this task? yes/no [y]: " in result.stdout
    assert "retried" not in result.stdout
    assert result.stdout.splitlines()[0].split()[:2] == [str(jid), "1"]  # the row comes first
    time.sleep(1.5)
    assert lines_of(marker) == ["run"]
    assert farm.engine.tasks(jid)[0]["retrycount"] == 0

    eof = farm.tq("pause", f"jid={jid}", input="")  # EOF = no
    assert eof.returncode == 0 and "Pause this job? yes/no [y]: " in eof.stdout
    assert "paused" not in eof.stdout.replace("Pause this job?", "")
    assert farm.job(jid)["pausetime"] is None

    result = farm.tq("retry", f"jid={jid} and active", input="\n")  # empty answer = yes
    assert result.returncode == 0 and result.stdout.rstrip().endswith(" retried")
    wait_for(lambda: lines_of(marker) == ["run", "run"], what="second run")


# -- §5 ownership -----------------------------------------------------------------------------------
def test_other_users_jobs_need_force(farm):
    job, marker = farm.marker_job("owner.marker")
    jid = farm.spool(job)
    wait_for(lambda: lines_of(marker) == ["run"], what="first run")

    result = farm.tq("--yes", "-u", "ann", "pause", f"jid={jid}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("not job owner; use tq --force")
    assert farm.job(jid)["pausetime"] is None
    result = farm.tq("--yes", "-u", "ann", "retry", "active")
    assert "not job owner; use tq --force" in result.stdout and "retried" not in result.stdout
    time.sleep(1)
    assert lines_of(marker) == ["run"]

    result = farm.tq("--yes", "--force", "-u", "ann", "pause", f"jid={jid}")
    assert result.returncode == 0 and result.stdout.rstrip().endswith(" paused")
    assert farm.job(jid)["pausetime"] is not None
    # "mine" = owner=$USER
    assert farm.tq("-u", "ann", "jobs", "--nh", "mine").stdout == ""
    assert farm.tq("jobs", "--nh", "-c", "jid", "mine").stdout.split() == [str(jid)]


# -- §5 pause / unpause (jattr set_pause, §6.3) -------------------------------------------------------
def test_pause_and_unpause(farm_no_blade):
    farm = farm_no_blade
    jid = farm.spool({"title": "p", "tasks": [{"title": "a", "argv": ["true"]}]})
    result = farm.tq("--yes", "pause", f"jid={jid}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith(" paused")
    assert farm.job(jid)["pausetime"] is not None
    assert farm.tq("jobs", "--nh", "-c", "jid", "paused").stdout.split() == [str(jid)]

    farm.start_blade()
    time.sleep(2)  # a paused job is not dispatched
    assert farm.engine.tasks(jid)[0]["state"] == "ready"

    result = farm.tq("--yes", "unpause", f"jid={jid}")
    assert result.returncode == 0 and result.stdout.rstrip().endswith(" unpaused")
    assert farm.job(jid)["pausetime"] is None
    farm.engine.wait_tasks(jid, lambda tasks: tasks[0]["state"] == "done")


# -- §5 delete (jretire, §6.3) --------------------------------------------------------------------
def test_delete(farm):
    job, marker = farm.marker_job("delete.marker")
    jid = farm.spool(job)
    other = farm.spool({"title": "keep", "tasks": [{"argv": ["true"]}]})
    wait_for(lambda: lines_of(marker) == ["run"], what="first run")
    result = farm.tq("delete", f"jid={jid}", input="y\n")
    assert result.returncode == 0, result.stderr
    assert "Delete this job? yes/no [y]: " in result.stdout
    assert result.stdout.rstrip().endswith(" deleted")
    assert farm.job(jid)["deletetime"] is not None
    listed = farm.tq("jobs", "--nh", "-c", "jid").stdout.split()
    assert str(jid) not in listed and str(other) in listed
    assert str(jid) in farm.tq("-a", "jobs", "--nh", "-c", "jid").stdout.split()  # archives
    result = farm.tq("--yes", "delete", f"jid={jid}")
    assert (result.returncode, result.stdout) == (0, "no jobs found\n")


# -- §5 usage and exit codes ------------------------------------------------------------------------
def test_usage_errors_and_version(farm):
    result = farm.tq("jobs", "--yes")
    assert result.returncode == 2 and "must come before the subcommand" in result.stderr
    result = farm.tq("jobs", "owner=")
    assert result.returncode == 2 and result.stderr.startswith("tq: ")
    result = farm.tq("-v")
    assert (result.returncode, result.stdout) == (0, "2.4 (2091325) - 17 Aug 2020 05:40:13\n")
    ping = farm.tq("ping")
    assert ping.returncode == 0 and "Tractor 2.4" in ping.stdout
    stats = farm.tq("queuestats")
    assert stats.returncode == 0 and stats.stdout.startswith("jobs: ")


def test_exit_2_when_the_engine_is_down(farm_no_blade):
    farm = farm_no_blade
    port = free_port()
    result = farm.tq("--engine", f"127.0.0.1:{port}", "jobs")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"tq: cannot reach the engine at 127.0.0.1:{port}: Connection refused\n"
    path = os.path.join(farm.work, "j.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"title": "x", "tasks": [{"argv": ["true"]}]}, handle)
    os.chmod(path, 0o644)
    result = farm.run("tractor-spool", "--engine", f"127.0.0.1:{port}", path)
    assert result.returncode == 2 and "cannot reach the engine" in result.stderr
    # the same engine, stopped: TRACTOR_ENGINE points at it
    assert farm.engine.stop() == 0
    result = farm.tq("--yes", "retry", "active")
    assert result.returncode == 2 and "cannot reach the engine" in result.stderr
