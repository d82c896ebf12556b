# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters the roles use for decisions that are clearer in Python than in Jinja."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import json
import pprint
import re
from xml.sax.saxutils import escape, quoteattr

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_files import human_size


def _get(mapping, key, default=None):
    try:
        return mapping[key]
    except (KeyError, TypeError):
        return default


def _machine(host_vars, info, name):
    """The machine an engine runs on: its machine id as tractor_info read it, else ansible_host."""
    ident = (info or {}).get('machine') or {}
    return ident.get('id') or _get(host_vars, 'ansible_host') or name


def _label(info, machine):
    return ((info or {}).get('machine') or {}).get('hostname') or machine


def _service(host_vars):
    manager = _get(host_vars, 'tractor_service_manager') or 'auto'
    return None if manager == 'direct' else (_get(host_vars, 'tractor_service_name') or 'tractor-engine')


def _same_directory(a, b):
    """One directory on one machine: the same device, inode and missing rest (tractor_info's
    ``identity``, what the kernel reaches through symlinks and bind mounts), else the same realpath."""
    if a.get('identity') and b.get('identity'):
        return list(a['identity']) == list(b['identity'])
    return a['realpath'] == b['realpath']


def tractor_collisions(hostvars, hosts, me, info_var="preflight_info", peers=None):
    """Why engine ``me`` may not run beside the other engines of ``hosts``.

    Engines on one machine (same ansible_host) must differ in listener port, config dir, data dir,
    database dir and PostgreSQL port (directories compared by device and inode); engines on
    different machines must not reach the same directory through a network volume (same mount
    source and path below it).
    """
    peer_infos = {}
    for result in peers or []:  # engines of the inventory outside this play, read by delegation
        if isinstance(result, dict) and 'paths' in result and 'config' in result and result.get('item'):
            peer_infos[result['item']] = result
    mine = _get(hostvars[me], info_var)
    if not mine or 'paths' not in mine:
        # Imported here: importing ansible's controller code switches module_utils into controller
        # mode, which the modules' unit tests (same process) must not inherit from this file.
        from ansible.errors import AnsibleFilterError
        raise AnsibleFilterError('tractor_collisions: %s has no %s' % (me, info_var))
    my_machine = _machine(hostvars[me], mine, me)
    problems = []
    for other in list(hosts) + [p for p in sorted(peer_infos) if p not in hosts]:
        if other == me:
            continue
        theirs = _get(hostvars[other], info_var) if other in hosts else None
        theirs = theirs or peer_infos.get(other)
        if not theirs or 'paths' not in theirs or 'config' not in theirs:  # absent, or a failed read
            continue
        machine = _machine(hostvars[other], theirs, other)
        if machine == my_machine:
            for key, label in (('listener_port', 'engine port'), ('db_port', 'PostgreSQL port'),
                               ('cmdlog_port', 'command-log server port')):
                if mine['config'].get(key) is not None and mine['config'].get(key) == theirs['config'].get(key):
                    problems.append('%s and %s on %s use the same %s %s'
                                    % (me, other, _label(mine, my_machine), label, mine['config'][key]))
            mine_service, their_service = _service(hostvars[me]), _service(_get(hostvars, other, {}))
            if mine_service and mine_service == their_service:
                problems.append('%s and %s on %s are both managed as the service %s (they would rewrite each '
                                "other's settings); give each engine its own tractor_service_name"
                                % (me, other, _label(mine, my_machine), mine_service))
            for key, label in (('config_dir', 'config directory'), ('data_dir', 'TractorDataDirectory'),
                               ('db_data_dir', 'DBDataDir')):
                if _same_directory(mine['paths'][key], theirs['paths'][key]):
                    a, b = mine['paths'][key]['realpath'], theirs['paths'][key]['realpath']
                    problems.append('%s and %s on %s share the %s %s'
                                    % (me, other, _label(mine, my_machine), label,
                                       a if a == b else '%s (the same directory as %s)' % (a, b)))
        else:
            for key, label in (('config_dir', 'config directory'), ('data_dir', 'TractorDataDirectory'),
                               ('db_data_dir', 'DBDataDir')):
                a, b = mine['paths'][key], theirs['paths'][key]
                if not (a['network'] and b['network'] and a['mount_source'] == b['mount_source']):
                    continue
                rel_a = a['realpath'][len(a['mount_point']):].lstrip('/')
                rel_b = b['realpath'][len(b['mount_point']):].lstrip('/')
                if rel_a == rel_b:
                    problems.append('%s (%s) and %s (%s) reach the same %s through the network volume %s:%s; '
                                    'this risks corrupting both engines' % (me, _label(mine, my_machine), other,
                                                                            _label(theirs, machine), label,
                                                                            a['mount_source'], rel_a or '/'))
    return problems


