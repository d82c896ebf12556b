#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: tractor_db
short_description: Start, stop, back up, verify, restore and destroy a Tractor engine's job database
version_added: 1.0.0
description:
  - Manages the PostgreSQL job database of one Pixar Tractor engine through the install's own
    C(tractor-dbctl), as the Tractor "Upgrading" runbook does, and writes and checks backup
    archives.
  - Backup archives have the layout C(tractor-dbctl --backup) writes, a gzip-compressed tar whose
    only top-level entry is the last component of C(DBDataDir) (normally C(psql/)), so
    C(tractor-dbctl --restore) restores them, whichever O(method) wrote them.
  - Beside every archive the module writes C(<archive>.sha256) (C(sha256sum) format) and
    C(<archive>.manifest.json) (versions, job counter, job count, sizes, checksum).
  - All commands run as the EngineOwner (C(tractor-dbctl) and PostgreSQL refuse anyone else).
    Run the task as that account (C(become_user)) or as root, and the module switches with
    C(runuser).
author:
  - renderfarm.tractor contributors (@renderfarm)
extends_documentation_fragment:
  - renderfarm.tractor.tractor
  - renderfarm.tractor.tractor.attributes
attributes:
  check_mode:
    support: full
    details:
      - Every read and every preflight check runs in check mode too (engine probe, database
        status, free space, permissions, archive verification for O(state=verify),
        O(state=restore) and O(state=absent)); only the changes are skipped and listed in
        RV(commands).
  diff_mode:
    support: full
    details:
      - Returns the database status (and, for O(state=backup), the archive; for O(state=restore)
        and O(state=absent), the data directory) before and after.
  idempotent:
    support: full
    details:
      - O(state=started) and O(state=stopped) compare with C(tractor-dbctl --status).
      - O(state=copy) does nothing when O(path) already holds a finished copy of this C(DBDataDir).
      - O(state=backup) does nothing when O(path) already exists and matches its C(.sha256)
        file and manifest (like C(creates)); it does not compare the archive with the live data.
        O(force=true) replaces it.
      - O(state=restore) does nothing when the restore marker beside the data directory says it
        was filled by restoring this very archive (same sha256) and the data directory is still
        that extraction (same PostgreSQL system identifier, same C(PG_VERSION) inode and ctime).
        Jobs added since are kept; it does not roll back twice, and RV(msg) says so. With
        O(force=true) it restores the archive again, so that the database ends equal to it.
      - O(state=absent) does nothing when the data directory is missing or empty.
options:
  state:
    description:
      - V(status) only reads; it returns RV(status) and, when the server runs, RV(params).
      - V(started) runs C(tractor-dbctl --start-for-engine) (init, start, build and schema upgrade
        as C(db.config) says) unless the server already runs and the C(tractor) database exists.
        When C(DBDataDir) is missing it is created first (owned by the EngineOwner, mode 0700),
        because the real C(tractor-dbctl) crashes on a missing data directory.
      - V(stopped) runs C(tractor-dbctl --stop) when the server runs. It refuses while anything
        listens on the engine's port, unless O(force=true) (the runbook says not to stop the
        database under a running engine).
      - V(copy) copies the stopped C(DBDataDir) into the new directory O(path) (C(cp -a), sharing
        blocks with a reflink where the filesystem supports it, as Btrfs and XFS do), so that the
        engine can serve again while O(state=backup) with O(source) writes and verifies the archive
        from the copy. Same preflight as V(backup) (the engine must not answer, the server must be
        stopped or O(stop_database=true), room for the copy). The copy is made under
        C(<path>.partial) and renamed when it is on disk, with C(renderfarm-tractor-copy.json)
        written last. Does nothing when O(path) already holds a finished copy of this C(DBDataDir).
      - V(backup) writes the archive O(path). Preflight, in check mode too, before anything is
        touched - the engine must not answer on its C(ListenerPort) (stop it first); the database
        server must be stopped (or O(stop_database=true)); the destination directory must be
        writable by the EngineOwner; it must have free space for O(free_space_factor) times the
        size of C(DBDataDir), plus that size again on the scratch filesystem when
        O(verify=restore).
      - V(verify) checks an archive (O(verify)) and changes nothing.
      - V(restore) verifies the archive first, refuses while the engine or the database server
        runs, refuses a non-empty data directory unless O(force=true), then runs
        C(tractor-dbctl --destroy) (only when the directory is not empty) and
        C(tractor-dbctl --restore), and records a restore marker beside the data directory.
      - V(absent) runs C(tractor-dbctl --destroy). It refuses unless O(path) names an archive
        that verifies and is a backup of this very cluster (same PostgreSQL system identifier),
        or O(force=true). It refuses while the engine answers, and while the database server runs
        unless O(stop_database=true).
      - V(absent) and V(restore) also remove the record of paused jobs that
        M(renderfarm.tractor.tractor_engine) keeps in its default place,
        C(<TractorDataDirectory>/.renderfarm-tractor-paused-jobs.json). Its job ids belong to the
        database that was destroyed or replaced, so
        O(renderfarm.tractor.tractor_engine#module:dispatching=running) must not resume them
        in another.
    type: str
    choices: [status, started, stopped, copy, backup, verify, restore, absent]
    default: status
  path:
    description:
      - The backup archive (for example C(/backups/tractor/job-db-2.4.tgz)).
      - Required for O(state=backup), O(state=verify) and O(state=restore). For O(state=absent)
        the backup that must verify before the data directory is emptied.
      - For O(state=backup) its directory must exist; the archive is written there under a
        temporary name, checked, and renamed into place, mode 0600, owned by the EngineOwner.
      - For O(state=copy) the new directory of the copy (required); its parent must exist.
    type: path
    aliases: [archive, backup, dest]
  source:
    description:
      - For O(state=backup). A finished copy made with O(state=copy) to archive instead of
        C(DBDataDir). The engine and its database may run meanwhile (the copy was taken while they
        were stopped), so the checks on them are skipped. Needs O(method=native).
      - The copy is removed once the archive is written, before the restore check, which then has
        its room; the manifest's C(source.copy) names it.
    type: path
  method:
    description:
      - How O(state=backup) writes the archive.
      - V(native) tars C(DBDataDir) in the module and compresses the stream in blocks on
        O(workers) threads, each block an independent gzip member (a multi-member gzip file,
        which C(gzip -d), C(tar xz) and C(tractor-dbctl --restore) read as one stream).
      - V(dbctl) runs C(tractor-dbctl --backup FILE) as the runbook does (to a temporary name in
        the same directory, renamed after the checks); the module then computes the checksum and
        the manifest itself.
    type: str
    choices: [native, dbctl]
    default: native
  verify:
    description:
      - How thoroughly an archive is checked.
      - V(archive) reads the whole file once - sha256 against C(<archive>.sha256) and the
        manifest when they exist, full gzip decompression (every member's CRC), a walk of the tar -
        and requires a single top-level directory named like C(DBDataDir) holding C(PG_VERSION)
        and C(global/), no absolute paths, no C(..), no links leading out and no special files.
      - V(restore) does all that, then extracts a copy into a scratch directory (O(scratch_dir)),
        starts PostgreSQL on it (a free port, C(localhost) only, no unix socket, read-only
        transactions), reads the C(param) table and counts the jobs with C(psql) as user
        C(root), stops it and removes the copy. The values must match the manifest when there is
        one. This proves that the archive restores.
      - Defaults to V(restore) for O(state=backup) and O(state=verify), to V(archive) for
        O(state=restore) and O(state=absent).
      - For O(state=backup) with V(archive), the manifest's job-database values (C(jidcounter),
        C(schema_version), C(job_count), ...) come from C(tractor-dbctl --show-params) read just
        before the module stopped the server itself (O(stop_database)); otherwise nothing read
        them and they are V(null), with C(params_source) saying so. They are never guessed.
    type: str
    choices: [archive, restore]
  verified_archive:
    description:
      - The RV(archive) result of an earlier full read of the same archive in this run (for example
        registered from O(state=verify)), so that O(state=restore) and O(state=absent) need not read
        a large archive again.
      - It is used only when it names this O(path) and this C(DBDataDir)'s top-level directory,
        found no problem, and the file's device, inode, size, modification time and status-change
        time (which nobody can set back) are still those recorded in its C(identity) during that
        read; otherwise the archive is read in full again, with a warning. The C(.sha256) and
        manifest sidecars are checked against it every time, and O(verify=restore) still restores
        a scratch copy.
      - The downgrade role passes the result of its verification before anything is destroyed.
    type: dict
  auto_upgrade:
    description:
      - For O(state=started). V(false) passes C(--no-auto-upgrade), so that a newer
        C(tractor-dbctl) does not upgrade the schema of a database restored for an older engine
        (the runbook's downgrade starts the database with the old version's tools). Pending
        upgrades are then returned in RV(pending_upgrade).
      - A server that already runs is left as it is; O(state=started) does not upgrade it.
    type: bool
    default: true
  stop_database:
    description:
      - For O(state=backup). When the database server runs (and the engine does not), stop it
        with C(tractor-dbctl --stop) before the backup, as the runbook says. It stays stopped
        afterwards; the engine starts it again with C(--start-for-engine).
      - For O(state=absent). A server still running on C(DBDataDir) (a killed engine leaves it
        running) is stopped with C(tractor-dbctl --stop) just before C(--destroy), after every
        check has passed (the engine does not answer, the backup verifies and belongs to this
        cluster); no separate O(state=stopped) task is needed.
      - With V(false) a running server makes the backup (or the destroy) fail.
    type: bool
    default: false
  force:
    description:
      - O(state=backup) replaces an existing O(path).
      - O(state=restore) replaces a non-empty data directory (the archive is always verified
        first), also one that already holds a restore of this archive (the database then ends
        equal to the archive; jobs added since are gone).
      - O(state=absent) destroys without a verified backup.
      - O(state=stopped) stops the server even though the engine answers.
    type: bool
    default: false
  scratch_dir:
    description:
      - Directory below which O(verify=restore) extracts its temporary copy (a new
        C(.tractor-db-verify-*) directory, removed afterwards). The EngineOwner must be able to
        write it, and it needs free space for the uncompressed data directory.
      - Defaults to the archive's directory when the EngineOwner can write it, else to the
        directory holding C(DBDataDir).
    type: path
  pg_bindir:
    description:
      - PostgreSQL server binaries (C(pg_ctl), C(postgres), C(psql)) for O(verify=restore).
      - By default the first of C($TRACTOR_EMULATOR_PG_BINDIR), the bundled
        C(<install_dir>/lib/psql/bin), the newest C(/usr/lib/postgresql/<major>/bin) whose major
        version matches the archive's C(PG_VERSION).
    type: path
  compression_level:
    description:
      - gzip level (1 fastest - 9 smallest) of O(method=native).
    type: int
    default: 6
  workers:
    description:
      - Compression threads of O(method=native). Defaults to the number of CPUs, at most 8. At most 256.
    type: int
  free_space_factor:
    description:
      - The backup preflight requires this many times the size of C(DBDataDir) free at the
        destination. The compressed archive needs only a fraction; V(1.0) (the default) is safe
        for any data. V(0) turns the check off.
    type: float
    default: 1.0
  max_rate:
    description:
      - For O(state=backup) with O(method=native). Read the job database (or the copy) no faster
        than this many bytes per second while the archive is written, for example V(50M) for
        50 MiB/s, so that a backup written while the engine serves leaves it enough disk
        bandwidth. Units B, K, M, G (powers of 1024). Unset or V(0), as fast as it can.
    type: str
    version_added: 1.1.0
  progress_file:
    description:
      - A file the module keeps rewriting with the progress of its current step (JSON - the step,
        bytes done of the total, the elapsed time), and removes when it ends.
      - The collection's action plugin sets it when it runs a long state (V(copy), V(backup),
        V(verify), V(restore)) as an async job, and prints the progress from it every few
        seconds. There is no need to set it by hand.
    type: path
    version_added: 1.1.0
  lease:
    description:
      - The per-engine lock of the run (see M(renderfarm.tractor.tractor_lock)). While a long state
        (V(copy), V(backup), V(verify), V(restore)) runs, the module registers its process in the
        lock and renews the lease every O(lease.seconds)/4 seconds, so the lock stays live as long as
        the job works, also when the controller that started it is gone; at the end it leaves the lock
        to the run.
      - If the lock no longer belongs to O(lease.run_id) (somebody broke it by run id), the job goes on
        and warns.
    type: dict
    version_added: 1.1.0
    suboptions:
      path:
        description: The lock file.
        type: path
        required: true
      run_id:
        description: The run that holds it.
        type: str
        required: true
      seconds:
        description: The lease, as given to M(renderfarm.tractor.tractor_lock).
        type: int
        default: 900
