# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Durable files of a job-database backup: the archive's sidecars and manifest, atomic writes.

A backup is three files: the archive (the layout ``tractor-dbctl --backup FILE`` writes, fact
sheet 1.5), ``<archive>.sha256`` and ``<archive>.manifest.json``. AtomicFile writes to a temporary
name in the destination directory and renames it into place only on commit(); anything else
removes the temporary file. The other backup modules: tractor_targz (writing), tractor_inspect
(reading and safe extraction), tractor_restore_check (proving that an archive restores).

Only the standard library: this runs on the managed host under Python 3.8 or later.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
import time

SHA256_SUFFIX = '.sha256'
MANIFEST_SUFFIX = '.manifest.json'
MANIFEST_FORMAT = 'renderfarm.tractor/job-db-backup'
MANIFEST_FORMAT_VERSION = 1
READ_CHUNK = 1024 * 1024
SHA256_LINE_RE = re.compile(r'^([0-9a-fA-F]{64}) [ *](.+)$')


class ArchiveError(Exception):
    """The archive cannot be read, is damaged, or does not restore.  ``info`` has what was learnt."""

    def __init__(self, msg, info=None):
        super(ArchiveError, self).__init__(msg)
        self.info = info or {}


def utc_now():
    """'2024-05-01T12:00:00Z'."""
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


def sidecar_paths(archive):
    """(<archive>.sha256, <archive>.manifest.json)."""
    return archive + SHA256_SUFFIX, archive + MANIFEST_SUFFIX


def dir_size(path):
    """Bytes of all regular files below path (what a tar of it holds, without headers)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def free_bytes(path):
    """Free bytes for an unprivileged user on the filesystem holding path."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def backup_needs(size, factor=1.0, verify='restore', copy_first=False, scratch_apart=False, copy_made=False):
    """Bytes a backup needs free on the filesystem of its directory, by part; the one rule the
    preflight (tractor_info) and the module (tractor_db) both apply.

    ``size`` is the size of DBDataDir. ``archive``: size times ``factor`` (compressed it is
    smaller; 1.0 is safe for any data). ``copy``: the copy of the stopped database taken first
    (``copy_first``), unless it is made already (``copy_made``: its room is taken). ``scratch``:
    the restore check's extraction (``verify='restore'``), unless it goes to another filesystem
    (``scratch_apart``) or into the room of the copy, which is removed once the archive is written,
    before the check: so copy and scratch never coexist, and ``needed`` is archive + the larger.
    """
    archive = int(size * max(0.0, factor))
    copy = size if copy_first and not copy_made else 0
    scratch = size if verify == 'restore' and not scratch_apart and not copy_made else 0
    return dict(archive=archive, copy=copy, scratch=scratch, needed=archive + max(copy, scratch))


def describe_needs(needs):
    """'the archive (12.0 MB), then the copy taken while the engine is stopped (40.0 MB)' etc."""
    words = ['the archive (%s)' % human_size(needs['archive'])]
    extra = []
    if needs['copy']:
        extra.append('the copy taken while the engine is stopped')
    if needs['scratch']:
        extra.append('the scratch copy of its restore check')
    if extra:
        words.append('a copy of the database beside it (%s): %s' % (
            human_size(max(needs['copy'], needs['scratch'])), ', then '.join(extra)))
    return ', and '.join(words)


def same_filesystem(a, b):
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


def human_size(num):
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(num) < 1024 or unit == 'TiB':
            return ('%d %s' % (num, unit)) if unit == 'B' else ('%.1f %s' % (num, unit))
        num /= 1024.0
    return str(num)  # pragma: no cover


def file_sha256(path, chunk=READ_CHUNK):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


# -- sidecar files ----------------------------------------------------------------------------------
def format_sha256_line(digest, archive):
    """The line `sha256sum` writes (and `sha256sum -c` reads in the archive's directory)."""
    return '%s  %s\n' % (digest, os.path.basename(archive))


def parse_sha256_file(text, archive=None):
    """sha256sum output -> hex digest.  With archive, the line naming its basename wins."""
    found = []
    for line in (text or '').splitlines():
        match = SHA256_LINE_RE.match(line.strip())
        if match:
            found.append((match.group(1).lower(), match.group(2)))
    if not found:
        raise ValueError('no "<sha256>  <file name>" line')
    if archive is not None:
        base = os.path.basename(archive)
        for digest, name in found:
            if os.path.basename(name) == base:
                return digest
        if len(found) > 1:
            raise ValueError('no line names %s' % base)
    return found[0][0]


def read_sidecars(archive):
    """(sha256 from <archive>.sha256 or None, manifest dict or None).  Raises ArchiveError on junk."""
    sha_path, manifest_path = sidecar_paths(archive)
    digest = manifest = None
    if os.path.exists(sha_path):
        try:
            with open(sha_path) as handle:
                digest = parse_sha256_file(handle.read(), archive)
        except (IOError, OSError, ValueError) as exc:
            raise ArchiveError('cannot read the checksum file %s: %s' % (sha_path, exc))
    if os.path.exists(manifest_path):
        try:
            with open(manifest_path) as handle:
                manifest = json.load(handle)
        except (IOError, OSError, ValueError) as exc:
            raise ArchiveError('cannot read the manifest %s: %s' % (manifest_path, exc))
        if not isinstance(manifest, dict):
            raise ArchiveError('the manifest %s does not hold a JSON object' % manifest_path)
    return digest, manifest


