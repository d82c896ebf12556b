"""Emulated ``tq``, the Tractor Query command-line tool (fact sheet §5).

``tq [GLOBAL OPTIONS] <subcommand> [subcommand options] [SEARCH CLAUSE]``

Follows §5: the 2.4 global option set (global options only *before* the subcommand), the list
options, the default columns and headers, search clauses with the job/task aliases, the
prompt / ``--yes`` / ``--force`` / ``not job owner`` behaviour of operations, concurrent
operations with ``--yes``, and the exit codes (0, or 2 with a message on stderr).  It talks to
the engine through the endpoints of emulator/PROTOCOL.md (§6.2 login, §6.3 operations).

INVENTED (all listed in emulator/README.md):

* lists read ``monitor?q=jobs|tasks|blades|params`` and evaluate the search clause client-side;
  the real tq sends the clause to the engine (``db?q=tractorselect(...)``, §6.3);
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

from . import versions
from .client import EngineClient, EngineError, UsageError, default_user, resolve_engine

DEFAULT_LIMIT = 2500    # §5: default cap = SiteMaxListReplyCount
DEFAULT_THREADS = 10    # §5: --threads default
DEFAULT_TIMEOUT = 30.0  # §5: -t/--timeout default
SHORT_TIME_FORMAT = "%m/%d|%H:%M"          # INVENTED: tq's default short time form, e.g. 11/28|12:05
FULL_TIME_FORMAT = "%m/%d/%Y %H:%M:%S"     # INVENTED: --fulltime


class ClauseError(UsageError):
    """A bad search clause (tq usage error, exit 2)."""


# =============================================================================================
# Tables: columns, attributes, aliases (§5 "Default columns", "Search clauses")
# =============================================================================================

@dataclasses.dataclass(frozen=True)
class Column:
    name: str       # tq column name as typed after -c
    key: str        # key in the engine's row (PROTOCOL.md "Lists")
    header: str
    width: int
    kind: str = "text"   # text | int | count | time

    def with_width(self, width: int) -> "Column":
        return dataclasses.replace(self, width=width)


def _cols(*specs: tuple) -> dict[str, Column]:
    return {spec[0]: Column(*spec) for spec in specs}


@dataclasses.dataclass(frozen=True)
class Table:
    name: str                     # "jobs"
    noun: str                     # "job" (prompts, "no jobs found")
    query: str                    # monitor?q=<query>
    columns: dict[str, Column]    # every known column, by tq name
    defaults: tuple[str, ...]     # §5 default columns
    sort: tuple[str, ...]         # default sort (INVENTED)
    synonyms: dict[str, str]      # clause/column name -> row key
    aliases: dict[str, str]       # alias -> clause text (§5)
    time_keys: frozenset[str]

    def key_of(self, name: str) -> str:
        name = name.lower()
        if name in self.columns:
            return self.columns[name].key
        return self.synonyms.get(name, name)

    def known_keys(self) -> set[str]:
        return {col.key for col in self.columns.values()} | set(self.synonyms.values())


# Widths are INVENTED (the real tq sizes its columns per attribute); numbers are right-aligned.
JOB_COLUMNS = _cols(
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
    ("jid", "jid", "jid", 6, "int"),
    ("tid", "tid", "tid", 4, "int"),
    ("user", "owner", "user", 9),
    ("owner", "owner", "owner", 9),
    ("title", "title", "title", 24),
    ("state", "state", "state", 7),
    ("statetime", "statetime", "statetime", 11, "time"),
    ("blade", "blade", "blade", 16),
    ("argv", "argv", "argv", 30),
    ("retrycount", "retrycount", "retries", 7, "int"),
)
BLADE_COLUMNS = _cols(
    ("name", "name", "name", 16),
    ("port", "port", "port", 5, "int"),
    ("profile", "profile", "profile", 12),
    ("load", "load", "load", 5),
    ("availdisk", "availdisk", "disk", 6),
    ("availmem", "availmem", "mem", 6),
    ("starttime", "starttime", "start", 11, "time"),
    ("nimby", "nimby", "nimby", 5),
    ("ipaddr", "ipaddr", "ipaddr", 15),
    ("version", "version", "version", 8),
    ("numslots", "numslots", "slots", 5, "int"),
    ("busyslots", "busyslots", "busy", 4, "int"),
    ("heartbeattime", "heartbeattime", "heartbeat", 11, "time"),
    ("status", "status", "status", 6),
)
PARAM_COLUMNS = _cols(
    ("name", "name", "name", 24),
    ("value", "value", "value", 40),
)

TABLES = {
    "jobs": Table(
        "jobs", "job", "jobs", JOB_COLUMNS,
        ("jid", "user", "title", "pri", "numblocked", "numready", "numactive", "numerror",
         "numdone", "spooled"),
        ("jid",),
        {"user": "owner", "pri": "priority", "spooled": "spooltime"},
        {   # §5 job aliases; "paused" is INVENTED (pausetime is set)
            "blocked": "numblocked > 0", "ready": "numready > 0", "active": "numactive > 0",
            "error": "numerror > 0", "done": "numdone = numtasks", "mine": "owner = $USER",
            "paused": "pausetime > 0",
        },
        frozenset({"spooltime", "pausetime", "deletetime"}),
    ),
    "tasks": Table(
        "tasks", "task", "tasks", TASK_COLUMNS,
        ("jid", "tid", "user", "title", "state", "statetime", "blade"),
        ("jid", "tid"),
        {"user": "owner"},
        {   # §5 task aliases
            "active": "state = active", "ready": "state = ready", "blocked": "state = blocked",
            "error": "state = error", "done": "state = done", "mine": "owner = $USER",
        },
        frozenset({"statetime"}),
    ),
    "blades": Table(
        "blades", "blade", "blades", BLADE_COLUMNS,
        ("name", "port", "profile", "load", "availdisk", "availmem", "starttime", "nimby"),
        ("name",),
        {},
        {"up": "status = up", "down": "status = down"},  # INVENTED mapping onto the row's status
        frozenset({"starttime", "heartbeattime"}),
    ),
    "params": Table(
        "params", "param", "params", PARAM_COLUMNS, ("name", "value"), ("name",), {}, {},
        frozenset(),
    ),
}


# =============================================================================================
# Search clauses (§5)
# =============================================================================================

_TOKEN_RE = re.compile(r"""
    \s*(?:
      (?P<lp>\() | (?P<rp>\)) | (?P<lb>\[) | (?P<rb>\]) | (?P<comma>,) |
      (?P<op><=|>=|!=|<>|==|=~|=|<|>) |
      (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*') |
      (?P<word>[^\s()\[\],=!<>"']+) |
      (?P<bang>!)
    )""", re.X)

_KEYWORDS = {"and", "or", "not", "like", "in"}


@dataclasses.dataclass
class Token:
    kind: str       # lp rp lb rb comma op str word bang end
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise ClauseError(f"search clause: unexpected character at {text[pos:]!r}")
        kind = match.lastgroup or "end"
        value = match.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append(Token(kind, value, match.start(kind)))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# AST nodes: ("or", a, b) ("and", a, b) ("not", a) ("cmp", attr, op, value) ("true", attr)
# ("const", bool); value = ("lit", text, quoted) | ("list", [texts])

class _Parser:
    def __init__(self, table: Table, text: str, user: str, depth: int = 0):
        self.table = table
        self.text = text
        self.user = user
        self.depth = depth
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def is_word(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text.lower() in words

    def parse(self):
        if self.peek().kind == "end":
            return ("const", True)
        node = self.parse_or()
        if self.peek().kind != "end":
            raise ClauseError(f"search clause: unexpected {self.peek().text!r} in {self.text!r}")
        return node

    def parse_or(self):
        node = self.parse_and()
        while self.is_word("or", "||"):
            self.take()
            node = ("or", node, self.parse_and())
        return node

    def parse_and(self):
        node = self.parse_not()
        while self.is_word("and", "&&"):
            self.take()
            node = ("and", node, self.parse_not())
        return node

    def parse_not(self):
        if self.is_word("not") or self.peek().kind == "bang":
            self.take()
            return ("not", self.parse_not())
        return self.parse_primary()

    def parse_primary(self):
        token = self.take()
        if token.kind == "lp":
            node = self.parse_or()
            if self.take().kind != "rp":
                raise ClauseError(f"search clause: missing ')' in {self.text!r}")
            return node
        if token.kind != "word" or token.text.lower() in _KEYWORDS:
            what = token.text or "end of clause"
            raise ClauseError(f"search clause: expected an attribute or alias, got {what!r} in {self.text!r}")
        name = token.text
        nxt = self.peek()
        if nxt.kind == "op":
            self.take()
            op = {"==": "=", "<>": "!=", "=~": "like"}.get(nxt.text, nxt.text)
            return ("cmp", name, op, self.parse_value())
        if self.is_word("like"):
            self.take()
            return ("cmp", name, "like", self.parse_value())
        if self.is_word("in"):
            self.take()
            value = self.parse_value()
            if value[0] != "list":
                value = ("list", [value[1]])
            return ("cmp", name, "=", value)
        if self.is_word("not") and self.tokens[self.i + 1].kind == "word" \
                and self.tokens[self.i + 1].text.lower() in ("like", "in"):
            self.take()
            inner = self.tokens[self.i].text.lower()
            self.take()
            value = self.parse_value()
            if inner == "in" and value[0] != "list":
                value = ("list", [value[1]])
            return ("not", ("cmp", name, "like" if inner == "like" else "=", value))
        return self.alias_or_flag(name)

    def parse_value(self):
        token = self.take()
        if token.kind == "str":
            return ("lit", token.text, True)
        if token.kind == "word":
            return ("lit", token.text, False)
        if token.kind == "lb":
            items = []
            while self.peek().kind not in ("rb", "end"):
                item = self.take()
                if item.kind == "comma":
                    continue
                if item.kind not in ("str", "word"):
                    raise ClauseError(f"search clause: bad list item {item.text!r} in {self.text!r}")
                items.append(item.text)
            if self.take().kind != "rb":
                raise ClauseError(f"search clause: missing ']' in {self.text!r}")
            return ("list", items)
        raise ClauseError(f"search clause: expected a value, got {token.text or 'end of clause'!r} in {self.text!r}")

    def alias_or_flag(self, name: str):
        alias = self.table.aliases.get(name.lower())
        if alias is not None:
            if self.depth > 5:
                raise ClauseError(f"search clause: alias {name!r} is recursive")
            text = alias.replace("$USER", json.dumps(self.user))
            return _Parser(self.table, text, self.user, self.depth + 1).parse()
        # A bare attribute name tests its truth (INVENTED: non-empty, non-zero).
        return ("true", name)


def parse_clause(table: Table, text: str, user: str):
    """Parse a §5 search clause for ``table``; an empty clause matches everything."""
    return _Parser(table, text, user).parse()


def _split_attr(name: str) -> tuple[str | None, str]:
    """``Job.owner`` -> ("job", "owner"); ``owner`` -> (None, "owner")."""
    prefix, dot, attr = name.partition(".")
    if dot and prefix.lower() in ("job", "task", "blade", "param", "cmd", "command", "invocation"):
        return prefix.lower(), attr.lower()
    return None, name.lower()


def clause_attrs(node) -> list[str]:
    kind = node[0]
    if kind in ("or", "and"):
        return clause_attrs(node[1]) + clause_attrs(node[2])
    if kind == "not":
        return clause_attrs(node[1])
    if kind in ("cmp", "true"):
        return [node[1]]
    return []


def check_attrs(table: Table, node, extra_keys: set[str]) -> None:
    known = table.known_keys() | extra_keys
    for name in clause_attrs(node):
        prefix, attr = _split_attr(name)
        if prefix == "job" and table.name == "tasks":
            if TABLES["jobs"].key_of(attr) in TABLES["jobs"].known_keys() | extra_keys:
                continue
        if table.key_of(attr) not in known:
            raise ClauseError(f"unknown {table.noun} attribute {name!r} in search clause")


def needs_job_rows(node) -> bool:
    return any(_split_attr(name)[0] == "job" for name in clause_attrs(node))


_RELTIME_RE = re.compile(r"^([-+]?\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time_value(text: str, now: float | None = None) -> float | None:
    """A clause time value: ``-1d`` (relative, s/m/h/d/w), epoch seconds, ``YYYY-MM-DD[ HH:MM[:SS]]``,
    ``MM/DD`` or ``MM/DD|HH:MM`` (this year).  None if it is none of those."""
    now = time.time() if now is None else now
    text = text.strip()
    match = _RELTIME_RE.match(text)
    if match:
        return now + float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    year = time.localtime(now).tm_year
    for fmt, prefix in (("%Y-%m-%d %H:%M:%S", ""), ("%Y-%m-%d %H:%M", ""), ("%Y-%m-%d", ""),
                        ("%Y-%m-%dT%H:%M:%S", ""), ("%Y/%m/%d|%H:%M", f"{year}/"),
                        ("%Y/%m/%d", f"{year}/")):
        try:
            return time.mktime(time.strptime(prefix + text, fmt))
        except ValueError:
            continue
    return None


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


class Evaluator:
    def __init__(self, table: Table, now: float | None = None):
        self.table = table
        self.now = time.time() if now is None else now

    def lookup(self, row: dict, name: str):
        prefix, attr = _split_attr(name)
        if prefix == "job" and self.table.name == "tasks":
            job = row.get("_job") or {}
            key = TABLES["jobs"].key_of(attr)
            if key in job:
                return job[key]
        return row.get(self.table.key_of(attr))

    def is_time(self, name: str) -> bool:
        prefix, attr = _split_attr(name)
        key = self.table.key_of(attr)
        if prefix == "job" and self.table.name == "tasks":
            key = TABLES["jobs"].key_of(attr)
        return key in self.table.time_keys or key in TABLES["jobs"].time_keys or key.endswith("time")

    def matches(self, node, row: dict) -> bool:
        kind = node[0]
        if kind == "const":
            return node[1]
        if kind == "or":
            return self.matches(node[1], row) or self.matches(node[2], row)
        if kind == "and":
            return self.matches(node[1], row) and self.matches(node[2], row)
        if kind == "not":
            return not self.matches(node[1], row)
        if kind == "true":
            value = self.lookup(row, node[1])
            return bool(value) and value not in ("0", "false", "False")
        _, name, op, value = node
        left = self.lookup(row, name)
        if value[0] == "list":
            found = any(self.compare(name, left, "=", ("lit", item, False), row) for item in value[1])
            if op == "=":
                return found
            if op == "!=":
                return not found
            if op == "like":
                return any(self.compare(name, left, "like", ("lit", item, True), row) for item in value[1])
            raise ClauseError(f"search clause: a list cannot be compared with {op!r}")
        return self.compare(name, left, op, value, row)

    def compare(self, name: str, left, op: str, value, row: dict) -> bool:
        _, text, quoted = value
        right = text
        if not quoted:
            # An unquoted word naming an attribute compares two attributes (§5 alias
            # "done = numdone=numtasks").
            key = self.table.key_of(_split_attr(text)[1])
            if key in self.table.known_keys() and key in row:
                right = row.get(key)
        if op == "like":
            try:
                return left is not None and re.search(str(right), _text(left)) is not None
            except re.error as exc:
                raise ClauseError(f"search clause: bad regular expression {text!r}: {exc}") from None
        if left is None or left == "":
            if op == "!=":
                return right not in (None, "")
            return op == "=" and right in (None, "", "null", "NULL")
        if self.is_time(name) and isinstance(right, str):
            moment = parse_time_value(right, self.now)
            if moment is not None:
                right = moment
        lnum, rnum = _number(left), _number(right)
        if lnum is not None and rnum is not None:
            a, b = lnum, rnum
        else:
            a, b = _text(left), _text(right)
        if op == "=":
            return a == b
        if op == "!=":
            return a != b
        if op == "<":
            return a < b
        if op == ">":
            return a > b
        if op == "<=":
            return a <= b
        if op == ">=":
            return a >= b
        raise ClauseError(f"search clause: unknown operator {op!r}")


# =============================================================================================
# Columns and formatting (§5 "Default columns", list options)
# =============================================================================================

def select_columns(table: Table, spec: str | None, extra_keys: set[str] = frozenset()) -> list[Column]:
    """``-c/--cols``: a comma list replaces the defaults; ``+col`` adds, ``-col`` removes,
    ``col=width`` sets a width (§5)."""
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
                names = [entry for entry in names if entry[0] != name and
                         table.key_of(entry[0]) != table.key_of(name)]
            else:
                names.append((name, size))
    columns = []
    known = table.known_keys() | set(extra_keys)
    for name, size in names:
        col = table.columns.get(name)
        if col is None:
            key = table.key_of(name)
            if key not in known:
                raise UsageError(f"unknown {table.noun} column {name!r}")
            kind = "time" if key.endswith("time") else "text"
            col = Column(name, key, name, max(len(name), 8), kind)
        if size is not None:
            col = col.with_width(size)
        columns.append(col)
    return columns


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
        if opts.raw:
            return _text(value)
        number = _number(value)
        if number is None:
            return _text(value)
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


def _sort_key(value):
    if value is None or value == "":
        return (0, 0, "")
    number = _number(value)
    if number is not None and not isinstance(value, (list, tuple)):
        return (1, number, "")
    return (2, 0, _text(value))


def sort_rows(table: Table, rows: list[dict], spec: str | None) -> list[dict]:
    """``-s/--sortby``: comma list, ``-`` prefix = descending (§5)."""
    keys = [item.strip() for item in re.split(r"[,\s]+", spec) if item.strip()] if spec else list(table.sort)
    result = list(rows)
    for item in reversed(keys):
        descending = item.startswith("-")
        name = item.lstrip("+-").lower()
        key = table.key_of(name)
        result.sort(key=lambda row, key=key: _sort_key(row.get(key)), reverse=descending)
    return result


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

lists:       jobs, tasks, blades, params
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
LIST_COMMANDS = {"jobs": "jobs", "tasks": "tasks", "blades": "blades", "params": "params"}


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
    def fetch(self, table: Table, archives: bool) -> list[dict]:
        params = {"q": table.query}
        if archives and table.name in ("jobs", "tasks"):
            params["archives"] = "1"
        reply = self.client.request("monitor", params)
        data = reply.get(table.query)
        if table.name == "params":
            if isinstance(data, dict):
                return [{"name": key, "value": value} for key, value in data.items()]
            return list(data or [])
        if not isinstance(data, list):
            raise EngineError(f"engine {self.client.address} sent no {table.query} list")
        return [row for row in data if isinstance(row, dict)]

    def select(self, table: Table, sub: SubOptions) -> tuple[list[dict], list[Column]]:
        archives = self.g.archives or sub.archives
        node = parse_clause(table, sub.clause, self.user)
        rows = self.fetch(table, archives)
        extra = set().union(*(row.keys() for row in rows)) if rows else set()
        if table.name == "tasks" and (needs_job_rows(node) or any("owner" not in row for row in rows)):
            jobs = {job.get("jid"): job for job in self.fetch(TABLES["jobs"], True)}
            for row in rows:
                job = jobs.get(row.get("jid")) or {}
                row["_job"] = job
                row.setdefault("owner", job.get("owner"))
            extra |= {"owner"}
        check_attrs(table, node, extra)
        columns = select_columns(table, sub.cols, extra)
        evaluator = Evaluator(table)
        rows = [row for row in rows if evaluator.matches(node, row)]
        if not sub.nosort:
            rows = sort_rows(table, rows, sub.sortby)
        if sub.limit > 0:
            rows = rows[:sub.limit]
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
        reply = self.client.request("ctrl", {"q": "status", "qlen": "1", "enumq": "1"})
        queue = reply.get("queue") or {}
        tasks = queue.get("tasks") or {}
        blades = reply.get("blades") or {}
        # INVENTED layout (the real output is not public).
        self.out(f"jobs: {queue.get('jobs', 0)}")
        self.out("tasks: " + " ".join(f"{state}={tasks.get(state, 0)}"
                                      for state in ("blocked", "ready", "active", "error", "done")))
        if blades:
            self.out("blades: " + " ".join(f"{key}={value}" for key, value in sorted(blades.items())))
        paused = (reply.get("dispatching") or {}).get("paused")
        if paused is not None:
            self.out(f"dispatching: {'paused' if paused else 'running'}")
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
        # Parse the clause before contacting the engine so that usage errors come first.
        table = TABLES[LIST_COMMANDS.get(command) or (OPERATIONS[command].table if command in OPERATIONS else "jobs")]
        parse_clause(table, sub.clause, self.user)
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
