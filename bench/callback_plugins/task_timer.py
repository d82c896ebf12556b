# -*- coding: utf-8 -*-
# Bench only (not shipped with the collection): per-task wall time, for bench/run.py.
"""A callback that times every task (start to last host result) and writes them as JSON.

ansible-core has no task profiler of its own (``profile_tasks`` lives in ansible.posix), so the
bench brings this one:

    ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins ANSIBLE_CALLBACKS_ENABLED=task_timer \\
    BENCH_TASK_TIMES=/tmp/times.json ansible-playbook ...

Writes a list of {"task", "role", "play", "seconds", "hosts", "status"} in execution order, plus
the playbook's total, when the run ends.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r'''
name: task_timer
type: aggregate
short_description: Time every task and write the times as JSON (renderfarm.tractor bench)
description:
  - Records wall time per task; the file named by C(BENCH_TASK_TIMES) receives them at the end.
requirements:
  - enabled in ANSIBLE_CALLBACKS_ENABLED
'''


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'task_timer'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self.started = time.perf_counter()
        self.records = []
        self.current = None
        self.play = None

    def _close(self):
        if self.current is not None:
            self.current['seconds'] = round(time.perf_counter() - self.current.pop('_start'), 4)
            self.records.append(self.current)
            self.current = None

    def _open(self, task):
        self._close()
        role = getattr(task, '_role', None)
        self.current = {'task': task.get_name(), 'role': role.get_name() if role else None, 'play': self.play,
                        'action': task.action, 'hosts': 0, 'status': {}, '_start': time.perf_counter()}

    def v2_playbook_on_play_start(self, play):
        self._close()
        self.play = play.get_name()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._open(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._open(task)

    def _result(self, status):
        if self.current is not None:
            self.current['hosts'] += 1
            self.current['status'][status] = self.current['status'].get(status, 0) + 1

    def v2_runner_on_ok(self, result):
        self._result('ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result('failed')

    def v2_runner_on_skipped(self, result):
        self._result('skipped')

    def v2_runner_on_unreachable(self, result):
        self._result('unreachable')

    def v2_playbook_on_stats(self, stats):
        self._close()
        path = os.environ.get('BENCH_TASK_TIMES')
        if not path:
            return
        with open(path, 'w') as handle:
            json.dump({'total_seconds': round(time.perf_counter() - self.started, 4), 'tasks': self.records},
                      handle, indent=1)
