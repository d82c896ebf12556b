# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Downgrade steps 1 and 2 on a running engine: pause the jobs, retry the active tasks, and prove both.

Every step reads its effect back through tractorselect (fact sheet 6.6-6.7) before it returns:

* pausing: every unfinished job reads back with a ``pausetime``; jobs spooled meanwhile are
  paused too, until one listing shows none left;
* retrying: the invocations that ran the active tasks read back as ended (``stoptime`` set, or no
  longer ``current``), i.e. their blades have killed the commands.

Each wait is bounded (``confirm_timeout``); running out of time is an error that names what is
still running and leaves the engine up, with the jobs paused.  Changes go through ``record``
(the module's choke point: False in check mode, where nothing is sent).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_engine_client import (
    EngineRefused, ReplyUnrecognised,
)

JOB_COLUMNS = ('jid', 'pausetime', 'numtasks', 'numdone')
COUNT_COLUMNS = ('numblocked', 'numready', 'numactive', 'numerror', 'numdone')
TASK_COLUMNS = ('jid', 'tid', 'state')
INVOCATION_COLUMNS = ('jid', 'tid', 'cid', 'iid', 'current', 'stoptime', 'bladeid')
TRUE_VALUES = (True, 1, 't', 'true', 'T', 'True')
FALSE_VALUES = (False, 0, 'f', 'false', 'F', 'False')


class DispatchError(Exception):
    """A step could not be confirmed; the message says what is left and how to go on."""

    def __init__(self, msg, **details):
        super(DispatchError, self).__init__(msg)
        self.details = details


def as_int(request, row, name):
    value = row.get(name)
    if isinstance(value, bool):
        raise ReplyUnrecognised(request, '%s is %r, not a number' % (name, value), row)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ReplyUnrecognised(request, '%s is %r, not a number' % (name, value), row)


def as_bool(request, row, name):
    value = row.get(name)
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise ReplyUnrecognised(request, '%s is %r, not a boolean' % (name, value), row)


def is_set(value):
    """A timestamp column: NULL (None or empty) means not set."""
    return value not in (None, '')


def jid_clause(jids):
    """A tq search clause selecting the given jobs: 'jid=1 or jid=2'."""
    return ' or '.join('jid=%d' % jid for jid in sorted(set(jids)))


def invocation_key(inv):
    return (inv['jid'], inv['tid'], inv['cid'], inv['iid'])


def describe_invocation(inv):
    blade = inv.get('bladeid')
    return 'J%d T%d C%d I%d%s' % (inv['jid'], inv['tid'], inv['cid'], inv['iid'],
                                  ' on blade %s' % blade if blade not in (None, '') else '')


