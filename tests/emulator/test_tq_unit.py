"""Fast unit tests of the emulated tq's pure logic: search clauses, columns, formatting, option
parsing (fact sheet §5), and tractor-spool's job validation.  No engine, no network."""

from __future__ import annotations

import io
import time

import pytest

from tractor_emulator import client, query, spool, tq
from tractor_emulator.client import UsageError

NOW = 1_700_000_000.0

JOBS = [
    {"jid": 1, "owner": "ann", "title": "shot 10", "priority": 100.0, "numtasks": 3, "numblocked": 0,
     "numready": 1, "numactive": 1, "numerror": 0, "numdone": 1, "spooltime": NOW - 3600,
     "pausetime": None, "deletetime": None, "comment": ""},
]


# -- search clauses (§5): tq checks the syntax, the engine evaluates (test_tractorselect.py) --------------
@pytest.mark.parametrize("clause", [
    "", "active", "Job.owner=ann and not done", "jid in [1 3]", "title not like ^r3", 'title="shot 10"',
    "spooltime < -1d", "!done", "(a=1 or b=2) and not c", "pausetime = NULL",
])
def test_good_clauses_parse(clause):
    tq.parse_clause(clause)


@pytest.mark.parametrize("clause", [
    "owner=", "(active", "active and", "and", "owner = [a", "x @ y", "a=1 b=2",
])
def test_bad_clauses(clause):
    with pytest.raises(UsageError):
        tq.parse_clause(clause)


def test_tractorselect_call_quotes_like_the_shipped_client():
    call = tq.tractorselect_call(tq.TABLES["jobs"], "title='it''s'", ["Job.jid", "Job.owner"], ["-Job.jid"],
                                 2500, False)
    assert call == "tractorselect('job', 'title=''it''''s''', 'Job.jid,Job.owner', '-Job.jid', 2500, 'f', '')"
    name, args = query.parse_call(call)
    assert name == "tractorselect"
    assert args == ["job", "title='it''s'", "Job.jid,Job.owner", "-Job.jid", 2500, "f", ""]
    assert query.parse_call(tq.tractorselect_call(tq.TABLES["tasks"], "", [], [], 0, True))[1][4:6] == [0, "t"]


def test_select_sql_quotes_values_and_checks_names():
    columns = query.static_columns()
    select = query.build_select("task", "title=\"x' OR 'a'='a\" and user=ann", "jid,tid,user", "-Job.priority",
                                10, False, "ann", columns)
    assert select.names == ["jid", "tid", "owner"]
    assert "'x'' OR ''a''=''a'" in select.sql and " LIMIT 10" in select.sql
    assert '"job"."deletetime" IS NULL' in select.sql and 'LEFT JOIN "job"' in select.sql
    for bad in (("job", "nosuch=1", ""), ("job", "", "jid;drop"), ("job", "Blade.name=x", ""), ("nosuch", "", "")):
        with pytest.raises(query.QueryError):
            query.build_select(*bad, "", 0, False, "ann", columns)


def test_relative_and_absolute_times():
    assert tq.parse_time_value("-1d", NOW) == NOW - 86400
    assert tq.parse_time_value("+2h", NOW) == NOW + 7200
    assert tq.parse_time_value("1234", NOW) == 1234
    assert tq.parse_time_value("2020-08-17", NOW) == time.mktime((2020, 8, 17, 0, 0, 0, 0, 0, -1))
    assert tq.parse_time_value("shot", NOW) is None


# -- columns and formatting (§5) -------------------------------------------------------------------
def names(cols):
    return [c.name for c in cols]


def test_default_columns():
    jobs = tq.select_columns(tq.TABLES["jobs"], None)
    assert names(jobs) == ["jid", "user", "title", "pri", "numblocked", "numready", "numactive",
                           "numerror", "numdone", "spooled"]
    assert names(tq.select_columns(tq.TABLES["tasks"], None)) == [
        "jid", "tid", "user", "title", "state", "statetime", "blade"]
    assert names(tq.select_columns(tq.TABLES["blades"], None)) == [
        "name", "port", "profile", "load", "availdisk", "availmem", "starttime", "nimby"]
    assert names(tq.select_columns(tq.TABLES["params"], None)) == ["name", "value"]
    assert names(tq.select_columns(tq.TABLES["invocations"], None)) == [
        "jid", "tid", "cid", "iid", "blade", "starttime", "stoptime", "rcode", "argv"]  # §5
    assert names(tq.select_columns(tq.TABLES["commands"], None)) == ["jid", "tid", "cid", "argv"]
    # what tractorselect is asked for, and the row key each column reads
    tasks = tq.select_columns(tq.TABLES["tasks"], None)
    assert [(c.attr, c.key) for c in tasks if c.name in ("user", "blade")] == [
        ("Job.owner", "owner"), ("Invocation.bladeid", "bladeid")]