def tractor_backup_list(find_files, suffix='.manifest.json'):
    """``ansible.builtin.find`` results for ``*<suffix>`` manifests -> backups for tractor_prune_plan.

    A manifest is written only after its archive verified, so each one stands for a verified backup.
    """
    backups = []
    for item in find_files or []:
        path = item['path']
        if path.endswith(suffix):
            path = path[:-len(suffix)]
        backups.append(dict(path=path, created=float(item.get('mtime') or 0), verified=True))
    return backups


def tractor_prune_plan(backups, keep_last=0, keep_days=0, now=None):
    """Which backups retention removes.

    ``backups``: list of dicts with ``path``, ``created`` (epoch) and ``verified`` (bool).
    Keeps the newest ``keep_last`` (0 = no count limit) and those younger than ``keep_days``
    (0 = no age limit); with both set a backup is kept when either rule keeps it.  The newest
    verified backup is never removed.  Returns the list of paths to remove, oldest first.
    """
    keep_last = int(keep_last or 0)
    keep_days = float(keep_days or 0)
    if not keep_last and not keep_days:
        return []
    now = float(now) if now is not None else float(datetime.datetime.now().timestamp())
    ordered = sorted(backups, key=lambda b: float(b['created']), reverse=True)
    newest_verified = next((b['path'] for b in ordered if b.get('verified')), None)
    remove = []
    for index, backup in enumerate(ordered):
        kept = backup['path'] == newest_verified
        if keep_last and index < keep_last:
            kept = True
        if keep_days and now - float(backup['created']) < keep_days * 86400:
            kept = True
        if not kept:
            remove.append(backup['path'])
    return list(reversed(remove))


def tractor_missing_records(hosts, records):
    """Report entries for the engines of ``hosts`` that left no record."""
    recorded = set(r.get('engine') for r in records or [])
    return [dict(engine=host, result='missing', error='not processed: the run stopped before this engine, or it was unreachable')
            for host in hosts or [] if host not in recorded]


def tractor_config_literal(settings):
    """A dict as the Python literal that tractor.config and db.config must be (True/False/None,
    not JSON's true/false/null), since tractor-dbctl reads them with ast.literal_eval."""
    plain = json.loads(json.dumps(settings))  # Ansible's string/mapping types -> plain Python
    return pprint.pformat(plain, indent=4, width=100, sort_dicts=False) + '\n'


def _case_name(engine):
    return '%s: %s' % (engine.get('engine', '?'), engine.get('action', '?'))


def tractor_report_junit(report):
    """A JUnit XML document of a run report: one testcase per engine."""
    engines = report.get('engines', [])
    failures = [e for e in engines if e.get('result') not in ('ok', 'unchanged', 'planned')]
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<testsuites name=%s tests="%d" failures="%d">' % (
                 quoteattr('renderfarm.tractor ' + report.get('playbook', '')), len(engines), len(failures)),
             '  <testsuite name=%s tests="%d" failures="%d" timestamp=%s>' % (
                 quoteattr(report.get('playbook', 'tractor')), len(engines), len(failures),
                 quoteattr(str(report.get('finished', ''))))]
    for engine in engines:
        seconds = float(engine.get('duration') or 0)
        lines.append('    <testcase classname=%s name=%s time="%.1f">' % (
            quoteattr('tractor.' + str(engine.get('action', 'run'))), quoteattr(_case_name(engine)), seconds))
        if engine in failures:
            lines.append('      <failure message=%s>%s</failure>' % (
                quoteattr(str(engine.get('error') or engine.get('result'))),
                escape(json.dumps(engine, indent=2, sort_keys=True, default=str))))
        lines.append('      <system-out>%s</system-out>' % escape(json.dumps(engine, sort_keys=True, default=str)))
        lines.append('    </testcase>')
    lines += ['  </testsuite>', '</testsuites>', '']
    return '\n'.join(lines)


def _cell(value):
    if value is None or value == '':
        return '-'
    return str(value).replace('|', '\\|').replace('\n', ' ')


def _human_size(size):
    """1536 -> '1.5 KiB'; what is not a number is shown as it is."""
    try:
        return human_size(float(size))
    except (TypeError, ValueError):
        return str(size)