notes:
  - O(state=copy), O(state=backup), O(state=verify) and O(state=restore) run detached on the host
    (an async job); the controller prints their progress at least every 10 seconds, and a dropped
    connection to the host does not stop them. Give the task C(async) yourself to get the plain
    Ansible behaviour instead.
  - The backup archive is a copy of the PostgreSQL data directory. It restores only into a
    PostgreSQL of the same major version (C(PG_VERSION)), and should be restored for the engine
    version that wrote it (C(engine_version) in RV(backup.manifest)); start that version with
    O(auto_upgrade=false) or its own C(tractor-dbctl) (Upgrading runbook, "Downgrading").
  - The restore marker is C(<parent of DBDataDir>/.renderfarm-tractor-restore.<basename>.json); it
    never lives inside the PostgreSQL data directory. O(state=absent) removes it.
  - C(method=dbctl) depends on C(tractor-dbctl)'s own tar; C(method=native) needs nothing but
    Python's standard library.
seealso:
  - name: Tractor Upgrading (backup, restore, downgrade)
    description: The runbook the backup, restore and destroy steps follow.
    link: https://rmanwiki.pixar.com/display/TRA/Upgrading
'''

EXAMPLES = r'''
- name: Back up the job database before an upgrade (engine already stopped)
  renderfarm.tractor.tractor_db:
    version: "2.2"
    config_dir: /opt/pixar/config
    state: backup
    path: /backups/tractor/job-db-2.2.tgz
    stop_database: true
  become: true
  become_user: tractor
  register: backup

- name: Show what the backup holds
  ansible.builtin.debug:
    msg: "jids up to {{ backup.backup.manifest.jidcounter }}, {{ backup.backup.manifest.job_count }} jobs"

- name: Verify an archive (restores it into a scratch copy and reads it)
  renderfarm.tractor.tractor_db:
    version: "2.4"
    config_dir: /opt/pixar/config
    state: verify
    path: /backups/tractor/job-db-2.2.tgz

- name: Downgrade - destroy the 2.4 database, but only with a verified backup of it
  renderfarm.tractor.tractor_db:
    version: "2.4"
    config_dir: /opt/pixar/config
    state: absent
    backup: /backups/tractor/job-db-2.4.tgz

- name: Downgrade - restore the 2.2 backup (the data directory is empty now)
  renderfarm.tractor.tractor_db:
    version: "2.2"
    config_dir: /opt/pixar/config
    state: restore
    path: /backups/tractor/job-db-2.2.tgz

- name: Start the database for the 2.2 engine without a schema upgrade
  renderfarm.tractor.tractor_db:
    version: "2.2"
    config_dir: /opt/pixar/config
    state: started
    auto_upgrade: false

- name: Stop the database server (the engine must be stopped)
  renderfarm.tractor.tractor_db:
    version: "2.4"
    config_dir: /opt/pixar/config
    state: stopped

# A short stop: copy while the engine is stopped, start it, archive the copy while it serves.
- name: Copy the stopped job database
  renderfarm.tractor.tractor_db:
    version: "2.2"
    config_dir: /opt/pixar/config
    state: copy
    path: /backups/tractor/.copy-job-db-2.2
    stop_database: true

- name: Archive and verify the copy (the engine may run again meanwhile)
  renderfarm.tractor.tractor_db:
    version: "2.2"
    config_dir: /opt/pixar/config
    state: backup
    source: /backups/tractor/.copy-job-db-2.2
    path: /backups/tractor/job-db-2.2.tgz
'''

RETURN = r'''
status:
  description: The database after the task (predicted in check mode).
  returned: always
  type: dict
  contains:
    data_dir:
      description: C(DBDataDir) of the merged C(db.config).
      type: str
      sample: /var/spool/tractor/psql
    data_dir_exists:
      description: Whether C(DBDataDir) exists.
      type: bool
    data_dir_empty:
      description: Whether it is empty; V(null) when it does not exist.
      type: bool
    initialized:
      description: Whether it holds a PostgreSQL cluster (C(PG_VERSION)).
      type: bool
    running:
      description: C(tractor-dbctl --status) says a server runs on the data directory.
      type: bool
    reachable:
      description: The server answers on the C(DBConnection) port.
      type: bool
    database_exists:
      description: The C(tractor) database exists; V(null) when the server is not running.
      type: bool
    system_identifier:
      description: The PostgreSQL system identifier of the cluster in the data directory (from
        C(global/pg_control)); a backup of this cluster carries the same one. V(null) when there is
        no readable cluster.
      type: str
  sample: {"data_dir": "/var/spool/tractor/psql", "data_dir_exists": true, "data_dir_empty": false,
           "initialized": true, "running": true, "reachable": true, "database_exists": true,
           "system_identifier": "7301234567890123456"}
params:
  description: The C(param) rows (C(tractor-dbctl --show-params)) when the server runs.
  returned: when the database is running and exists (not in check mode for changes)
  type: dict
  sample: {"jidcounter": "1234", "schema-version": "2.2-4", "archiving": "1", "maxrecords": "10000"}
upgrade:
  description: The schema upgrade O(state=started) applied, parsed from C(tractor-dbctl).
  returned: when O(state=started) started the server
  type: dict
  sample: {"from_version": "2.1-2", "to_version": "2.2-4", "steps": ["Drop all views.", "Create all views."]}
pending_upgrade:
  description: C(tractor-dbctl --check-upgrade) after a start with O(auto_upgrade=false).
  returned: when O(state=started) and O(auto_upgrade=false) and the database runs
  type: dict
  sample: {"required": true, "from_version": "2.1-2", "to_version": "2.2-4", "steps": ["Create all views."]}
