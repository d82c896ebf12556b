"""``db?q=tractorselect(...)`` and the Dashboard feeds of the emulated engine (fact sheet §5, §6.6).

One engine for the module, its job database filled through psql with known rows (the engine only
reads them): every table, the clause operators and aliases, columns, sort, limit, archived rows and
the errors.  Also the real shapes of ``monitor?q=jobs`` / ``monitor?q=blades``, the removal of
``monitor?q=tasks|params`` and the minimal ``ctrl?q=status``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.parse
from datetime import datetime

import pytest

from tractor_emulator import pg
from tractor_sites import EngineProc, Site

VERSION = "2.4"

ROWS_SQL = """
BEGIN;
INSERT INTO job (jid, owner, title, priority, numtasks, numblocked, numready, numactive, numerror, numdone,
                 spooltime, pausetime, deletetime, crews, projects, spoolhost) VALUES
 (1, 'ann', 'shot 10', 100, 3, 0, 1, 1, 0, 1, now() - interval '1 hour', NULL, NULL, '{lighting}', '{p1}', 'ws1'),
 (2, 'bob', 'comp', 50, 2, 0, 0, 0, 0, 2, now() - interval '3 days', now() - interval '60 seconds', NULL,
  '{comp}', '{p2}', 'ws2'),
 (3, 'ann', 'r3 lighting', 75, 2, 1, 0, 0, 1, 0, now() - interval '2 minutes', NULL, NULL, '{}', '{}', 'ws1'),
 (4, 'ann', 'old', 10, 1, 0, 0, 0, 0, 1, now() - interval '10 days', NULL, now() - interval '5 days',
  '{}', '{}', 'ws1');
INSERT INTO task (jid, tid, title, state, cids, currcid) VALUES
 (1, 1, 'frame 1', 'done', '{1}', 1), (1, 2, 'frame 2', 'active', '{2}', 2), (1, 3, 'frame 3', 'ready', '{3}', 3),
 (2, 1, 'c1', 'done', '{1}', 1), (2, 2, 'c2', 'done', '{2}', 2),
 (3, 1, 'x', 'error', '{1}', 1), (3, 2, 'y', 'blocked', '{2}', 2),
 (4, 1, 'old t', 'done', '{1}', 1);
INSERT INTO command (jid, cid, tid, argv) VALUES
 (1, 1, 1, '{echo,one}'), (1, 2, 2, '{sleep,60}'), (1, 3, 3, '{echo,three}'),
 (2, 1, 1, '{true}'), (2, 2, 2, '{true}'), (3, 1, 1, '{false}'), (3, 2, 2, '{true}'), (4, 1, 1, '{true}');
INSERT INTO invocation (jid, tid, cid, iid, current, bladeid, numslots, starttime, stoptime, rcode) VALUES
 (1, 1, 1, 1, true, 'b1', 1, now() - interval '50 minutes', now() - interval '49 minutes', 0),
 (1, 2, 2, 1, true, 'b1', 1, now() - interval '1 minute', NULL, NULL),
 (3, 1, 1, 1, true, 'b2', 1, now() - interval '3 minutes', now() - interval '2 minutes', 1),
 (4, 1, 1, 1, true, 'b1', 1, now() - interval '10 days', now() - interval '10 days', 0);
INSERT INTO blade (name, ipaddr, port, profile, version, numslots, status, heartbeattime, starttime) VALUES
 ('b1', '127.0.0.1', 9005, 'default', '2.4', 2, 'up', now() + interval '1 hour', now() - interval '1 hour'),
 ('b2', '127.0.0.2', 9005, 'linux', '2.2', 1, 'down', now() - interval '1 hour', now() - interval '2 hours');
