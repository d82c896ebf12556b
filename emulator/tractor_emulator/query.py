"""The search-clause language of ``tq`` and of ``db?q=tractorselect(...)`` (fact sheet §5, §6.6).

One implementation, used by both sides:

* the emulated engine turns a ``tractorselect`` call into one SQL query over the job database
  (``build_select``): the clause, the columns, the sort order and the limit;
* the emulated ``tq`` parses a clause (``parse``) before it contacts the engine, so that a syntax
  error is a usage error, and resolves its column names (``resolve``) to the qualified names it
  sends (``Job.owner``).

The language (§5, SRC-20 EngineDB): ``attr op value`` with ``= != < <= > >=`` (also ``==``,
``<>``) and ``like`` (a regular expression), ``in [a b]`` and ``not in``/``not like``, ``and``,
``or``, ``not``/``!``, parentheses; attributes bare (``owner``) or qualified (``Job.owner``);
values bare words, quoted strings, numbers, times (``-1d``, epoch seconds, ``YYYY-MM-DD``), lists;
``NULL`` with ``=``/``!=`` means IS NULL / IS NOT NULL; an unquoted value that names a column of
the table compares two columns (``numdone=numtasks``).  Per-table aliases (§5): jobs
``blocked|ready|active|error`` = ``num<state> > 0``, ``done`` = ``numdone=numtasks``;
tasks/commands/invocations ``<state>`` = ``state=<state>``; ``mine`` = ``owner=<session user>``.
Attribute synonyms (``user`` = ``owner``, ``pri`` = ``priority``, ``blade`` = ``bladeid`` ...)
follow the shipped 2.0 tables (SRC-20 EngineDB "Aliases").

INVENTED (emulator/README.md): the extra aliases ``paused`` (jobs) and ``up``/``down`` (blades);
a bare attribute means "set and not zero/empty"; which tables a query may join and how (a task
sees its job, its *current* invocation and its current command); the lookup order of bare names
through those joins; NULL-safe comparisons (a comparison with a NULL column is false, ``!=``
is true); text columns compare NULL as ``''``; the default sort (the table's key) when none is given.

No SQL injection: attributes are checked against the table's columns (as the database has them),
identifiers are quoted, values become literals (``pgwire.literal``) or numbers parsed here.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from datetime import datetime

from . import schema
from .pgwire import literal


class QueryError(Exception):
    """A bad clause, an unknown table/attribute/column: ``rc != 0`` from tractorselect."""


# =============================================================================================
# Tables: synonyms, aliases, joins
# =============================================================================================

STATE_ALIASES = {state: f"state={state}" for state in ("blocked", "ready", "active", "error", "done")}


@dataclasses.dataclass(frozen=True)
class TableDef:
    name: str                      # SQL table, also the tractorselect table name
    key: tuple[str, ...]           # default sort (INVENTED: the table's key)
    synonyms: dict[str, str]       # attribute synonym -> column (SRC-20 EngineDB "Aliases")
    aliases: dict[str, str]        # clause alias -> clause text (§5)
    joins: tuple[str, ...]         # tables a query may reach, in bare-name lookup order
    archived_by_job: bool          # 't'/'f' (archived jobs) applies through the job


TABLES: dict[str, TableDef] = {
    "job": TableDef(
        "job", ("jid",),
        {"user": "owner", "username": "owner", "cwd": "spoolcwd", "deleted": "deletetime", "jobid": "jid",
         "ntasks": "numtasks", "pri": "priority", "spooled": "spooltime", "elapsed": "elapsedsecs",
         "est": "esttotalsecs"},
        {"blocked": "numblocked > 0", "ready": "numready > 0", "active": "numactive > 0",
         "error": "numerror > 0", "done": "numdone = numtasks", "mine": "owner = $USER",
         "paused": "pausetime != NULL"},  # "paused" is INVENTED
        (), True),
    "task": TableDef(
        "task", ("jid", "tid"), {"jobid": "jid", "taskid": "tid"},
        dict(STATE_ALIASES, mine="owner = $USER"), ("job", "invocation", "command"), True),
    "command": TableDef(
        "command", ("jid", "cid"),
        {"jobid": "jid", "taskid": "tid", "cmdid": "cid", "retryrc": "retryrcodes", "retrycodes": "retryrcodes"},
        dict(STATE_ALIASES, mine="owner = $USER"), ("job", "task", "invocation"), True),
    "invocation": TableDef(
        "invocation", ("jid", "tid", "cid", "iid"),
        {"jobid": "jid", "taskid": "tid", "cmdid": "cid", "utime": "elapsedapp", "stime": "elapsedsys",
         "wtime": "elapsedreal", "mem": "vsz", "blade": "bladeid"},  # 2.1+: bladeid, not blade (§4.2)
        dict(STATE_ALIASES, mine="owner = $USER"), ("job", "task", "command", "blade"), True),
    "blade": TableDef(
        "blade", ("name",),
        {"disk": "availdisk", "mem": "availmemory", "availmem": "availmemory", "cores": "numcpu",
         "load": "loadavg", "os": "osname"},
        # INVENTED: a blade is "up" while it sends heartbeats (BLADE_DOWN_AFTER in engine.py)
        {"up": "heartbeattime > -30s", "down": "not up"},
        (), False),
    # The param table (§4.3) is what `tq params` lists; that tq reads it through tractorselect too
    # is inferred [I] (its ParamsCmd is a list command over EngineDB's ParamTable, SRC-20).
    "param": TableDef("param", ("name",), {}, {}, (), False),
}

# How a joined table is reached from the queried one (INVENTED).
JOIN_ON = {
    ("task", "job"): "job.jid = task.jid",
    ("task", "invocation"): "invocation.jid = task.jid AND invocation.tid = task.tid AND invocation.current",
    ("task", "command"): "command.jid = task.jid AND command.cid = task.currcid",
    ("command", "job"): "job.jid = command.jid",
    ("command", "task"): "task.jid = command.jid AND task.tid = command.tid",
    ("command", "invocation"): "invocation.jid = command.jid AND invocation.cid = command.cid AND invocation.current",
    ("invocation", "job"): "job.jid = invocation.jid",
    ("invocation", "task"): "task.jid = invocation.jid AND task.tid = invocation.tid",
    ("invocation", "command"): "command.jid = invocation.jid AND command.cid = invocation.cid",
    ("invocation", "blade"): "blade.name = invocation.bladeid",
}

# Qualifier of a qualified attribute (``Job.owner``), case-insensitive.
PREFIXES = {"job": "job", "task": "task", "command": "command", "cmd": "command", "invocation": "invocation",
            "invo": "invocation", "blade": "blade", "param": "param"}

# Column kinds: int, float, bool, text, time, json, array-int, array-text.
_SQL_KINDS = (("bigint", "int"), ("integer", "int"), ("smallint", "int"), ("serial", "int"),
              ("real", "float"), ("double", "float"), ("numeric", "float"), ("boolean", "bool"),
              ("timestamp", "time"), ("json", "json"))


def kind_of(data_type: str, udt_name: str = "") -> str:
    """Column kind from an information_schema ``data_type`` (and ``udt_name`` for arrays)."""
    data_type = data_type.lower()
    if data_type == "array" or data_type.endswith("[]"):
        element = udt_name.lstrip("_") if udt_name else data_type[:-2]
        return "array-int" if element in ("int2", "int4", "int8", "integer", "bigint", "smallint") else "array-text"
    for prefix, kind in _SQL_KINDS:
        if data_type.startswith(prefix):
            return kind
    return "text"


def static_columns() -> dict[str, dict[str, str]]:
    """Every column any emulated version has, per table, with its kind: read from schema.py's DDL
    (the engine uses the columns its database really has; tq only resolves names with these)."""
    tables: dict[str, dict[str, str]] = {}
    for match in re.finditer(r"CREATE TABLE (\w+) \((.*?)\);$", schema.BASE_TABLES_SQL, re.S | re.M):
        cols: dict[str, str] = {}
        for part in re.split(r",\s*(?![^()]*\))", match.group(2)):
            words = part.split()
            if len(words) >= 2 and words[0].upper() != "PRIMARY":
                cols[words[0]] = kind_of(words[1])
        tables[match.group(1)] = cols
    for steps in schema.TABLE_STEPS.values():
        for step in steps:
            table = re.match(r"ALTER TABLE (\w+)", step.sql)
            for name, sqltype in re.findall(r"ADD COLUMN (\w+) (\w+(?:\[\])?)", step.sql):
                tables[table.group(1)][name] = kind_of(sqltype)
            for name, sqltype in re.findall(r"ALTER COLUMN (\w+) TYPE (\w+)", step.sql):
                tables[table.group(1)][name] = kind_of(sqltype)
    return tables


# =============================================================================================
# Parsing
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
            raise QueryError(f"search clause: unexpected character at {text[pos:]!r}")
        kind = match.lastgroup or "end"
        value = match.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append(Token(kind, value, match.start(kind)))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# AST nodes: ("or", a, b) ("and", a, b) ("not", a) ("cmp", attr, op, value) ("word", name)
# ("const", bool); value = ("lit", text, quoted) | ("list", [texts]).  A ("word", name) is an
# alias of the table or a bare attribute; which one is decided when the clause is compiled.

class _Parser:
    def __init__(self, text: str):
        self.text = text
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
            raise QueryError(f"search clause: unexpected {self.peek().text!r} in {self.text!r}")
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
                raise QueryError(f"search clause: missing ')' in {self.text!r}")
            return node
        if token.kind != "word" or token.text.lower() in _KEYWORDS:
            what = token.text or "end of clause"
            raise QueryError(f"search clause: expected an attribute or alias, got {what!r} in {self.text!r}")
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
            inner = self.take().text.lower()
            value = self.parse_value()
            if inner == "in" and value[0] != "list":
                value = ("list", [value[1]])
            return ("not", ("cmp", name, "like" if inner == "like" else "=", value))
        return ("word", name)

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
                    raise QueryError(f"search clause: bad list item {item.text!r} in {self.text!r}")
                items.append(item.text)
            if self.take().kind != "rb":
                raise QueryError(f"search clause: missing ']' in {self.text!r}")
            return ("list", items)
        raise QueryError(f"search clause: expected a value, got {token.text or 'end of clause'!r} in {self.text!r}")


def parse(text: str):
    """Parse a search clause (syntax only); an empty clause matches everything."""
    return _Parser(text or "").parse()


# =============================================================================================
# Values
# =============================================================================================

_RELTIME_RE = re.compile(r"^([-+]?\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time_value(text: str, now: float | None = None) -> float | None:
    """A clause time value: ``-1d`` (relative, s/m/h/d/w), epoch seconds, ``YYYY-MM-DD[ HH:MM[:SS]]``,
    ``MM/DD`` or ``MM/DD|HH:MM`` (this year), ISO 8601 as tractorselect prints times.  None if it is
    none of those."""
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
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.timestamp()


def to_epoch(value) -> float | None:
    """A tractorselect time (ISO 8601 string, see PROTOCOL.md) or a number -> epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return None


