# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading a backup archive: one pass that checks everything, and an extraction that cannot escape.

inspect_archive() decompresses the whole file and walks the tar (sha256 on the way), and names
every member a restore must not meet (absolute paths, ``..``, links out, special files, another
top-level directory). safe_extract() extracts only what that check accepts.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import gzip
import hashlib
import os
import re
import shutil
import struct
import tarfile
import zlib

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_files import (
    READ_CHUNK, ArchiveError, file_identity,
)
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_progress import CountingReader

MAX_PROBLEMS = 20


# -- reading ----------------------------------------------------------------------------------------
class HashingReader(object):
    """A read-only file object over raw that keeps the sha256 and size of everything read."""

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self):
        return True

    def read(self, size=-1):
        data = self.raw.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def drain(self):
        while self.read(READ_CHUNK):
            pass


def member_problems(member, top):
    """Why a tar member must not be extracted (list of strings, empty when it is fine)."""
    problems = []
    name = member.name
    if name.startswith('/') or re.match(r'^[A-Za-z]:', name):
        problems.append('%s: absolute path' % name)
    parts = [p for p in name.split('/') if p not in ('', '.')]
    if '..' in parts:
        problems.append('%s: ".." in the path' % name)
    if top is not None and parts and parts[0] != top:
        problems.append('%s: outside the top-level directory %s/' % (name, top))
    if member.issym() or member.islnk():
        target = member.linkname
        base = parts[:-1] if member.issym() else []
        link_parts = [p for p in target.split('/') if p not in ('', '.')]
        if target.startswith('/'):
            problems.append('%s: link to the absolute path %s' % (name, target))
        else:
            depth = len(base)
            for part in target.split('/'):
                if part == '..':
                    depth -= 1
                elif part not in ('', '.'):
                    depth += 1
                if depth < (1 if member.issym() else 0):
                    problems.append('%s: link %s leads outside the archive' % (name, target))
                    break
            else:
                if member.islnk() and top is not None and link_parts and link_parts[0] != top:
                    problems.append('%s: hard link to %s, outside %s/' % (name, target, top))
    elif not (member.isreg() or member.isdir()):
        problems.append('%s: special file (device, FIFO or socket)' % name)
    return problems


def system_identifier(pg_control):
    """PostgreSQL's database system identifier: the first field (uint64) of global/pg_control."""
    if not pg_control or len(pg_control) < 8:
        return None
    return str(struct.unpack('=Q', pg_control[:8])[0])


def data_dir_identity(db_dir):
    """What identifies one extraction of a cluster: sysid + PG_VERSION's inode and ctime.

    PostgreSQL never rewrites PG_VERSION, so its inode and ctime change only when the directory
    is re-created (initdb, tar extraction, chown).  None when the directory holds no cluster.
    """
    try:
        st = os.stat(os.path.join(db_dir, 'PG_VERSION'))
        with open(os.path.join(db_dir, 'global', 'pg_control'), 'rb') as handle:
            sysid = system_identifier(handle.read(8))
    except (IOError, OSError):
        return None
    return dict(system_identifier=sysid, pg_version_inode=st.st_ino,
                pg_version_ctime_ns=getattr(st, 'st_ctime_ns', int(st.st_ctime * 1e9)))


def inspect_archive_identified(path, top=None, progress=None):
    """inspect_archive(), plus the file's identity (file_identity) when it did not change during
    the read, so that a later step of the same run can recognise the unchanged file; else None."""
    before = file_identity(path)
    info = inspect_archive(path, top=top, progress=progress)
    info['identity'] = before if file_identity(path) == before else None
    return info