UPDATE param SET value = '4' WHERE name = 'jidcounter';
COMMIT;
"""


def lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Db:
    """The module's engine, with a session per user."""

    def __init__(self, site: Site, engine: EngineProc):
        self.site = site
        self.engine = engine
        self.sessions: dict[str, str] = {}

    def tsid(self, user: str) -> str:
        if user not in self.sessions:
            self.sessions[user] = self.engine.call(f"monitor?q=login&user={user}")[2]["tsid"]
        return self.sessions[user]

    def raw(self, call: str, user: str | None = "ann", post: bool = False):
        """db?q=<call>; returns (HTTP status, reply)."""
        params = {"q": call}
        if user:
            params["tsid"] = self.tsid(user)
        if post:
            status, _, reply = self.engine.call("db", urllib.parse.urlencode(params).encode(),
                                                "application/x-www-form-urlencoded")
        else:
            status, _, reply = self.engine.call("db?" + urllib.parse.urlencode(params))
        return status, reply

    def select(self, table, clause="", cols="", sort="", limit="0", archived="f", user="ann") -> dict:
        call = (f"tractorselect({lit(table)}, {lit(clause)}, {lit(cols)}, {lit(sort)}, {limit}, "
                f"{lit(archived)}, '')")
        status, reply = self.raw(call, user)
        assert status == 200, reply
        return reply

    def rows(self, *args, **kwargs) -> list[dict]:
        reply = self.select(*args, **kwargs)
        assert reply["rc"] == 0, reply
        assert reply["msg"] == f"{len(reply['rows'])} rows"
        return reply["rows"]

    def keys(self, table, clause, key_cols, **kwargs) -> list:
        rows = self.rows(table, clause, ",".join(key_cols), **kwargs)
        if len(key_cols) == 1:
            return [row[key_cols[0]] for row in rows]
        return [tuple(row[k] for k in key_cols) for row in rows]


@pytest.fixture(scope="module")
def db(world, owner, installs):
    base = tempfile.mkdtemp(prefix="site-", dir=world)
    os.chmod(base, 0o755)
    site = Site(base, owner, installs)
    try:
        engine = site.start_engine(VERSION)
        psql = os.path.join(pg.find_bindir(installs(VERSION)), "psql")
        proc = site.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "localhost", "-p", str(site.db_port),
                         "-U", "root", "-d", "tractor", "-c", ROWS_SQL])
        assert proc.returncode == 0, proc.stderr
        yield Db(site, engine)
    finally:
        site.cleanup()


# -- the job table, every operator and alias (§5) ---------------------------------------------------------
@pytest.mark.parametrize("clause, expected", [
    ("", [1, 2, 3]),
    ("active", [1]),
    ("ready", [1]),
    ("blocked", [3]),
    ("error", [3]),
    ("done", [2]),                       # done = numdone=numtasks (attribute vs attribute)
    ("mine", [1, 3]),                    # owner = the session's user (ann)
    ("user=bob", [2]),                   # user is a synonym of owner
    ("Job.owner=ann and not done", [1, 3]),
    ("owner=ann or owner=bob", [1, 2, 3]),
    ("not (active or error)", [2]),
    ("(jid=1 or jid=2) and not (jid=2)", [1]),
    ("priority >= 75", [1, 3]),
    ("pri < 75", [2]),
    ("priority > 75", [1]),
    ("priority <= 50", [2]),
    ("jid = 2", [2]),
    ("jid != 2", [1, 3]),
    ("jid <> 2", [1, 3]),
    ("Job.jid >= 2", [2, 3]),
    ("jid in [1 3]", [1, 3]),
    ("jid not in [1 3]", [2]),
    ("owner=[bob]", [2]),
    ("title like ^r3", [3]),
    ("title like 'shot|comp'", [1, 2]),
    ("title not like ^r3", [1, 2]),
    ('title="shot 10"', [1]),
    ("title='shot 10'", [1]),
    ("spooltime < -1d", [2]),            # relative time: older than a day
    ("spooled > -10m", [3]),
    ("pausetime = NULL", [1, 3]),        # NULL: IS NULL / IS NOT NULL
    ("pausetime != NULL", [2]),
    ("paused", [2]),
    ("not paused and mine", [1, 3]),
    ("ACTIVE OR done", [1, 2]),          # keywords and aliases are case-insensitive
    ("!done", [1, 3]),
    ("crews=lighting", [1]),             # list attributes: membership
    ("projects like ^p", [1, 2]),
    ("spoolhost", [1, 2, 3]),            # a bare attribute: set and not empty
    ("numdone=numtasks", [2]),
])
def test_job_clauses(db, clause, expected):
    assert db.keys("job", clause, ["jid"]) == expected


