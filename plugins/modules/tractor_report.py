#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file only documents the action plugin plugins/action/tractor_report.py, which does the work
# on the controller (as ansible.builtin does for its action-only plugins).

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: tractor_report
short_description: Write the run report's files on the Ansible controller
version_added: 1.0.0
description:
  - Writes small text files (the engines' records, C(report.json), C(report.md), C(report.xml)) into a
    directory on the B(controller), creating the directory and its parents with mode C(0755). Each
    file is written atomically (temporary file, then rename) with mode C(0644), and only when its
    content differs.
  - It is an action plugin that runs entirely in the controller's Ansible process, so it costs no
    module run and no connection; the report role uses it instead of M(ansible.builtin.file),
    M(ansible.builtin.find) and M(ansible.builtin.copy) on C(localhost).
  - It writes on the controller whatever host the task runs for.
  - All names and contents are checked before anything is written; bad input fails and changes nothing.
attributes:
  check_mode:
    support: full
    details: In check mode nothing is written; RV(written) names the files that would be.
  diff_mode:
    support: none
  idempotent:
    support: full
  action:
    support: full
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
extends_documentation_fragment:
  - renderfarm.tractor.tractor.attributes
options:
  path:
    description: Absolute path of the directory on the controller that receives the files.
    type: path
    required: true
  files:
    description:
      - File names relative to O(path) (subdirectories allowed, no C(..)) mapped to their text content.
    type: dict
    required: true
author:
  - renderfarm.tractor contributors (@renderfarm)
'''

EXAMPLES = r'''
- name: Record this engine's outcome on the controller
  renderfarm.tractor.tractor_report:
    path: /srv/tractor-reports/backup-20261128T120000Z
    files:
      engines/engine1.json: "{{ backup_report | to_nice_json }}"
'''

RETURN = r'''
path:
  description: The directory the files were written to.
  returned: success
  type: str
  sample: /srv/tractor-reports/backup-20261128T120000Z
written:
  description: The files (relative names) written by this run, or in check mode those that would be.
  returned: success
  type: list
  elements: str
  sample: [engines/engine1.json]
unchanged:
  description: The files that already had this content and mode.
  returned: success
  type: list
  elements: str
  sample: []
'''
