# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A client of the engine's URL API (/Tractor/<verb>?...) on Ansible's own URL helpers.

Only requests and reply fields that the fact sheet confirms are read (its section 6.6-6.7):

* the version from the ``Server: Pixar_Tractor/<major.minor> (<date> <build> <platform>)`` header
  of any reply; of ``ctrl?q=status`` nothing but ``rc``;
* lists through ``db?q=tractorselect(...)`` (what tq and the query API use), reply
  ``{"rc": 0, "msg": ..., "rows": [...]}``;
* job pause through ``queue?q=jattr&jid=N&set_pause=1|0`` (what ``tq pause`` sends).

A reply of another shape raises ReplyUnrecognised, naming the request: it is never read as an
empty list.  The engine-wide dispatch switch of the Dashboard has no documented URL:
DISPATCH_SWITCH_QUERY is the one place that names it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import re

from urllib.error import HTTPError, URLError
from urllib.parse import urlencode

from ansible.module_utils.urls import open_url

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_install import build_of

SERVER_HEADER_RE = re.compile(r'Pixar_Tractor/(\d+\.\d+)\s*\((.*)\)', re.I)
# The Dashboard's "pause all dispatching" switch: its real request is undocumented. This is the
# emulator's URL; opt in with dispatch_method=engine_switch only where the engine answers it.
DISPATCH_SWITCH_QUERY = 'ctrl?q=dispatching&pause=%d'
DISPATCH_STATE_QUERY = 'ctrl?q=dispatching'


class EngineUnavailable(Exception):
    pass


class ReplyUnrecognised(Exception):
    """The engine answered, but not in a shape the fact sheet confirms: nothing is read from it."""

    def __init__(self, request, why, reply=None):
        super(ReplyUnrecognised, self).__init__('the reply to %s is not one this module knows (%s); nothing was '
                                                'changed on the strength of it' % (request, why))
        self.request = request
        self.reply = reply


class EngineRefused(Exception):
    def __init__(self, msg, reply=None, headers=None, status=None):
        super(EngineRefused, self).__init__(msg)
        self.reply = reply
        # The reply's headers (e.g. Server: the version of an engine that refuses) and HTTP status.
        self.headers = headers
        self.status = status


def _sql_string(value):
    """A tractorselect argument: single-quoted, quotes doubled."""
    return "'%s'" % str(value).replace("'", "''")


def tractorselect_query(table, clause, columns, sort='', archived=False):
    """The q= value of a tractorselect request (fact sheet 6.6); no row limit (0)."""
    cols = ','.join('%s.%s' % (table.capitalize(), name) for name in columns)
    return 'tractorselect(%s, %s, %s, %s, 0, %s, %s)' % (
        _sql_string(table), _sql_string(clause), _sql_string(cols), _sql_string(sort),
        _sql_string('t' if archived else 'f'), _sql_string(''))


def parse_select_reply(request, reply, columns):
    """The rows of a tractorselect reply, each with every column asked for; ReplyUnrecognised otherwise."""
    if not isinstance(reply, dict):
        raise ReplyUnrecognised(request, 'a %s, not an object' % type(reply).__name__, reply)
    if reply.get('rc', 0) != 0:
        raise ReplyUnrecognised(request, 'rc=%r' % reply.get('rc'), reply)
    rows = reply.get('rows')
    if not isinstance(rows, list):
        raise ReplyUnrecognised(request, 'no "rows" list' if rows is None else '"rows" is a %s' % type(rows).__name__,
                                reply)
    out = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ReplyUnrecognised(request, 'row %d is a %s, not an object' % (index, type(row).__name__), reply)
        # Rows are keyed by bare column names; a qualified key (Job.jid) is accepted as the same.
        bare = dict((key.rsplit('.', 1)[-1].lower() if isinstance(key, str) else key, value)
                    for key, value in row.items())
        missing = [name for name in columns if name not in bare]
        if missing:
            raise ReplyUnrecognised(request, 'row %d lacks %s' % (index, ', '.join(missing)), reply)
        out.append(bare)
    return out


def parse_server_header(value):
    """'Pixar_Tractor/2.4 (Aug 17 2020 05:39:38 2091325 linux-...)' -> ('2.4', '2091325') or (None, None)."""
    match = SERVER_HEADER_RE.search(value or '')
    if not match:
        return None, None
    return match.group(1), build_of(match.group(2))