def test_archived_jobs_and_their_rows(db):
    assert db.keys("job", "", ["jid"], archived="t") == [1, 2, 3, 4]
    assert db.keys("job", "deletetime != NULL", ["jid"], archived="t") == [4]
    assert (4, 1) in db.keys("task", "", ["jid", "tid"], archived="t")
    assert (4, 1) not in db.keys("task", "", ["jid", "tid"])
    assert db.keys("command", "jid=4", ["jid", "cid"]) == []
    assert db.keys("invocation", "jid=4", ["jid", "iid"], archived="t") == [(4, 1)]


# -- the other tables --------------------------------------------------------------------------------------
@pytest.mark.parametrize("clause, expected", [
    ("", [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (3, 1), (3, 2)]),
    ("active", [(1, 2)]),
    ("done", [(1, 1), (2, 1), (2, 2)]),
    ("error", [(3, 1)]),
    ("ready or blocked", [(1, 3), (3, 2)]),
    ("state=active and mine", [(1, 2)]),
    ("Task.state=done and Job.owner=bob", [(2, 1), (2, 2)]),
    ("user=bob", [(2, 1), (2, 2)]),      # job attributes reach a task query
    ("blade=b2", [(3, 1)]),              # its current invocation's blade
    ("blade like ^b", [(1, 1), (1, 2), (3, 1)]),
    ("argv like sleep", [(1, 2)]),       # its current command
    ("Task.title like '^frame [12]$'", [(1, 1), (1, 2)]),
])
def test_task_clauses(db, clause, expected):
    assert db.keys("task", clause, ["jid", "tid"]) == expected


def test_commands_invocations_blades_params(db):
    assert db.keys("command", "argv like sleep", ["jid", "cid"]) == [(1, 2)]
    assert db.keys("command", "active", ["jid", "cid"]) == [(1, 2)]
    assert db.keys("command", "mine and tid=1", ["jid", "cid"], user="bob") == [(2, 1)]
    assert db.keys("invocation", "stoptime = NULL", ["jid", "tid", "cid", "iid"]) == [(1, 2, 2, 1)]
    assert db.keys("invocation", "rcode > 0", ["jid", "iid"]) == [(3, 1)]
    assert db.keys("invocation", "blade=b1 and current", ["jid", "tid"]) == [(1, 1), (1, 2)]
    assert db.keys("invocation", "Blade.profile=linux", ["jid", "tid"]) == [(3, 1)]
    assert db.keys("invocation", "active", ["jid", "tid"]) == [(1, 2)]
    assert db.keys("blade", "", ["name"]) == ["b1", "b2"]
    assert db.keys("blade", "up", ["name"]) == ["b1"]
    assert db.keys("blade", "down", ["name"]) == ["b2"]
    assert db.keys("blade", "profile=linux or version=2.4", ["name"]) == ["b1", "b2"]
    assert db.keys("Blade", "port=9005 and name like 1$", ["name"]) == ["b1"]  # table name: any case
    params = {row["name"]: row["value"] for row in db.rows("param", "", "name,value")}
    assert params["schema-version"] == "2.2-4" and params["jidcounter"] == "4"