_TRUE = {"1", "t", "true", "yes", "y", "on"}
_FALSE = {"0", "f", "false", "no", "n", "off"}


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return None
        return number if number == number and abs(number) != float("inf") else None


# =============================================================================================
# Compiling to SQL (the engine side)
# =============================================================================================

def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class Compiler:
    """Turns attribute names and clauses of one tractorselect table into SQL.

    ``columns``: table -> {column: kind} as the database has them (the engine reads them from
    information_schema; tq passes ``static_columns()``).
    """

    def __init__(self, table: str, columns: dict[str, dict[str, str]], user: str = "",
                 now: float | None = None):
        key = (table or "").strip().lower()
        if key not in TABLES:
            raise QueryError(f"unknown table {table!r} (job, task, command, invocation, blade, param)")
        self.table = TABLES[key]
        self.columns = columns
        self.user = user
        self.now = time.time() if now is None else now
        self.joined: set[str] = set()
        self.depth = 0

    # -- names ---------------------------------------------------------------------------------
    def _lookup(self, table: str, attr: str) -> str | None:
        attr = attr.lower()
        attr = TABLES[table].synonyms.get(attr, attr)
        return attr if attr in self.columns.get(table, {}) else None

    def resolve(self, name: str) -> tuple[str, str]:
        """``Job.owner`` / ``owner`` / ``user`` -> (table, column); records the join it needs."""
        name = name.strip()
        prefix, dot, attr = name.partition(".")
        base = self.table.name
        if dot:
            table = PREFIXES.get(prefix.lower())
            if table is None:
                raise QueryError(f"unknown table {prefix!r} in attribute {name!r}")
            if table != base and table not in self.table.joins:
                raise QueryError(f"{prefix} attributes cannot be used in a {base} query ({name!r})")
            column = self._lookup(table, attr)
            if column is None:
                raise QueryError(f"unknown {table} attribute {name!r}")
        else:
            for table in (base, *self.table.joins):
                column = self._lookup(table, name)
                if column is not None:
                    break
            else:
                raise QueryError(f"unknown {base} attribute {name!r}")
        if table != base:
            self.joined.add(table)
        return table, column

    def ref(self, name: str) -> tuple[str, str]:
        table, column = self.resolve(name)
        return f"{_ident(table)}.{_ident(column)}", self.columns[table][column]

    def _column_operand(self, text: str) -> tuple[str, str] | None:
        """An unquoted value naming a column of the queried table (or qualified): compare columns."""
        prefix, dot, attr = text.partition(".")
        if dot and prefix.lower() in PREFIXES:
            return self.ref(text)
        if not dot and self._lookup(self.table.name, text) is not None:
            return self.ref(text)
        return None

    # -- clauses -------------------------------------------------------------------------------
    def where(self, clause: str) -> str:
        return self.compile(parse(clause))

    def compile(self, node) -> str:
        kind = node[0]
        if kind == "const":
            return "TRUE" if node[1] else "FALSE"
        if kind in ("or", "and"):
            return f"({self.compile(node[1])} {kind.upper()} {self.compile(node[2])})"
        if kind == "not":
            return f"(NOT {self.compile(node[1])})"
        if kind == "word":
            return self.word(node[1])
        _, name, op, value = node
        return self.comparison(name, op, value)

    def word(self, name: str) -> str:
        alias = self.table.aliases.get(name.lower())
        if alias is not None:
            if self.depth > 5:
                raise QueryError(f"search clause: alias {name!r} is recursive")
            self.depth += 1
            try:
                return self.compile(parse(alias.replace("$USER", json.dumps(self.user))))
            finally:
                self.depth -= 1
        sql, kind = self.ref(name)  # a bare attribute: set and not zero/empty (INVENTED)
        if kind == "bool":
            test = f"{sql} IS TRUE"
        elif kind in ("int", "float"):
            test = f"coalesce({sql}, 0) <> 0"
        elif kind == "text":
            test = f"coalesce({sql}, '') NOT IN ('', '0')"
        elif kind.startswith("array"):
            test = f"coalesce(cardinality({sql}), 0) > 0"
        else:
            test = f"{sql} IS NOT NULL"
        return f"coalesce({test}, FALSE)"

    def comparison(self, name: str, op: str, value) -> str:
        sql, kind = self.ref(name)
        if value[0] == "list":
            if op not in ("=", "!=", "like"):
                raise QueryError(f"search clause: a list cannot be compared with {op!r}")
            if not value[1]:
                return "TRUE" if op == "!=" else "FALSE"
            parts = [self.compare(name, sql, kind, "like" if op == "like" else "=", item, True) for item in value[1]]
            found = "(" + " OR ".join(parts) + ")"
            return f"(NOT {found})" if op == "!=" else found
        _, text, quoted = value
        return self.compare(name, sql, kind, op, text, quoted)

    def compare(self, name: str, sql: str, kind: str, op: str, text: str, quoted: bool) -> str:
        if not quoted and text.upper() == "NULL":
            if op == "=":
                return f"({sql} IS NULL)"
            if op == "!=":
                return f"({sql} IS NOT NULL)"
            raise QueryError(f"search clause: NULL can only be compared with = or != ({name} {op} NULL)")
        other = None if quoted else self._column_operand(text)
        if op == "like":
            pattern = f"{other[0]}::text" if other else literal(text)
            subject = f"array_to_string({sql}, ' ')" if kind.startswith("array") else f"{sql}::text"
            return f"coalesce({subject} ~ {pattern}, FALSE)"
        if op not in _SQL_OPS:
            raise QueryError(f"search clause: unknown operator {op!r}")
        if other is not None:
            osql, okind = other
            if kind != okind and {kind, okind} != {"int", "float"}:
                raise QueryError(f"search clause: {name} and {text} cannot be compared")
            return self._null_safe(sql, op, osql)
        if kind in ("int", "float"):
            number = _number(text)
            if number is None:
                raise QueryError(f"search clause: {name} needs a number, not {text!r}")
            return self._null_safe(sql, op, repr(number))
        if kind == "time":
            moment = parse_time_value(text, self.now)
            if moment is None:
                raise QueryError(f"search clause: {name} needs a time (-1d, epoch seconds, YYYY-MM-DD ...), "
                                 f"not {text!r}")
            return self._null_safe(sql, op, f"to_timestamp({moment!r})")
        if kind == "bool":
            word = text.lower()
            if word not in _TRUE | _FALSE:
                raise QueryError(f"search clause: {name} needs true or false, not {text!r}")
            return self._null_safe(f"coalesce({sql}, FALSE)", op, "TRUE" if word in _TRUE else "FALSE")
        if kind.startswith("array"):
            if op not in ("=", "!="):
                raise QueryError(f"search clause: a list attribute ({name}) can only be compared with = or !=")
            if kind == "array-int":
                number = _number(text)
                if number is None or not isinstance(number, int):
                    raise QueryError(f"search clause: {name} holds numbers, not {text!r}")
                element = repr(number)
            else:
                element = literal(text)
            member = f"coalesce({element} = ANY({sql}), FALSE)"
            return member if op == "=" else f"(NOT {member})"
        if kind == "json":
            return self._null_safe(f"coalesce({sql}::text, '')", op, literal(text))
        return self._null_safe(f"coalesce({sql}, '')", op, literal(text))

    @staticmethod
    def _null_safe(left: str, op: str, right: str) -> str:
        if op == "=":
            return f"coalesce({left} = {right}, FALSE)"
        if op == "!=":
            return f"({left} IS DISTINCT FROM {right})"
        return f"coalesce({left} {_SQL_OPS[op]} {right}, FALSE)"