def test_job_header_and_separator():
    cols = tq.select_columns(tq.TABLES["jobs"], None)
    header, rule = tq.format_header(cols, tq.FormatOptions())
    assert header.split() == ["jid", "user", "title", "pri", "blkd", "redy", "actv", "err", "done", "spooled"]
    assert set(rule.replace(" ", "")) == {"="}
    assert len(rule.split()) == len(cols)


def test_cols_add_remove_replace_width():
    table = tq.TABLES["jobs"]
    assert names(tq.select_columns(table, "+numtasks,-spooled"))[-2:] == ["numdone", "numtasks"]
    assert "spooled" not in names(tq.select_columns(table, "-spooled"))
    assert "user" not in names(tq.select_columns(table, "-owner"))   # synonym removal
    assert names(tq.select_columns(table, "jid,title")) == ["jid", "title"]
    assert tq.select_columns(table, "title=12")[0].width == 12
    # any attribute of the table can be a column, bare, synonym or qualified
    cols = tq.select_columns(table, "jid,spoolhost,cwd,Job.maxtid")
    assert [(c.name, c.attr, c.key) for c in cols][1:] == [
        ("spoolhost", "Job.spoolhost", "spoolhost"), ("cwd", "Job.spoolcwd", "spoolcwd"),
        ("job.maxtid", "Job.maxtid", "maxtid")]
    assert tq.select_columns(tq.TABLES["tasks"], "activetime")[0].kind == "time"
    with pytest.raises(UsageError):
        tq.select_columns(table, "jid,nosuch")


def test_format_row_zeros_times_and_delimiter():
    cols = tq.select_columns(tq.TABLES["jobs"], None)
    row = JOBS[0]
    line = tq.format_row(cols, row, tq.FormatOptions())
    fields = line.split()
    assert fields[:4] == ["1", "ann", "shot", "10"]
    assert fields[-1] == time.strftime("%m/%d|%H:%M", time.localtime(row["spooltime"]))
    assert "|" in fields[-1] and "/" in fields[-1]
    # zero counts are blank unless --zeros
    assert " 0 " not in line
    zeros = tq.format_row(cols, row, tq.FormatOptions(zeros=True))
    assert " 0 " in zeros
    # priority 100.0 prints as 100
    assert "100.0" not in line
    plain = tq.format_row(tq.select_columns(tq.TABLES["jobs"], "jid,user,title"), row,
                          tq.FormatOptions(delimiter=","))
    assert plain == "1,ann,shot 10"
    raw = tq.format_row(tq.select_columns(tq.TABLES["jobs"], "spooled"), row, tq.FormatOptions(raw=True))
    assert raw == str(int(row["spooltime"]))
    # tractorselect sends ISO 8601 times (PROTOCOL.md)
    iso = dict(row, spooltime="2023-11-14T22:13:20+00:00")
    spooled = tq.select_columns(tq.TABLES["jobs"], "spooled")
    assert tq.format_row(spooled, iso, tq.FormatOptions(raw=True)) == "1700000000"
    assert tq.format_row(spooled, iso, tq.FormatOptions()) == time.strftime("%m/%d|%H:%M", time.localtime(NOW))
    assert tq.format_row(spooled, dict(row, spooltime=None), tq.FormatOptions()) == ""


def test_argv_column_quotes():
    cols = tq.select_columns(tq.TABLES["tasks"], "argv")
    assert tq.format_row(cols, {"argv": ["echo", "a b"]}, tq.FormatOptions()) == "echo 'a b'"


def test_sort_spec():
    table = tq.TABLES["jobs"]
    assert tq.sort_spec(table, None) == ["Job.jid"]
    assert tq.sort_spec(table, "-pri") == ["-Job.priority"]
    assert tq.sort_spec(table, "user,-jid") == ["Job.owner", "-Job.jid"]
    assert tq.sort_spec(tq.TABLES["tasks"], None) == ["Task.jid", "Task.tid"]
    assert tq.sort_spec(tq.TABLES["tasks"], "-user") == ["-Job.owner"]
    with pytest.raises(UsageError):
        tq.sort_spec(table, "nosuch")