def _epoch(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _mermaid_name(text):
    # Mermaid's gantt syntax gives ':' and '#' a meaning inside a task's name; ';' ends a statement
    return re.sub(r'[:#;]', '_', str(text))


def _batch_order(batch):
    return (0, int(batch), '') if batch.isdigit() else (1, 0, batch)


def _timeline(engines):
    """A Mermaid gantt of the rollout (GitHub and GitLab draw it): per batch, each engine from its
    start to its end, with the time it did not serve marked critical."""
    timed = [e for e in engines if _epoch((e.get('timeline') or {}).get('started')) is not None]
    if not timed:
        return []
    out = ['', '## Timeline', '', '```mermaid', 'gantt', '    dateFormat X', '    axisFormat %H:%M:%S']
    batches = sorted(set(str(e.get('batch') or '?') for e in timed), key=_batch_order)
    for batch in batches:
        out.append('    section batch %s' % batch)
        for e in [e for e in timed if str(e.get('batch') or '?') == batch]:
            t = e['timeline']
            started = int(_epoch(t['started']))
            ended = int(_epoch(t.get('ended')) or started) + 1  # a bar is at least a second wide
            name = _mermaid_name(e.get('engine'))
            tag = 'crit' if e.get('result') in ('failed', 'rolled back') else 'active'
            out.append('    %s %s : %s, %d, %d' % (name, _mermaid_name(e.get('result') or ''), tag, started, ended))
            stopped, healthy = _epoch(t.get('stopped')), _epoch(t.get('healthy'))
            if stopped is not None and healthy is not None:
                out.append('    %s down : crit, %d, %d' % (name, int(stopped), int(healthy) + 1))
    out.append('```')
    return out


def _backup_cell(backup):
    if not backup.get('path'):
        return None
    details = []
    if backup.get('size') not in (None, '', 'None'):
        details.append(_human_size(backup['size']))
    if backup.get('sha256') not in (None, '', 'None'):
        details.append('sha256 %s' % str(backup['sha256'])[:12])
    return '%s (%s)' % (backup['path'], ', '.join(details)) if details else backup['path']


def tractor_report_markdown(report):
    """A Markdown summary of a run report."""
    engines = report.get('engines', [])
    out = ['# renderfarm.tractor %s report' % report.get('playbook', ''), '',
           'Finished %s. %d engine(s).' % (report.get('finished', '?'), len(engines)), '',
           '| engine | host | action | result | version before | version after | downtime (s) | backup | rollback |',
           '|---|---|---|---|---|---|---|---|---|']
    for e in engines:
        backup = e.get('backup') or {}
        out.append('| %s |' % ' | '.join(_cell(v) for v in (
            e.get('engine'), e.get('host'), e.get('action'), e.get('result'), e.get('version_before'),
            e.get('version_after'), e.get('downtime'),
            _backup_cell(backup),
            'yes' if e.get('rollback') else 'no')))
    for e in engines:
        phases = e.get('phases') or {}
        if phases:
            out += ['', '## %s: phases' % e.get('engine'), '', '| phase | seconds |', '|---|---|']
            out += ['| %s | %s |' % (name, _cell(phases[name])) for name in phases]
        database = e.get('database') or {}
        if database.get('path'):
            out += ['', '**%s job database %s:** %s' % (e.get('engine'), database['path'], _cell(database.get('reason')))]
        taken = e.get('lock_taken_over') or {}
        if taken.get('run_id') or taken.get('reason'):
            out += ['', '**%s lock:** taken over from run %s (%s)'
                    % (e.get('engine'), _cell(taken.get('run_id')), _cell(taken.get('reason')))]
        if e.get('error'):
            out += ['', '**%s failed:** %s' % (e.get('engine'), _cell(e.get('error')))]
    out += _timeline(engines)
    out.append('')
    return '\n'.join(out)


def tractor_report_summary(report, report_dir):
    """What a run passes to set_stats: where the report is, the count of each result, and one
    line per engine (AWX shows it as the job's artifacts)."""
    engines = report.get('engines', [])
    results = {}
    for engine in engines:
        results[engine.get('result')] = results.get(engine.get('result'), 0) + 1
    keys = ('engine', 'result', 'version_before', 'version_after', 'error')
    return dict(playbook=report.get('playbook'), run_id=report.get('run_id'), finished=report.get('finished'),
                check_mode=report.get('check_mode'), dir=report_dir,
                files=['%s/%s' % (report_dir, name) for name in ('report.json', 'report.md', 'report.xml')],
                results=results, engines=[dict((k, e.get(k)) for k in keys if e.get(k) is not None) for e in engines])


class FilterModule(object):
    def filters(self):
        return {
            'tractor_collisions': tractor_collisions,
            'tractor_prune_plan': tractor_prune_plan,
            'tractor_backup_list': tractor_backup_list,
            'tractor_missing_records': tractor_missing_records,
            'tractor_config_literal': tractor_config_literal,
            'tractor_report_junit': tractor_report_junit,
            'tractor_report_markdown': tractor_report_markdown,
            'tractor_report_summary': tractor_report_summary,
        }
