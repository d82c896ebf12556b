# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A client of the engine's URL API (/Tractor/<verb>?...) on Ansible's own URL helpers.

Every engine reply carries ``Server: Pixar_Tractor/<major.minor> (<date> <build> <platform>)``;
that header is how the running version is read.  The engine-wide dispatch switch of the
Dashboard has no documented URL: DISPATCH_SWITCH_QUERY is the one place that names it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import re

from urllib.error import HTTPError, URLError
from urllib.parse import urlencode

from ansible.module_utils.urls import open_url

SERVER_HEADER_RE = re.compile(r'Pixar_Tractor/(\d+\.\d+)\s*\((.*)\)', re.I)
# The Dashboard's "pause all dispatching" switch: its real request is undocumented. This is the
# emulator's URL; opt in with dispatch_method=engine_switch only where the engine answers it.
DISPATCH_SWITCH_QUERY = 'ctrl?q=dispatching&pause=%d'


class EngineUnavailable(Exception):
    pass


class EngineRefused(Exception):
    def __init__(self, msg, reply=None, headers=None, status=None):
        super(EngineRefused, self).__init__(msg)
        self.reply = reply
        # The reply's headers (e.g. Server: the version of an engine that refuses) and HTTP status.
        self.headers = headers
        self.status = status


def parse_server_header(value):
    """'Pixar_Tractor/2.4 (Aug 17 2020 05:39:38 2091325 linux-...)' -> ('2.4', '2091325') or (None, None)."""
    match = SERVER_HEADER_RE.search(value or '')
    if not match:
        return None, None
    build = None
    for word in match.group(2).split():
        if word.isdigit() and len(word) >= 6:
            build = word
    return match.group(1), build


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
            self.tsid = reply['tsid']
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
        """ctrl?q=status plus the version read from the Server header."""
        reply, headers = self.request('ctrl', {'q': 'status'})
        version, build = parse_server_header(headers.get('Server'))
        reply = dict(reply)
        reply['server_version'] = version
        reply['server_build'] = build
        return reply

    def jobs(self):
        return self.request('monitor', {'q': 'jobs'})[0].get('jobs', [])

    def tasks(self, jid=None):
        params = {'q': 'tasks'}
        if jid is not None:
            params['jid'] = jid
        return self.request('monitor', params)[0].get('tasks', [])

    def pause_job(self, jid, pause):
        """What `tq pause` / `tq unpause` send: queue?q=jattr&set_pause=1|0."""
        return self.request('queue', {'q': 'jattr', 'jid': jid, 'set_pause': 1 if pause else 0}, session=True)[0]

    def dispatch_switch(self, pause):
        return self._query(DISPATCH_SWITCH_QUERY % (1 if pause else 0), session=True)[0]