# -- columns: keys, types, NULL (§6.6) ---------------------------------------------------------------------
def test_columns_and_value_types(db):
    rows = db.rows("job", "jid in [1 2]", "Job.jid,Job.pausetime")
    assert [list(row) for row in rows] == [["jid", "pausetime"], ["jid", "pausetime"]]  # bare keys
    assert rows[0] == {"jid": 1, "pausetime": None}  # not paused: null [C]
    paused = rows[1]["pausetime"]
    assert isinstance(paused, str) and abs(datetime.fromisoformat(paused).timestamp() - (time.time() - 60)) < 30

    assert db.rows("job", "jid=3", "jid,title,user") == [{"jid": 3, "title": "r3 lighting", "owner": "ann"}]

    everything = db.rows("job", "jid=1")[0]  # empty columns: all of the table's columns
    for column in ("jid", "owner", "title", "priority", "numtasks", "numactive", "pausetime", "spooltime",
                   "deletetime", "crews", "projects", "maxtid", "metadata", "dirmap", "pil"):
        assert column in everything, column
    assert isinstance(everything["jid"], int) and everything["numtasks"] == 3
    assert everything["crews"] == ["lighting"] and everything["projects"] == ["p1"]
    assert everything["priority"] == 100 and everything["serialsubtasks"] is False
    spooled = datetime.fromisoformat(everything["spooltime"])  # ISO 8601 (PROTOCOL.md)
    assert spooled.utcoffset().total_seconds() == 0 and abs(spooled.timestamp() - (time.time() - 3600)) < 60

    task = db.rows("task", "jid=1 and tid=2", "Task.jid,Task.tid,Task.state,Job.owner,Invocation.bladeid,"
                                              "Command.argv,Task.retrycount")
    assert task == [{"jid": 1, "tid": 2, "state": "active", "owner": "ann", "bladeid": "b1",
                     "argv": ["sleep", "60"], "retrycount": 0}]
    assert db.rows("task", "jid=1 and tid=2", "cids")[0]["cids"] == [2]

    invocation = db.rows("invocation", "jid=1 and tid=2")[0]
    for column in ("jid", "tid", "cid", "iid", "current", "bladeid", "starttime", "stoptime", "rcode", "pid"):
        assert column in invocation, column
    assert invocation["current"] is True and invocation["stoptime"] is None and invocation["rcode"] is None
    blade = db.rows("blade", "name=b1")[0]
    for column in ("name", "ipaddr", "port", "profile", "version", "status", "heartbeattime"):
        assert column in blade, column
    assert (blade["ipaddr"], blade["port"], blade["profile"]) == ("127.0.0.1", 9005, "default")


# -- sort and limit ------------------------------------------------------------------------------------------
def test_sort_and_limit(db):
    assert db.keys("job", "", ["jid"]) == [1, 2, 3]  # default: the table's key
    assert db.keys("job", "", ["jid"], sort="-priority") == [1, 3, 2]
    assert db.keys("job", "", ["jid"], sort="Job.owner,-Job.jid") == [3, 1, 2]
    assert db.keys("job", "", ["jid"], sort="-spooltime") == [3, 1, 2]
    assert db.keys("task", "", ["jid", "tid"], sort="-Job.priority,-Task.tid")[:3] == [(1, 3), (1, 2), (1, 1)]
    assert db.keys("job", "", ["jid"], limit="2") == [1, 2]
    assert db.keys("job", "", ["jid"], sort="-jid", limit="1") == [3]
    assert db.keys("job", "", ["jid"], limit="0") == [1, 2, 3]
    assert db.keys("job", "", ["jid"], limit="NULL") == [1, 2, 3]


def test_post_form_and_ignored_aliases(db):
    call = "tractorselect('job', 'jid=2', 'jid', '', NULL, 'f', '{''x'': ''y''}')"
    status, reply = db.raw(call, post=True)
    assert status == 200 and reply == {"rc": 0, "msg": "1 rows", "rows": [{"jid": 2}]}


# -- errors: rc != 0, nothing read ---------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ("job", "owner=", "", ""),            # syntax error
    ("job", "(active", "", ""),
    ("job", "title like '('", "", ""),    # bad regular expression
    ("job", "nosuch=1", "", ""),          # unknown attribute
    ("job", "priority=high", "", ""),     # not a number
    ("job", "spooltime < yesterday", "", ""),
    ("job", "Blade.name=b1", "", ""),     # a table a job query cannot reach
    ("job", "", "jid,nosuch", ""),        # unknown column
    ("job", "", "Job.jid;DROP TABLE job", ""),
    ("job", "", "", "-nosuch"),           # unknown sort column
    ("jobz", "", "", ""),                 # unknown table
    ("note", "", "", ""),
])
def test_errors(db, args):
    reply = db.select(*args)
    assert reply["rc"] != 0 and isinstance(reply["msg"], str) and "rows" not in reply, reply


def test_error_messages_name_the_problem(db):
    assert "nosuch" in db.select("job", "nosuch=1")["msg"]
    assert "nosuch" in db.select("task", "", "jid,nosuch")["msg"]