# -- option parsing (§5) ---------------------------------------------------------------------------
def test_sub_options():
    opts = tq.parse_sub_args("jobs", ["-c", "jid,title", "-s", "-jid", "--limit", "0", "--nh",
                                      "--delimiter=;", "--ns", "-a", "owner=ann", "and", "spooltime",
                                      "<", "-1d"])
    assert (opts.cols, opts.sortby, opts.limit, opts.noheader, opts.delimiter, opts.nosort,
            opts.archives) == ("jid,title", "-jid", 0, True, ";", True, True)
    assert opts.clause == "owner=ann and spooltime < -1d"


@pytest.mark.parametrize("argv", [["jobs", "--yes"], ["retry", "active", "--force"],
                                  ["jobs", "--engine", "x:1"], ["tasks", "-u", "bob"]])
def test_global_option_after_subcommand_is_an_error(argv, capsys):
    err = io.StringIO()
    assert tq.main("2.4", "/nonexistent", argv, stdout=io.StringIO(), stderr=err) == 2
    assert "must come before the subcommand" in err.getvalue()


def test_version_line():
    out = io.StringIO()
    assert tq.main("2.4", "/nonexistent", ["-v"], stdout=out) == 0
    assert out.getvalue() == "2.4 (2091325) - 17 Aug 2020 05:40:13\n"
    out = io.StringIO()
    assert tq.main("2.2", "/nonexistent", ["--version"], stdout=out) == 0
    assert out.getvalue().startswith("2.2 (1715407) - ")


@pytest.mark.parametrize("argv, message", [
    (["nosuch"], "unknown subcommand"),
    (["jobs", "--bogus"], "unknown option --bogus"),
    (["jobs", "owner ="], "search clause"),
    (["retry"], "a search clause is required"),
    (["--threads", "0", "jobs"], "--threads"),
    (["--engine", "host:notaport", "jobs"], "bad engine address"),
])
def test_usage_errors_exit_2(argv, message):
    err = io.StringIO()
    assert tq.main("2.4", "/nonexistent", argv, stdout=io.StringIO(), stderr=err) == 2
    assert message in err.getvalue()


# -- engine address (§5) ---------------------------------------------------------------------------
def test_engine_resolution():
    assert client.resolve_engine("127.0.0.1:8080", {}) == ("127.0.0.1", 8080)
    assert client.resolve_engine(None, {"TRACTOR_ENGINE": "127.0.0.2"}) == ("127.0.0.2", 80)
    assert client.resolve_engine("127.0.0.3:81", {"TRACTOR_ENGINE": "127.0.0.2:9"}) == ("127.0.0.3", 81)
    host, port = client.resolve_engine(None, {})
    assert port == 80 and host in ("tractor-engine", "127.0.0.1")
    assert client.default_user({}) == "root"
    assert client.default_user({"USER": "ann"}) == "ann"


def test_engine_down_is_exit_2():
    err = io.StringIO()
    assert tq.main("2.4", "/nonexistent", ["--engine", "127.0.0.1:1", "jobs"],
                   stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue().startswith("tq: cannot reach the engine at 127.0.0.1:1: ")


# -- tractor-spool job validation ------------------------------------------------------------------
def test_spool_validation():
    good = {"title": "t", "priority": 10, "tasks": [
        {"title": "a", "argv": ["echo", "hi"]},
        {"title": "b", "cmds": [{"argv": ["true"]}], "subtasks": [{"title": "c", "argv": ["true"]}]},
        {"title": "group", "subtasks": [{"argv": ["true"]}]},
    ]}
    assert spool.validate_job(good) == 5
    for bad in ({}, {"tasks": []}, {"tasks": [{"argv": "echo hi"}]}, {"tasks": [{"argv": ["echo", 1]}]},
                {"tasks": [{"title": "empty"}]}, {"tasks": [{"cmds": [{}]}]},
                {"priority": "high", "tasks": [{"argv": ["true"]}]}, []):
        with pytest.raises(spool.JobError):
            spool.validate_job(bad)


def test_spool_refuses_alf(tmp_path):
    job = tmp_path / "job.alf"
    job.write_text("Job -title {x} -subtasks {}\n")
    err = io.StringIO()
    assert spool.main("2.4", "/nonexistent", [str(job)], stdout=io.StringIO(), stderr=err) == 2
    assert ".alf" in err.getvalue() and "not" in err.getvalue()


def test_spool_print(tmp_path):
    job = tmp_path / "job.json"
    job.write_text('{"title": "t", "tasks": [{"argv": ["true"]}]}')
    out = io.StringIO()
    assert spool.main("2.4", "/nonexistent", ["--print", "-p", "7", "--title", "new", str(job)], stdout=out) == 0
    assert '"priority": 7' in out.getvalue() and '"title": "new"' in out.getvalue()