engine:
  description:
    - What listens on the engine's address (O(engine), else C(localhost) and C(ListenerPort)),
      probed before backup, restore, absent and stopped. Only "connection refused" counts as
      "the engine is not running"; any answer, or anything else listening, makes those states
      refuse. The version comes from the C(Server) header of C(ctrl?q=status).
  returned: for those states
  type: dict
  sample: {"address": "localhost:80", "listening": false, "answers": false, "version": null,
           "detail": "connection refused"}
backup:
  description: The archive O(state=backup) wrote (or found).
  returned: when O(state=backup)
  type: dict
  contains:
    path:
      description: The archive.
      type: str
    sha256_path:
      description: Its C(sha256sum) file.
      type: str
    manifest_path:
      description: Its manifest.
      type: str
    created:
      description: Whether this run wrote it (V(false) when it already existed, and in check mode).
      type: bool
    manifest:
      description:
        - The manifest. Keys - C(format), C(format_version), C(archive), C(archive_size),
          C(sha256), C(method), C(created) (UTC ISO 8601), C(engine_version) and C(engine_build)
          (of the install, from C(tractor-engine --version)), C(schema_version),
          C(module_checksum), C(jidcounter), C(job_count), C(job_count_with_archive), C(params),
          C(params_source), C(pg_version), C(system_identifier), C(top_level), C(members),
          C(uncompressed_bytes), C(source) (host, data and config directories, install),
          C(verified), C(tools) (Python, zlib, PostgreSQL, tar versions).
        - Empty in check mode.
      type: dict
  sample:
    path: /backups/tractor/job-db-2.2.tgz
    sha256_path: /backups/tractor/job-db-2.2.tgz.sha256
    manifest_path: /backups/tractor/job-db-2.2.tgz.manifest.json
    created: true
    manifest: {"sha256": "9f2c...", "jidcounter": "1234", "job_count": 1200, "schema_version": "2.2-4",
               "engine_version": "2.2", "method": "native", "params_source": "restore-verification"}
archive:
  description: What a full read of the archive found.
  returned: when an archive was read (backup, verify, restore, absent with O(path))
  type: dict
  sample: {"path": "/backups/x.tgz", "sha256": "9f2c...", "size": 5242880, "members": 1200,
           "file_bytes": 41943040, "top_level": "psql", "pg_version": "15",
           "system_identifier": "7301234567890123456", "postmaster_pid": false, "problems": [],
           "identity": {"dev": 2049, "ino": 131073, "size": 5242880, "mtime_ns": 1796457600000000000,
                        "ctime_ns": 1796457600000000000}}
manifest:
  description: The manifest found beside the archive, if any.
  returned: for verify, restore and absent with O(path)
  type: dict
verification:
  description: The result of O(verify=restore) - what was read from the restored scratch copy.
  returned: when O(verify=restore) ran
  type: dict
  sample: {"level": "restore", "jidcounter": "1234", "schema_version": "2.2-4", "job_count": 1200,
           "job_count_with_archive": 1300, "server_version": "15.5", "pg_bindir": "/usr/lib/postgresql/15/bin",
           "commands": ["/usr/lib/postgresql/15/bin/pg_ctl -D ... start"], "scratch_removed": true}
checks:
  description: The checks the archive passed, in words.
  returned: when an archive was verified
  type: list
  elements: str
db_copy:
  description: For O(state=copy) the copy made (or found), for O(state=backup) with O(source) the copy archived.
  returned: when O(state=copy), or O(state=backup) with O(source)
  type: dict
  sample: {"path": "/backups/render01/.copy-20261206T101112Z", "db_data_dir": "/var/spool/tractor/psql",
           "top": "psql", "size": 52428800, "method": "copy", "seconds": 0.8,
           "created": "2026-12-06T10:11:13Z", "system_identifier": "7301234567890123456"}
