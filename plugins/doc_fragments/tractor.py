# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # Options shared by every module of the collection (module_utils/tractor_common.py).
    DOCUMENTATION = r'''
options:
  version:
    description:
      - Tractor version whose tools to run, for example C(2.4).
      - Selects the install directory C(/opt/pixar/Tractor-<version>) unless O(install_dir) is set.
      - One of O(version) and O(install_dir) is required.
    type: str
  install_dir:
    description:
      - Tractor install directory (the one holding C(bin/tractor-dbctl) and the stock C(config/)).
      - Takes precedence over O(version).
    type: path
  config_dir:
    description:
      - The site configuration directory, as given to C(tractor-engine --configdir).
      - Every C(tractor-dbctl) command needs it (the Upgrading runbook says so).
      - The site C(tractor.config) and C(db.config) are merged over the stock files of the install,
        so the site directory may be sparse.
    type: path
    required: true
  engine:
    description:
      - Address of the engine's URL API as C(host:port).
      - Defaults to C(localhost) and the C(ListenerPort) of the merged C(tractor.config).
    type: str
  engine_user:
    description:
      - Tractor user the modules log in as (C(monitor?q=login)). Operations that change jobs
        need a user with the rights to do so.
    type: str
    default: root
  engine_password:
    description:
      - Password for O(engine_user), when the site validates Tractor logins.
      - Only password-less sites are supported by this release; a password is passed to C(tq).
    type: str
  engine_owner:
    description:
      - The EngineOwner account that runs C(tractor-dbctl) and owns the job database files.
      - Defaults to C(EngineOwner) of the merged C(tractor.config).
      - C(tractor-dbctl) refuses to run as anyone else. Run the task with C(become_user) set to
        this account, or as root, in which case the module switches to it with C(runuser).
    type: str
  timeout:
    description:
      - Seconds to wait for the engine to answer, start or stop.
    type: int
    default: 60
notes:
  - The modules drive Tractor's own tools (C(tractor-dbctl), C(tq)) and the engine's URL API; they
    never edit the job database directly.
'''

    ATTRIBUTES = r'''
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation
        indicates no change.
      - This assumes that the system controlled or queried by the module has not changed in a
        relevant way.
'''
