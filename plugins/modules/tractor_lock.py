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
short_description: Take, renew or release the per-engine lease that keeps two runs off one Tractor engine
version_added: 1.0.0
description:
  - The roles of this collection take this lock before they touch an engine, renew it at every phase
    and release it when they are done, so that two runs (two people at 2 a.m., a person and a CI
    pipeline, two AWX jobs) never work on one engine at once.
  - The lock is a lease, a small JSON file that names its holder (run id, controller host, user and
    process, purpose) and when its lease ends (O(lease) seconds after it was last renewed).
    Long jobs on the engine host (the async backup steps of M(renderfarm.tractor.tractor_db))
    renew it while they work and register their process in it.
  - A lock held by another run is B(stale), and taken over without any option, once its holder is
    provably gone (its controller was this host and that process no longer runs, and no registered
    job runs) or once its lease has expired while no holder provably runs. The result's RV(outcome)
    and RV(previous) say that a lock was taken over, and why.
  - A live lock is taken over only by naming its run id in O(break_run_id).
  - Every change is made under C(flock) on a guard file beside the lock (C(<path>.guard), which stays),
    and the lock is replaced by rename; of two runs taking or breaking one lock at once exactly one wins.
attributes:
  check_mode:
    support: full
    details: In check mode the lock is inspected and the outcome reported, but no file is written or removed.
  diff_mode:
    support: full
  idempotent:
    support: partial
    details:
      - Releasing a lock that is not there changes nothing.
      - Taking a lock the same run already holds renews its lease (RV(outcome=renewed)) and reports no change.
extends_documentation_fragment:
  - renderfarm.tractor.tractor.attributes
options:
  path:
    description: The lock file. The roles use C(<TractorDataDirectory>/.renderfarm-tractor.lock).
    type: path
    required: true
  state:
    description: V(present) takes the lock or renews this run's lease, V(absent) releases it.
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
    description:
      - Process id of the C(ansible-playbook) process of this run (recorded in the lock). When the
        controller is the engine host, the next run checks whether this process still runs.
    type: int
  controller_started:
    description:
      - Start time of that process (field 22 of C(/proc/PID/stat)), so that a pid the kernel has given
        to another process since is not taken for the controller.
    type: str
    default: ''
  controller_user:
    description: The user who runs the playbook on the controller (recorded in the lock).
    type: str
    default: ''
  purpose:
    description: What the run does (recorded in the lock and shown to anyone who finds it held).
    type: str
    default: ''
  lease:
    description:
      - Seconds the lock stays live after it was taken or last renewed. The roles renew it at every
        phase, and the async steps of M(renderfarm.tractor.tractor_db) while they run, so it only
        has to outlast the longest step that is neither.
    type: int
    default: 900
  break_run_id:
    description:
      - Take over the lock even though its lease runs, if and only if the run holding it has this
        run id. Use it when you know that run is gone (the refusal names the run id).
    type: str
  stale_after:
    description:
      - Seconds after which a lock without a lease (written by release 1.0.0) expires.
    type: int
    default: 21600
  break_stale:
    description:
      - Deprecated and without effect; stale locks are taken over without it. Use O(break_run_id)
        to break a live lock.
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
    controller_started: "{{ run.started }}"
    controller_user: "{{ run.user }}"
    purpose: upgrade to 2.4
    lease: 900
  vars:
    run: "{{ lookup('renderfarm.tractor.tractor_run') }}"

- name: Take over the lock of a run known to be gone (an AWX job that was deleted)
  renderfarm.tractor.tractor_lock:
    path: /var/spool/tractor/.renderfarm-tractor.lock
    run_id: "{{ lookup('renderfarm.tractor.tractor_run').run_id }}"
    break_run_id: awx-job-1-7-123456

- name: Release it
  renderfarm.tractor.tractor_lock:
    path: /var/spool/tractor/.renderfarm-tractor.lock
    run_id: "{{ run.run_id }}"
    state: absent