@dataclasses.dataclass
class Select:
    sql: str                # one query; every cell is JSON text (to_json), NULL for NULL
    names: list[str]        # the row keys, in column order (bare column names)


def split_names(text: str) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def build_select(table: str, clause: str, cols: str, sort: str, limit: int | None, archived: bool,
                 user: str, columns: dict[str, dict[str, str]], now: float | None = None) -> Select:
    """The SQL of ``tractorselect(table, clause, cols, sort, limit, archived, aliases)``."""
    comp = Compiler(table, columns, user, now)
    base = comp.table.name
    where = [comp.where(clause)]
    selected: list[tuple[str, str]] = []
    if split_names(cols):
        for item in split_names(cols):
            selected.append(comp.resolve(item))
    else:
        selected = [(base, column) for column in columns.get(base, {})]
    names: list[str] = []
    exprs: list[str] = []
    for tbl, column in selected:
        if column in names:  # rows are keyed by bare names: the first of two same-named columns wins
            continue
        names.append(column)
        exprs.append(f"to_json({_ident(tbl)}.{_ident(column)})::text")
    order: list[str] = []
    for item in split_names(sort):
        descending = item.startswith("-")
        tbl, column = comp.resolve(item.lstrip("+-"))
        order.append(f"{_ident(tbl)}.{_ident(column)}" + (" DESC NULLS LAST" if descending else " ASC NULLS FIRST"))
    if not order:
        order = [f"{_ident(base)}.{_ident(column)}" for column in comp.table.key]
    if comp.table.archived_by_job and not archived:
        if base != "job":
            comp.joined.add("job")
        where.append('"job"."deletetime" IS NULL')
    sql = f"SELECT {', '.join(exprs) or 'NULL'} FROM {_ident(base)}"
    for joined in comp.table.joins:
        if joined in comp.joined:
            sql += f" LEFT JOIN {_ident(joined)} ON {JOIN_ON[(base, joined)]}"
    sql += " WHERE " + " AND ".join(where) + " ORDER BY " + ", ".join(order)
    if limit:
        sql += f" LIMIT {int(limit)}"
    return Select(sql, names)


