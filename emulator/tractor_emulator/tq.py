"""Emulated ``tq``, the Tractor Query command-line tool (fact sheet §5).

``tq [GLOBAL OPTIONS] <subcommand> [subcommand options] [SEARCH CLAUSE]``

Follows §5: the 2.4 global option set (global options only *before* the subcommand), the list
options, the default columns and headers, search clauses with the job/task aliases, the
prompt / ``--yes`` / ``--force`` / ``not job owner`` behaviour of operations, concurrent
operations with ``--yes``, and the exit codes (0, or 2 with a message on stderr).  Lists are read
as the real tq reads them (§6.6): ``db?q=tractorselect('<table>', '<clause>', '<cols>', '<sort>',
<limit>, 't'|'f', '')``, the search clause evaluated by the engine (emulator/tractor_emulator/
query.py, shared with the engine, also checks its syntax here first).  Operations are the §6.3
requests of emulator/PROTOCOL.md.

INVENTED (all listed in emulator/README.md):

* ``tq params`` reads the ``param`` table through tractorselect (inferred [I] from the shipped
  tq, whose params command is a list command over the param table like the others);
  ``queuestats`` counts with tractorselect; ``ping`` sends ``ctrl?q=status``;
* column widths, alignment, the time format ``MM/DD|HH:MM`` and the exact output lines of
  operations, ``ping`` and ``queuestats``;
* no session file: one login per invocation, logout at the end (§5 describes the
  ``~/.pixarPrefs/...session`` cache the real tq keeps);
* operations refuse an empty search clause (safety; the real tq's behaviour is unknown).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import re
import shlex
import sys
import time
import traceback

from . import query, versions
from .client import EngineClient, EngineError, UsageError, default_user, resolve_engine

DEFAULT_LIMIT = 2500    # §5: default cap = SiteMaxListReplyCount
DEFAULT_THREADS = 10    # §5: --threads default
DEFAULT_TIMEOUT = 30.0  # §5: -t/--timeout default
SHORT_TIME_FORMAT = "%m/%d|%H:%M"          # INVENTED: tq's default short time form, e.g. 11/28|12:05
FULL_TIME_FORMAT = "%m/%d/%Y %H:%M:%S"     # INVENTED: --fulltime
STATIC_COLUMNS = query.static_columns()    # to resolve column names; the engine checks them


class ClauseError(UsageError):
    """A bad search clause (tq usage error, exit 2)."""


# =============================================================================================
# Tables and columns (§5 "Default columns")
# =============================================================================================

@dataclasses.dataclass(frozen=True)
class Column:
    name: str       # tq column name as typed after -c
    key: str        # key of the tractorselect row (the bare column name)
    header: str
    width: int
    kind: str = "text"   # text | int | count | time
    attr: str = ""       # what tractorselect is asked for (``Job.owner``)

    def with_width(self, width: int) -> "Column":
        return dataclasses.replace(self, width=width)


def _cols(table: str, *specs: tuple) -> dict[str, Column]:
    """(name, attr, header, width[, kind]): attr ``owner`` = ``<Table>.owner``, or qualified."""
    columns = {}
    for name, attr, header, width, *kind in specs:
        qualified = attr if "." in attr else f"{table}.{attr}"
        columns[name] = Column(name, qualified.split(".", 1)[1], header, width, kind[0] if kind else "text",
                               qualified)
    return columns


@dataclasses.dataclass(frozen=True)
class Table:
    name: str                     # "jobs"
    noun: str                     # "job" (prompts, "no jobs found")
    sql: str                      # tractorselect table: "job"
    columns: dict[str, Column]    # the columns tq knows by name (any other attribute works too)
    defaults: tuple[str, ...]     # §5 default columns
    sort: tuple[str, ...]         # default sort (SRC-20 list commands)
    hidden: tuple[str, ...] = ()  # attributes always fetched (operations need them)

    def resolve(self, name: str) -> tuple[str, str]:
        """A column name -> (attr to request, row key); UsageError when the table has no such attribute."""
        col = self.columns.get(name.lower())
        if col is not None:
            return col.attr, col.key
        try:
            table, column = query.Compiler(self.sql, STATIC_COLUMNS).resolve(name)
        except query.QueryError:
            raise UsageError(f"unknown {self.noun} column {name!r}") from None
        return f"{table.capitalize()}.{column}", column

    def kind_of(self, name: str) -> str:
        attr = self.resolve(name)[0]
        table, column = attr.split(".", 1)
        kind = STATIC_COLUMNS.get(table.lower(), {}).get(column, "text")
        return {"int": "int", "time": "time"}.get(kind, "text")


# Widths are INVENTED (the real tq sizes its columns per attribute); numbers are right-aligned.
JOB_COLUMNS = _cols(
    "Job",
    ("jid", "jid", "jid", 6, "int"),
    ("user", "owner", "user", 9),
    ("owner", "owner", "owner", 9),
    ("title", "title", "title", 30),
    ("pri", "priority", "pri", 5, "int"),
    ("priority", "priority", "priority", 8, "int"),
    ("numblocked", "numblocked", "blkd", 4, "count"),
    ("numready", "numready", "redy", 4, "count"),
    ("numactive", "numactive", "actv", 4, "count"),
    ("numerror", "numerror", "err", 4, "count"),
    ("numdone", "numdone", "done", 4, "count"),
    ("numtasks", "numtasks", "tasks", 5, "count"),
    ("spooled", "spooltime", "spooled", 11, "time"),
    ("spooltime", "spooltime", "spooltime", 11, "time"),
    ("pausetime", "pausetime", "paused", 11, "time"),
    ("deletetime", "deletetime", "deleted", 11, "time"),
    ("comment", "comment", "comment", 20),
)
TASK_COLUMNS = _cols(
    "Task",
    ("jid", "jid", "jid", 6, "int"),
    ("tid", "tid", "tid", 4, "int"),
    ("user", "Job.owner", "user", 9),
    ("owner", "Job.owner", "owner", 9),
    ("title", "title", "title", 24),
    ("state", "state", "state", 7),
    ("statetime", "statetime", "statetime", 11, "time"),
    ("blade", "Invocation.bladeid", "blade", 16),
    ("argv", "Command.argv", "argv", 30),
    ("retrycount", "retrycount", "retries", 7, "int"),
)
COMMAND_COLUMNS = _cols(
    "Command",
    ("jid", "jid", "jid", 6, "int"),
    ("tid", "tid", "tid", 4, "int"),
    ("cid", "cid", "cid", 4, "int"),
    ("user", "Job.owner", "user", 9),
    ("owner", "Job.owner", "owner", 9),
    ("state", "Task.state", "state", 7),
    ("argv", "argv", "argv", 40),
)
INVOCATION_COLUMNS = _cols(
    "Invocation",
    ("jid", "jid", "jid", 6, "int"),
    ("tid", "tid", "tid", 4, "int"),
    ("cid", "cid", "cid", 4, "int"),
    ("iid", "iid", "iid", 4, "int"),
    ("user", "Job.owner", "user", 9),
    ("owner", "Job.owner", "owner", 9),
    ("blade", "bladeid", "blade", 16),
    ("starttime", "starttime", "start", 11, "time"),
    ("stoptime", "stoptime", "stop", 11, "time"),
    ("rcode", "rcode", "rc", 4, "int"),
    ("current", "current", "current", 7),
    ("argv", "Command.argv", "argv", 30),
)
BLADE_COLUMNS = _cols(
    "Blade",
    ("name", "name", "name", 16),
    ("port", "port", "port", 5, "int"),
    ("profile", "profile", "profile", 12),
    ("load", "loadavg", "load", 5),
    ("availdisk", "availdisk", "disk", 6),
    ("availmem", "availmemory", "mem", 6),
    ("starttime", "starttime", "start", 11, "time"),
    ("nimby", "nimby", "nimby", 5),
    ("ipaddr", "ipaddr", "ipaddr", 15),
    ("version", "version", "version", 8),
    ("numslots", "numslots", "slots", 5, "int"),
    ("heartbeattime", "heartbeattime", "heartbeat", 11, "time"),
    ("status", "status", "status", 6),
)
PARAM_COLUMNS = _cols(
    "Param",
    ("name", "name", "name", 24),
    ("value", "value", "value", 40),
)

TABLES = {
    "jobs": Table("jobs", "job", "job", JOB_COLUMNS,
                  ("jid", "user", "title", "pri", "numblocked", "numready", "numactive", "numerror",
                   "numdone", "spooled"), ("jid",), ("Job.jid", "Job.owner")),
    "tasks": Table("tasks", "task", "task", TASK_COLUMNS,
                   ("jid", "tid", "user", "title", "state", "statetime", "blade"), ("jid", "tid"),
                   ("Task.jid", "Task.tid", "Job.owner")),
    "commands": Table("commands", "command", "command", COMMAND_COLUMNS, ("jid", "tid", "cid", "argv"),
                      ("jid", "cid")),
    "invocations": Table("invocations", "invocation", "invocation", INVOCATION_COLUMNS,
                         ("jid", "tid", "cid", "iid", "blade", "starttime", "stoptime", "rcode", "argv"),
                         ("jid", "tid", "cid", "iid")),
    "blades": Table("blades", "blade", "blade", BLADE_COLUMNS,
                    ("name", "port", "profile", "load", "availdisk", "availmem", "starttime", "nimby"),
                    ("name",)),
    "params": Table("params", "param", "param", PARAM_COLUMNS, ("name", "value"), ("name",)),
}


def parse_clause(text: str):
    """Check a §5 search clause's syntax (the engine evaluates it); an empty clause matches everything."""
    try:
        return query.parse(text)
    except query.QueryError as exc:
        raise ClauseError(str(exc)) from None


