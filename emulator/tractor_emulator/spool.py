"""Emulated ``tractor-spool``: send a job to the engine (fact sheet §6.3 "spool job", §5 engine
address rules).

``tractor-spool [--engine HOST:PORT] [--user U] [--jobowner U] [-p PRI] [--title T] [--print] JOB.json``

Only the JSON spool form of emulator/PROTOCOL.md "Spooling" is accepted; the real Tcl ``.alf``
job scripts are not emulated (INVENTED restriction, reported as a usage error, exit 2).  The job
is checked here first (every command an argv list of strings), then POSTed as
``spool?spvers=2.0&hnm=..&jobOwner=..&jobAuthor=..&jobFile=..&cwd=..&tsid=..`` with
``Content-Type: application/tractor-spool-json`` after a login (§6.2).

INVENTED (listed in emulator/README.md): ``--title`` and ``--print``, the output line
``OK job script accepted, jid: 501``, and the messages of the validation errors.  Exit codes
follow tq (§5): 0 on success, 2 with a message on stderr otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import traceback

from .client import EngineClient, EngineError, UsageError, default_user, resolve_engine

SPOOL_CONTENT_TYPE = "application/tractor-spool-json"  # §6.3: application/tractor-spool[-json]


class JobError(Exception):
    """The job file is not a valid JSON spool job."""


class _ArgParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _ArgParser(prog="tractor-spool", add_help=False, allow_abbrev=False,
                   description="Spool a job (JSON spool form) to the Tractor engine "
                               "(renderfarm.tractor emulator).")
    p.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    p.add_argument("--engine", metavar="HOST:PORT",
                   help="engine address (default: $TRACTOR_ENGINE, else tractor-engine:80)")
    p.add_argument("--user", metavar="U", help="login user (default: $USER, else root)")
    p.add_argument("--jobowner", metavar="U", help="owner recorded for the job (default: the user)")
    p.add_argument("--pw", "--password", dest="password", metavar="PW",
                   help="password (not checked by the emulated engine)")
    p.add_argument("-p", "--priority", type=float, metavar="PRI", help="override the job priority")
    p.add_argument("--title", metavar="T", help="override the job title")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="print the job JSON that would be sent, and exit")
    p.add_argument("-t", "--timeout", type=float, default=30.0, metavar="SECS")
    p.add_argument("-d", "--debug", action="store_true")
    p.add_argument("--traceback", action="store_true")
    p.add_argument("jobfile", nargs="?", metavar="JOB.json")
    return p


def _check_argv(argv, where: str) -> None:
    if not isinstance(argv, list) or not argv:
        raise JobError(f"{where}: argv must be a non-empty list of strings")
    for item in argv:
        if not isinstance(item, str):
            raise JobError(f"{where}: argv items must be strings, got {item!r}")
    if not argv[0]:
        raise JobError(f"{where}: argv[0] (the program) is empty")


def _check_task(task, where: str) -> int:
    """Validate one task (PROTOCOL.md "JSON spool form"); return the number of tasks in it."""
    if not isinstance(task, dict):
        raise JobError(f"{where}: a task must be a JSON object")
    title = task.get("title", "")
    if not isinstance(title, str):
        raise JobError(f"{where}: title must be a string")
    where = f"{where} {title!r}" if title else where
    if "argv" in task and "cmds" in task:
        raise JobError(f"{where}: give either argv or cmds, not both")
    ncmds = 0
    if "argv" in task:
        _check_argv(task["argv"], where)
        ncmds = 1
    elif "cmds" in task:
        cmds = task["cmds"]
        if not isinstance(cmds, list) or not cmds:
            raise JobError(f"{where}: cmds must be a non-empty list")
        for index, cmd in enumerate(cmds, 1):
            if not isinstance(cmd, dict) or "argv" not in cmd:
                raise JobError(f"{where}: cmds[{index}] must be an object with an argv list")
            _check_argv(cmd["argv"], f"{where} cmds[{index}]")
        ncmds = len(cmds)
    subtasks = task.get("subtasks", [])
    if not isinstance(subtasks, list):
        raise JobError(f"{where}: subtasks must be a list")
    if not ncmds and not subtasks:
        raise JobError(f"{where}: a task needs argv, cmds or subtasks")
    count = 1
    for index, sub in enumerate(subtasks, 1):
        count += _check_task(sub, f"{where} subtask {index}")
    return count


def validate_job(job) -> int:
    """Raise JobError unless ``job`` is a JSON spool job; return its number of tasks."""
    if not isinstance(job, dict):
        raise JobError("the job must be a JSON object")
    if not isinstance(job.get("title", ""), str):
        raise JobError("job title must be a string")
    priority = job.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, (int, float)):
        raise JobError("job priority must be a number")
    for key in ("service", "comment"):
        if not isinstance(job.get(key, ""), str):
            raise JobError(f"job {key} must be a string")
    tasks = job.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise JobError("the job needs a non-empty tasks list")
    return sum(_check_task(task, f"task {index}") for index, task in enumerate(tasks, 1))


def load_job(path: str) -> dict:
    if not path.lower().endswith(".json"):
        raise UsageError(f"cannot spool {path}: only the JSON spool form (.json) is emulated; "
                         "Tcl job scripts (.alf) are not")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read job file {path}: {exc.strerror}") from None
    try:
        job = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"job file {path} is not valid JSON: {exc}") from None
    try:
        validate_job(job)
    except JobError as exc:
        raise UsageError(f"job file {path}: {exc}") from None
    return job


def main(version: str, install_root: str, argv: list[str], stdout=None, stderr=None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        if args.help:
            stdout.write(parser.format_help())
            return 0
        if not args.jobfile:
            raise UsageError("no job file given (usage: tractor-spool [options] JOB.json)")
        job = load_job(args.jobfile)
        if args.title is not None:
            job["title"] = args.title
        if args.priority is not None:
            job["priority"] = int(args.priority) if args.priority.is_integer() else args.priority
        body = json.dumps(job, indent=2) + "\n"
        if args.print_only:
            stdout.write(body)
            return 0
        host, port = resolve_engine(args.engine)
        user = args.user or default_user()
        owner = args.jobowner or user
        client = EngineClient(host, port, user, args.password, timeout=args.timeout,
                              app="tractor-spool", debug=args.debug, stderr=stderr)
        client.login()
        try:
            reply = client.request("spool", {
                "spvers": "2.0",
                "hnm": socket.gethostname(),
                "jobOwner": owner,
                "jobAuthor": user,
                "jobFile": os.path.abspath(args.jobfile),
                "cwd": os.getcwd(),
            }, body=body.encode("utf-8"), content_type=SPOOL_CONTENT_TYPE)
        finally:
            client.logout()
        jid = reply.get("jid")
        msg = str(reply.get("msg") or "job script accepted")
        if jid is not None and "jid" not in msg:
            msg = f"{msg}, jid: {jid}"
        stdout.write(f"OK {msg}\n")  # INVENTED: "OK job script accepted, jid: 501"
        return 0
    except UsageError as exc:
        stderr.write(f"tractor-spool: {exc}\n")
        return 2
    except EngineError as exc:
        if args is not None and args.traceback:
            traceback.print_exc(file=stderr)
        stderr.write(f"tractor-spool: {exc}\n")
        return 2
    except KeyboardInterrupt:
        stderr.write("\ntractor-spool: interrupted\n")
        return 2