needs:
  description:
    - For O(state=copy) and O(state=backup), the free space the backup needs on the filesystem of
      its directory, in bytes, by part; the module refused when it was not there. The rule
      M(renderfarm.tractor.tractor_info) applies for a preflight (its RV(renderfarm.tractor.tractor_info#module:backup)).
    - C(archive) is the database size times O(free_space_factor); C(copy) the copy of the stopped
      database; C(scratch) the restore check's extraction. The copy is removed before the restore
      check, so C(needed) is C(archive) plus the larger of the two.
  returned: when O(state=copy) or O(state=backup) got as far as its space check
  type: dict
  sample: {"archive": 52428800, "copy": 52428800, "scratch": 52428800, "needed": 104857600}
msg:
  description: For O(state=restore) when the data directory already held a restore of this archive - that
    it was left as it is, or (O(force=true)) restored again.
  returned: when O(state=restore) found its own earlier restore
  type: str
  sample: >-
    /var/spool/tractor/psql still holds the restore of /backups/x.tgz (made 2024-05-01T12:00:00Z); jobs
    added since are kept. force: true restores the archive again
restore:
  description: The restore marker (what the data directory was restored from).
  returned: when O(state=restore)
  type: dict
  sample: {"archive": "/backups/x.tgz", "sha256": "9f2c...", "restored_at": "2024-05-01T12:00:00Z"}
commands:
  description: The changes made (or, in check mode, that would be made), in order - commands as run
    and descriptions of the files the module wrote.
  returned: always
  type: list
  elements: str
  sample: ["/opt/pixar/Tractor-2.4/bin/tractor-dbctl --configdir /opt/pixar/config --stop"]
diff:
  description: Before and after (with C(--diff)).
  returned: when diff mode is on and the state can change something
  type: dict
'''

import errno
import fcntl
import json
import os
import pwd
import shutil
import socket
import time
import zlib

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.formatters import human_to_bytes

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_common import (
    COMMON_REQUIRED_ONE_OF, PAUSED_JOBS_FILE, TractorModule, common_argument_spec,
)
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_dbctl import (
    Dbctl, parse_check_upgrade, parse_upgrade,
)
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_engine_client import EngineClient
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_install import banner_check, install_version
from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_files as backup_files
from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_inspect as archive_inspect
from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_restore_check as restore_check
from ansible_collections.renderfarm.tractor.plugins.module_utils import tractor_targz as targz
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_progress import Progress, TreeWatcher
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_lease import LeaseKeeper
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_files import ArchiveError

STATES = ['status', 'started', 'stopped', 'copy', 'backup', 'verify', 'restore', 'absent']
# The states that may run for many minutes: they keep the run's lease while they work.
LEASED_STATES = ('copy', 'backup', 'verify', 'restore')
MAX_WORKERS = 256
DEFAULT_VERIFY = dict(backup='restore', verify='restore', restore='archive', absent='archive')
MARKER_TEMPLATE = '.renderfarm-tractor-restore.%s.json'
# Written last into a finished copy (state=copy): a directory without it is an interrupted copy.
COPY_MARKER = 'renderfarm-tractor-copy.json'
STOP_HINT = ('stop the engine first (renderfarm.tractor.tractor_engine state=stopped, or your service '
             'manager): the Upgrading runbook requires the engine and the database to be stopped')


def argument_spec():
    spec = common_argument_spec()
    spec.update(
        state=dict(type='str', default='status', choices=STATES),
        path=dict(type='path', aliases=['archive', 'backup', 'dest']),
        method=dict(type='str', default='native', choices=['native', 'dbctl']),
        verify=dict(type='str', choices=['archive', 'restore']),
        auto_upgrade=dict(type='bool', default=True),
        stop_database=dict(type='bool', default=False),
        force=dict(type='bool', default=False),
        scratch_dir=dict(type='path'),
        pg_bindir=dict(type='path'),
        compression_level=dict(type='int', default=6),
        workers=dict(type='int'),
        free_space_factor=dict(type='float', default=1.0),
        verified_archive=dict(type='dict'),
        source=dict(type='path'),
        progress_file=dict(type='path'),
        max_rate=dict(type='str'),
        lease=dict(type='dict', options=dict(path=dict(type='path', required=True),
                                             run_id=dict(type='str', required=True),
                                             seconds=dict(type='int', default=900))),
    )
    return spec


# Errors that say "nothing listens at this address" (or the address family is not usable here).
NOT_LISTENING_ERRNOS = set(getattr(errno, name)
                           for name in ('ECONNREFUSED', 'EADDRNOTAVAIL', 'ENETUNREACH', 'EAFNOSUPPORT', 'EHOSTUNREACH')
                           if hasattr(errno, name))


def tcp_listening(host, port, timeout):
    """True when something accepts TCP connections at host:port, False when every address refuses.

    Raises OSError for anything else (a timeout, an unknown host): that is no proof the engine is down.
    """
    refused = None
    for family, socktype, proto, _canonname, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, socktype, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            return True
        except (socket.error, OSError) as exc:
            if getattr(exc, 'errno', None) not in NOT_LISTENING_ERRNOS:
                raise
            if exc.errno == errno.ECONNREFUSED or refused is None:
                refused = exc
        finally:
            sock.close()
    if refused is not None and refused.errno != errno.ECONNREFUSED:
        raise refused
    return False


def marker_path(db_dir):
    db_dir = db_dir.rstrip('/')
    return os.path.join(os.path.dirname(db_dir), MARKER_TEMPLATE % os.path.basename(db_dir))


def read_marker(path):
    try:
        with open(path) as handle:
            marker = json.load(handle)
    except (IOError, OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def marker_matches(marker, sha256, db_dir, identity):
    """The data directory is still the extraction of this archive the marker recorded."""
    if not marker or not identity:
        return False
    if marker.get('sha256') != sha256 or marker.get('db_data_dir') != db_dir:
        return False
    recorded = marker.get('identity') or {}
    return all(recorded.get(key) == identity.get(key)
               for key in ('system_identifier', 'pg_version_inode', 'pg_version_ctime_ns'))


class TractorDb(object):
    """One run of the module: the states, their preflights and their changes."""

    def __init__(self, module):
        self.module = module
        self.fail_suffix = ''
        self.result = dict(state=module.params['state'])
        self.tm = TractorModule(module)
        self.dbctl = Dbctl(self.tm)
        self.params = module.params
        self.state = self.params['state']
        self.db_dir = self.tm.config.db_data_dir.rstrip('/') or '/'
        self.top = os.path.basename(self.db_dir)
        self.verify_level = self.params['verify'] or DEFAULT_VERIFY.get(self.state)
        self.uid, self.gid = self.owner_ids()
        self.progress = Progress(self.params['progress_file'], what=self.state, target=self.params['path'])

    # -- helpers --------------------------------------------------------------------------------------
    def fail(self, msg, **kwargs):
        msg += self.fail_suffix
        for key in ('engine', 'archive', 'manifest', 'verification', 'status'):
            if key in self.result and key not in kwargs:
                kwargs[key] = self.result[key]
        self.tm.fail(msg, **kwargs)

    def owner_ids(self):
        """(uid, gid) of the EngineOwner when this process is root and must hand files over."""
        if os.geteuid() != 0 or not self.tm.owner:
            return None, None
        try:
            entry = pwd.getpwnam(self.tm.owner)
        except KeyError:
            self.tm.fail('EngineOwner %r does not exist on this host: create the account or fix EngineOwner in %s'
                         % (self.tm.owner, ', '.join(self.tm.config.files.get('tractor.config') or [])))
        return entry.pw_uid, entry.pw_gid

    def owner_name(self):
        return self.tm.owner or pwd.getpwuid(os.geteuid()).pw_name

    def owner_can(self, path, write=False):
        """Whether the EngineOwner can traverse (and write) the directory path / read the file path."""
        me = pwd.getpwuid(os.geteuid()).pw_name
        is_dir = os.path.isdir(path)
        if not self.tm.owner or me == self.tm.owner:
            if is_dir:
                return os.access(path, os.X_OK | (os.W_OK if write else 0))
            return os.access(path, os.R_OK)
        test = self.module.get_bin_path('test', required=True)
        if is_dir:
            argv = [test, '-d', path, '-a', '-x', path] + (['-a', '-w', path] if write else [])
        else:
            argv = [test, '-f', path, '-a', '-r', path]
        rc, out, err = self.tm.run(argv)
        return rc == 0

    def engine_address(self):
        return self.tm.config.client_address(self.params.get('engine'))

    def probe_engine(self):
        """Is anything listening on the engine's port, and does it answer as a Tractor engine?"""
        address = self.engine_address()
        host, _sep, port = address.rpartition(':')
        host = host.strip('[]') or 'localhost'
        timeout = max(1, min(5, self.params['timeout']))
        found = dict(address=address, listening=False, answers=False, version=None, detail=None)
        self.result['engine'] = found
        try:
            listening = tcp_listening(host, int(port), timeout)
        except ValueError:
            self.fail('engine %r is not host:port' % address)
        except (socket.error, OSError) as exc:
            found['detail'] = str(exc)
            self.fail('cannot tell whether the engine at %s runs (%s): check the engine option and '
                      'ListenerPort in tractor.config' % (address, exc))
        if not listening:
            found['detail'] = 'connection refused'
            return found
        found['listening'] = True
        probe = EngineClient(address, user=self.params['engine_user'], timeout=timeout).probe()
        found.update(answers=probe['answered'], version=probe['version'], detail=probe['error'])
        self.result['engine'] = found
        return found

    def refuse_if_engine(self, action):
        engine = self.probe_engine()
        if engine['answers']:
            self.fail('the Tractor engine%s answers at %s: %s before %s'
                      % (' ' + engine['version'] if engine['version'] else '', engine['address'], STOP_HINT, action))
        if engine['listening']:
            self.fail('something listens on the engine port %s (%s): if it is the engine, %s before %s; '
                      'otherwise set the engine option to the engine\'s real address'
                      % (engine['address'], engine['detail'], STOP_HINT, action))
        return engine

    def read_status(self):
        status = dict(data_dir=self.db_dir, data_dir_exists=os.path.isdir(self.db_dir), data_dir_empty=None,
                      initialized=False, system_identifier=None, running=False, reachable=False, database_exists=None)
        if not status['data_dir_exists']:
            return status  # the real tractor-dbctl crashes on a missing DBDataDir (fact sheet 1.3)
        try:
            entries = os.listdir(self.db_dir)
        except OSError as exc:
            self.fail('cannot read the data directory %s (%s): run the task as the EngineOwner %s or as root'
                      % (self.db_dir, exc, self.owner_name()))
        status['data_dir_empty'] = not entries
        status['initialized'] = 'PG_VERSION' in entries
        # which cluster this is (a backup of it carries the same identifier): readable while it runs
        status['system_identifier'] = (archive_inspect.data_dir_identity(self.db_dir) or {}).get('system_identifier')
        status.update(self.dbctl.status())
        if not status['running']:
            status['database_exists'] = None
        return status

    def read_params(self, status):
        if status.get('running') and status.get('reachable') and status.get('database_exists'):
            return self.dbctl.params()
        return None

    def run_read(self, argv):
        return self.tm.run(argv)

    def engine_version(self):
        """Version of the install (its directory's name, else the version option) and, when
        `tractor-engine --version` prints a banner naming that version, its build."""
        version, _why = install_version(self.tm.install_dir, self.params.get('version'))
        build = None
        tool = self.tm.tool('tractor-engine')
        if version and os.access(tool, os.X_OK):
            rc, out, err = self.tm.run([tool, '--version'], owner=False)
            build, _warning = banner_check(version, rc, out, err)
        return dict(version=version, build=build)

    def mkdir_data_dir(self):
        """Create a missing DBDataDir (0700, EngineOwner) -- the real tractor-dbctl crashes without it."""
        parent = os.path.dirname(self.db_dir)
        if not os.path.isdir(parent):
            self.fail('the parent %s of DBDataDir %s does not exist: create TractorDataDirectory (owned by the '
                      'EngineOwner %s) first' % (parent, self.db_dir, self.owner_name()))
        if self.tm.record('create %s (mode 0700, owner %s)' % (self.db_dir, self.owner_name())):
            os.mkdir(self.db_dir, 0o700)
            if self.uid is not None:
                os.chown(self.db_dir, self.uid, self.gid)
            os.chmod(self.db_dir, 0o700)

    def set_diff(self, before, after):
        if self.module._diff:
            self.result['diff'] = dict(before=before, after=after)

    # -- archives -------------------------------------------------------------------------------------
    def choose_scratch(self, archive_dir):
        if self.params['scratch_dir']:
            path = self.params['scratch_dir']
            if not os.path.isdir(path):
                self.fail('scratch_dir %s does not exist: create it (writable by the EngineOwner %s)'
                          % (path, self.owner_name()))
            if not self.owner_can(path, write=True):
                self.fail('the EngineOwner %s cannot write scratch_dir %s: PostgreSQL runs the restore check as '
                          'that account; chown/chmod it or pick another directory' % (self.owner_name(), path))
            return path
        candidates = [archive_dir, os.path.dirname(self.db_dir)]
        for path in candidates:
            if path and os.path.isdir(path) and self.owner_can(path, write=True):
                return path
        self.fail('no scratch directory for the restore check: the EngineOwner %s can write neither %s; set '
                  'scratch_dir to a directory it can write (it needs room for the uncompressed data directory)'
                  % (self.owner_name(), ' nor '.join(candidates)))

    def check_scratch_space(self, scratch, needed, also=0, also_path=None):
        total = needed + (also if also_path and backup_files.same_filesystem(scratch, also_path) else 0)
        free = backup_files.free_bytes(scratch)
        if free < total:
            self.fail('not enough free space in %s for the restore check: %s needed (the uncompressed data '
                      'directory%s), %s free; free some space, set scratch_dir elsewhere, or use verify: archive'
                      % (scratch, backup_files.human_size(total),
                         ' plus the archive on the same filesystem' if total != needed else '',
                         backup_files.human_size(free)))

    def pg_bindir(self, want_major):
        def version_of(path):
            rc, out, err = self.tm.run([os.path.join(path, 'postgres'), '--version'], owner=False)
            return out if rc == 0 else ''
        try:
            return restore_check.find_pg_bindir(self.tm.install_dir, want_major=want_major,
                                                override=self.params['pg_bindir'], version_of=version_of)
        except ArchiveError as exc:
            self.fail(str(exc))

    def restore_check(self, path, inspection, scratch):
        bindir, major = self.pg_bindir(inspection.get('pg_version'))
        self.check_scratch_space(scratch, inspection.get('file_bytes') or 0)
        check = restore_check.RestoreCheck(
            path, self.top, scratch, bindir, self.run_read,
            dbname=str(self.tm.config.db_connection.get('dbname') or 'tractor'),
            uid=self.uid, gid=self.gid, timeout=self.params['timeout'], progress=self.progress)
        try:
            found = check.run_check()
        except ArchiveError as exc:
            extra = dict((k, v) for k, v in exc.info.items() if k in ('rc', 'stdout', 'stderr', 'cmd'))
            self.result['verification'] = dict(level='restore', pg_bindir=bindir, commands=check.commands,
                                               scratch_removed=check.scratch_removed)
            self.fail('%s does not restore: %s. Do not rely on this backup; make a new one, or check the '
                      'PostgreSQL binaries (pg_bindir)' % (path, exc), **extra)
        except (IOError, OSError) as exc:
            check.cleanup()
            self.fail('the restore check of %s failed in %s: %s' % (path, scratch, exc))
        found.update(level='restore', pg_bindir=bindir, commands=check.commands,
                     scratch_removed=check.scratch_removed, scratch_parent=scratch)
        if found.get('notes'):
            for note in found['notes']:
                self.module.warn(note)
        return found

    def reusable_verification(self, path):
        """The RV(archive) of an earlier full read given as verified_archive, when it is of this very
        file and the file has not changed since (same identity), and that read found no problem."""
        earlier = self.params['verified_archive']
        if not earlier:
            return None
        identity = earlier.get('identity')
        if not isinstance(identity, dict) or not earlier.get('sha256') or earlier.get('problems') != [] \
                or os.path.abspath(str(earlier.get('path') or '')) != os.path.abspath(path) \
                or earlier.get('top_level') != self.top:
            self.module.warn('verified_archive does not describe a complete read of %s without problems: '
                             'the archive is read again' % path)
            return None
        try:
            now = backup_files.file_identity(path)
        except OSError:
            return None
        if any(now.get(key) != identity.get(key) for key in ('dev', 'ino', 'size', 'mtime_ns', 'ctime_ns')):
            self.module.warn('%s changed since it was verified (%s): it is read again'
                             % (path, ', '.join(k for k in sorted(now) if now[k] != identity.get(k))))
            return None
        info = dict(earlier, path=path, identity=now, reused=True)
        return info

    def verify_archive(self, path, level, scratch=None, sidecars=True):
        """sha256/manifest, full decompression and tar walk, then (restore) the scratch restore."""
        if not os.path.exists(path):
            self.fail('archive %s not found: give the path of a backup made by tractor-dbctl --backup or by this '
                      'module' % path)
        if not os.path.isfile(path):
            self.fail('%s is not a regular file' % path)
        expected = manifest = None
        if sidecars:
            try:
                expected, manifest = backup_files.read_sidecars(path)
            except ArchiveError as exc:
                self.fail('%s: fix or remove it (the archive itself is checked once it is readable)' % exc)
        if manifest is not None:
            self.result['manifest'] = manifest
        checks = []
        reused = self.reusable_verification(path)
        if not reused:
            self.progress.step('reading the archive back (sha256, gzip, tar)', total=os.path.getsize(path))
        try:
            info = reused or archive_inspect.inspect_archive_identified(path, top=self.top, progress=self.progress)
        except ArchiveError as exc:
            self.result['archive'] = exc.info
            msg = str(exc)
            if expected and exc.info.get('sha256') and exc.info['sha256'] != expected:
                msg += '; its sha256 %s does not match %s (%s)' % (exc.info['sha256'],
                                                                   backup_files.sidecar_paths(path)[0], expected)
            self.fail(msg + '. The file is damaged or incomplete: do not restore it; use another backup')
        self.result['archive'] = info
        sha_path = backup_files.sidecar_paths(path)[0]
        if expected:
            if info['sha256'] != expected:
                self.fail('the sha256 of %s is %s, but %s says %s: the file was changed or damaged after the backup; '
                          'do not restore it, use another backup' % (path, info['sha256'], sha_path, expected))
            checks.append('sha256 matches %s' % sha_path)
        elif sidecars:
            self.module.warn('%s has no %s file: its integrity rests on the gzip CRCs alone' % (path, sha_path))
        problems = backup_files.compare_manifest(manifest, info)
        if problems:
            self.fail('%s does not match its manifest %s: %s. Do not restore it; use another backup'
                      % (path, backup_files.sidecar_paths(path)[1], '; '.join(problems)))
        if manifest is not None:
            checks.append('size and sha256 match the manifest')
        if reused:
            checks.append('unchanged since the full read of this run (device, inode, size, mtime and ctime '
                          'as recorded then); that read found:')
        checks.append('gzip stream decompresses completely (%d bytes)' % info['size'])
        checks.append('tar walk: %d members, %d bytes of files' % (info['members'], info['file_bytes']))
        if info['problems']:
            self.fail('%s cannot be restored into %s: %s' % (path, self.db_dir, '; '.join(info['problems'])))
        checks.append('single top-level directory %s/ with PG_VERSION (%s) and global/; no absolute, ".." or '
                      'escaping paths' % (info['top_level'], info['pg_version']))
        if info['postmaster_pid']:
            self.module.warn('%s holds postmaster.pid: it was taken while PostgreSQL ran and may be inconsistent'
                             % path)
        verification = None
        if level == 'restore':
            scratch = scratch or self.choose_scratch(os.path.dirname(os.path.abspath(path)))
            verification = self.restore_check(path, info, scratch)
            self.result['verification'] = verification
            problems = backup_files.compare_manifest(manifest, info, verification)
            if problems:
                self.fail('the restored copy of %s does not match its manifest: %s. The manifest belongs to another '
                          'archive or was edited' % (path, '; '.join(problems)))
            checks.append('restores: PostgreSQL %s started on a scratch copy; jidcounter %s, schema-version %s, '
                          '%d jobs' % (verification.get('server_version'), verification.get('jidcounter'),
                                       verification.get('schema_version'), verification.get('job_count')))
        self.result['checks'] = checks
        return info, manifest, verification

    # -- states ----------------------------------------------------------------------------------------
    def state_status(self):
        status = self.read_status()
        self.result['status'] = status
        params = self.read_params(status)
        if params is not None:
            self.result['params'] = params

    def state_started(self):
        if not os.path.isdir(self.db_dir):
            before = self.read_status()
            self.mkdir_data_dir()
            status = (self.read_status() if not self.module.check_mode
                      else dict(before, data_dir_exists=True, data_dir_empty=True))
        else:
            status = before = self.read_status()
        if status['running'] and not status['reachable']:
            self.fail('a PostgreSQL server runs on %s but is not reachable through port %s: check DBConnection in '
                      'db.config and the site postgresql.conf' % (self.db_dir, self.tm.config.db_connection['port']))
        if status['running'] and status['database_exists']:
            after = status
        else:
            args = [] if self.params['auto_upgrade'] else ['--no-auto-upgrade']
            self.progress.step('starting the database (tractor-dbctl --start-for-engine%s)'
                               % ('' if self.params['auto_upgrade'] else ' --no-auto-upgrade'))
            out, err = self.dbctl.change('--start-for-engine', *args)
            if self.module.check_mode:
                after = dict(status, data_dir_exists=True, data_dir_empty=False, initialized=True, running=True,
                             reachable=True, database_exists=True)
                self.result['upgrade'] = None
            else:
                self.result['upgrade'] = parse_upgrade(err)
                after = self.read_status()
        self.result['status'] = after
        if not self.module.check_mode or not self.tm.changed:
            params = self.read_params(after)
            if params is not None:
                self.result['params'] = params
            if not self.params['auto_upgrade'] and after.get('database_exists'):
                out, err = self.dbctl.read('--check-upgrade')
                try:
                    pending = parse_check_upgrade(err)
                except ValueError as exc:
                    self.fail(str(exc))
                self.result['pending_upgrade'] = pending
                if pending['required']:
                    self.module.warn('the schema needs upgrades from %s to %s; the engine of this install will not run '
                                     'until tractor-dbctl --upgrade (or state=started with auto_upgrade=true)'
                                     % (pending['from_version'], pending['to_version']))
        self.set_diff(before, after)

    def state_stopped(self):
        before = self.read_status()
        if not before['running']:
            self.result['status'] = before
            self.set_diff(before, before)
            return
        if not self.params['force']:
            self.refuse_if_engine('stopping the database (or set force: true)')
        self.dbctl.change('--stop')
        after = dict(before, running=False, reachable=False, database_exists=None) if self.module.check_mode \
            else self.read_status()
        self.result['status'] = after
        self.set_diff(before, after)

    def backup_exists_unchanged(self, path):
        """An existing archive: unchanged when it matches its sidecars, else a failure (unless force)."""
        sha_path, manifest_path = backup_files.sidecar_paths(path)
        try:
            expected, manifest = backup_files.read_sidecars(path)
        except ArchiveError as exc:
            self.fail('%s already exists and %s; remove it, choose another path, or set force: true to replace it'
                      % (path, exc))
        if expected is None or manifest is None:
            self.fail('%s already exists but has no %s and %s from this module: remove it, choose another path, or '
                      'set force: true to replace it' % (path, sha_path, manifest_path))
        actual = backup_files.file_sha256(path)
        if actual != expected or manifest.get('sha256') != actual:
            self.fail('%s already exists but its sha256 %s does not match %s / the manifest: it is damaged or was '
                      'changed; remove it or set force: true to replace it' % (path, actual, sha_path))
        self.result['backup'] = dict(path=path, sha256_path=sha_path, manifest_path=manifest_path, created=False,
                                     manifest=manifest)

    def backup_source(self):
        """(copy directory or None, directory to archive): O(source) must be a finished copy of this DBDataDir."""
        source = self.params['source']
        if not source:
            return None, self.db_dir
        source = source.rstrip('/') or '/'
        found = read_marker(os.path.join(source, COPY_MARKER))
        if found is None:
            self.fail('source %s is not a finished copy (no %s): make it with state=copy while the database is '
                      'stopped' % (source, COPY_MARKER))
        if found.get('db_data_dir') != self.db_dir or found.get('top') != self.top:
            self.fail('source %s is a copy of %s, not of this DBDataDir %s'
                      % (source, found.get('db_data_dir'), self.db_dir))
        if self.params['method'] != 'native':
            self.fail('source needs method=native: tractor-dbctl --backup archives DBDataDir itself')
        self.lock_copy(source)
        if found.get('synced') is False and found.get('boot_id') != backup_files.boot_id():
            self.fail('the copy %s was taken before this machine last started, and its data was not yet on disk '
                      'then: it may be incomplete, so it is not archived. Remove it (the backup role\'s finish '
                      'entry point does) and take a new backup. Nothing was changed' % source)
        if found.get('synced') is False and self.tm.record('put the copy %s on disk (fsync of every file)' % source):
            backup_files.fsync_tree(source)
            found = dict(found, synced=True)
            backup_files.write_text_atomic(os.path.join(source, COPY_MARKER),
                                           json.dumps(found, indent=2, sort_keys=True) + '\n')
        self.result['db_copy'] = found
        return source, os.path.join(source, self.top)

    def lock_copy(self, source):
        """Hold the copy's marker locked while it is archived: a job that lost its controller may still
        be archiving it when a re-run comes to finish it."""
        try:
            self.copy_lock = open(os.path.join(source, COPY_MARKER), 'rb')
            fcntl.flock(self.copy_lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError) as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                self.fail('the copy %s is being archived by another run (its job outlived its controller, '
                          'or it runs now): wait until that ends -- the copy is removed once its archive is '
                          'written -- then run again. Nothing was changed' % source)
            self.fail('cannot open the copy %s: %s' % (source, exc))
        # what an earlier, killed attempt at this very archive left (temporary names of AtomicFile)
        prefix = '.%s.tmp-' % os.path.basename(self.params['path'])
        dest = os.path.dirname(self.params['path'])
        for name in sorted(os.listdir(dest)) if os.path.isdir(dest) else []:
            if name.startswith(prefix) and self.tm.record('remove %s, left by an interrupted attempt at %s'
                                                          % (os.path.join(dest, name), self.params['path'])):
                os.unlink(os.path.join(dest, name))

    def state_copy(self):
        """A copy of the stopped DBDataDir in the new directory path, so that the engine can serve
        again while state=backup source=path writes and verifies the archive from the copy."""
        path = self.params['path'].rstrip('/') or '/'
        parent = os.path.dirname(path)
        marker_file = os.path.join(path, COPY_MARKER)
        found = read_marker(marker_file)
        if found is not None:
            if found.get('db_data_dir') != self.db_dir:
                self.fail('%s is a copy of %s, not of this DBDataDir %s: give another path'
                          % (path, found.get('db_data_dir'), self.db_dir))
            self.result['db_copy'] = found
            self.result['status'] = self.read_status()
            return
        if os.path.lexists(path):
            self.fail('%s exists but holds no finished copy (no %s): it is what an interrupted copy left; remove it '
                      'and run again' % (path, COPY_MARKER))
        if not os.path.isdir(parent):
            self.fail('the directory %s does not exist: create it first (on the filesystem of the backups)' % parent)
        real_db = os.path.realpath(self.db_dir)
        if os.path.realpath(path).startswith(real_db + os.sep):
            self.fail('path %s is inside DBDataDir %s: copy it elsewhere' % (path, self.db_dir))
        if not os.path.exists(os.path.join(self.db_dir, 'PG_VERSION')):
            self.fail('%s holds no PostgreSQL cluster (no PG_VERSION): nothing to copy. Check DBDataDir in '
                      'db.config (config_dir %s)' % (self.db_dir, self.tm.config_dir))
        # -- every check before the first change --
        self.refuse_if_engine('a copy of the job database')
        before = self.read_status()
        self.result['status'] = before
        if before['running'] and not self.params['stop_database']:
            self.fail('the job database server is running on %s: stop it first (state=stopped), or set '
                      'stop_database: true -- a consistent copy needs it stopped' % self.db_dir, status=before)
        size = backup_files.dir_size(self.db_dir)
        free = backup_files.free_bytes(parent)
        # the copy is made for an archive beside it: room for the whole backup, before the engine stays down
        scratch = self.params['scratch_dir']
        needs = backup_files.backup_needs(
            size, self.params['free_space_factor'], self.params['verify'] or 'restore', copy_first=True,
            scratch_apart=bool(scratch) and os.path.isdir(scratch) and not backup_files.same_filesystem(scratch, parent))
        if free < needs['needed']:
            self.fail('not enough free space in %s for a backup by copy of %s: %s needed for %s; %s free. Free '
                      'space, choose another path, or set scratch_dir on another filesystem'
                      % (parent, self.db_dir, backup_files.human_size(needs['needed']),
                         backup_files.describe_needs(needs), backup_files.human_size(free)))
        self.result['needs'] = needs
        # -- the changes --
        if before['running']:
            self.dbctl.change('--stop')
        partial = path + '.partial'
        copy = dict(db_data_dir=self.db_dir, top=self.top, size=size, path=path)
        if self.tm.record('copy %s to %s (cp -a, a reflink where the filesystem has them), then rename it to %s'
                          % (self.db_dir, os.path.join(partial, self.top), path)):
            if os.path.lexists(partial):
                shutil.rmtree(partial)
            os.mkdir(partial, 0o700)
            started = time.time()
            self.progress.step('copying the stopped job database', total=size)
            with TreeWatcher(self.progress, os.path.join(partial, self.top)):
                copy['method'] = self.copy_tree(self.db_dir, os.path.join(partial, self.top))
            copy.update(seconds=round(time.time() - started, 3), created=backup_files.utc_now(),
                        system_identifier=(archive_inspect.data_dir_identity(
                            os.path.join(partial, self.top)) or {}).get('system_identifier'))
            # The marker comes last, then the rename. The copy's data is put on disk later, by the
            # archive step, outside the downtime (a sync here could flush the whole filesystem):
            # the marker says so, with this boot, whose page cache still holds the data.
            copy.update(synced=False, boot_id=backup_files.boot_id())
            backup_files.write_text_atomic(os.path.join(partial, COPY_MARKER),
                                           json.dumps(copy, indent=2, sort_keys=True) + '\n')
            os.rename(partial, path)
            backup_files.fsync_dir(parent)
        self.result['db_copy'] = copy
        after = dict(before, running=False, reachable=False, database_exists=None)
        self.result['status'] = after
        self.set_diff(dict(copy=path, exists=False, database=before), dict(copy=path, exists=True, database=after))

    def copy_tree(self, src, dst):
        """cp -a, sharing the blocks (reflink) where the filesystem can; returns the way it copied."""
        cp = self.tm.module.get_bin_path('cp', required=True)
        rc, out, err = self.tm.run([cp, '-a', '--reflink=always', src, dst], owner=False)
        if rc == 0:
            return 'reflink'
        if os.path.lexists(dst):
            shutil.rmtree(dst)
        argv = [cp, '-a', src, dst]
        rc, out, err = self.tm.run(argv, owner=False)
        if rc != 0:
            if os.path.lexists(dst):
                shutil.rmtree(dst)
            self.tm.fail_command('copying %s failed (nothing was left behind; the job database was not changed)'
                                 % src, argv, rc, out, err)
        return 'copy'

    def state_backup(self):
        path = self.params['path']
        dest = os.path.dirname(path)
        sha_path, manifest_path = backup_files.sidecar_paths(path)
        if not os.path.isdir(dest):
            self.fail('the backup directory %s does not exist: create it first (owned by or writable for the '
                      'EngineOwner %s)' % (dest, self.owner_name()))
        if os.path.isdir(path):
            self.fail('path %s is a directory: give the archive file name, for example %s'
                      % (path, os.path.join(path, 'tractor-job-db.tgz')))
        real_db = os.path.realpath(self.db_dir)
        if os.path.realpath(path) == real_db or os.path.realpath(path).startswith(real_db + os.sep):
            self.fail('path %s is inside DBDataDir %s: the archive would contain itself; write it elsewhere'
                      % (path, self.db_dir))
        workers = self.params['workers'] if self.params['workers'] is not None else min(8, os.cpu_count() or 1)
        if workers < 1:
            self.fail('workers must be at least 1, not %d' % workers)
        level = self.params['compression_level']
        if not 1 <= level <= 9:
            self.fail('compression_level must be 1 (fastest) to 9 (smallest), not %d' % level)
        if os.path.exists(path) and not self.params['force']:
            self.backup_exists_unchanged(path)
            status = self.read_status()
            self.result['status'] = status
            self.set_diff(dict(archive=path, exists=True), dict(archive=path, exists=True))
            return
        # -- preflight, in check mode too, before anything is touched --
        source, src_dir = self.backup_source()
        if source is None and (not os.path.isdir(self.db_dir)
                               or not os.path.exists(os.path.join(self.db_dir, 'PG_VERSION'))):
            self.fail('%s holds no PostgreSQL cluster (no PG_VERSION): nothing to back up. Check DBDataDir in '
                      'db.config (config_dir %s)' % (self.db_dir, self.tm.config_dir))
        if source is None:
            self.refuse_if_engine('a backup')
        before = self.read_status()
        if source is None and before['running'] and not self.params['stop_database']:
            self.fail('the job database server is running on %s: stop it first (state=stopped, or tractor-dbctl '
                      '--stop), or set stop_database: true -- the backup needs it stopped (Upgrading runbook)'
                      % self.db_dir, status=before)
        if not self.owner_can(dest, write=True):
            self.fail('the EngineOwner %s cannot write the backup directory %s: chown/chmod it (the archive is '
                      'owned by the EngineOwner, and tractor-dbctl --backup writes as that account)'
                      % (self.owner_name(), dest))
        size = backup_files.dir_size(src_dir)
        scratch = None
        if self.verify_level == 'restore':
            scratch = self.choose_scratch(dest)
        apart = scratch is not None and not backup_files.same_filesystem(scratch, dest)
        needs = backup_files.backup_needs(
            size, self.params['free_space_factor'], self.verify_level, scratch_apart=apart,
            copy_made=source is not None and backup_files.same_filesystem(source, dest))
        self.result['needs'] = needs
        free = backup_files.free_bytes(dest)
        if free < needs['needed']:
            self.fail('not enough free space in %s: %s free, %s needed for %s (%s x the %s of %s for the archive); '
                      'free space, choose another path, set scratch_dir on another filesystem, or lower '
                      'free_space_factor' % (
                          dest, backup_files.human_size(free), backup_files.human_size(needs['needed']),
                          backup_files.describe_needs(needs), self.params['free_space_factor'],
                          backup_files.human_size(size), src_dir))
        if scratch is not None:
            if apart and not (source is not None and backup_files.same_filesystem(scratch, source)):
                self.check_scratch_space(scratch, size)
            self.pg_bindir(self.data_dir_pg_version())  # no PostgreSQL to verify with: fail before any change

        # -- the changes --
        live_params = None
        if source is None and before['running']:
            if self.verify_level == 'archive' and not self.module.check_mode:
                live_params = self.read_params(before)
            self.dbctl.change('--stop')
        method = self.params['method']
        if self.module.check_mode:
            if method == 'native':
                self.tm.record('write %s: tar of %s, gzip level %d on %d threads (temporary name, renamed when '
                               'verified)' % (path, src_dir, level, workers))
                if source is not None:
                    self.tm.record('remove the copy %s once the archive is written' % source)
            else:
                self.tm.change(self.dbctl.argv('--backup', path))
            self.tm.record('verify %s (%s)' % (path, self.verify_level))
            self.tm.record('write %s and %s' % (sha_path, manifest_path))
            self.result['backup'] = dict(path=path, sha256_path=sha_path, manifest_path=manifest_path,
                                         created=False, manifest={})
            after = dict(before, running=False, reachable=False, database_exists=None)
            self.result['status'] = after
            self.set_diff(dict(archive=path, exists=os.path.exists(path), database=before),
                          dict(archive=path, exists=True, database=after))
            return
        temp = backup_files.AtomicFile(path, uid=self.uid, gid=self.gid, mode=0o600, suffix='.tgz')
        self.fail_suffix = (' The data directory was not changed; no archive was left at %s.' % path)
        try:
            temp.__enter__()
            temp_path = temp.path
            if method == 'native':
                self.tm.record('write %s (renamed to %s once verified): tar of %s, gzip level %d on %d threads'
                               % (temp_path, path, src_dir, level, workers))
                self.progress.step('writing the archive', total=size)
                try:
                    written = targz.write_archive(src_dir, temp, level=level, workers=workers,
                                                  arcname=self.top, progress=self.progress,
                                                  max_rate=self.max_rate or None)
                    temp.finish()
                except (IOError, OSError) as exc:
                    self.fail('writing %s failed: %s%s' % (
                        temp_path, exc, ' (the disk is full: free space or choose another path)'
                        if backup_files.is_no_space(exc) else ''))
                if source is not None:
                    # the archive holds it now; its room is what the restore check needs
                    self.tm.record('remove the copy %s' % source)
                    shutil.rmtree(source)
                tools = dict(writer='renderfarm.tractor native writer (Python tarfile, %d gzip members)'
                             % written['gzip_members'])
                if written['skipped']:
                    self.module.warn('left out of the archive (neither files nor directories): %s'
                                     % ', '.join(written['skipped']))
            else:
                # tractor-dbctl (the EngineOwner) creates the file itself: hand it a fresh, unused name.
                temp.finish()
                os.unlink(temp_path)
                self.progress.step('tractor-dbctl --backup')
                self.dbctl.change('--backup', temp_path)
                if not os.path.isfile(temp_path):
                    self.fail('tractor-dbctl --backup %s reported success but wrote no file' % temp_path)
                if self.uid is not None:
                    os.chown(temp_path, self.uid, self.gid)
                os.chmod(temp_path, 0o600)
                tools = dict(writer='tractor-dbctl --backup (tar cfz)', tar=self.tar_version())
            # verify the written file before it gets its final name
            info, manifest, verification = self.verify_archive(temp_path, self.verify_level, scratch,
                                                               sidecars=False)
            info = dict(info, path=path)
            self.result['archive'] = info
            if verification is not None:
                params_source = 'restore-verification'
            elif live_params is not None:
                params_source = 'live-database-before-stop'
                verification = dict(level='archive', params=live_params, jidcounter=live_params.get('jidcounter'),
                                    schema_version=live_params.get('schema-version'),
                                    module_checksum=live_params.get('module-checksum'))
            else:
                params_source = None
                verification = dict(level='archive')
            tools.update(python=backup_files.python_version(), zlib=zlib.ZLIB_RUNTIME_VERSION)
            if verification.get('server_version'):
                tools['postgres'] = verification['server_version']
            manifest = backup_files.build_manifest(
                path, info, method,
                source=dict(host=socket.getfqdn(), db_data_dir=self.db_dir, config_dir=self.tm.config_dir,
                            install_dir=self.tm.install_dir, engine_owner=self.owner_name(),
                            copy=source, copy_created=(self.result.get('db_copy') or {}).get('created')),
                engine=self.engine_version(), params_source=params_source, verification=verification,
                tools=tools)
            # The sidecars are written in full under temporary names first and renamed only then, with
            # the archive last: a failure (a full disk) leaves no sidecar without its archive, and with
            # force the previous backup and its sidecars stay as they were.
            sidecars = []
            try:
                for sidecar, text in ((sha_path, backup_files.format_sha256_line(info['sha256'], path)),
                                      (manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + '\n')):
                    self.tm.record('write %s' % sidecar)
                    out = backup_files.AtomicFile(sidecar, uid=self.uid, gid=self.gid, mode=0o600)
                    sidecars.append(out)
                    out.__enter__()
                    out.write(text.encode('utf-8'))
                    out.finish()
                for out in sidecars:
                    os.rename(out.path, out.final_path)
                    out.committed = True
                self.tm.record('rename %s to %s' % (temp_path, path))
                os.rename(temp_path, path)
                temp.committed = True
                backup_files.fsync_dir(dest)
            except (IOError, OSError) as exc:
                for out in sidecars:
                    out.discard()
                    if out.committed and not temp.committed:
                        os.unlink(out.final_path)
                self.fail('writing the checksum and manifest of %s failed: %s%s' % (
                    path, exc, ' (the disk is full: free space or choose another path)'
                    if backup_files.is_no_space(exc) else ''))
        finally:
            temp.discard()
            self.fail_suffix = ''
        self.result['backup'] = dict(path=path, sha256_path=sha_path, manifest_path=manifest_path, created=True,
                                     manifest=manifest)
        after = self.read_status()
        self.result['status'] = after
        self.set_diff(dict(archive=path, exists=False, database=before),
                      dict(archive=path, exists=True, sha256=info['sha256'], database=after))

    def data_dir_pg_version(self):
        try:
            with open(os.path.join(self.db_dir, 'PG_VERSION')) as handle:
                return handle.read().strip() or None
        except (IOError, OSError):
            return None

    def tar_version(self):
        tar = self.module.get_bin_path('tar')
        if not tar:
            return None
        rc, out, err = self.tm.run([tar, '--version'], owner=False)
        return out.splitlines()[0].strip() if rc == 0 and out.strip() else None

    def state_verify(self):
        path = self.required_path()
        self.verify_archive(path, self.verify_level)
        self.result['status'] = self.read_status()

    def required_path(self):
        if not self.params['path']:
            self.fail('state=%s needs path: the backup archive' % self.state)
        return self.params['path']

    def data_dir_view(self, status, marker):
        return dict(data_dir=self.db_dir, data_dir_exists=status['data_dir_exists'],
                    data_dir_empty=status['data_dir_empty'], initialized=status['initialized'],
                    running=status['running'],
                    restored_from=dict(archive=marker.get('archive'), sha256=marker.get('sha256')) if marker else None)

    def forget_paused_jobs(self):
        """Remove tractor_engine's record of paused jobs (in TractorDataDirectory): its job ids name
        jobs of the database that was just destroyed or replaced, and must not be resumed in another."""
        path = os.path.join(self.tm.config.data_dir, PAUSED_JOBS_FILE)
        if not os.path.lexists(path):
            return
        if self.tm.record('remove the paused-jobs record %s (its jobs were in the destroyed database)' % path):
            try:
                os.unlink(path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    self.fail('cannot remove the paused-jobs record %s: %s; remove it by hand (its job ids belong '
                              'to the destroyed database)' % (path, exc))

    def refuse_if_running(self, status, action):
        self.refuse_if_engine(action)
        if status['running']:
            self.fail('the job database server is running on %s: stop the engine and database first '
                      '(state=stopped) before %s' % (self.db_dir, action), status=status)

    def state_restore(self):
        path = self.required_path()
        info, manifest, verification = self.verify_archive(path, self.verify_level)
        status = self.read_status()
        self.result['status'] = status
        mpath = marker_path(self.db_dir)
        marker = read_marker(mpath)
        identity = archive_inspect.data_dir_identity(self.db_dir)
        before = self.data_dir_view(status, marker)
        if marker_matches(marker, info['sha256'], self.db_dir, identity):
            if not self.params['force']:
                self.result['restore'] = marker
                self.result['msg'] = ('%s still holds the restore of %s (made %s); jobs added since are kept. '
                                      'force: true restores the archive again'
                                      % (self.db_dir, path, marker.get('restored_at')))
                self.set_diff(before, before)
                return
            # force: the database must end equal to the archive, whatever happened to it since
            self.result['msg'] = ('%s held the restore of %s (made %s); force: true restores it again, so jobs '
                                  'added since are gone' % (self.db_dir, path, marker.get('restored_at')))
        self.refuse_if_running(status, 'a restore')
        if not os.path.isdir(os.path.dirname(self.db_dir)):
            self.fail('the parent %s of DBDataDir does not exist: create TractorDataDirectory first'
                      % os.path.dirname(self.db_dir))
        if status['data_dir_exists'] and not status['data_dir_empty'] and not self.params['force']:
            what = 'a PostgreSQL cluster' if status['initialized'] else 'files'
            self.fail('%s is not empty (it holds %s): restoring would replace it. Back it up first (state=backup), '
                      'then destroy it (state=absent) or set force: true -- the archive %s has been verified'
                      % (self.db_dir, what, path))
        if not self.owner_can(path):
            self.fail('the EngineOwner %s cannot read %s: tractor-dbctl --restore reads it as that account; '
                      'chown/chmod the archive' % (self.owner_name(), path))
        parent = os.path.dirname(self.db_dir)
        free = backup_files.free_bytes(parent)
        current = backup_files.dir_size(self.db_dir) if status['data_dir_exists'] else 0
        if free + current < info['file_bytes']:
            self.fail('not enough free space in %s to restore: %s needed, %s free (plus %s the destroy frees)'
                      % (parent, backup_files.human_size(info['file_bytes']), backup_files.human_size(free),
                         backup_files.human_size(current)))
        install_version = self.engine_version().get('version')
        if manifest and manifest.get('engine_version') and install_version and \
                manifest['engine_version'] != install_version:
            self.module.warn('%s was made with Tractor %s; this is the %s install. Start the %s engine on it, or '
                             'start the database with auto_upgrade: false -- a newer tractor-dbctl upgrades the '
                             'schema one way'
                             % (path, manifest['engine_version'], install_version, manifest['engine_version']))
        if not status['data_dir_exists']:
            self.mkdir_data_dir()
        elif not status['data_dir_empty']:
            self.dbctl.change('--destroy')
        self.progress.step('restoring (tractor-dbctl --restore)')
        self.dbctl.change('--restore', path)
        self.forget_paused_jobs()
        new_marker = dict(archive=path, sha256=info['sha256'], restored_at=backup_files.utc_now(),
                          db_data_dir=self.db_dir, manifest_created=(manifest or {}).get('created'))
        if self.tm.record('write the restore marker %s' % mpath):
            new_marker['identity'] = archive_inspect.data_dir_identity(self.db_dir)
            if not new_marker['identity']:
                self.fail('tractor-dbctl --restore %s finished but %s holds no cluster (PG_VERSION, global/pg_control): '
                          'check that the archive\'s top-level directory matches DBDataDir' % (path, self.db_dir))
            backup_files.write_text_atomic(mpath, json.dumps(new_marker, indent=2, sort_keys=True) + '\n',
                                           uid=self.uid, gid=self.gid)
            after_status = self.read_status()
        else:
            after_status = dict(status, data_dir_exists=True, data_dir_empty=False, initialized=True)
        self.result['status'] = after_status
        self.result['restore'] = new_marker
        self.set_diff(before, self.data_dir_view(after_status, new_marker))

    def state_absent(self):
        status = self.read_status()
        self.result['status'] = status
        mpath = marker_path(self.db_dir)
        marker = read_marker(mpath)
        before = self.data_dir_view(status, marker)
        if not status['data_dir_exists'] or status['data_dir_empty']:
            self.forget_paused_jobs()
            self.set_diff(before, before)
            return
        path = self.params['path']
        if not path and not self.params['force']:
            self.fail('refusing to destroy the job database in %s without a backup: give path (the backup archive '
                      'of this database, it must verify) or set force: true' % self.db_dir)
        # Every check before the first change: the engine, the server, the backup.
        self.refuse_if_engine('destroying the job database')
        if status['running'] and not self.params['stop_database']:
            self.fail('the job database server is running on %s: stop the engine and database first (state=stopped) '
                      'before destroying the job database, or set stop_database: true' % self.db_dir, status=status)
        if path:
            info, manifest, verification = self.verify_archive(path, self.verify_level)
            identity = archive_inspect.data_dir_identity(self.db_dir)
            current = (identity or {}).get('system_identifier')
            if current and info.get('system_identifier') and current != info['system_identifier'] \
                    and not self.params['force']:
                self.fail('%s is not a backup of the database in %s: its PostgreSQL system identifier is %s, the data '
                          'directory\'s is %s. Back up this database (state=backup) or set force: true'
                          % (path, self.db_dir, info['system_identifier'], current))
            if not current:
                self.module.warn('%s holds no readable global/pg_control: cannot check that %s is its backup'
                                 % (self.db_dir, path))
        if status['running']:
            self.dbctl.change('--stop')  # stop_database (a killed engine leaves its server running)
        self.dbctl.change('--destroy')
        if marker is not None or os.path.exists(mpath):
            if self.tm.record('remove the restore marker %s' % mpath):
                os.unlink(mpath)
        self.forget_paused_jobs()
        after = dict(status, data_dir_empty=True, initialized=False, running=False, reachable=False,
                     database_exists=None)
        if not self.module.check_mode:
            after = self.read_status()
        self.result['status'] = after
        self.set_diff(before, self.data_dir_view(after, None))

    def run(self):
        lease = self.params['lease']
        try:
            if lease and not self.module.check_mode and self.state in LEASED_STATES:
                if lease['seconds'] < 10:
                    self.fail('lease.seconds must be at least 10, not %d' % lease['seconds'])
                with LeaseKeeper(lease['path'], lease['run_id'], lease['seconds'], 'tractor_db state=%s' % self.state,
                                 on_lost=self.module.warn):
                    self.run_state()
            else:
                self.run_state()
        finally:
            self.progress.close()

    def run_state(self):
        # Out-of-range values are refused in every state, before anything is read.
        if self.params['workers'] is not None and self.params['workers'] < 1:
            self.fail('workers must be at least 1, not %d' % self.params['workers'])
        if self.params['workers'] is not None and self.params['workers'] > MAX_WORKERS:
            self.fail('workers must be at most %d, not %d' % (MAX_WORKERS, self.params['workers']))
        if not 1 <= self.params['compression_level'] <= 9:
            self.fail('compression_level must be 1 (fastest) to 9 (smallest), not %d' % self.params['compression_level'])
        if not self.params['free_space_factor'] >= 0:
            self.fail('free_space_factor must be >= 0 (0 turns the free space check off), not %s'
                      % self.params['free_space_factor'])
        self.max_rate = None
        if self.params['max_rate'] not in (None, ''):
            try:
                self.max_rate = human_to_bytes(self.params['max_rate'])
            except (TypeError, ValueError):
                self.fail('max_rate must be a number of bytes per second such as 50M or 1G, not %s'
                          % self.params['max_rate'])
            if self.max_rate < 0:
                self.fail('max_rate must not be negative, not %s' % self.params['max_rate'])
        if self.state in ('copy', 'backup', 'restore', 'verify') and not self.params['path']:
            what = 'the directory of the copy' if self.state == 'copy' else 'the backup archive'
            self.fail('state=%s needs path: %s' % (self.state, what))
        for option in ('path', 'scratch_dir', 'pg_bindir', 'source'):
            value = self.params[option]
            if value and not os.path.isabs(value):
                self.fail('%s must be an absolute path, not %s' % (option, value))
        getattr(self, 'state_' + self.state)()
        self.tm.exit(**self.result)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_one_of=COMMON_REQUIRED_ONE_OF,
        required_if=[('state', 'backup', ['path']), ('state', 'restore', ['path']), ('state', 'verify', ['path'])],
        supports_check_mode=True,
    )
    TractorDb(module).run()


if __name__ == '__main__':
    main()
