# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The per-engine lock as a lease: a JSON file that names its holder and when it expires.

The holding run renews the lease at every phase, and a long job on the engine host (a backup
running as an async job) renews it while it works and registers itself as a worker. A lock is

* **live** while its lease runs, or while a process that holds it provably runs: the controller
  when it is this host (pid and start time match), or a registered worker (always on this host);
* **stale** once its lease expired and no holder provably runs, or once every holder is
  provably gone (the controller is this host and its process is gone, and no worker runs).

A stale lock is taken over by the next run; a live one only by naming its run id. Every change
of the file happens under ``flock`` on a sidecar guard file (``<lock>.guard``, never removed),
and the file is replaced by rename, so that of two runs taking or breaking one lock at the same
moment exactly one wins and a reader never sees half a file.

Only the standard library: this runs on the managed host under Python 3.8 or later.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import json
import os
import socket
import threading
import time

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_files import write_text_atomic
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_process import pid_alive

# A lock written by 1.0.0 has no expiry: it expires this long after it was taken.
LEGACY_LEASE = 21600
# How long a run waits for another run that is changing the lock file at this moment.
GUARD_WAIT = 30.0


class LeaseError(Exception):
    """The lock could not be taken, renewed or released; the message says why and what to do."""

    def __init__(self, msg, previous=None):
        super(LeaseError, self).__init__(msg)
        self.previous = previous or {}


def process_start(pid):
    """The start time of a process (clock ticks since boot, as /proc/PID/stat has it), or None."""
    try:
        with open('/proc/%d/stat' % int(pid)) as handle:
            return handle.read().rsplit(')', 1)[1].split()[19]
    except (IOError, OSError, IndexError, TypeError, ValueError):
        return None


def process_runs(pid, started):
    """Whether the process pid still runs and is the one that started at ``started`` (a pid the
    kernel gave to another process since counts as gone)."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return None  # unknown: nothing can be proved
    if pid < 1 or not pid_alive(pid):
        return False
    if started and str(started) != '0':
        now_started = process_start(pid)
        if now_started is not None and now_started != str(started):
            return False
    return True


def read(path):
    """The lock at path: None when there is none, a dict with ``unreadable`` when it is not JSON."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise LeaseError('cannot read the lock %s: %s' % (path, exc))
    except ValueError:
        data = None
    if not isinstance(data, dict):
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            mtime = 0
        return dict(run_id=None, unreadable=True, created=mtime)
    return data


def expires(lock, legacy_lease=LEGACY_LEASE):
    """Epoch seconds at which the lock's lease ends."""
    if lock.get('expires') is not None:
        return float(lock['expires'])
    return float(lock.get('created') or 0) + legacy_lease


def judge(lock, now, this_host=None, legacy_lease=LEGACY_LEASE):
    """(state, reason) of a lock held by another run: state is 'live' or 'stale'."""
    this_host = this_host or socket.gethostname()
    if lock.get('unreadable'):
        if now > expires(lock, legacy_lease):
            return 'stale', 'the lock file is not valid JSON and older than %d s' % legacy_lease
        return 'live', 'the lock file is not valid JSON (being written by an older release?)'
    workers = [w for w in lock.get('workers') or [] if isinstance(w, dict)]
    for worker in workers:
        if process_runs(worker.get('pid'), worker.get('started')):
            return 'live', 'its job %s (pid %s) still works on this engine' % (worker.get('what') or '', worker.get('pid'))
    host, pid = lock.get('controller_host') or '', lock.get('controller_pid')
    same_host = bool(host) and host == this_host and pid
    end = expires(lock, legacy_lease)
    if same_host:
        runs = process_runs(pid, lock.get('controller_started'))
        if runs is False:
            return 'stale', 'its controller process %s on %s is gone' % (pid, host)
        if runs:
            if now > end:
                return 'live', ('its lease expired %d s ago but its controller process %s on %s still runs'
                                % (now - end, pid, host))
            return 'live', 'its controller process %s on %s runs' % (pid, host)
    if now > end:
        return 'stale', 'its lease expired %d s ago (%s)' % (now - end, stamp(end))
    return 'live', 'its lease runs until %s (%d s from now)' % (stamp(end), end - now)