def inspect_archive(path, top=None, progress=None):
    """Decompress and walk the whole archive, in one pass.

    Returns dict(sha256, size, members, file_bytes, top_level, pg_version, system_identifier,
    postmaster_pid, problems).  ``problems`` lists structural faults (more than one top-level
    entry, absolute or '..' paths, links out of the tree, no PG_VERSION or global/): such an
    archive must not be restored.  Raises ArchiveError when the file cannot be decompressed or is
    not a tar; its ``info`` still holds the sha256 of the whole file. ``progress`` (a
    tractor_progress.Progress) counts the compressed bytes read.
    """
    info = dict(path=path, sha256=None, size=None, members=0, file_bytes=0, top_level=None,
                pg_version=None, system_identifier=None, postmaster_pid=False, problems=[])
    tops = set()
    names = set()
    try:
        raw = open(path, 'rb')
    except (IOError, OSError) as exc:
        raise ArchiveError('cannot read %s: %s' % (path, exc), info)
    with raw:
        reader = HashingReader(raw if progress is None else CountingReader(raw, progress))
        error = None
        try:
            gz = gzip.GzipFile(fileobj=reader, mode='rb')
            tar = tarfile.open(fileobj=gz, mode='r|')
            for member in tar:
                info['members'] += 1
                parts = [p for p in member.name.split('/') if p not in ('', '.')]
                if parts:
                    tops.add(parts[0])
                # a wrong top-level directory is reported once, below, not for every member
                found = [p for p in member_problems(member, top) if 'outside the top-level directory' not in p]
                if found and len(info['problems']) < MAX_PROBLEMS:
                    info['problems'].extend(found[:MAX_PROBLEMS - len(info['problems'])])
                rel = '/'.join(parts[1:])
                names.add(rel + ('/' if member.isdir() else ''))
                if member.isreg():
                    handle = tar.extractfile(member)
                    first = handle.read(min(member.size, 64))
                    while handle.read(READ_CHUNK):
                        pass
                    info['file_bytes'] += member.size
                    if rel == 'PG_VERSION':
                        info['pg_version'] = first.decode('ascii', 'replace').strip()
                    elif rel == 'global/pg_control':
                        info['system_identifier'] = system_identifier(first)
                    elif rel == 'postmaster.pid':
                        info['postmaster_pid'] = True
            tar.close()
            while gz.read(READ_CHUNK):  # the rest of the gzip stream: its CRCs are checked at the end
                pass
        except (IOError, OSError, EOFError, zlib.error, tarfile.TarError, ValueError, struct.error) as exc:
            error = exc
        try:
            reader.drain()
        except (IOError, OSError):
            pass
        info['sha256'] = reader.sha256.hexdigest()
        info['size'] = reader.size
        if error is not None:
            raise ArchiveError('%s is damaged or not a gzip-compressed tar archive (%s: %s)'
                               % (path, type(error).__name__, error), info)
    if len(tops) == 1:
        info['top_level'] = tops.pop()
    elif not tops:
        info['problems'].append('the archive is empty')
    else:
        info['problems'].append('more than one top-level entry: %s' % ', '.join(sorted(tops)))
    if top is not None and info['top_level'] not in (None, top):
        info['problems'].append('the top-level directory is %s/, not %s/ (basename of DBDataDir): '
                                'tractor-dbctl --restore would unpack it beside the data directory'
                                % (info['top_level'], top))
    if info['members'] and 'PG_VERSION' not in names:
        info['problems'].append('no PG_VERSION: not a PostgreSQL data directory')
    if info['members'] and not any(n == 'global/' or n.startswith('global/') for n in names):
        info['problems'].append('no global/ directory: not a complete PostgreSQL data directory')
    return info


def safe_extract(path, dest, top=None, uid=None, gid=None, progress=None):
    """Extract the archive below dest, refusing anything member_problems() objects to.

    Directories are created 0700, files keep their owner bits only (PostgreSQL wants 0600/0700);
    with uid/gid every created path is chowned to them (a root process preparing files for the
    EngineOwner).  ``progress`` counts the compressed bytes read.  Returns the number of members
    extracted.
    """
    count = 0
    dirs = []
    chown = uid is not None

    def own(target, follow=True):
        if chown:
            (os.chown if follow else os.lchown)(target, uid, -1 if gid is None else gid)

    try:
        with open(path, 'rb') as raw:
            gz = gzip.GzipFile(fileobj=raw if progress is None else CountingReader(raw, progress), mode='rb')
            tar = tarfile.open(fileobj=gz, mode='r|')
            for member in tar:
                problems = member_problems(member, top)
                if problems:
                    raise ArchiveError('refusing to extract %s: %s' % (path, '; '.join(problems)))
                parts = [p for p in member.name.split('/') if p not in ('', '.')]
                if not parts:
                    continue
                target = os.path.join(dest, *parts)
                parent = os.path.dirname(target)
                if not os.path.isdir(parent):
                    os.makedirs(parent, 0o700)
                if member.isdir():
                    if not os.path.isdir(target):
                        os.mkdir(target, 0o700)
                    own(target)
                    dirs.append((target, member.mtime))
                elif member.isreg():
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0),
                                 0o600)
                    with os.fdopen(fd, 'wb') as out:
                        source = tar.extractfile(member)
                        shutil.copyfileobj(source, out, READ_CHUNK)
                    os.chmod(target, (member.mode & 0o700) | 0o600)
                    own(target)
                    os.utime(target, (member.mtime, member.mtime))
                elif member.issym():
                    os.symlink(member.linkname, target)
                    own(target, follow=False)
                elif member.islnk():
                    link_parts = [p for p in member.linkname.split('/') if p not in ('', '.')]
                    os.link(os.path.join(dest, *link_parts), target)
                count += 1
            tar.close()
    except ArchiveError:
        raise
    except (IOError, OSError, EOFError, zlib.error, tarfile.TarError, ValueError) as exc:
        raise ArchiveError('cannot extract %s into %s (%s: %s)' % (path, dest, type(exc).__name__, exc))
    for target, mtime in reversed(dirs):
        os.utime(target, (mtime, mtime))
    return count
