"""tractor_engine_client: tractorselect requests and replies (fact sheet 6.6), the Server header (6.1)."""

from __future__ import annotations

import pytest

from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_engine_client as tc

HTTP_24_SERVER = "Pixar_Tractor/2.4 (Aug 17 2020 05:39:38 2091325 linux-ix86-64-gcc44icc150-release)"  # 6.1


def test_server_header_of_a_real_engine():
    assert tc.parse_server_header(HTTP_24_SERVER) == ("2.4", "2091325")
    assert tc.parse_server_header("nginx/1.22") == (None, None)
    assert tc.parse_server_header(None) == (None, None)


def test_tractorselect_query_has_the_public_clients_shape():
    # db?q=tractorselect('<table>', '<clause>', '<cols>', '<sort>', <limit>, 't'|'f', '<aliases>') (6.6)
    assert tc.tractorselect_query("job", "", ("jid", "pausetime")) == \
        "tractorselect('job', '', 'Job.jid,Job.pausetime', '', 0, 'f', '')"
    assert tc.tractorselect_query("task", "title='it''s'", ("jid",), archived=True) == \
        "tractorselect('task', 'title=''it''''s''', 'Task.jid', '', 0, 't', '')"


def test_rows_of_a_real_shaped_reply():
    reply = {"rc": 0, "msg": "2 rows", "rows": [
        {"jid": 1, "owner": "ann", "pausetime": None, "numtasks": 3},
        {"Job.jid": 2, "Job.owner": "bob", "Job.pausetime": "2026-12-06 10:00:00", "Job.numtasks": 1},
    ]}
    rows = tc.parse_select_reply("req", reply, ("jid", "pausetime"))
    assert [(r["jid"], r["pausetime"]) for r in rows] == [(1, None), (2, "2026-12-06 10:00:00")]
    assert tc.parse_select_reply("req", {"rc": 0, "msg": "0 rows", "rows": []}, ("jid",)) == []


@pytest.mark.parametrize("reply, why", [
    ({"users": {"ann": {"1": {"data": {}}}}}, 'no "rows" list'),           # monitor?q=jobs's real shape
    ({"rc": 0, "rows": None}, 'no "rows" list'),
    ({"rc": 0, "rows": {"jid": 1}}, '"rows" is a dict'),
    ({"rc": 0, "rows": [1, 2]}, "row 0 is a int, not an object"),
    ({"rc": 0, "rows": [{"jid": 1}]}, "row 0 lacks pausetime"),
    ({"rc": 1, "msg": "bad clause", "rows": []}, "rc=1"),
    ([{"jid": 1}], "a list, not an object"),
    ("ok", "a str, not an object"),
])
def test_an_unrecognised_reply_is_an_error_not_an_empty_list(reply, why):
    with pytest.raises(tc.ReplyUnrecognised) as info:
        tc.parse_select_reply("db?q=tractorselect('job', ...)", reply, ("jid", "pausetime"))
    assert why in str(info.value) and str(info.value).startswith("the reply to db?q=tractorselect('job', ...) is not")


def test_select_and_status_read_nothing_but_rc_and_the_header(monkeypatch):
    sent = []

    def request(self, verb, params=None, data=None, content_type=None, session=False):
        sent.append((verb, dict(params or {}), session))
        if verb == "ctrl":
            return {"rc": 0, "pid": 42, "queue": {"tasks": {"active": 9}}}, {"Server": HTTP_24_SERVER}
        return {"rc": 0, "msg": "1 rows", "rows": [{"jid": 5, "state": "active", "tid": 1}]}, {}
    monkeypatch.setattr(tc.EngineClient, "request", request)
    client = tc.EngineClient("localhost:80")
    assert client.status() == {"server_version": "2.4", "server_build": "2091325"}   # no pid, no queue
    assert client.select("task", "state=active", ("jid", "tid", "state")) == [{"jid": 5, "state": "active", "tid": 1}]
    assert sent[1] == ("db", {"q": "tractorselect('task', 'state=active', 'Task.jid,Task.tid,Task.state', '', 0, "
                                   "'f', '')"}, True)


def test_login_without_a_tsid_is_unrecognised(monkeypatch):
    monkeypatch.setattr(tc.EngineClient, "request", lambda self, verb, params=None, **kw: ({"rc": 0, "login": "ok"}, {}))
    with pytest.raises(tc.ReplyUnrecognised, match='monitor.q=login.*no "tsid" string'):
        tc.EngineClient("localhost:80").login()


def raises(error):
    def reply():
        raise error
    return reply


@pytest.mark.parametrize("reply, expected", [
    # a healthy engine: version and build from the Server header only
    (lambda: ({"rc": 0}, {"Server": HTTP_24_SERVER}),
     dict(answered=True, healthy=True, version="2.4", build="2091325", error=None)),
    # something else on the port: answers, but is not a Tractor engine
    (lambda: ({"rc": 0}, {"Server": "nginx/1.22"}),
     dict(answered=True, healthy=False, version=None, build=None, error="not as a Tractor engine")),
    # an engine that refuses (HTTP 503 during its schema upgrade): its header still names it
    (raises(tc.EngineRefused("busy", headers={"Server": HTTP_24_SERVER}, status=503)),
     dict(answered=True, healthy=False, version="2.4", build="2091325", error="refused (HTTP 503)")),
    # nothing listens
    (raises(tc.EngineUnavailable("connection refused")),
     dict(answered=False, healthy=False, version=None, build=None, error="connection refused")),
])
def test_probe_is_one_rule_for_every_module(monkeypatch, reply, expected):
    monkeypatch.setattr(tc.EngineClient, "request", lambda self, verb, params=None, **kw: reply())
    found = tc.EngineClient("localhost:80").probe()
    error = expected.pop("error")
    assert {key: found[key] for key in expected} == expected
    assert (found["error"] is None) if error is None else (error in found["error"])
