# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which directory a configured path reaches, the way the kernel decides it.

Two engines collide when their directories are one directory. Comparing path strings misses a
bind mount (two names, one inode) and a symlink followed by ``..``. So a path is identified by the
device and inode of the deepest directory on its way that exists, plus the names below it that do
not exist yet (they would be created there).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os


def existing_ancestor(path):
    """The deepest existing directory on the way to the resolved ``path`` (``path`` itself when it exists)."""
    current = path
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def path_identity(path):
    """[device, inode, rest]: the directory ``path`` reaches, or will reach once created.

    ``os.path.realpath`` resolves symlinks and ``..`` as the kernel does for the part that exists;
    below it nothing exists, so nothing there can be a symlink and ``..`` is lexical. ``rest`` is
    that missing part ("" when the path exists). None when even ``/`` cannot be read.
    """
    real = os.path.realpath(path)
    ancestor = existing_ancestor(real)
    try:
        st = os.stat(ancestor)
    except OSError:
        return None
    rest = os.path.relpath(real, ancestor) if ancestor != real else ''
    return [st.st_dev, st.st_ino, rest]