class EngineClient(object):
    def __init__(self, address, user='root', password=None, timeout=10):
        self.base = 'http://%s/Tractor/' % address
        self.address = address
        self.user = user
        self.password = password
        self.timeout = timeout
        self.tsid = None

    def request(self, verb, params=None, data=None, content_type=None, session=False):
        """One request; returns (reply dict, headers). Raises EngineUnavailable / EngineRefused."""
        params = dict(params or {})
        if session:
            params['tsid'] = self.login()
        url = self.base + verb + ('?' + urlencode(params) if params else '')
        headers = {'User-Agent': 'renderfarm.tractor (ansible)'}
        if content_type:
            headers['Content-Type'] = content_type
        try:
            response = open_url(url, data=data, headers=headers, method='POST' if data is not None else 'GET',
                                timeout=self.timeout, validate_certs=False, use_proxy=False)
            body, info = response.read(), response.headers
        except HTTPError as err:
            body, info = err.read(), err.headers
            try:
                reply = json.loads(body)
            except ValueError:
                raise EngineUnavailable('engine at %s answered HTTP %s' % (self.address, err.code))
            raise EngineRefused(reply.get('msg') or 'HTTP %s' % err.code, reply, headers=info, status=err.code)
        except (URLError, OSError, IOError) as exc:
            raise EngineUnavailable('engine at %s does not answer: %s' % (self.address, exc))
        try:
            reply = json.loads(body)
        except ValueError:
            raise EngineUnavailable('engine at %s sent a reply that is not JSON' % self.address)
        if isinstance(reply, dict) and reply.get('rc', 0) != 0:
            raise EngineRefused(reply.get('msg') or 'rc=%s' % reply.get('rc'), reply, headers=info, status=200)
        return reply, info

    def login(self):
        if self.tsid is None:
            params = {'q': 'login', 'user': self.user}
            reply, _info = self.request('monitor', params)
            tsid = reply.get('tsid') if isinstance(reply, dict) else None
            if not isinstance(tsid, str) or not tsid:
                raise ReplyUnrecognised('monitor?q=login', 'no "tsid" string', reply)
            self.tsid = tsid
        return self.tsid

    def logout(self):
        if self.tsid is not None:
            try:
                self.request('monitor', {'q': 'logout', 'user': self.user, 'tsid': self.tsid})
            except (EngineUnavailable, EngineRefused):
                pass
            self.tsid = None

    def _query(self, verb_query, session=False, data=None, content_type=None):
        verb, _sep, query = verb_query.partition('?')
        params = dict(pair.split('=', 1) for pair in query.split('&') if pair)
        return self.request(verb, params, data=data, content_type=content_type, session=session)

    def status(self):
        """ctrl?q=status: its rc only (checked by request()), plus the version of the Server header."""
        _reply, headers = self.request('ctrl', {'q': 'status'})
        version, build = parse_server_header(headers.get('Server'))
        return dict(server_version=version, server_build=build)

    def probe(self):
        """One ctrl?q=status: dict(answered, healthy, version, build, status, error).

        Healthy means it answered with the Server header of a Tractor engine (fact sheet 6.1);
        the version and build come from that header, never from the body.
        """
        try:
            reply = self.status()
        except EngineRefused as exc:
            version, build = parse_server_header(exc.headers.get('Server') if exc.headers is not None else None)
            return dict(answered=True, healthy=False, version=version, build=build, status=None,
                        error='ctrl?q=status was refused%s: %s' % (' (HTTP %s)' % exc.status if exc.status else '', exc))
        except EngineUnavailable as exc:
            return dict(answered=False, healthy=False, version=None, build=None, status=None, error=str(exc))
        if not reply.get('server_version'):
            return dict(answered=True, healthy=False, version=None, build=None, status=reply,
                        error='%s answers, but not as a Tractor engine (no Pixar_Tractor Server header)' % self.address)
        return dict(answered=True, healthy=True, version=reply['server_version'], build=reply.get('server_build'),
                    status=reply, error=None)

    def select(self, table, clause='', columns=(), sort='', archived=False):
        """Rows of db?q=tractorselect(...) as dicts keyed by bare column names; every column asked for.

        Raises ReplyUnrecognised when the reply has no list of rows, a row is not an object or lacks
        a column that was asked for.
        """
        query = tractorselect_query(table, clause, columns, sort, archived)
        request = 'db?q=' + query
        reply, _info = self.request('db', {'q': query}, session=True)
        return parse_select_reply(request, reply, columns)

    def pause_job(self, jid, pause):
        """What `tq pause` / `tq unpause` send: queue?q=jattr&set_pause=1|0."""
        return self.request('queue', {'q': 'jattr', 'jid': jid, 'set_pause': 1 if pause else 0}, session=True)[0]

    def dispatch_switch(self, pause=None):
        """The invented engine-wide switch: set it (pause True/False) or read it (None)."""
        query = DISPATCH_SWITCH_QUERY % (1 if pause else 0) if pause is not None else DISPATCH_STATE_QUERY
        reply = self._query(query, session=True)[0]
        state = reply.get('dispatching') if isinstance(reply, dict) else None
        if not isinstance(state, dict) or not isinstance(state.get('paused'), bool):
            raise ReplyUnrecognised(query, 'no dispatching.paused boolean', reply)
        return state['paused']