def stamp(epoch):
    return time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(epoch))


def describe(lock, now):
    """The holder in words: run id, controller, user, purpose, age and expiry."""
    return ('run %s (%s) from controller %s, user %s, pid %s, taken %s (%d s ago), lease until %s'
            % (lock.get('run_id'), lock.get('purpose') or 'no purpose given', lock.get('controller_host') or 'unknown',
               lock.get('controller_user') or 'unknown', lock.get('controller_pid'),
               stamp(float(lock.get('created') or 0)), now - float(lock.get('created') or 0), stamp(expires(lock))))


class Guard(object):
    """flock on ``<lock>.guard`` for the read-decide-write of one change."""

    def __init__(self, path, wait=GUARD_WAIT, clock=time.time):
        self.path = path + '.guard'
        self.wait = wait
        self.clock = clock
        self.fd = None

    def __enter__(self):
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LeaseError('cannot open the lock guard %s: %s' % (self.path, exc))
        deadline = self.clock() + self.wait
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(self.fd)
                    raise LeaseError('cannot lock the guard %s: %s' % (self.path, exc))
            if self.clock() > deadline:
                os.close(self.fd)
                raise LeaseError('another process held %s for more than %d s; re-run later' % (self.path, self.wait))
            time.sleep(0.05)

    def __exit__(self, exc_type, exc, tb):
        os.close(self.fd)  # closing releases the flock


def write(path, lock):
    """Replace the lock file atomically (a reader sees the old or the new one, never half)."""
    try:
        write_text_atomic(path, json.dumps(lock, sort_keys=True), mode=0o644)
    except (IOError, OSError) as exc:
        raise LeaseError('cannot write the lock %s: %s' % (path, exc))


def refuse_directory(path):
    if os.path.isdir(path):
        raise LeaseError('the lock path %s is a directory; name a file (the roles use '
                         '<TractorDataDirectory>/.renderfarm-tractor.lock)' % path)


def take(path, holder, lease, break_run_id=None, check_mode=False, now=None, this_host=None, legacy_lease=LEGACY_LEASE):
    """Take, renew or take over the lock for holder (a dict with run_id, controller_host,
    controller_pid, controller_started, controller_user, purpose). Returns (outcome, lock,
    previous) with outcome 'taken', 'renewed' or 'taken over'; raises LeaseError when another
    run holds it."""
    refuse_directory(path)
    directory = os.path.dirname(path) or '.'
    if not os.path.isdir(directory):
        raise LeaseError('cannot lock %s: its directory %s does not exist (path must name a file in an existing '
                         'directory)' % (path, directory))
    if check_mode:
        return decide(read(path), holder, lease, break_run_id, now, this_host, legacy_lease)
    with Guard(path):
        outcome, lock, previous = decide(read(path), holder, lease, break_run_id, now, this_host, legacy_lease)
        write(path, lock)
    return outcome, lock, previous