class Dispatch(object):
    """Steps 1 and 2 of the downgrade through confirmed requests; see the module docstring."""

    def __init__(self, client, record, confirm_timeout, poll=1.0, clock=time.monotonic, sleep=time.sleep):
        self.client = client
        self.record = record
        self.confirm_timeout = confirm_timeout
        self.poll = poll
        self.clock = clock
        self.sleep = sleep
        self.progress = []      # one line per read-back round: what the caller shows the operator
        self.warnings = []

    # -- reading -----------------------------------------------------------------------------
    def jobs(self):
        """Live (not archived) jobs: [{jid, paused, unfinished}]."""
        request = 'tractorselect job'
        out = []
        for row in self.client.select('job', '', JOB_COLUMNS):
            out.append(dict(jid=as_int(request, row, 'jid'), paused=is_set(row.get('pausetime')),
                            unfinished=as_int(request, row, 'numdone') < as_int(request, row, 'numtasks')))
        return out

    def task_counts(self):
        """Task counts by state (blocked, ready, active, error, done) summed over the live jobs."""
        request = 'tractorselect job'
        counts = dict((name[3:], 0) for name in COUNT_COLUMNS)
        for row in self.client.select('job', '', COUNT_COLUMNS):
            for name in COUNT_COLUMNS:
                counts[name[3:]] += as_int(request, row, name)
        return counts

    def active_tasks(self):
        request = 'tractorselect task state=active'
        tasks = []
        for row in self.client.select('task', 'state=active', TASK_COLUMNS):
            state = row.get('state')
            if not isinstance(state, str):
                raise ReplyUnrecognised(request, 'state is %r, not a task state' % (state,), row)
            if state == 'active':   # the clause asked for these only; anything else is not ours to retry
                tasks.append((as_int(request, row, 'jid'), as_int(request, row, 'tid')))
        return sorted(set(tasks))

    def invocations(self, jids):
        request = 'tractorselect invocation %s' % jid_clause(jids)
        out = []
        for row in self.client.select('invocation', jid_clause(jids), INVOCATION_COLUMNS):
            inv = dict((name, as_int(request, row, name)) for name in ('jid', 'tid', 'cid', 'iid'))
            inv['running'] = as_bool(request, row, 'current') and not is_set(row.get('stoptime'))
            inv['bladeid'] = row.get('bladeid')
            out.append(inv)
        return out

    def _note(self, started, text):
        self.progress.append('%.1f s: %s' % (self.clock() - started, text))

    # -- step 1 ------------------------------------------------------------------------------
    def pause(self):
        """Pause every unfinished job that is not paused; returns (paused_now, confirmed, live jids).

        The live jids are those of the last listing, so that the caller needs no listing of its own.

        Repeats list-then-pause until a listing shows every unfinished job paused (confirmed), or
        fails after confirm_timeout.  In check mode (record() False) the first listing is the plan.
        """
        started = self.clock()
        deadline = started + self.confirm_timeout
        paused_now = []
        rounds = 0
        while True:
            rounds += 1
            jobs = self.jobs()
            live = set(job['jid'] for job in jobs)
            targets = sorted(job['jid'] for job in jobs if job['unfinished'] and not job['paused'])
            if not targets:
                self._note(started, 'every unfinished job reads back as paused')
                return sorted(paused_now), True, live
            sent = False
            for jid in targets:
                if self.record('queue?q=jattr&jid=%d&set_pause=1' % jid):
                    self.client.pause_job(jid, True)
                    sent = True
                if jid not in paused_now:
                    paused_now.append(jid)
            if not sent:
                return sorted(paused_now), False, live   # check mode: nothing sent, nothing to read back
            self._note(started, 'paused %d job(s): %s' % (len(targets), ', '.join(str(j) for j in targets)))
            if self.clock() >= deadline:
                raise DispatchError(
                    'jobs %s still read back as unpaused %.0f s after they were paused (confirm_timeout); the engine '
                    'is still up. Pause them in the Dashboard or with tq pause, then run the task again'
                    % (', '.join(str(j) for j in targets), self.clock() - started),
                    unpaused=targets, paused_now=sorted(paused_now))
            # the first read-back follows at once; a job still unpaused after it is given time
            self.sleep(0 if rounds == 1 else self.poll)

    def resume(self, jids):
        """Unpause these jobs (those still there and paused); returns the jids unpaused."""
        started = self.clock()
        wanted = set(jids)
        resumed = []
        sent = False
        for job in self.jobs():
            if job['jid'] in wanted and job['paused']:
                if self.record('queue?q=jattr&jid=%d&set_pause=0' % job['jid']):
                    try:
                        self.client.pause_job(job['jid'], False)
                    except EngineRefused as exc:   # e.g. deleted meanwhile: the others still resume
                        self.warnings.append('job %d could not be unpaused: %s' % (job['jid'], exc))
                        continue
                    sent = True
                resumed.append(job['jid'])
        if not sent:    # nothing resumed, or check mode: nothing to read back
            return sorted(resumed)
        deadline = started + self.confirm_timeout
        while True:
            still = sorted(job['jid'] for job in self.jobs() if job['jid'] in set(resumed) and job['paused'])
            if not still:
                self._note(started, 'jobs %s read back as unpaused' % ', '.join(str(j) for j in sorted(resumed)))
                return sorted(resumed)
            if self.clock() >= deadline:
                raise DispatchError('jobs %s still read back as paused %.0f s after they were unpaused '
                                    '(confirm_timeout): unpause them in the Dashboard or with tq unpause'
                                    % (', '.join(str(j) for j in still), self.clock() - started), paused=still)
            self.sleep(self.poll)

    # -- step 2 ------------------------------------------------------------------------------
    def retry_active(self, run_retry):
        """Retry every active task (run_retry() runs tq) and wait until their commands have ended.

        Returns dict(tasks=[(jid, tid)], invocations=[...], retried=<tq's count or None>, confirmed).
        """
        started = self.clock()
        tasks = self.active_tasks()
        result = dict(tasks=[list(t) for t in tasks], invocations=[], retried=0, confirmed=True)
        if not tasks:
            self._note(started, 'no task is active')
            return result
        active = set(tasks)
        jids = sorted(set(jid for jid, _tid in tasks))
        running = [inv for inv in self.invocations(jids) if inv['running'] and (inv['jid'], inv['tid']) in active]
        result['invocations'] = [describe_invocation(inv) for inv in running]
        self._note(started, '%d active task(s), %d running command(s)' % (len(tasks), len(running)))
        retried = run_retry()
        if retried is None:     # check mode: tq was not run
            result.update(retried=None, confirmed=False)
            return result
        result['retried'] = retried
        waiting = dict((invocation_key(inv), inv) for inv in running)
        deadline = started + self.confirm_timeout
        while waiting:
            now = dict((invocation_key(inv), inv) for inv in self.invocations(jids))
            for key in list(waiting):
                if key in now and not now[key]['running']:
                    del waiting[key]
            if not waiting:
                break
            self._note(started, 'waiting for %d command(s) to end on their blades: %s'
                       % (len(waiting), ', '.join(describe_invocation(inv) for inv in waiting.values())))
            if self.clock() >= deadline:
                raise DispatchError(
                    'after tq retry active, %d command(s) still run %.0f s later (confirm_timeout): %s. Their blades '
                    'have not killed them yet (a blade that is down or polls rarely). The engine is still up and its '
                    'jobs stay paused. Make sure those blades reach the engine, or kill the commands on them, then '
                    'run the task again; or raise confirm_timeout'
                    % (len(waiting), self.clock() - started,
                       ', '.join(describe_invocation(inv) for inv in waiting.values())),
                    still_running=[describe_invocation(inv) for inv in waiting.values()])
            self.sleep(self.poll)
        self._note(started, 'every retried command has ended')
        return result
