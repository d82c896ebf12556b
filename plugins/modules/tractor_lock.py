#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: tractor_lock
short_description: Take or release the per-engine lock that keeps two runs off one Tractor engine
version_added: 1.0.0
description:
  - The roles of this collection take this lock before they touch an engine and release it when they
    are done, so that two runs (two people at 2 a.m., or a person and a CI pipeline) never work on
    one engine at once.
  - The lock is a small JSON file created atomically (C(O_CREAT|O_EXCL)); it names the run that holds
    it (controller host, controller process id, run id, purpose) and when it was taken.
  - A lock whose run is gone is B(stale). Stale locks are detected and reported, never silently
    ignored. A lock is known stale when the holding controller is this host and its process no
    longer runs; it is presumed stale when it is older than O(stale_after). A stale lock is only
    broken with O(break_stale=true).
attributes:
  check_mode:
    support: full
    details: In check mode the lock is inspected and the outcome reported, but no file is written or removed.
  diff_mode:
    support: full
  idempotent:
    support: full
    details: Taking a lock the same run already holds, or releasing one that is not there, changes nothing.
extends_documentation_fragment:
  - renderfarm.tractor.tractor.attributes
options:
  path:
    description: The lock file. The roles use C(<TractorDataDirectory>/.renderfarm-tractor.lock).
    type: path
    required: true
  state:
    description: V(present) takes the lock, V(absent) releases it.
    type: str
    choices: [present, absent]
    default: present
  run_id:
    description:
      - Identifies the run that takes or releases the lock. The roles use the
        P(renderfarm.tractor.tractor_run#lookup) lookup.
    type: str
    required: true
  controller_host:
    description: Host name of the Ansible controller of this run (recorded in the lock).
    type: str
    default: ''
  controller_pid:
    description: Process id of the C(ansible-playbook) process of this run (recorded in the lock).
    type: int
  purpose:
    description: What the run does (recorded in the lock and shown to anyone who finds it held).
    type: str
    default: ''
  stale_after:
    description: Age in seconds after which a lock held by another controller is presumed stale.
    type: int
    default: 21600
  break_stale:
    description: Take over a stale lock (the stale lock is reported in RV(previous)).
    type: bool
    default: false
  force:
    description: With O(state=absent), remove the lock even when another run holds it.
    type: bool
    default: false
author:
  - renderfarm.tractor contributors (@renderfarm)
'''

EXAMPLES = r'''
- name: Lock the engine for this run
  renderfarm.tractor.tractor_lock:
    path: /var/spool/tractor/.renderfarm-tractor.lock
    run_id: "{{ run.run_id }}"
    controller_host: "{{ run.controller_host }}"
    controller_pid: "{{ run.controller_pid }}"
    purpose: upgrade to 2.4
  vars:
    run: "{{ lookup('renderfarm.tractor.tractor_run') }}"

- name: Release it
  renderfarm.tractor.tractor_lock:
    path: /var/spool/tractor/.renderfarm-tractor.lock
    run_id: "{{ run.run_id }}"
    state: absent
'''

RETURN = r'''
lock:
  description: The lock as it is after the task (absent when released).
  returned: always
  type: dict
  sample: {"run_id": "ctl1-4242-1795869203", "controller_host": "ctl1", "controller_pid": 4242,
           "purpose": "upgrade to 2.4", "created": 1795869203.5, "host": "engine1"}
previous:
  description: The lock found before the task, if any, with its staleness verdict.
  returned: always
  type: dict
  sample: {"run_id": "ctl1-4100-1795860000", "stale": true, "stale_reason": "controller process 4100 on ctl1 is gone"}
'''

import json
import os
import re
import socket
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_common import check_arguments
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_process import pid_alive


def read_lock(path):
    try:
        with open(path) as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {'run_id': None, 'unreadable': True}
    except (IOError, OSError):
        return None
    except ValueError:
        return {'run_id': None, 'unreadable': True}


def controller_alive(pid):
    """Whether the controller process that took a lock still runs. A pid that is not a number
    counts as running: a lock is never called stale on a guess."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return True
    return pid > 0 and pid_alive(pid)


def staleness(lock, now, stale_after, this_host):
    """(stale, reason) of a lock held by another run."""
    if lock.get('unreadable'):
        return True, 'the lock file is not valid JSON (a run died while writing it?)'
    host = lock.get('controller_host') or ''
    pid = lock.get('controller_pid')
    if host and host == this_host and pid:
        if not controller_alive(pid):
            return True, 'controller process %s on %s is gone' % (pid, host)
        return False, 'controller process %s on %s is running' % (pid, host)
    age = now - float(lock.get('created') or 0)
    if age > stale_after:
        return True, 'taken %d s ago, more than stale_after (%d s)' % (age, stale_after)
    return False, 'taken %d s ago by controller %s' % (age, host or 'unknown')


def write_lock(path, lock):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, 'w') as handle:
        json.dump(lock, handle)
        handle.flush()
        os.fsync(handle.fileno())


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            run_id=dict(type='str', required=True),
            controller_host=dict(type='str', default=''),
            controller_pid=dict(type='int'),
            purpose=dict(type='str', default=''),
            stale_after=dict(type='int', default=21600),
            break_stale=dict(type='bool', default=False),
            force=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    check_arguments(module)
    p = module.params
    if not re.match(r'[!-~][ -~]{0,254}\Z', p['run_id']):
        module.fail_json(msg='run_id must name the run in at most 255 printable characters on one line, not %r'
                             % p['run_id'][:300])
    if p['stale_after'] < 0:
        module.fail_json(msg='stale_after must be >= 0 (seconds), not %d' % p['stale_after'])
    if p['controller_pid'] is not None and p['controller_pid'] < 1:
        module.fail_json(msg='controller_pid must be a process id (>= 1), not %d' % p['controller_pid'])
    path = p['path']
    this_host = socket.gethostname()
    now = time.time()
    existing = read_lock(path)
    previous = dict(existing) if existing else {}
    if existing and existing.get('run_id') != p['run_id']:
        stale, reason = staleness(existing, now, p['stale_after'], this_host)
        previous.update(stale=stale, stale_reason=reason)
    diff = dict(before=json.dumps(existing, indent=1, sort_keys=True) + '\n' if existing else '')

    if p['state'] == 'absent':
        if not existing:
            module.exit_json(changed=False, lock={}, previous={})
        if existing.get('run_id') != p['run_id'] and not p['force']:
            module.fail_json(msg='%s is held by another run (%s, %s): not releasing it; use force=true only if '
                                 'you know that run is gone' % (path, existing.get('run_id'), previous.get('stale_reason')),
                             previous=previous)
        if not module.check_mode:
            os.unlink(path)
        diff['after'] = ''
        module.exit_json(changed=True, lock={}, previous=previous, diff=diff)

    if existing and existing.get('run_id') == p['run_id']:
        module.exit_json(changed=False, lock=existing, previous=previous)
    if existing:
        if not previous['stale']:
            module.fail_json(
                msg='engine locked by another run: %s (%s) since %s, holder %s pid %s; wait for it to finish'
                    % (existing.get('run_id'), existing.get('purpose') or 'no purpose given',
                       time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(existing.get('created') or 0))),
                       existing.get('controller_host'), existing.get('controller_pid')),
                previous=previous)
        if not p['break_stale']:
            module.fail_json(
                msg='stale lock found at %s: %s (%s). Make sure no run is still working on this engine, '
                    'then break it with break_stale=true (the roles: tractor_lock_break_stale=true)'
                    % (path, existing.get('run_id'), previous['stale_reason']),
                previous=previous)
    lock = dict(run_id=p['run_id'], controller_host=p['controller_host'], controller_pid=p['controller_pid'],
                purpose=p['purpose'], created=now, host=this_host)
    if not module.check_mode:
        directory = os.path.dirname(path) or '.'
        if not os.path.isdir(directory):
            module.fail_json(msg='cannot lock %s: its directory %s does not exist (path must name a file in an '
                                 'existing directory)' % (path, directory))
        if existing:
            os.unlink(path)  # breaking a stale lock (reported in previous)
        try:
            write_lock(path, lock)
        except FileExistsError:
            module.fail_json(msg='another run took the lock %s at the same moment; re-run later' % path)
        except OSError as exc:
            module.fail_json(msg='cannot write the lock %s: %s' % (path, exc))
    diff['after'] = json.dumps(lock, indent=1, sort_keys=True) + '\n'
    module.exit_json(changed=True, lock=lock, previous=previous, diff=diff)


if __name__ == '__main__':
    main()
