# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a Tractor install is: its directory, its version, its tools (fact sheet 7.1, 6.5).

The version of an install is the one its directory names (``<prefix>/Tractor-<major.minor>``,
confirmed in 7.1), else the version the user gave.  ``tractor-engine --version`` prints a text that
is not public (6.5): it is read only as an extra check (its build number, a warning when it names
another version) and never decides on its own.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

INSTALL_DIR_RE = re.compile(r'^Tractor-(\d+\.\d+(?:\.\d+)?)\Z')
# 'Tractor 2.2 (Feb 15 2017 11:38:27 1715407 linux-...)': the engine's start-up log line (6.5)
BANNER_RE = re.compile(r'Tractor\s+(\d+\.\d+(?:\.\d+)?)\s*\(([^)]*)\)')


def version_of_install_dir(install_dir):
    """'2.4' for /opt/pixar/Tractor-2.4 (or a link to it), else None."""
    for path in (install_dir.rstrip('/'), os.path.realpath(install_dir)):
        match = INSTALL_DIR_RE.match(os.path.basename(path))
        if match:
            return match.group(1)
    return None


def build_of(details):
    """The build number in a banner's parenthesis ('Aug 17 2020 05:39:38 2091325 linux-...'), or None."""
    builds = [word for word in (details or '').split() if word.isdigit() and len(word) >= 6]
    return builds[-1] if builds else None


def parse_banner(text):
    """(version, build) from a 'Tractor X.Y (... build ...)' banner, or (None, None)."""
    match = BANNER_RE.search(text or '')
    if not match:
        return None, None
    return match.group(1), build_of(match.group(2))


def install_version(install_dir, requested=None):
    """(version, why) of an install: its directory's name, else the requested version; (None, why)."""
    named = version_of_install_dir(install_dir)
    if named and requested and named != requested:
        return None, '%s is the install of Tractor %s, not of the requested version %s' % (install_dir, named, requested)
    if named:
        return named, 'from the install directory name'
    if requested:
        return requested, 'from the version option (the install directory is not named Tractor-<version>)'
    return None, ('%s is not named Tractor-<version>, so its version is unknown: set the version option'
                  % install_dir)


def banner_check(version, rc, out, err):
    """(build, warning) from `tractor-engine --version`: its build, and a warning if it names another version."""
    named, build = parse_banner((out or '') + '\n' + (err or ''))
    if rc != 0 or not named:
        return None, None   # its output is not public (6.5): not recognising it is no error
    if named != version:
        return None, ('tractor-engine --version names Tractor %s, but the install is %s; the running engine\'s '
                      'Server header decides after the start' % (named, version))
    return build, None