# =============================================================================================
# The tractorselect(...) call as it arrives in db?q=
# =============================================================================================

_ARG_RE = re.compile(r"\s*(?:'((?:[^']|'')*)'|(NULL)|([-+]?\d+)|(true|false))\s*(,|$)", re.I)


def parse_call(text: str) -> tuple[str, list]:
    """``tractorselect('job', 'clause', 'cols', 'sort', 0, 'f', 'aliases')`` -> ("tractorselect", args).

    Strings come back as str (with '' unescaped), numbers as int, NULL as None, true/false as bool.
    """
    match = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*;?\s*", text or "", re.S)
    if not match:
        raise QueryError("not a function call")
    body = match.group(2)
    args: list = []
    pos = 0
    if body.strip():
        while pos < len(body):
            arg = _ARG_RE.match(body, pos)
            if not arg or arg.end() == pos:
                raise QueryError(f"bad argument list at {body[pos:][:40]!r}")
            if arg.group(1) is not None:
                args.append(arg.group(1).replace("''", "'"))
            elif arg.group(2):
                args.append(None)
            elif arg.group(3):
                args.append(int(arg.group(3)))
            else:
                args.append(arg.group(4).lower() == "true")
            pos = arg.end()
            if not arg.group(5):
                break
        if pos < len(body) and body[pos:].strip():
            raise QueryError(f"bad argument list at {body[pos:][:40]!r}")
    return match.group(1).lower(), args


def is_true(value) -> bool:
    """The archive flag: 't' / 'true' / true / 1."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    return str(value or "").strip().lower() in _TRUE
