# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Progress of a long step, written to a small JSON file that the controller reads.

A module that runs for minutes (a backup of a large job database) runs detached on the host
(the collection's action plugins start it as an async job); the action plugin reads this file
every few seconds and prints a line such as ``writing the archive: 412.0 MB of 1.2 GB (34 %),
42 s``. The file is replaced atomically (written beside, then renamed), at most once per
``interval`` seconds, so that a reader never sees half a file and the writer never slows down.

Only the standard library: this runs on the managed host under Python 3.8 or later.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import threading
import time

# How often the file is rewritten at most (seconds): the controller reads it every few seconds.
WRITE_INTERVAL = 1.0


class Progress(object):
    """Steps of one module run with their done/total counts; a no-op without a path.

    ``step(name, total, unit)`` starts a step ('bytes' or 'rows', or None for a wait without a
    count); ``add(n)`` and ``set(n)`` move it on; ``close()`` removes the file.
    """

    def __init__(self, path=None, what=None, target=None, clock=time.time, interval=WRITE_INTERVAL):
        self.path = path
        self.clock = clock
        self.interval = interval
        self.started = clock()
        self.lock = threading.Lock()
        self.state = dict(pid=os.getpid(), what=what, target=target, started=self.started, step=None,
                          step_started=None, done=0, total=None, unit=None, steps=[])
        self.written_at = None
        if path:
            parent = os.path.dirname(path)
            if parent and not os.path.isdir(parent):
                os.makedirs(parent, 0o700)
            self.write(force=True)

    @property
    def enabled(self):
        return bool(self.path)

    def step(self, name, total=None, unit='bytes'):
        with self.lock:
            if self.state['step'] is not None:
                self.state['steps'].append(dict(name=self.state['step'],
                                                seconds=round(self.clock() - self.state['step_started'], 1)))
            self.state.update(step=name, step_started=self.clock(), done=0, total=total,
                              unit=unit if total is not None else None)
        self.write(force=True)

    def add(self, amount):
        if not self.path:
            return
        self.state['done'] += amount  # one writer thread per step: no lock for the counter
        self.write()

    def set(self, done):
        if not self.path:
            return
        self.state['done'] = done
        self.write()

    def write(self, force=False):
        if not self.path:
            return
        now = self.clock()
        if not force and self.written_at is not None and now - self.written_at < self.interval:
            return
        with self.lock:
            self.written_at = now
            data = dict(self.state, updated=now, elapsed=round(now - self.started, 1))
            text = json.dumps(data, sort_keys=True)
        temp = '%s.%d.tmp' % (self.path, os.getpid())
        try:
            with open(temp, 'w') as handle:
                handle.write(text)
            os.rename(temp, self.path)
        except (IOError, OSError):
            # progress is for the operator's eyes: a full disk must not fail the step it describes
            try:
                os.unlink(temp)
            except OSError:
                pass

    def close(self):
        if not self.path:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass


class CountingReader(object):
    """A read-only file object over raw that adds every byte read to a Progress."""

    def __init__(self, raw, progress):
        self.raw = raw
        self.progress = progress

    def readable(self):
        return True

    def read(self, size=-1):
        data = self.raw.read(size)
        self.progress.add(len(data))
        return data

    def close(self):
        self.raw.close()


class TreeWatcher(object):
    """Counts the bytes below a directory every few seconds while an external command fills it.

    For ``cp -a``: the copy is a child process, so its progress is measured from the outside.
    """

    def __init__(self, progress, path, interval=2.0):
        self.progress = progress
        self.path = path
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = None

    def __enter__(self):
        if self.progress.enabled:
            self.thread = threading.Thread(target=self.run)
            self.thread.daemon = True
            self.thread.start()
        return self

    def run(self):
        while not self.stopped.wait(self.interval):
            self.progress.set(tree_bytes(self.path))

    def __exit__(self, exc_type, exc, tb):
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()


def tree_bytes(path):
    """Bytes of the regular files below path, ignoring files that vanish while it counts."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def describe(data, human_size):
    """One line for the operator from a progress file's data, e.g.
    ``writing the archive: 412.0 MB of 1.2 GB (34 %), 42 s``."""
    step = data.get('step') or 'starting'
    elapsed = data.get('elapsed')
    done, total, unit = data.get('done') or 0, data.get('total'), data.get('unit')
    if total:
        if unit == 'bytes':
            amount = '%s of %s' % (human_size(done), human_size(total))
        else:
            amount = '%d of %d %s' % (done, total, unit or '')
        line = '%s: %s (%d %%)' % (step, amount.strip(), min(100, int(100.0 * done / total)))
    else:
        line = step
    if elapsed is not None:
        line += ', %d s' % int(elapsed)
    return line
