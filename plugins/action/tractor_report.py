# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write report files on the controller without a module run (documentation: plugins/modules/tractor_report.py).

The report role used ansible.builtin.file, find and copy for this: each a module process (and copy
two of them per file), about five module runs per playbook on the controller for a few small files.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tempfile

from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.action import ActionBase

DIR_MODE = 0o755
FILE_MODE = 0o644

ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True},
    "files": {"type": "dict", "required": True},
}


class ReportError(ValueError):
    """Bad arguments or a path that cannot hold the report; nothing has been written."""


def plan(path, files):
    """Check the arguments and return [(relative name, absolute path, bytes, needs writing)].

    Raises ReportError before anything is written when an argument or a target is wrong."""
    if not os.path.isabs(path):
        raise ReportError(f"path must be an absolute directory on the controller, got {path!r}")
    if not files:
        raise ReportError("files names no file: give at least one relative name and its content")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ReportError(f"{path} exists and is not a directory: remove it or choose another path")
    out = []
    for name in sorted(files):
        content = files[name]
        if not isinstance(name, str) or not name:
            raise ReportError(f"file names must be non-empty strings, got {name!r}")
        norm = posixpath.normpath(name)
        if name.startswith("/") or norm == "." or norm.split("/")[0] == "..":
            raise ReportError(f"file name {name!r} must be relative and stay inside {path}")
        if not isinstance(content, str):
            raise ReportError(f"the content of {name} must be a string (use to_nice_json for data), "
                              f"got {type(content).__name__}")
        target = os.path.join(path, norm)
        data = to_bytes(content, errors="surrogate_or_strict")
        if os.path.lexists(target):
            st = os.lstat(target)
            if not stat.S_ISREG(st.st_mode):
                raise ReportError(f"{target} exists and is not a regular file: remove it first")
            with open(target, "rb") as handle:
                same = handle.read() == data
            needed = not same or stat.S_IMODE(st.st_mode) != FILE_MODE
        else:
            needed = True
        out.append((norm, target, data, needed))
    return out


def _makedirs(directory):
    """Create directory and missing parents with DIR_MODE (whatever the umask)."""
    if os.path.isdir(directory):
        return
    parent = os.path.dirname(directory)
    if parent != directory:
        _makedirs(parent)
    try:
        os.mkdir(directory, DIR_MODE)
    except FileExistsError:
        if not os.path.isdir(directory):
            raise
        return
    os.chmod(directory, DIR_MODE)


def write(entries):
    """Write the entries that need it, each atomically (temporary file, then rename)."""
    written = []
    for name, target, data, needed in entries:
        if not needed:
            continue
        directory = os.path.dirname(target)
        _makedirs(directory)
        fd, tmp = tempfile.mkstemp(prefix=".tractor_report.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        written.append(name)
    return written


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        path = args["path"]
        try:
            entries = plan(path, args["files"])
            if self._task.check_mode:
                written = [name for name, _t, _d, needed in entries if needed]
            else:
                written = write(entries)
        except ReportError as exc:
            result.update(failed=True, msg=str(exc), changed=False)
            return result
        except OSError as exc:
            result.update(failed=True, changed=False,
                          msg=f"could not write the report under {path}: {exc}; check that the "
                              "controller user can write there, or set report_dir")
            return result
        result.update(
            changed=bool(written),
            path=path,
            written=written,
            unchanged=[name for name, _t, _d, _n in entries if name not in written],
        )
        return result