def decide(existing, holder, lease, break_run_id, now, this_host, legacy_lease=LEGACY_LEASE):
    now = time.time() if now is None else now
    lock = dict(holder, created=now, renewed=now, expires=now + lease, lease=lease,
                host=this_host or socket.gethostname(), workers=[], format=2)
    if not existing:
        return 'taken', lock, {}
    previous = dict(existing)
    if existing.get('run_id') == holder['run_id']:
        # a renewal names only the run: the holder's other fields stay as the run recorded them
        lock = dict(existing)
        lock.update((key, value) for key, value in holder.items() if value not in (None, ''))
        lock.update(renewed=now, expires=now + lease, lease=lease)
        return 'renewed', lock, {}
    state, reason = judge(existing, now, this_host, legacy_lease)
    previous.update(stale=state == 'stale', stale_reason=reason)
    if state == 'stale':
        return 'taken over', lock, previous
    if break_run_id and break_run_id == existing.get('run_id'):
        previous.update(broken=True)
        return 'taken over', lock, previous
    if break_run_id:
        raise LeaseError('engine locked by another run: %s. You asked to break run %s, which does not hold it: '
                         'nothing was changed' % (describe(existing, now), break_run_id), previous)
    raise LeaseError(
        'engine locked by another run: %s; %s. Wait for it, or, if you know that run is gone, break it with '
        'break_run_id=%s (the roles: -e tractor_lock_break=%s). Nothing was changed.'
        % (describe(existing, now), reason, existing.get('run_id'), existing.get('run_id')), previous)


def release(path, run_id, force=False, check_mode=False):
    """Remove the lock of run_id. Returns (released, previous); raises LeaseError when another run
    holds it and force is false."""
    refuse_directory(path)
    with Guard(path) if not check_mode else _NoGuard():
        existing = read(path)
        if not existing:
            return False, {}
        if existing.get('run_id') != run_id and not force:
            state, reason = judge(existing, time.time())
            raise LeaseError('%s is held by another run (%s; %s): not releasing it; use force=true only if you know '
                             'that run is gone' % (path, existing.get('run_id'), reason), dict(existing, stale_reason=reason))
        if not check_mode:
            try:
                os.unlink(path)
            except OSError as exc:
                raise LeaseError('cannot remove the lock %s: %s' % (path, exc))
    return True, existing


class _NoGuard(object):
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return False


def renew(path, run_id, lease, worker=None, leaving=False):
    """Extend run_id's lease (and add or, with leaving, remove a worker {pid, started, what}).
    Raises LeaseError when run_id no longer holds the lock."""
    with Guard(path):
        existing = read(path)
        if not existing or existing.get('run_id') != run_id:
            raise LeaseError('run %s no longer holds the lock %s (now: %s)'
                             % (run_id, path, (existing or {}).get('run_id') or 'nobody'))
        now = time.time()
        workers = [w for w in existing.get('workers') or [] if isinstance(w, dict)]
        if worker:
            workers = [w for w in workers if w.get('pid') != worker['pid']]
            if not leaving:
                workers.append(worker)
        existing.update(renewed=now, expires=now + lease, lease=lease, workers=workers)
        write(path, existing)
    return existing


class LeaseKeeper(object):
    """Keeps run_id's lease while a long step runs in this process: registers the process as a
    worker, renews every lease/4 seconds, and leaves when the step ends. A lost lease (somebody
    broke it by run id) is recorded in ``lost`` and stops the renewal; the step goes on."""

    def __init__(self, path, run_id, lease, what, on_lost=None):
        self.path, self.run_id, self.lease = path, run_id, lease
        self.on_lost = on_lost
        self.worker = dict(pid=os.getpid(), started=process_start(os.getpid()), what=what)
        self.stopped = threading.Event()
        self.thread = None
        self.lost = None

    def __enter__(self):
        self.beat()
        if self.lost is None:
            self.thread = threading.Thread(target=self.run)
            self.thread.daemon = True
            self.thread.start()
        return self

    def beat(self, leaving=False):
        try:
            renew(self.path, self.run_id, self.lease, self.worker, leaving=leaving)
        except LeaseError as exc:
            self.lost = str(exc)
            if self.on_lost:
                self.on_lost('the lease of the run was not kept: %s' % exc)

    def run(self):
        while not self.stopped.wait(max(1.0, self.lease / 4.0)):
            self.beat()
            if self.lost is not None:
                return

    def __exit__(self, exc_type, exc, tb):
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()
        if self.lost is None:
            self.beat(leaving=True)
        return False