def test_malformed_calls_and_no_session(db):
    status, reply = db.raw("tractorselect('job', '', '', '', 0, 'f', '')", user=None)
    assert status == 200 and reply["rc"] != 0 and reply["msg"] == "login required"
    for call in ("tractorselect('job', '')", "tractorselect('job', '', '', '', 0, 'f', '', 'x')",
                 "tractorselect('job', '', '', '', 'ten', 'f', '')", "tractorselect(job)",
                 "SELECT * FROM job", "tractorselect('job', '', '', '', 0, 'f', '') ; DROP TABLE job"):
        status, reply = db.raw(call)
        assert status == 200 and reply["rc"] != 0, (call, reply)


def test_values_cannot_inject_sql(db):
    for clause in ("title=\"x' OR 'a'='a\"", "owner=\"ann' OR 1=1 --\"", "title like \"'; DROP TABLE job; --\""):
        assert db.rows("job", clause, "jid") == []
    assert db.keys("job", "", ["jid"]) == [1, 2, 3]  # the table is still there


# -- Dashboard feeds in their real shapes (§6.6) ---------------------------------------------------------
def test_monitor_jobs_is_per_user(db):
    status, _, reply = db.engine.call("monitor?q=jobs")
    assert status == 200 and set(reply) == {"users"}, reply
    assert sorted(reply["users"]) == ["ann", "bob"]
    assert sorted(reply["users"]["ann"]) == ["1", "3"]  # archived job 4 left out; jids as strings
    data = reply["users"]["ann"]["1"]["data"]
    assert data["user"] == "ann" and data["jid"] == 1 and data["title"] == "shot 10"
    assert data["projects"] == ["p1"] and data["nTasks"][:2] == [3, 1]  # nTasks[1]: active tasks
    assert reply["users"]["bob"]["2"]["data"]["projects"] == ["p2"]


def test_monitor_blades_uses_short_keys(db):
    status, _, reply = db.engine.call("monitor?q=blades")
    assert status == 200 and set(reply) == {"blades"}
    blades = {blade["hnm"]: blade for blade in reply["blades"]}
    assert sorted(blades) == ["b1", "b2"]
    b1 = blades["b1"]
    for key in ("hnm", "addr", "as", "numcmd", "vers", "note", "nimby", "profile", "ncpu", "mem", "disk", "t",
                "owners"):
        assert key in b1, key
    assert (b1["addr"], b1["vers"], b1["profile"], b1["note"]) == ("127.0.0.1", "2.4", "default", "up")
    assert b1["numcmd"] == 1 and b1["owners"] == ["ann"] and b1["as"] == 1  # 2 slots, 1 busy
    assert abs(b1["t"] - (time.time() + 3600)) < 60  # last heartbeat, epoch seconds
    assert blades["b2"]["numcmd"] == 0 and blades["b2"]["owners"] == [] and blades["b2"]["note"] == "down"


@pytest.mark.parametrize("query", ["monitor?q=tasks", "monitor?q=tasks&jid=1", "monitor?q=params"])
def test_removed_lists_are_unknown_requests(db, query):
    status, _, reply = db.engine.call(query)
    assert status == 404 and reply["rc"] != 0 and "unknown request" in reply["msg"]


def test_ctrl_status_is_minimal_and_the_introspection_is_elsewhere(db):
    status, headers, reply = db.engine.call("ctrl?q=status")
    assert status == 200 and reply == {"rc": 0, "msg": "ok"}
    assert headers["Server"].startswith(f"Pixar_Tractor/{VERSION} (")  # §6.1
    assert db.engine.call("ctrl?q=status&qlen=1&enumq=1")[2] == {"rc": 0, "msg": "ok"}
    status, headers, reply = db.engine.call("emulator?q=status")
    assert status == 200 and headers["Server"].startswith(f"Pixar_Tractor/{VERSION} (")
    assert reply["version"] == VERSION and reply["schema-version"] == "2.2-4" and isinstance(reply["pid"], int)
    assert reply["queue"]["jobs"] == 3 and reply["queue"]["tasks"]["active"] == 1
    assert json.loads(json.dumps(reply["dispatching"])) == {"paused": False}