parse_time_value = query.parse_time_value


def _number(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return " ".join(str(item) for item in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def tractorselect_call(table: Table, clause: str, cols: list[str], sort: list[str], limit: int,
                       archives: bool) -> str:
    """The ``q`` of ``db?q=tractorselect(...)`` as the shipped EngineClient writes it (§6.6)."""
    return "tractorselect(%s, %s, %s, %s, %d, %s, '')" % (
        _sql_text(table.sql), _sql_text(clause), _sql_text(",".join(cols)), _sql_text(",".join(sort)),
        max(0, int(limit)), "'t'" if archives else "'f'")


# =============================================================================================
# Columns and formatting (§5 "Default columns", list options)
# =============================================================================================

def select_columns(table: Table, spec: str | None) -> list[Column]:
    """``-c/--cols``: a comma list replaces the defaults; ``+col`` adds, ``-col`` removes,
    ``col=width`` sets a width (§5).  Any attribute of the table (or a qualified one, ``Job.title``)
    can be a column; the engine has the last word on what exists."""
    names: list[tuple[str, int | None]] = [(name, None) for name in table.defaults]
    if spec:
        items = [item.strip() for item in re.split(r"[,\s]+", spec) if item.strip()]
        if items and not all(item[0] in "+-" for item in items):
            names = []
        for item in items:
            mode = item[0] if item[0] in "+-" else "="
            body = item[1:] if mode != "=" else item
            name, _, width = body.partition("=")
            name = name.strip().lower()
            if not name:
                raise UsageError(f"bad column spec {item!r}")
            size = None
            if width:
                if not width.isdigit():
                    raise UsageError(f"bad column width in {item!r}")
                size = int(width)
            if mode == "-":
                gone = table.resolve(name)[0]
                names = [entry for entry in names if entry[0] != name and table.resolve(entry[0])[0] != gone]
            else:
                names.append((name, size))
    columns = []
    for name, size in names:
        col = table.columns.get(name)
        if col is None:
            attr, key = table.resolve(name)
            col = Column(name, key, name, max(len(name), 8), table.kind_of(name), attr)
        if size is not None:
            col = col.with_width(size)
        columns.append(col)
    return columns


def sort_spec(table: Table, spec: str | None) -> list[str]:
    """``-s/--sortby``: comma list, ``-`` prefix = descending (§5), as qualified attributes for
    tractorselect's sort argument."""
    items = [item.strip() for item in re.split(r"[,\s]+", spec) if item.strip()] if spec else list(table.sort)
    out = []
    for item in items:
        sign = "-" if item.startswith("-") else ""
        name = item.lstrip("+-")
        if not name:
            raise UsageError(f"bad sort spec {item!r}")
        out.append(sign + table.resolve(name)[0])
    return out


@dataclasses.dataclass
class FormatOptions:
    zeros: bool = False
    raw: bool = False
    fulltime: bool = False
    timefmt: str | None = None
    noformat: bool = False
    delimiter: str | None = None


def format_value(col: Column, value, opts: FormatOptions) -> str:
    if value is None:
        return ""
    if col.kind == "time":
        if value in ("", 0, "0"):
            return ""
        number = query.to_epoch(value)  # tractorselect sends ISO 8601 times (PROTOCOL.md)
        if number is None:
            return _text(value)
        if opts.raw:
            return _text(number)  # --raw: epoch seconds
        moment = time.localtime(number)
        if opts.timefmt:
            return time.strftime(opts.timefmt, moment)
        return time.strftime(FULL_TIME_FORMAT if opts.fulltime else SHORT_TIME_FORMAT, moment)
    if col.kind == "count" and not opts.zeros and _number(value) == 0:
        return ""  # §5 --zeros: zero counts print blank unless asked for [I]
    if col.key == "argv" and isinstance(value, (list, tuple)):
        return " ".join(shlex.quote(str(item)) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return _text(value)


def _pad(col: Column, text: str) -> str:
    if col.kind in ("int", "count"):
        return text.rjust(col.width)
    return text.ljust(col.width)


def format_line(columns: list[Column], cells: list[str], opts: FormatOptions) -> str:
    if opts.delimiter is not None:
        return opts.delimiter.join(cells)  # INVENTED: a delimiter turns padding off
    if opts.noformat:
        return " ".join(cells)
    return " ".join(_pad(col, cell) for col, cell in zip(columns, cells)).rstrip()


def format_row(columns: list[Column], row: dict, opts: FormatOptions) -> str:
    return format_line(columns, [format_value(col, row.get(col.key), opts) for col in columns], opts)


def format_header(columns: list[Column], opts: FormatOptions) -> list[str]:
    """The header line and the separator line of ``=`` (§5)."""
    header = format_line(columns, [col.header for col in columns], opts)
    if opts.delimiter is not None or opts.noformat:
        return [header]
    rule = " ".join("=" * max(col.width, 1) for col in columns)
    return [header, rule]


# =============================================================================================
# Command line
# =============================================================================================

class _Parser2(argparse.ArgumentParser):
    def error(self, message):  # pragma: no cover - exercised through main()
        raise UsageError(message)


def build_global_parser() -> argparse.ArgumentParser:
    """The 2.4 global options (§5); they must come before the subcommand."""
    p = _Parser2(prog="tq", add_help=False, allow_abbrev=False,
                 usage="tq [GLOBAL OPTIONS] <subcommand> [subcommand options] [SEARCH CLAUSE]")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("-y", "--yes", action="store_true", help="answer yes to every prompt")
    p.add_argument("-a", "--archives", action="store_true", help="include deleted (archived) jobs")
    p.add_argument("--force", action="store_true", help="operate on other users' jobs")
    p.add_argument("--nocolor", action="store_true", help="no colors (the emulator never colors)")
    p.add_argument("--zeros", action="store_true", help="print zero counts instead of blanks")
    p.add_argument("--nothreads", action="store_true", help="run operations one at a time")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, metavar="N")
    p.add_argument("-p", "--pause", type=float, default=0.0, metavar="SECS",
                   help="pause between operations")
    p.add_argument("-t", "--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECS")
    p.add_argument("--login", action="store_true", help="log in (no session file is kept)")
    p.add_argument("--logout", action="store_true", help="log out (no session file is kept)")
    p.add_argument("--no-save-session", action="store_true")
    p.add_argument("--session-filename", metavar="F")
    p.add_argument("--raw", action="store_true", help="raw attribute values (epoch times)")
    p.add_argument("--tf", "--timefmt", dest="timefmt", metavar="FMT")
    p.add_argument("--fulltime", action="store_true")
    p.add_argument("--engine", metavar="HOST:PORT")
    p.add_argument("-u", "--user", metavar="USER")
    p.add_argument("--pw", "--password", dest="password", metavar="PW")
    p.add_argument("--pwfile", "--password-file", dest="password_file", metavar="F")
    p.add_argument("--traceback", action="store_true")
    p.add_argument("-d", "--debug", action="store_true")
    p.add_argument("-v", "--version", action="store_true")
    p.add_argument("command", nargs="?")
    p.add_argument("args", nargs=argparse.REMAINDER)
    return p


# Global option strings that are not also subcommand options: an error after the subcommand.
GLOBAL_ONLY = {
    "-y", "--yes", "--force", "--nocolor", "--zeros", "--nothreads", "--threads", "-p", "--pause",
    "-t", "--timeout", "--login", "--logout", "--no-save-session", "--session-filename",
    "--engine", "-u", "--user", "--pw", "--password", "--pwfile", "--password-file",
    "--traceback", "-d", "--debug", "-v", "--version",
}

LIST_VALUE_OPTS = {"-c": "cols", "--cols": "cols", "--columns": "cols", "-s": "sortby",
                   "--sortby": "sortby", "--limit": "limit", "--delimiter": "delimiter",
                   "--tf": "timefmt", "--timefmt": "timefmt"}
LIST_FLAG_OPTS = {"--nh": "noheader", "--noheader": "noheader", "--nf": "noformat",
                  "--noformat": "noformat", "--ns": "nosort", "--nosort": "nosort",
                  "-a": "archives", "--archives": "archives", "--raw": "raw",
                  "--fulltime": "fulltime", "-h": "help", "--help": "help"}


@dataclasses.dataclass
class SubOptions:
    cols: str | None = None
    sortby: str | None = None
    limit: int = DEFAULT_LIMIT
    delimiter: str | None = None
    timefmt: str | None = None
    noheader: bool = False
    noformat: bool = False
    nosort: bool = False
    archives: bool = False
    raw: bool = False
    fulltime: bool = False
    help: bool = False
    priority: float | None = None
    clause: str = ""


def parse_sub_args(command: str, args: list[str], extra_value_opts: dict | None = None) -> SubOptions:
    value_opts = dict(LIST_VALUE_OPTS, **(extra_value_opts or {}))
    opts = SubOptions()
    clause: list[str] = []
    i = 0
    only_clause = False
    while i < len(args):
        arg = args[i]
        i += 1
        if only_clause or not arg.startswith("-") or arg == "-" or re.match(r"^-\d", arg) or " " in arg:
            clause.append(arg)
            continue
        if arg == "--":
            only_clause = True
            continue
        name, eq, inline = arg.partition("=")
        if name in value_opts:
            if eq:
                value = inline
            elif i < len(args):
                value = args[i]
                i += 1
            else:
                raise UsageError(f"{command}: option {name} needs a value")
            field = value_opts[name]
            if field == "limit":
                try:
                    opts.limit = int(value)
                except ValueError:
                    raise UsageError(f"{command}: --limit needs a number, got {value!r}") from None
            elif field == "priority":
                try:
                    opts.priority = float(value)
                except ValueError:
                    raise UsageError(f"{command}: -p needs a number, got {value!r}") from None
            else:
                setattr(opts, field, value)
            continue
        if arg in LIST_FLAG_OPTS:
            setattr(opts, LIST_FLAG_OPTS[arg], True)
            continue
        if name in GLOBAL_ONLY:
            raise UsageError(f"global option {name} must come before the subcommand "
                             f"(tq [GLOBAL OPTIONS] {command} ...)")
        raise UsageError(f"{command}: unknown option {arg}")
    opts.clause = " ".join(clause).strip()
    return opts


USAGE = """\
usage: tq [GLOBAL OPTIONS] <subcommand> [subcommand options] [SEARCH CLAUSE]

lists:       jobs, tasks, commands|cmds, invocations|invos, blades, params
job ops:     pause, unpause, delete, interrupt, retryallerrs, chpri -p N
task ops:    retry, kill
admin:       ping, queuestats
help:        help

global options (before the subcommand): -y/--yes, --force, -a/--archives, --engine HOST:PORT,
  -u/--user U, --pw/--password PW, -t/--timeout SECS, --threads N, --nothreads, -p/--pause SECS,
  --nocolor, --zeros, --raw, --tf/--timefmt FMT, --fulltime, --login, --logout,
  --no-save-session, --session-filename F, -d/--debug, --traceback, -v/--version
list options: -c/--cols COLS (+col adds, -col removes, col=width), -s/--sortby COLS (-col =
  descending), --limit N (0 = unlimited), --nh/--noheader, --nf/--noformat, --delimiter D,
  --ns/--nosort, -a/--archives
search clause examples: active, "owner=ann and not done", "title like ^shot", "jid in [1 2]"
(renderfarm.tractor emulator)
"""


@dataclasses.dataclass(frozen=True)
class Operation:
    table: str
    prompt: str       # §5: "Retry this task? yes/no [y]: "
    done: str         # §5: printed after the row on success
    verb: str
    params: tuple     # ((param, row-key-or-None, constant), ...)


def _op_params(op: Operation, row: dict, sub: SubOptions) -> dict:
    params = {}
    for name, key, constant in op.params:
        params[name] = row.get(key) if key else constant
    if op.verb == "queue" and params.get("q") == "jattr" and "set_priority" in params:
        params["set_priority"] = _text(sub.priority)
    return params


# §6.3 requests, as PROTOCOL.md "Job operations" answers them.
OPERATIONS = {
    "retry": Operation("tasks", "Retry this task?", "retried", "queue",
                       (("q", None, "tretry"), ("jid", "jid", None), ("tid", "tid", None))),
    "kill": Operation("tasks", "Kill this task?", "killed", "queue",
                      (("q", None, "jinterrupt"), ("jid", "jid", None), ("tid", "tid", None))),
    "pause": Operation("jobs", "Pause this job?", "paused", "queue",
                       (("q", None, "jattr"), ("jid", "jid", None), ("set_pause", None, "1"))),
    "unpause": Operation("jobs", "Unpause this job?", "unpaused", "queue",
                         (("q", None, "jattr"), ("jid", "jid", None), ("set_pause", None, "0"))),
    "delete": Operation("jobs", "Delete this job?", "deleted", "queue",
                        (("q", None, "jretire"), ("jid", "jid", None))),
    "interrupt": Operation("jobs", "Interrupt this job?", "interrupted", "queue",
                           (("q", None, "jinterrupt"), ("jid", "jid", None))),
    "retryallerrs": Operation("jobs", "Retry all errors of this job?", "retried errors", "queue",
                              (("q", None, "jretry"), ("jid", "jid", None), ("tsubset", None, "error"))),
    "chpri": Operation("jobs", "Change the priority of this job?", "priority changed", "queue",
                       (("q", None, "jattr"), ("jid", "jid", None), ("set_priority", None, ""))),
}
LIST_COMMANDS = {"jobs": "jobs", "tasks": "tasks", "commands": "commands", "cmds": "commands",
                 "invocations": "invocations", "invos": "invocations", "blades": "blades", "params": "params"}


class Tq:
    def __init__(self, version: str, gopts: argparse.Namespace, stdin, stdout, stderr):
        self.version = version
        self.g = gopts
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.user = gopts.user or default_user()
        host, port = resolve_engine(gopts.engine)
        password = gopts.password or os.environ.get("TRACTOR_PASSWORD")
        if gopts.password_file:
            try:
                with open(gopts.password_file, encoding="utf-8") as handle:
                    creds = json.load(handle)
                self.user = gopts.user or creds.get("username") or self.user
                password = creds.get("password") or password
            except (OSError, ValueError, AttributeError) as exc:
                raise UsageError(f"cannot read password file {gopts.password_file}: {exc}") from None
        self.client = EngineClient(host, port, self.user, password, timeout=gopts.timeout,
                                   app="tq", debug=gopts.debug, stderr=stderr)
        self.failed = False

    def out(self, line: str = "") -> None:
        self.stdout.write(line + "\n")
        self.stdout.flush()

    def format_options(self, sub: SubOptions) -> FormatOptions:
        return FormatOptions(
            zeros=self.g.zeros, raw=self.g.raw or sub.raw, fulltime=self.g.fulltime or sub.fulltime,
            timefmt=sub.timefmt or self.g.timefmt or os.environ.get("TRACTOR_TIMEFMT") or None,
            noformat=sub.noformat, delimiter=sub.delimiter)

    # -- fetching ---------------------------------------------------------------------------
    def tractorselect(self, table: Table, clause: str, cols: list[str], sort: list[str], limit: int,
                      archives: bool) -> list[dict]:
        """``db?q=tractorselect(...)`` (§6.6): the engine evaluates the clause."""
        call = tractorselect_call(table, clause, cols, sort, limit, archives)
        reply = self.client.request("db", {"q": call})
        rows = reply.get("rows")
        if not isinstance(rows, list):  # the shipped client treats a non-list as an error text
            raise EngineError(f"engine {self.client.address}: tractorselect failed: {rows or reply.get('msg')}")
        return [row for row in rows if isinstance(row, dict)]

    def select(self, table: Table, sub: SubOptions) -> tuple[list[dict], list[Column]]:
        archives = self.g.archives or sub.archives
        parse_clause(sub.clause)
        columns = select_columns(table, sub.cols)
        attrs: list[str] = []
        for attr in [col.attr for col in columns] + list(table.hidden):
            if attr not in attrs:
                attrs.append(attr)
        sort = [] if sub.nosort else sort_spec(table, sub.sortby)
        rows = self.tractorselect(table, sub.clause, attrs, sort, sub.limit, archives)
        return rows, columns

    # -- commands ---------------------------------------------------------------------------
    def cmd_list(self, table: Table, sub: SubOptions) -> int:
        rows, columns = self.select(table, sub)
        opts = self.format_options(sub)
        if not sub.noheader:
            for line in format_header(columns, opts):
                self.out(line)
        for row in rows:
            self.out(format_row(columns, row, opts))
        return 0

    def ask(self, question: str) -> bool:
        """§5 prompt: empty answer = yes; EOF = no (INVENTED: other answers are asked again)."""
        while True:
            self.stdout.write(f"{question} yes/no [y]: ")
            self.stdout.flush()
            line = self.stdin.readline()
            if not line:
                self.out()
                return False
            answer = line.strip().lower()
            if answer in ("", "y", "yes"):
                return True
            if answer in ("n", "no"):
                return False

    def operate(self, name: str, sub: SubOptions) -> int:
        op = OPERATIONS[name]
        table = TABLES[op.table]
        rows, columns = self.select(table, sub)
        if not rows:
            self.out(f"no {table.name} found")  # §5 "no tasks found", exit 0
            return 0
        opts = self.format_options(sub)
        todo: list[tuple[dict, str]] = []
        for row in rows:
            text = format_row(columns, row, opts)
            if not self.g.force and _text(row.get("owner")) != self.user:
                self.out(f"{text} not job owner; use tq --force")  # §5
                continue
            if not self.g.yes:
                self.out(text)
                if not self.ask(op.prompt):
                    continue
                self.out(self.run_op(op, row, text, sub))
                if self.g.pause:
                    time.sleep(self.g.pause)
                continue
            todo.append((row, text))
        if todo:
            if self.g.nothreads or self.g.threads <= 1 or self.g.pause:
                for row, text in todo:
                    self.out(self.run_op(op, row, text, sub))
                    if self.g.pause:
                        time.sleep(self.g.pause)
            else:
                # §5: with --yes the operations run concurrently (up to --threads).
                with concurrent.futures.ThreadPoolExecutor(max_workers=self.g.threads) as pool:
                    for line in pool.map(lambda item: self.run_op(op, item[0], item[1], sub), todo):
                        self.out(line)
        return 2 if self.failed else 0

    def run_op(self, op: Operation, row: dict, text: str, sub: SubOptions) -> str:
        params = _op_params(op, row, sub)
        try:
            self.client.request(op.verb, params)
        except EngineError as exc:
            self.failed = True
            what = f"jid {row.get('jid')}" + (f" tid {row.get('tid')}" if op.table == "tasks" else "")
            self.stderr.write(f"tq: {what}: {exc}\n")
            self.stderr.flush()
            return f"{text} failed"
        return f"{text} {op.done}"

    def cmd_ping(self, sub: SubOptions) -> int:
        reply = self.client.request("ctrl", {"q": "status"})
        banner = reply.get("engine") or self.client.login_reply.get("engine") or self.client.server_header
        self.out(f"engine {self.client.address} is up: {banner}")  # INVENTED text
        return 0

    def cmd_queuestats(self, sub: SubOptions) -> int:
        # INVENTED: counted with tractorselect; the layout is ours (the real output is not public).
        jobs = self.tractorselect(TABLES["jobs"], "", ["Job.jid"], [], 0, False)
        states = {state: 0 for state in ("blocked", "ready", "active", "error", "done")}
        for row in self.tractorselect(TABLES["tasks"], "", ["Task.state"], [], 0, False):
            states[row.get("state")] = states.get(row.get("state"), 0) + 1
        registered = self.tractorselect(TABLES["blades"], "", ["Blade.name"], [], 0, False)
        up = self.tractorselect(TABLES["blades"], "up", ["Blade.name"], [], 0, False)
        self.out(f"jobs: {len(jobs)}")
        self.out("tasks: " + " ".join(f"{state}={count}" for state, count in states.items()))
        self.out(f"blades: registered={len(registered)} up={len(up)}")
        return 0

    def run(self, command: str, args: list[str]) -> int:
        command = command.lower()
        if command in ("help", "attributes"):
            self.out(USAGE.rstrip())
            return 0
        extra = {"-p": "priority", "--priority": "priority"} if command == "chpri" else None
        if command not in LIST_COMMANDS and command not in OPERATIONS and command not in ("ping", "queuestats"):
            raise UsageError(f"unknown subcommand {command!r}; try 'tq help'")
        sub = parse_sub_args(command, args, extra)
        if sub.help:
            self.out(USAGE.rstrip())
            return 0
        if command in ("ping", "queuestats") and sub.clause:
            raise UsageError(f"{command}: unexpected arguments {sub.clause!r}")
        if command in OPERATIONS:
            if not sub.clause:
                example = "jid=123 and tid=1" if OPERATIONS[command].table == "tasks" else "jid=123"
                raise UsageError(f"{command}: a search clause is required, e.g. tq {command} {example}")
            if command == "chpri" and sub.priority is None:
                raise UsageError("chpri: -p/--priority N is required")
        # Check the clause before contacting the engine so that usage errors come first.
        parse_clause(sub.clause)
        self.client.login()
        try:
            if command in LIST_COMMANDS:
                return self.cmd_list(TABLES[LIST_COMMANDS[command]], sub)
            if command == "ping":
                return self.cmd_ping(sub)
            if command == "queuestats":
                return self.cmd_queuestats(sub)
            return self.operate(command, sub)
        finally:
            self.client.logout()


def version_line(version: str) -> str:
    """``tq -v``: ``2.4 (2091325) - 17 Aug 2020 05:40:13`` (§5)."""
    info = versions.get(version)
    return f"{info.version} ({info.build}) - {info.tq_date}"


def main(version: str, install_root: str, argv: list[str], stdin=None, stdout=None, stderr=None) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    show_traceback = "--traceback" in argv
    try:
        gopts = build_global_parser().parse_args(argv)
        show_traceback = gopts.traceback
        if gopts.version:
            stdout.write(version_line(version) + "\n")
            return 0
        if gopts.help or gopts.command is None and not (gopts.login or gopts.logout):
            if gopts.help or gopts.command == "help":
                stdout.write(USAGE)
                return 0
            stderr.write(USAGE)
            return 2
        if gopts.threads < 1:
            raise UsageError("--threads must be at least 1")
        tq = Tq(version, gopts, stdin, stdout, stderr)
        if gopts.command is None:
            # --login / --logout alone: no session file is kept (INVENTED), so this only checks
            # that a login works.
            tq.client.login()
            tq.client.logout()
            return 0
        return tq.run(gopts.command, gopts.args)
    except UsageError as exc:
        stderr.write(f"tq: {exc}\n")
        return 2
    except EngineError as exc:
        if show_traceback:
            traceback.print_exc(file=stderr)
        stderr.write(f"tq: {exc}\n")
        return 2
    except KeyboardInterrupt:
        stderr.write("\ntq: interrupted\n")
        return 2
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the final flush
        except OSError:
            pass
        return 0