def write_text_atomic(path, text, uid=None, gid=None, mode=0o600):
    """Write a small file via a temporary name + fsync + rename."""
    with AtomicFile(path, uid=uid, gid=gid, mode=mode) as out:
        out.write(text.encode('utf-8'))
        out.commit()


# -- atomic output ----------------------------------------------------------------------------------
class AtomicFile(object):
    """A new file in the destination directory under a temporary name.

    ``finish()`` flushes, fsyncs and closes it; ``commit()`` (finishing first if needed) renames
    it to the final name and fsyncs the directory.  Leaving the ``with`` block without commit()
    (an error, a check that failed) removes the temporary file.  Mode and owner are set on the
    open descriptor, before any data is written.
    """

    def __init__(self, final_path, uid=None, gid=None, mode=0o600, suffix=''):
        self.final_path = final_path
        self.directory = os.path.dirname(os.path.abspath(final_path))
        self.uid = uid
        self.gid = gid
        self.mode = mode
        self.suffix = suffix
        self.path = None
        self.handle = None
        self.committed = False

    def __enter__(self):
        fd, self.path = tempfile.mkstemp(prefix='.%s.tmp-' % os.path.basename(self.final_path),
                                         suffix=self.suffix, dir=self.directory)
        try:
            os.fchmod(fd, self.mode)
            if self.uid is not None:
                os.fchown(fd, self.uid, -1 if self.gid is None else self.gid)
        except OSError:
            os.close(fd)
            os.unlink(self.path)
            raise
        self.handle = os.fdopen(fd, 'wb')
        return self

    def write(self, data):
        return self.handle.write(data)

    def flush(self):
        self.handle.flush()

    def finish(self):
        if self.handle is not None:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            self.handle = None

    def commit(self):
        self.finish()
        os.rename(self.path, self.final_path)
        self.committed = True
        fsync_dir(self.directory)

    def discard(self):
        if self.handle is not None:
            try:
                self.handle.close()
            except (IOError, OSError):
                pass
            self.handle = None
        if not self.committed and self.path and os.path.lexists(self.path):
            os.unlink(self.path)

    def __exit__(self, exc_type, exc, tb):
        self.discard()
        return False


def boot_id():
    """This boot of the machine (Linux), or None: page-cache data of an earlier boot is gone."""
    try:
        with open('/proc/sys/kernel/random/boot_id') as handle:
            return handle.read().strip() or None
    except (IOError, OSError):
        return None


def fsync_tree(path):
    """Every regular file and directory below path on disk (fsync each; a reader of this path only)."""
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            target = os.path.join(dirpath, name)
            if os.path.islink(target) or not os.path.isfile(target):
                continue
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_identity(path):
    """What changes whenever a file's content may have changed: device, inode, size, and the
    modification and status-change times in nanoseconds (the ctime cannot be set back by a user)."""
    st = os.stat(path)
    return dict(dev=st.st_dev, ino=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns)


# -- manifest -------------------------------------------------------------------------------------------
def build_manifest(archive, inspection, method, source, engine, params_source, verification, tools,
                   created=None):
    """The JSON written beside the archive.  Values not read from the data are None, never guessed."""
    verification = verification or {}
    return dict(
        format=MANIFEST_FORMAT,
        format_version=MANIFEST_FORMAT_VERSION,
        archive=os.path.basename(archive),
        archive_size=inspection['size'],
        sha256=inspection['sha256'],
        method=method,
        created=created or utc_now(),
        engine_version=engine.get('version'),
        engine_build=engine.get('build'),
        schema_version=verification.get('schema_version'),
        module_checksum=verification.get('module_checksum'),
        jidcounter=verification.get('jidcounter'),
        job_count=verification.get('job_count'),
        job_count_with_archive=verification.get('job_count_with_archive'),
        params=verification.get('params'),
        params_source=params_source,
        pg_version=inspection.get('pg_version'),
        system_identifier=inspection.get('system_identifier'),
        top_level=inspection.get('top_level'),
        members=inspection.get('members'),
        uncompressed_bytes=inspection.get('file_bytes'),
        source=source,
        verified=verification.get('level'),
        tools=tools,
    )


def compare_manifest(manifest, inspection, verification=None):
    """Disagreements between a manifest and what was read from the archive (list of strings)."""
    problems = []
    if not manifest:
        return problems
    for key, actual in (('sha256', inspection.get('sha256')), ('archive_size', inspection.get('size'))):
        expected = manifest.get(key)
        if expected is not None and actual is not None and expected != actual:
            problems.append('%s is %s, the manifest says %s' % (key, actual, expected))
    if verification:
        for key in ('jidcounter', 'schema_version', 'module_checksum', 'job_count'):
            expected = manifest.get(key)
            actual = verification.get(key)
            if expected is not None and actual is not None and str(expected) != str(actual):
                problems.append('%s read from the restored copy is %s, the manifest says %s'
                                % (key, actual, expected))
    return problems


def python_version():
    return '%d.%d.%d' % sys.version_info[:3]


def is_no_space(exc):
    return isinstance(exc, (IOError, OSError)) and getattr(exc, 'errno', None) in (errno.ENOSPC, errno.EDQUOT)