'''

RETURN = r'''
outcome:
  description: What happened to the lock.
  returned: always
  type: str
  sample: taken over
  choices: [taken, renewed, taken over, released, absent]
lock:
  description: The lock as it is after the task (empty when released).
  returned: always
  type: dict
  sample: {"run_id": "ctl1-4242-1795869203", "controller_host": "ctl1", "controller_pid": 4242,
           "controller_user": "ops", "purpose": "upgrade 2.2 -> 2.4", "created": 1795869203.5,
           "renewed": 1795869203.5, "expires": 1795870103.5, "lease": 900, "host": "engine1", "workers": []}
previous:
  description: The lock of another run found before the task, if any, with the verdict on it.
  returned: always
  type: dict
  sample: {"run_id": "ctl1-4100-1795860000", "stale": true, "stale_reason": "its controller process 4100 on ctl1 is gone"}
'''

import json
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_common import check_arguments
from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_lease

RUN_ID = re.compile(r'[!-~][ -~]{0,254}\Z')


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            run_id=dict(type='str', required=True),
            controller_host=dict(type='str', default=''),
            controller_pid=dict(type='int'),
            controller_started=dict(type='str', default=''),
            controller_user=dict(type='str', default=''),
            purpose=dict(type='str', default=''),
            lease=dict(type='int', default=900),
            break_run_id=dict(type='str'),
            stale_after=dict(type='int', default=21600),
            break_stale=dict(type='bool', default=False),
            force=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    check_arguments(module)
    p = module.params
    for name in ('run_id', 'break_run_id'):
        if p[name] is not None and not RUN_ID.match(p[name]):
            module.fail_json(msg='%s must name a run in at most 255 printable characters on one line, not %r'
                                 % (name, p[name][:300]))
    if p['lease'] < 10:
        module.fail_json(msg='lease must be at least 10 (seconds), not %d' % p['lease'])
    if p['stale_after'] < 0:
        module.fail_json(msg='stale_after must be >= 0 (seconds), not %d' % p['stale_after'])
    if p['controller_pid'] is not None and p['controller_pid'] < 1:
        module.fail_json(msg='controller_pid must be a process id (>= 1), not %d' % p['controller_pid'])
    if p['break_stale']:
        module.deprecate('break_stale has no effect: a stale lock is taken over without it; break a live lock '
                         'with break_run_id', version='2.0.0', collection_name='renderfarm.tractor')
    path = p['path']

    try:
        if p['state'] == 'absent':
            released, previous = tractor_lease.release(path, p['run_id'], force=p['force'], check_mode=module.check_mode)
            diff = dict(before=dump(previous) if released else '', after='')
            module.exit_json(changed=released, outcome='released' if released else 'absent', lock={},
                             previous=previous if previous.get('run_id') != p['run_id'] else {}, diff=diff)
        holder = dict(run_id=p['run_id'], controller_host=p['controller_host'], controller_pid=p['controller_pid'],
                      controller_started=p['controller_started'], controller_user=p['controller_user'],
                      purpose=p['purpose'])
        before = tractor_lease.read(path)
        outcome, lock, previous = tractor_lease.take(path, holder, p['lease'], break_run_id=p['break_run_id'],
                                                     check_mode=module.check_mode,
                                                     legacy_lease=p['stale_after'])
    except tractor_lease.LeaseError as exc:
        module.fail_json(msg=str(exc), previous=exc.previous)
    if previous.get('stale') or previous.get('broken'):
        module.warn('took over the lock of run %s: %s' % (previous.get('run_id'), 'broken by run id as asked'
                                                          if previous.get('broken') else previous.get('stale_reason')))
    module.exit_json(changed=outcome != 'renewed', outcome=outcome, lock=lock, previous=previous,
                     diff=dict(before=dump(before) if before else '', after=dump(lock)))


def dump(lock):
    return json.dumps(lock, indent=1, sort_keys=True) + '\n'


if __name__ == '__main__':
    main()
