#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: tractor_info
short_description: Read what the upgrade, backup and downgrade preflights need to know about one Tractor engine
version_added: 1.0.0
description:
  - Reads the merged C(tractor.config) and C(db.config) of one engine (stock files of the install
    with the site files laid over them, as C(tractor-dbctl) reads them) and reports the engine's
    ports, directories and EngineOwner.
  - For the configuration, data and database directories it reports the filesystem they live on
    (mount point, source, type) and whether that is a network filesystem, so that a preflight can
    refuse two engines sharing a directory through a network volume (the Upgrading runbook warns
    that this risks corruption).
  - Reports free space and the size of the job database directory, and whether the EngineOwner
    account exists.
  - Changes nothing.
extends_documentation_fragment:
  - renderfarm.tractor.tractor
  - renderfarm.tractor.tractor.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  require_install:
    description:
      - Fail when the install directory does not exist.
      - With V(false) the stock files are taken as absent and only the site files are read, which
        is what a preflight wants for a version that is still to be installed.
    type: bool
    default: true
  extra_paths:
    description:
      - More paths to describe like the engine's directories (filesystem, network or not, free
        space), for example the backup directory. Reported in RV(extra_paths) under the same keys.
    type: list
    elements: path
    default: []
  measure_database:
    description:
      - Walk the job database directory to report its size in bytes (RV(database.size)).
    type: bool
    default: true
  planned_site_config:
    description:
      - Read these settings in place of the site C(tractor.config) and C(db.config) of O(config_dir),
        for a site configuration that is about to be written. The stock files of the install are read
        as usual, and these laid over them as the site files would be (a top-level update).
      - With it, O(config_dir) need not exist yet. The staging playbook uses it to refuse an engine
        that would collide with another one before it writes the engine's configuration, and so that
        check mode checks a staging engine whose configuration does not exist yet.
      - Values are what the files would hold, as Python literals are read (booleans as V(true)/V(false)).
    type: dict
    version_added: 1.1.0
    suboptions:
      tractor_config:
        description: The keys of the site C(tractor.config).
        type: dict
        default: {}
      db_config:
        description: The keys of the site C(db.config).
        type: dict
        default: {}
  target_install_dir:
    description:
      - Another install of Tractor to check in the same run, for example the version an upgrade
        or downgrade goes to (RV(target_install)). It need not exist yet. When it exists, its
        stock configuration merged with the site files of O(config_dir) must be complete, as
        for a separate run of this module with O(install_dir) set to it and
        O(require_install=false).
    type: path
    version_added: 1.1.0
  backup:
    description:
      - A backup this engine is about to get. The module says what it needs free on the filesystem
        of O(backup.dir) (RV(backup)), by the same rule M(renderfarm.tractor.tractor_db) applies
        when it copies and archives, so that a preflight refuses before the engine stops what the
        module would refuse after.
    type: dict
    version_added: 1.1.0
    suboptions:
      dir:
        description: The backup directory (it may not exist yet).
        type: path
        required: true
      verify:
        description: The verification of the backup (tractor_db O(renderfarm.tractor.tractor_db#module:verify)).
        type: str
        choices: [archive, restore]
        default: restore
      copy_first:
        description: The stopped database is copied into O(backup.dir) first, then archived (tractor_db C(state=copy)).
        type: bool
        default: false
      space_factor:
        description: The archive's room as a multiple of the database size (tractor_db C(free_space_factor)).
        type: float
        default: 1.0
      scratch_dir:
        description: Where the restore check extracts, when not beside the archive.
        type: path
author:
  - renderfarm.tractor contributors (@renderfarm)
'''

EXAMPLES = r'''
- name: Read the production engine's layout
  renderfarm.tractor.tractor_info:
    version: "2.2"
    config_dir: /opt/pixar/config
  register: engine_info

- name: Read a staging engine as it will be once its site configuration is written
  renderfarm.tractor.tractor_info:
    version: "2.4"
    config_dir: /etc/tractor-staging
    require_install: false
    planned_site_config:
      tractor_config: {EngineOwner: tractor, TractorDataDirectory: /var/spool/tractor-staging, ListenerPort: 8080}
      db_config: {DBConnection: {host: localhost, port: 9877, dbname: tractor}}
  register: staging_info

- name: Refuse a job database on a network volume
  ansible.builtin.assert:
    that: not engine_info.paths.db_data_dir.network
    fail_msg: "{{ engine_info.paths.db_data_dir.path }} is on {{ engine_info.paths.db_data_dir.fstype }}"
'''

RETURN = r'''
install:
  description: The install directory and whether it holds the tools.
  returned: always
  type: dict
  sample: {"dir": "/opt/pixar/Tractor-2.2", "exists": true, "dbctl": true, "engine": true, "tq": true}
target_install:
  description: O(target_install_dir) and whether it holds the tools; V(null) without it.
  returned: always
  type: dict
  sample: {"dir": "/opt/pixar/Tractor-2.4", "exists": true, "dbctl": true, "engine": true, "tq": true}
config:
  description: Values of the merged configuration the other modules and roles use.
  returned: always
  type: dict
  sample:
    data_dir: /var/spool/tractor
    db_data_dir: /var/spool/tractor/psql
    db_host: localhost
    db_port: 9876
    db_name: tractor
    listener_host: ""
    listener_port: 80
    cmdlog_port: 9180
    engine_owner: tractor
    cmd_logs_dir: /var/spool/tractor/cmd-logs
    db_shutdown: true
    db_auto_upgrade: true
    files: {"tractor.config": ["/opt/pixar/Tractor-2.2/config/tractor.config", "/opt/pixar/config/tractor.config"]}
paths:
  description:
    - For C(config_dir), C(data_dir) and C(db_data_dir), where they are and on what filesystem.
    - C(path) is the configured path, C(realpath) the path with symlinks resolved (of the nearest
      existing parent when it does not exist yet).
    - C(owner) is the name of the account owning the path (its uid when no account has it), V(null)
      when it does not exist.
    - C(identity) is what the kernel reaches - C([device, inode, rest]) of the deepest existing
      directory on the way and the names below it that do not exist yet. Two paths with the same
      identity are one directory, also through a bind mount or a symlink followed by C(..).
  returned: always
  type: dict
  sample:
    data_dir: {"path": "/var/spool/tractor", "realpath": "/var/spool/tractor", "exists": true,
               "mount_point": "/", "mount_source": "/dev/vda1", "fstype": "ext4", "network": false,
               "free_bytes": 1073741824, "owner": "tractor", "identity": [64769, 1310721, ""]}
extra_paths:
  description: O(extra_paths) described like RV(paths), keyed by the path as given.
  returned: always
  type: dict
  sample: {"/var/backups/tractor": {"path": "/var/backups/tractor", "exists": true, "free_bytes": 1073741824}}
database:
  description: The job database directory.
  returned: always
  type: dict
  contains:
    initialised:
      description: Whether it holds a PostgreSQL cluster (has a C(PG_VERSION) file).
      type: bool
    size:
      description:
        - Its size in bytes.
        - V(null) with O(measure_database=false) or when the directory does not exist.
      type: int
  sample: {"initialised": true, "size": 52428800}
backup:
  description:
    - What the backup of O(backup) needs free on the filesystem of its directory, in bytes, and
      whether it is there. V(null) without O(backup) or O(measure_database).
    - C(archive) is the database size times O(backup.space_factor); C(copy) the copy taken while
      the engine is stopped; C(scratch) the restore check's extraction. The copy is removed before
      the restore check, so C(needed) is C(archive) plus the larger of the two.
  returned: always
  type: dict
  sample: {"dir": "/var/backups/tractor/prod", "free_bytes": 1073741824, "archive": 52428800, "copy": 52428800,
           "scratch": 52428800, "needed": 104857600, "enough": true,
           "parts": "the archive (50.0 MiB), and a copy of the database beside it (50.0 MiB): the copy taken
                     while the engine is stopped, then the scratch copy of its restore check"}
engine_owner:
  description: The EngineOwner account.
  returned: always
  type: dict
  sample: {"name": "tractor", "exists": true, "uid": 999, "gid": 995, "home": "/home/tractor"}
machine:
  description:
    - Identity of the machine the engine runs on, so that engines on one machine are recognised
      however the inventory addresses them. C(id) is C(/etc/machine-id) when there is one, else
      the host name.
  returned: always
  type: dict
  sample: {"hostname": "farm1", "id": "4c4c4544004d3510804bb4c04f333233"}
address:
  description:
    - The engine's URL API address as C(host:port), the one every module of the collection connects to.
    - O(engine), else the interface and port of C(ListenerPort); a listener on all interfaces
      (C(0.0.0.0), C(*), C(::) or a bare port) is reached at C(localhost).
  returned: always
  type: str
  sample: localhost:80
'''

import os
import pwd
import re
import socket

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_common import (
    COMMON_REQUIRED_ONE_OF, check_arguments, common_argument_spec,
)
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_files import (
    backup_needs, describe_needs, dir_size,
)
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_paths import existing_ancestor, path_identity
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_config import (
    SiteConfig, TractorConfigError, install_dir_for,
)

NETWORK_FSTYPES = frozenset((
    'nfs', 'nfs4', 'cifs', 'smb3', 'smbfs', 'ncpfs', 'afs', 'glusterfs', 'ceph', 'cephfs', 'lustre',
    'gpfs', 'beegfs', 'fuse.sshfs', 'fuse.glusterfs', 'fuse.cephfs', 'fuse.s3fs', '9p', 'davfs',
    'fuse.davfs2', 'panfs', 'fuse.rclone', 'fuse.juicefs',
))


def parse_mountinfo(text):
    """/proc/self/mountinfo -> list of (mount_point, fstype, source), longest first."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(' - ')
        if not sep:
            continue
        fields = left.split()
        rest = right.split()
        if len(fields) < 5 or len(rest) < 2:
            continue
        mount_point = fields[4].replace('\\040', ' ').replace('\\011', '\t').replace('\\134', '\\')
        mounts.append((mount_point, rest[0], rest[1]))
    mounts.sort(key=lambda m: len(m[0]), reverse=True)
    return mounts


def mount_of(path, mounts):
    for mount_point, fstype, source in mounts:
        if path == mount_point or path.startswith(mount_point.rstrip('/') + '/') or mount_point == '/':
            return mount_point, fstype, source
    return '/', 'unknown', 'unknown'


def describe_path(path, mounts):
    exists = os.path.exists(path)
    # symlinks and '..' resolved as the kernel does for the part that exists (tractor_paths)
    real = os.path.realpath(path)
    mount_point, fstype, source = mount_of(real, mounts)
    try:
        stat = os.statvfs(existing_ancestor(real))
        free = stat.f_bavail * stat.f_frsize
    except OSError:
        free = None
    owner = None
    if exists:
        try:
            uid = os.stat(path).st_uid
            try:
                owner = pwd.getpwuid(uid).pw_name
            except KeyError:
                owner = str(uid)
        except OSError:
            pass
    return dict(path=path, realpath=real, exists=exists, mount_point=mount_point, mount_source=source,
                fstype=fstype, network=fstype in NETWORK_FSTYPES or fstype.startswith('nfs'), free_bytes=free,
                owner=owner, identity=path_identity(path))


def backup_room(plan, size, mounts):
    """RV(backup): tractor_files.backup_needs() for the planned backup, against the free space."""
    if not plan or size is None:
        return None
    where = describe_path(plan['dir'], mounts)
    apart = False
    if plan['scratch_dir']:
        scratch = describe_path(plan['scratch_dir'], mounts)
        apart = (scratch['identity'] or [None])[0] != (where['identity'] or [None])[0]
    needs = backup_needs(size, plan['space_factor'], plan['verify'], copy_first=plan['copy_first'],
                         scratch_apart=apart)
    free = where['free_bytes']
    return dict(needs, dir=plan['dir'], free_bytes=free, enough=free is None or needs['needed'] <= free,
                parts=describe_needs(needs))


def cmdlog_port(config):
    """Port of the command-log server the engine starts (SiteCmdLogServerStartup), if any."""
    startup = str(config.tractor.get('SiteCmdLogServerStartup') or '')
    if not startup.strip():
        return None
    match = re.search(r'--port[= ](\d+)', startup)
    return int(match.group(1)) if match else 9180


def machine_identity():
    for path in ('/etc/machine-id', '/var/lib/dbus/machine-id'):
        try:
            with open(path) as handle:
                value = handle.read().strip()
            if value:
                return dict(hostname=socket.gethostname(), id=value)
        except (IOError, OSError):
            pass
    return dict(hostname=socket.gethostname(), id=socket.gethostname())


def describe_install(install_dir):
    """An install directory and whether it holds the tools the modules run."""
    return dict(dir=install_dir, exists=os.path.isdir(install_dir),
                dbctl=os.access(os.path.join(install_dir, 'bin', 'tractor-dbctl'), os.X_OK),
                engine=os.access(os.path.join(install_dir, 'bin', 'tractor-engine'), os.X_OK),
                tq=os.access(os.path.join(install_dir, 'bin', 'tq'), os.X_OK))


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        require_install=dict(type='bool', default=True),
        measure_database=dict(type='bool', default=True),
        extra_paths=dict(type='list', elements='path', default=[]),
        backup=dict(type='dict', options=dict(
            dir=dict(type='path', required=True),
            verify=dict(type='str', choices=['archive', 'restore'], default='restore'),
            copy_first=dict(type='bool', default=False),
            space_factor=dict(type='float', default=1.0),
            scratch_dir=dict(type='path'),
        )),
        planned_site_config=dict(type='dict', options=dict(
            tractor_config=dict(type='dict', default={}),
            db_config=dict(type='dict', default={}),
        )),
        target_install_dir=dict(type='path'),
    )
    module = AnsibleModule(argument_spec=argument_spec, required_one_of=COMMON_REQUIRED_ONE_OF,
                           supports_check_mode=True)
    check_arguments(module)
    params = module.params
    install_dir = params['install_dir'] or install_dir_for(params['version'])
    config_dir = params['config_dir']
    planned = params['planned_site_config']
    if planned is not None:
        planned = {'tractor.config': planned['tractor_config'], 'db.config': planned['db_config']}
    elif not os.path.isdir(config_dir):
        module.fail_json(msg='config_dir %s does not exist: give the site configuration directory the engine '
                             'runs with (its --configdir)' % config_dir)
    install_exists = os.path.isdir(install_dir)
    if params['require_install'] and not install_exists:
        module.fail_json(msg='Tractor install %s not found: install or stage that version first, or set '
                             'install_dir' % install_dir)
    try:
        config = SiteConfig(install_dir, config_dir, planned=planned)
    except TractorConfigError as exc:
        module.fail_json(msg=str(exc))
    missing = config.missing_keys() if install_exists else []
    if missing:
        module.fail_json(msg='required settings missing from the merged configuration: %s; add them to the site '
                             'files in %s' % (', '.join(missing), config_dir))

    target = None
    if params['target_install_dir']:
        target = describe_install(params['target_install_dir'])
        if target['exists']:
            try:
                missing = SiteConfig(target["dir"], config_dir, planned=planned).missing_keys()
            except TractorConfigError as exc:
                module.fail_json(msg='%s (with the install %s)' % (exc, target['dir']))
            if missing:
                module.fail_json(msg='required settings missing from the configuration merged with the install %s: '
                                     '%s; add them to the site files in %s' % (target['dir'], ', '.join(missing),
                                                                               config_dir))

    try:
        with open('/proc/self/mountinfo') as handle:
            mounts = parse_mountinfo(handle.read())
    except (IOError, OSError):
        mounts = []
    conn = config.db_connection
    listen_host, listen_port = config.listener
    owner_name = params['engine_owner'] or config.engine_owner
    owner = dict(name=owner_name, exists=False, uid=None, gid=None, home=None)
    if owner_name:
        try:
            entry = pwd.getpwnam(owner_name)
            owner.update(exists=True, uid=entry.pw_uid, gid=entry.pw_gid, home=entry.pw_dir)
        except KeyError:
            pass
    db_dir = config.db_data_dir
    initialised = os.path.isfile(os.path.join(db_dir, 'PG_VERSION'))
    size = dir_size(db_dir) if (params['measure_database'] and os.path.isdir(db_dir)) else None
    module.exit_json(
        changed=False,
        install=describe_install(install_dir),
        target_install=target,
        config=dict(
            data_dir=config.data_dir, db_data_dir=db_dir, db_host=conn['host'], db_port=int(conn['port']),
            db_name=conn['dbname'], listener_host=listen_host, listener_port=listen_port,
            engine_owner=owner_name, cmd_logs_dir=config.cmd_logs_dir, cmdlog_port=cmdlog_port(config),
            db_shutdown=config.db_flag('DBShutdown'), db_auto_upgrade=config.db_flag('DBAutoUpgrade'),
            files=config.files,
        ),
        paths=dict(config_dir=describe_path(config_dir, mounts), data_dir=describe_path(config.data_dir, mounts),
                   db_data_dir=describe_path(db_dir, mounts)),
        extra_paths=dict((path, describe_path(path, mounts)) for path in params['extra_paths']),
        database=dict(initialised=initialised, size=size),
        backup=backup_room(params['backup'], size, mounts),
        engine_owner=owner,
        machine=machine_identity(),
        address=config.client_address(params['engine']),
    )


if __name__ == '__main__':
    main()
