#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: renderfarm.tractor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: tractor_engine
short_description: Start, stop, upgrade and kill a Tractor engine, and pause its dispatching
version_added: 1.0.0
description:
  - Manages the C(tractor-engine) process of one site (one site configuration directory,
    O(config_dir)) on the host the task runs on.
  - Upgrading an engine is as simple as restarting it with the new version (Tractor's Upgrading
    runbook). With O(state=started) and another version than the one running, the module stops
    the running engine and starts the requested one. The new engine upgrades the job database
    schema itself on its first start when C(DBAutoUpgrade) is True.
  - After every start the module waits until the engine is healthy. The engine must answer
    C(ctrl?q=status) with C(rc) 0 and its C(Server) header must name the expected version (and
    build, when known). No other field of C(ctrl?q=status) is read, because none is documented.
  - The version of an install is the one its directory names (C(<prefix>/Tractor-<version>)), else
    O(version). C(tractor-engine --version) is only read for the build number, since its output
    is not documented. It never blocks a start.
  - Also runs the first three steps of the runbook's downgrade procedure. O(dispatching=paused)
    pauses dispatching (step 1), O(retry_active=true) runs C(tq --force --yes retry active)
    (step 2), and O(state=killed) kills the engine (step 3).
  - Steps 1 and 2 prove their effect before the task goes on. Every unfinished job must read back
    as paused, and every command that ran an active task must read back as ended (its invocation
    has a C(stoptime)), both through C(db?q=tractorselect), within O(confirm_timeout) seconds. Only
    then does the engine stop (with O(state=killed) or O(state=stopped)).
  - A reply the module does not recognise (a missing key, another type, C(rc) other than 0) fails
    the task and changes nothing more. It is never taken as "no jobs" or "no active tasks".
  - The engine process is controlled by systemd, by the SysV init script, or directly. See
    O(service_manager).
options:
  state:
    description:
      - V(started) makes sure the engine of the install (O(version) or O(install_dir)) runs and is
        healthy. An engine of another version (or build) is stopped and the requested one started;
        this is the upgrade (or downgrade) of the engine. The same version already running is no
        change; the module still waits for it to be healthy.
      - V(stopped) stops the engine that serves O(config_dir), whatever its version. SIGTERM (or
        the service manager's stop) first; see O(stop_timeout) and O(escalate).
      - V(restarted) always stops (if running) and starts the engine of the install.
      - V(killed) kills the engine with SIGKILL at once (downgrade step 3, "Kill the engine").
        PostgreSQL is left running, as with any killed engine.
      - V(status) only reports; it cannot be combined with O(dispatching) or O(retry_active).
      - Omitted, the engine process is left as it is and only O(dispatching) and O(retry_active)
        are applied (to the running engine), or the status is reported.
      - With V(stopped) and V(killed), O(dispatching) and O(retry_active) are applied B(before)
        the engine stops, in the runbook's order (pause, retry active, kill). With V(started) and
        V(restarted) they are applied after the engine is healthy.
    type: str
    choices: [started, stopped, restarted, killed, status]
  service_manager:
    description:
      - How the engine process is started and stopped.
      - V(systemd) runs C(systemctl start|stop <service_name>). The unit is the site's (Pixar ships
        one in C(lib/SystemServices/systemd/)). To start another install, the module writes the
        drop-in C(/etc/systemd/system/<service_name>.service.d/50-renderfarm-tractor-install.conf).
        It resets C(ExecStart) and sets it to the unit's own command line, with the
        C(.../bin/tractor-engine) it names (a path, C($VAR), C(${VAR}) or C(${VAR:-default}))
        replaced by the install's. After C(systemctl daemon-reload), C(systemctl show -p ExecStart)
        must name the install's C(bin/tractor-engine) before anything is stopped. A unit whose
        C(ExecStart) names no C(tractor-engine), or more than one, is refused before the stop.
      - V(sysv) runs C(<init_script> start|stop|status); C(status) exits 3 when the engine is
        stopped (1 means dead with a stale pid file, and counts as stopped). The init script must
        run C($VAR/bin/tractor-engine) (or C(${VAR}), C(${VAR:-default})) and name
        O(service_settings), where the module then sets C(VAR) to the install. A script that names
        an install's path itself always starts that install, so the module refuses it before the
        stop; use V(systemd) or V(direct) there, or edit the script.
      - V(direct) runs C(<install>/bin/tractor-engine --configdir=<config_dir> --daemon
        --pidfile=<pidfile> --log=<log_file>) (plus C(--paused) with O(start_paused)), and stops
        the engine with signals.
      - V(auto) picks V(systemd) when systemd is the running init system (C(/run/systemd/system)
        exists) and the unit O(service_name) is installed, else V(sysv) when O(init_script)
        exists and is executable, else V(direct). The result says which was used and why.
    type: str
    choices: [auto, systemd, sysv, direct]
    default: auto
  service_name:
    description:
      - Name of the systemd unit (without C(.service)) and of the init script.
    type: str
    default: tractor-engine
  service_settings:
    description:
      - The settings file the service reads. Defaults to C(/etc/sysconfig/<service_name>) for
        V(systemd) (the unit's C(EnvironmentFile)) and C(/etc/sysconfig/pixar) for V(sysv) (the
        settings file shared by Pixar's init scripts).
      - With V(sysv) and O(state=started) or O(state=restarted), the module sets the variable the
        init script takes the install from (see O(service_manager)) in this file, rewriting only
        that assignment (or appending it). The init script stays as installed. The file is
        shared with the blade's init script, so a blade that reads the same variable also runs
        the new install at its next restart.
      - With V(systemd) the module does not write this file; the drop-in selects the install.
      - The module reads the log file and pid file from this file. That is C(--log=) in
        C(OPTIONS) (systemd) or C(TRACTOR_ENGINE_OPTIONS) (sysv), and C(TRACTOR_ENGINE_PIDFILE)
        (sysv). These names are those of the service files the collection is tested with, since
        Pixar's own file texts are not public; without them the engine's log is not shown on a
        failed start (the journal is, under systemd).
    type: path
  init_script:
    description:
      - The SysV init script. Defaults to C(/etc/init.d/<service_name>).
    type: path
  pidfile:
    description:
      - V(direct) only. The pid file the engine writes, by default
        C(<TractorDataDirectory>/tractor-engine.pid).
      - The engine detaches and writes the pid file, then drops to the EngineOwner. The module
        removes a stale pid file before a start, so the file must not be shared with anything
        else.
      - With V(sysv) the pid file is read from the settings (C(TRACTOR_ENGINE_PIDFILE)) unless
        this is set.
    type: path
  log_file:
    description:
      - V(direct) only. The engine's C(--log) file, by default C(<TractorDataDirectory>/engine.log)
        (the documented default of C(EngineLogFile)).
      - With V(sysv) and V(systemd) the log file comes from the settings (C(--log=)); without one
        the systemd engine logs to the journal, and the module reads C(journalctl -u <service_name>)
        when it reports a failed start.
      - Its last lines are part of every start failure.
    type: path
  engine_args:
    description:
      - V(direct) only. More C(tractor-engine) options for a start, for example C([--debug]).
    type: list
    elements: str
    default: []
  start_paused:
    description:
      - Start the engine with C(--paused), the engine-wide "pause all dispatching" state of the
        Dashboard's Admin panel. Resume it in the Dashboard, or with O(dispatching=running) and
        O(dispatch_method=engine_switch) where the engine supports that.
      - V(direct) only, because the service files take no per-start options. Only matters when
        the module starts the engine; a running engine is not restarted for it.
    type: bool
    default: false
  stop_timeout:
    description:
      - Seconds to wait for the engine to exit after SIGTERM (or C(systemctl stop)).
      - With V(sysv) the init script applies its own stop timeout first (C(TRACTOR_STOP_TIMEOUT)
        in the emulated script); this is the time the module waits after the script returns.
    type: int
    default: 60
  escalate:
    description:
      - When the engine has not exited after O(stop_timeout) seconds, kill it with SIGKILL. The
        result then has RV(escalated=true) and a warning.
      - After an escalation the module runs C(tractor-dbctl --stop-for-engine), which is what the
        engine itself runs when it exits. It stops PostgreSQL when C(DBShutdown) is True.
      - With V(false) the task fails instead, and leaves the engine running.
    type: bool
    default: true
  dispatching:
    description:
      - V(paused) stops new dispatches; commands already running continue. V(running) resumes
        dispatching.
      - Needs a running engine (or one this task starts).
      - How it is done is set by O(dispatch_method).
    type: str
    choices: [paused, running]
  dispatch_method:
    description:
      - V(job_pause) (default) uses only documented requests. Pausing pauses every unfinished job
        that is not paused yet, one by one, with C(queue?q=jattr&jid=N&set_pause=1), which is
        what C(tq pause) sends. The jobs it paused are recorded in O(paused_jobs_file).
        V(running) unpauses exactly those jobs and removes the file. Jobs that were paused
        before, by users, stay paused. Jobs spooled after the pause are paused when the task runs
        again.
      - Pausing lists the jobs with C(db?q=tractorselect('job', ...)) and reads them back until every
        unfinished job has a C(pausetime), pausing jobs spooled meanwhile as well.
      - V(engine_switch) flips the engine-wide switch of the Dashboard's Admin panel. The request
        for it is not documented by Pixar; the one used is the collection's emulator's
        (C(ctrl?q=dispatching&pause=1|0) to set it, C(ctrl?q=dispatching) to read it back). Use it
        only where your engine answers it. A reply without C(dispatching.paused) fails the task.
    type: str
    choices: [job_pause, engine_switch]
    default: job_pause
  paused_jobs_file:
    description:
      - Where O(dispatch_method=job_pause) records the jobs it paused. By default
        C(<TractorDataDirectory>/.renderfarm-tractor-paused-jobs.json).
    type: path
  retry_active:
    description:
      - Run C(<install>/bin/tq --engine <engine> --user <engine_user> --force --yes retry active).
        It retries every active task of every user's job (downgrade step 2). The engine kills the
        running commands and the tasks become ready again.
      - Runs only when C(db?q=tractorselect) lists active tasks, so it is idempotent once
        dispatching is paused. With dispatching running, the retried tasks may be dispatched
        again at once.
      - Before it returns, the module waits until every invocation that ran one of those tasks has
        ended on its blade (C(stoptime) set, or no longer C(current)). A blade kills a retried
        command only when it next hears from the engine, so this can take as long as the blades'
        polling interval. See O(confirm_timeout).
      - O(engine_password) is passed to C(tq) in the environment (C(TRACTOR_PASSWORD)), not on
        the command line.
    type: bool
    default: false
  confirm_timeout:
    description:
      - Seconds to wait for the engine to confirm O(dispatching) and O(retry_active). For a pause,
        every unfinished job must read back as paused. For a retry, every retried command must
        have ended on its blade.
      - When the time runs out, the task fails and says what is still running or unpaused. The
        engine is left up, with the jobs paused. Run the task again once the blades have killed
        the commands, or raise this value for blades that poll rarely.
    type: int
    default: 300
extends_documentation_fragment:
  - renderfarm.tractor.tractor
  - renderfarm.tractor.tractor.attributes
attributes:
  check_mode:
    support: full
    details:
      - Nothing is started, stopped, signalled, paused or written. The module reads the engine's
        state (process, URL API, job list) and reports the commands it would run in RV(commands).
      - Before a start it checks what it can. C(tractor-engine) of the install exists and is
        executable, and the install directory names the expected version. The configuration has the
        required keys. The data directory and the EngineOwner exist. The unit or the init script
        is installed.
      - When the engine would first be started, the jobs that O(dispatching=paused) would pause
        cannot be listed; the result says so.
      - O(dispatching) and O(retry_active) list what they would pause or retry; they send nothing
        and so have nothing to wait for.
      - Under systemd and SysV it checks that the unit or init script can be steered to the
        install, and shows the drop-in or settings line it would write.
  diff_mode:
    support: full
    details:
      - RV(diff) shows the engine's state, version, build, pid and dispatching before and after,
        and the C(ExecStart) of the drop-in (systemd) or the settings value (SysV) the module
        rewrites.
  idempotent:
    support: partial
    details:
      - V(started), V(stopped), V(killed), O(dispatching) and (with dispatching paused)
        O(retry_active) report no change when repeated.
      - V(restarted) always restarts the engine.
  action_group:
    description: Use C(group/renderfarm.tractor.tractor) in C(module_defaults) to set the shared options once.
    support: full
    membership:
      - renderfarm.tractor.tractor
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - The module controls the engine of the host it runs on. O(engine) only sets the address the
    engine's URL API is checked at (by default C(localhost:<ListenerPort>)).
  - Run it as root. The engine must start as root to bind its port, then switches to the
    EngineOwner itself. Service control needs root too. C(tq) and the URL API run as any user.
  - The running engine is found through its pid file, the service manager, and the processes
    whose command line is C(tractor-engine --configdir <config_dir>), plus the URL API. An
    engine found but not started by the chosen service manager (for example started by hand) is
    stopped with signals, with a warning.
  - A start that does not become healthy within O(timeout) seconds fails with the last lines of
    the engine log. The engine is left as it is, for diagnosis.
  - The version of a running engine is read from the C(Server) header of its replies
    (C(Pixar_Tractor/<version> (... <build> ...))).
seealso:
  - module: renderfarm.tractor.tractor_db
  - module: renderfarm.tractor.tractor_jobcounter
  - name: Tractor documentation, Upgrading
    description: Upgrade by restarting with the new version; the downgrade steps.
    link: https://rmanwiki.pixar.com/display/TRA/Upgrading
  - name: Tractor documentation, tractor-engine
    description: The engine's command line (C(--configdir), C(--daemon), C(--pidfile), C(--log), C(--paused)).
    link: https://rmanwiki.pixar.com/display/TRA/tractor-engine
author:
  - renderfarm.tractor contributors (@renderfarm)
'''

EXAMPLES = r'''
- name: Make sure the 2.2 engine runs (started directly, no service files)
  renderfarm.tractor.tractor_engine:
    version: "2.2"
    config_dir: /opt/pixar/config
    state: started
    service_manager: direct

- name: Upgrade the engine to 2.4 (stops 2.2, starts 2.4; the schema is upgraded on start)
  renderfarm.tractor.tractor_engine:
    version: "2.4"
    config_dir: /opt/pixar/config
    state: started
    timeout: 600
  register: upgrade

- name: Say what changed
  ansible.builtin.debug:
    msg: "{{ upgrade.previous_version }} -> {{ upgrade.version }} ({{ upgrade.service_manager }})"
  when: upgrade is changed

# Downgrade, runbook steps 1 to 3, in one task and in that order.
- name: Pause dispatching, retry the active tasks, kill the engine
  renderfarm.tractor.tractor_engine:
    version: "2.4"
    config_dir: /opt/pixar/config
    dispatching: paused
    retry_active: true
    state: killed

# After the downgrade (tractor_db restored the database), start the old engine and resume
# exactly the jobs the pause above paused.
- name: Start 2.2 and resume dispatching
  renderfarm.tractor.tractor_engine:
    version: "2.2"
    config_dir: /opt/pixar/config
    state: started
    dispatching: running

- name: Stop the engine; SIGKILL if it has not exited after 30 seconds
  renderfarm.tractor.tractor_engine:
    version: "2.4"
    config_dir: /opt/pixar/config
    state: stopped
    stop_timeout: 30

- name: Pause with the engine-wide switch (only where the engine answers its URL)
  renderfarm.tractor.tractor_engine:
    version: "2.4"
    config_dir: /opt/pixar/config
    dispatching: paused
    dispatch_method: engine_switch

- name: SysV init script with a site settings file
  renderfarm.tractor.tractor_engine:
    version: "2.4"
    config_dir: /opt/pixar/config
    state: started
    service_manager: sysv
    service_settings: /etc/sysconfig/pixar

- name: Read the engine's state
  renderfarm.tractor.tractor_engine:
    version: "2.4"
    config_dir: /opt/pixar/config
    state: status
  register: engine

- name: Show the active tasks
  ansible.builtin.debug:
    msg: "{{ engine.tasks.active }} active, {{ engine.tasks.ready }} ready"

- name: Retry the active tasks, waiting up to 10 minutes for slow blades to kill the commands
  renderfarm.tractor.tractor_engine:
    version: "2.4"
    config_dir: /opt/pixar/config
    retry_active: true
    confirm_timeout: 600
'''

RETURN = r'''
state:
  description: Whether an engine serves O(config_dir) after the task (predicted in check mode).
  returned: always
  type: str
  sample: running
version:
  description: Version of the engine after the task (of the engine that stopped, for O(state=stopped)).
  returned: always
  type: str
  sample: "2.4"
build:
  description: Build number of that engine, when known.
  returned: always
  type: str
  sample: "2091325"
previous_version:
  description: Version of the engine that was running before the task; null when none was.
  returned: always
  type: str
  sample: "2.2"
pid:
  description: Process id of the running engine; null when stopped.
  returned: always
  type: int
  sample: 4242
address:
  description: Where the engine's URL API was checked, C(host:port).
  returned: always
  type: str
  sample: localhost:80
tasks:
  description:
    - Task counts by state (C(active), C(ready), C(blocked), C(error), C(done)) of the engine that
      serves after the task, summed over its live jobs' counters (C(numactive) and so on, read with
      C(db?q=tractorselect)).
    - Only for O(state=status), O(state=started) and O(state=restarted) with an engine running;
      empty otherwise.
  returned: always
  type: dict
  sample: {"active": 1, "ready": 4, "blocked": 0, "error": 0, "done": 10}
dispatching:
  description: Dispatching state after the task.
  returned: always
  type: dict
  contains:
    method:
      description: The O(dispatch_method) used.
      type: str
      sample: job_pause
    engine_paused:
      description:
        - The engine-wide pause switch, read back with O(dispatch_method=engine_switch); null with
          V(job_pause), which does not read it (its request is not documented).
      type: bool
      sample: false
    confirmed:
      description:
        - True when the pause (or resume) was read back; false in check mode, where nothing was
          sent; null when O(dispatching) was not applied with V(job_pause).
      type: bool
      sample: true
    paused_jobs:
      description: Job ids recorded in O(paused_jobs_file) (the jobs this module paused and has not resumed).
      type: list
      elements: int
      sample: [101, 102]
    paused_now:
      description: Jobs paused by this task.
      type: list
      elements: int
      sample: [102]
    resumed_now:
      description: Jobs unpaused by this task.
      type: list
      elements: int
      sample: []
    state_file:
      description: The O(paused_jobs_file).
      type: str
      sample: /var/spool/tractor/.renderfarm-tractor-paused-jobs.json
retried_tasks:
  description: Tasks C(tq retry active) retried (in check mode, the active tasks it would retry).
  returned: always
  type: int
  sample: 2
retry:
  description: What O(retry_active) found and waited for.
  returned: always
  type: dict
  contains:
    tasks:
      description: The active tasks, C([jid, tid]), before the retry.
      type: list
      elements: list
      sample: [[101, 3]]
    commands:
      description: The commands that ran them, C(J<jid> T<tid> C<cid> I<iid> on blade <blade>).
      type: list
      elements: str
      sample: ["J101 T3 C3 I1 on blade rack1-07"]
    confirmed:
      description: True when each of those commands read back as ended; false in check mode; null when not applied.
      type: bool
      sample: true
progress:
  description: What O(dispatching) and O(retry_active) read back, one line per look, with the seconds since the step began.
  returned: always
  type: list
  elements: str
  sample: ["retry the active tasks: 0.0 s: 1 active task(s), 1 running command(s)",
           "retry the active tasks: 0.1 s: waiting for 1 command(s) to end on their blades: J101 T3 C3 I1 on blade rack1-07",
           "retry the active tasks: 1.2 s: every retried command has ended"]
service_manager:
  description: The service manager used, and why (for O(service_manager=auto)).
  returned: always
  type: dict
  sample: {"name": "direct", "reason": "no systemd unit and no init script /etc/init.d/tractor-engine"}
escalated:
  description: True when the engine ignored SIGTERM (or the service stop) and was killed with SIGKILL.
  returned: always
  type: bool
  sample: false
log_file:
  description: The engine log file the module reads on failure; null when the engine logs to the journal.
  returned: always
  type: str
  sample: /var/spool/tractor/engine.log
pidfile:
  description: The pid file used; null with systemd.
  returned: always
  type: str
  sample: /var/spool/tractor/tractor-engine.pid
commands:
  description: The commands and requests that changed something (in check mode, that would have).
  returned: always
  type: list
  elements: str
  sample: ["kill -TERM 4242", "/opt/pixar/Tractor-2.4/bin/tractor-engine --configdir=/opt/pixar/config --daemon ..."]
diff:
  description: The engine before and after the task.
  returned: always
  type: dict
  sample: {"before": {"state": "running", "version": "2.2"}, "after": {"state": "running", "version": "2.4"}}
log_tail:
  description: The last lines of the engine log; returned when a start failed (with the failure).
  returned: failure
  type: list
  elements: str
'''

import errno
import json
import os
import pwd
import re
import signal
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_common import (
    COMMON_REQUIRED_ONE_OF, PAUSED_JOBS_FILE, TractorModule, common_argument_spec,
)
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_dbctl import Dbctl
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_dispatch import Dispatch, DispatchError
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_engine_client import (
    DISPATCH_STATE_QUERY, DISPATCH_SWITCH_QUERY, EngineClient, EngineRefused, EngineUnavailable, ReplyUnrecognised,
)
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_install import banner_check, install_version
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_process import (
    LOG_TAIL_LINES, find_engine_pids, is_engine_argv, pid_alive, read_cmdline, read_pidfile, tail_file,
    version_from_argv,
)
from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_service import (
    DROPIN_NAME, UNSAFE_SETTING_RE, ServiceError, choose_service_manager, dropin_text, log_option, parse_settings,
    parse_unit_environment, rewrite_exec_start, show_runs, sysv_install_variable, unit_exec_start, update_settings,
)

DEFAULT_PIDFILE = 'tractor-engine.pid'
DEFAULT_LOG = 'engine.log'
# Variables of the service settings files the module reads (see the service_settings option).
SYSV_PIDFILE_VAR = 'TRACTOR_ENGINE_PIDFILE'
SYSV_OPTIONS_VAR = 'TRACTOR_ENGINE_OPTIONS'
SYSTEMD_OPTIONS_VAR = 'OPTIONS'
SYSV_SETTINGS = '/etc/sysconfig/pixar'
SYSCONFIG_DIR = '/etc/sysconfig'
SYSV_DEFAULT_PIDFILE = '/var/run/tractor-engine.pid'
SYSTEMD_RUNTIME_DIR = '/run/systemd/system'
SYSTEMD_DROPIN_ROOT = '/etc/systemd/system'
SYSTEMD_UNIT_DIRS = ('/etc/systemd/system', '/run/systemd/system', '/usr/local/lib/systemd/system',
                     '/usr/lib/systemd/system', '/lib/systemd/system')
SYSV_STATUS_STOPPED = 3
SYSTEMD_RUNNING_STATES = ('active', 'activating', 'deactivating', 'reloading', 'refreshing')
KILL_WAIT = 10           # seconds a SIGKILLed engine gets to disappear
ZOMBIE_GRACE = 3         # seconds an exited engine's parent gets to reap it
# Seconds between two looks while waiting for the engine to answer or to exit. Each look is one
# local HTTP request or a kill -0; a service manager's state is a systemctl/init script run, so
# those waits look less often.
POLL = 0.1
SERVICE_POLL = 0.25
PROBE_TIMEOUT = 5        # seconds for one URL API request
# Seconds between two read-backs of a pause or of retried commands: blades take seconds to kill a
# command, and each look is a tractorselect the engine answers from its database.
CONFIRM_POLL = 1.0
MSG_LOG_LINES = 10       # of which in the failure message


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------
class EngineManager(object):

    def __init__(self, tm):
        self.tm = tm
        self.module = tm.module
        self.p = tm.params
        self.check = self.module.check_mode
        self.escalated = False
        self.retried = 0
        self.retry = dict(tasks=[], commands=[], confirmed=None)
        self.progress = []
        self.recorded_before = None
        self.pidfile_removed = False
        self.warnings = []
        self.expected = None          # (version, build) of the install
        self.settings_diff = None
        self.dispatch = dict(method=self.p['dispatch_method'], engine_paused=None, engine_paused_before=None,
                             paused_jobs=[], paused_now=[], resumed_now=[], confirmed=None, state_file=None)
        self.config = tm.config
        self.data_dir = self.config.data_dir
        self.address = self.config.client_address(self.p['engine'])
        self.dispatch['state_file'] = self.p['paused_jobs_file'] or os.path.join(self.data_dir, PAUSED_JOBS_FILE)
        self.service_name = self.p['service_name']
        self.unit = self.service_name if self.service_name.endswith('.service') else self.service_name + '.service'
        self.init_script = self.p['init_script'] or os.path.join('/etc/init.d', self.service_name)
        self.manager, self.manager_reason = self.pick_manager()
        self.settings_path = self.p['service_settings'] or (
            SYSV_SETTINGS if self.manager == 'sysv' else os.path.join(SYSCONFIG_DIR, self.service_name))
        self.pidfile, self.log_file = self.locations()

    # -- where things are -----------------------------------------------------------------------
    def unit_path(self):
        for directory in SYSTEMD_UNIT_DIRS:
            path = os.path.join(directory, self.unit)
            if os.path.exists(path):
                return path
        return None

    def pick_manager(self):
        script_ok = os.path.isfile(self.init_script) and os.access(self.init_script, os.X_OK)
        return choose_service_manager(self.p['service_manager'], os.path.isdir(SYSTEMD_RUNTIME_DIR),
                                      self.unit_path(), self.init_script, script_ok)

    def read_text(self, path):
        try:
            with open(path) as handle:
                return handle.read()
        except (IOError, OSError):
            return None

    def service_values(self):
        """Settings the service runs with: defaults of the unit/script, overridden by the settings file."""
        values = {}
        if self.manager == 'sysv':
            values.update(parse_settings(self.read_text(self.init_script)))
        elif self.manager == 'systemd':
            values.update(parse_unit_environment(self.read_text(self.unit_path() or '')))
        values.update(parse_settings(self.read_text(self.settings_path)))
        return values

    def locations(self):
        """(pidfile, log_file) for the chosen service manager."""
        if self.manager == 'direct':
            return (self.p['pidfile'] or os.path.join(self.data_dir, DEFAULT_PIDFILE),
                    self.p['log_file'] or os.path.join(self.data_dir, DEFAULT_LOG))
        values = self.service_values()
        if self.manager == 'sysv':
            return (self.p['pidfile'] or values.get(SYSV_PIDFILE_VAR) or SYSV_DEFAULT_PIDFILE,
                    self.p['log_file'] or log_option(values.get(SYSV_OPTIONS_VAR)))
        return None, self.p['log_file'] or log_option(values.get(SYSTEMD_OPTIONS_VAR))

    # -- commands -----------------------------------------------------------------------------
    def systemctl(self):
        return self.module.get_bin_path('systemctl', required=True)

    def read_cmd(self, argv):
        return self.tm.run(argv, owner=False)

    def change_cmd(self, argv, what):
        rc, out, err = self.tm.change(argv, owner=False)
        if rc != 0:
            self.fail_with_log('%s failed (rc=%s)' % (what, rc), rc=rc, stdout=out, stderr=err, cmd=' '.join(argv))
        return rc, out, err

    # -- observing the engine -------------------------------------------------------------------
    def client(self, timeout=PROBE_TIMEOUT):
        return EngineClient(self.address, user=self.p['engine_user'], password=self.p['engine_password'],
                            timeout=timeout)

    def probe(self, timeout=PROBE_TIMEOUT):
        """One ctrl?q=status: dict(answered, healthy, version, build, status, error)."""
        return self.client(timeout).probe()

    def managed_pid(self):
        """(running per the service manager, pid or None)."""
        if self.manager == 'systemd':
            rc, out, err = self.read_cmd([self.systemctl(), 'is-active', self.unit])
            running = out.strip() in SYSTEMD_RUNNING_STATES
            pid = None
            if running:
                rc, out, err = self.read_cmd([self.systemctl(), 'show', '--property=MainPID', '--value', self.unit])
                pid = int(out.strip()) if out.strip().isdigit() and int(out.strip()) > 0 else None
            return running, pid
        if self.manager == 'sysv':
            rc, out, err = self.read_cmd([self.init_script, 'status'])
            if rc == 0:
                pid = read_pidfile(self.pidfile)
                return True, pid if pid_alive(pid) and is_engine_argv(read_cmdline(pid)) else None
            if rc not in (1, SYSV_STATUS_STOPPED):
                self.warnings.append('%s status exited %s (expected 0 or %d): %s'
                                     % (self.init_script, rc, SYSV_STATUS_STOPPED, (out + err).strip()))
            return False, None
        pid = read_pidfile(self.pidfile)
        if pid and pid_alive(pid) and is_engine_argv(read_cmdline(pid)):
            return True, pid
        return False, None

    def observe(self):
        """What runs now: dict(running, managed, pid, version, build, probe)."""
        managed, pid = self.managed_pid()
        probe = self.probe()
        if not pid:
            pids = find_engine_pids(self.tm.config_dir)
            if pids:
                pid = pids[0]
        running = bool(managed or (pid and pid_alive(pid)) or (probe['answered'] and probe['version']))
        version, build = probe['version'], probe['build']
        if running and not version and pid:
            version = version_from_argv(read_cmdline(pid))
        return dict(running=running, managed=managed, pid=pid if running else None, version=version,
                    build=build, probe=probe)

    def describe(self, seen):
        return dict(state='running' if seen['running'] else 'stopped', version=seen.get('version'),
                    build=seen.get('build'), pid=seen.get('pid'))

    # -- preflight ------------------------------------------------------------------------------
    def install_version(self):
        """(version, build) of the install: its directory's name (or the version option); fails when unknown.

        The build comes from `tractor-engine --version` when its output is a banner this module
        recognises; that output is not public, so it never blocks (fact sheet 6.5).
        """
        if self.expected is not None:
            return self.expected
        engine = self.tm.tool('tractor-engine')
        if not os.path.isfile(engine) or not os.access(engine, os.X_OK):
            self.tm.fail('%s is missing or not executable: install Tractor %s in %s, or point install_dir at '
                         'the install to run' % (engine, self.p['version'] or '', self.tm.install_dir))
        version, why = install_version(self.tm.install_dir, self.p['version'])
        if version is None:
            self.tm.fail('%s: fix version or install_dir' % why)
        rc, out, err = self.read_cmd([engine, '--version'])
        build, warning = banner_check(version, rc, out, err)
        if warning:
            self.warnings.append(warning)
        self.expected = (version, build)
        return self.expected

    def preflight_start(self):
        """Everything that can be checked before stopping an engine or starting one (also in check mode)."""
        self.install_version()
        missing = self.config.missing_keys()
        if missing:
            self.tm.fail('the merged configuration (%s) lacks %s: add them to the site files in %s'
                         % (', '.join(self.config.files.get('tractor.config', []) + self.config.files.get('db.config', [])),
                            ', '.join(missing), self.tm.config_dir))
        if not os.path.isdir(self.data_dir):
            self.tm.fail('TractorDataDirectory %s does not exist: create it, owned by the EngineOwner %s, before '
                         'the engine starts' % (self.data_dir, self.tm.owner or '(unset)'))
        if os.geteuid() == 0:
            owner = self.tm.owner
            if not owner or owner == 'root':
                self.tm.fail('EngineOwner is %s: an engine started as root needs EngineOwner set to an unprivileged '
                             'account in %s' % (repr(owner or ''), self.tm.config_dir + '/tractor.config'))
            try:
                pwd.getpwnam(owner)
            except KeyError:
                self.tm.fail('EngineOwner %s does not exist on this host: create the account or fix EngineOwner in '
                             'tractor.config' % owner)
        if self.p['start_paused'] and self.manager != 'direct':
            self.tm.fail('start_paused needs service_manager=direct (the %s service takes no per-start options); '
                         'start it and then use dispatching=paused' % self.manager)
        if self.manager == 'direct':
            for what, path in (('pidfile', self.pidfile), ('log_file', self.log_file)):
                if not os.path.isdir(os.path.dirname(path) or '/'):
                    self.tm.fail('the directory of %s %s does not exist: create it or set %s' % (what, path, what))
        elif self.manager == 'sysv':
            if not (os.path.isfile(self.init_script) and os.access(self.init_script, os.X_OK)):
                self.tm.fail('init script %s is missing or not executable: copy it from %s/lib/SystemServices/%s '
                             '(and append lib/SystemServices/pixar to %s), or choose another service_manager'
                             % (self.init_script, self.tm.install_dir, self.service_name, SYSV_SETTINGS))
        elif self.manager == 'systemd':
            if not os.path.isdir(SYSTEMD_RUNTIME_DIR):
                self.tm.fail('service_manager=systemd, but systemd is not the running init system (%s is missing)'
                             % SYSTEMD_RUNTIME_DIR)
            if not self.unit_path():
                self.tm.fail('systemd unit %s is not installed: copy %s/lib/SystemServices/systemd/tractor-engine.service '
                             'to /usr/lib/systemd/system/%s and run systemctl daemon-reload'
                             % (self.unit, self.tm.install_dir, self.unit))

    # -- which install the service starts --------------------------------------------------------
    def select_install(self):
        """Make the service start this install, proven before anything is stopped; True when it changed."""
        if self.manager == 'systemd':
            return self.select_install_systemd()
        if self.manager == 'sysv':
            return self.select_install_sysv()
        return False

    def cannot_steer(self, why):
        self.tm.fail('%s cannot be made to start %s: %s. Nothing was stopped. Make the service run '
                     '<install>/bin/tractor-engine (systemd: in its ExecStart; SysV: through a variable such as '
                     '$TRACTOR_INSTALL_DIR that %s sets), or use service_manager=direct'
                     % (self.unit if self.manager == 'systemd' else self.init_script, self.tm.install_dir, why,
                        self.settings_path))

    def select_install_systemd(self):
        systemctl = self.systemctl()
        rc, out, err = self.read_cmd([systemctl, 'cat', self.unit])
        if rc != 0:
            self.cannot_steer('systemctl cat %s failed (rc=%s): %s' % (self.unit, rc, (err or out).strip()))
        try:
            exec_start = rewrite_exec_start(out, self.tm.install_dir)
        except ServiceError as exc:
            self.cannot_steer(str(exc))
        path = os.path.join(SYSTEMD_DROPIN_ROOT, self.unit + '.d', DROPIN_NAME)
        current = self.read_text(path)
        wanted = dropin_text(exec_start)
        # Nothing to write when the unit (with its drop-ins) already runs this install.
        changed = current != wanted and unit_exec_start(out) != [exec_start]
        if changed:
            before = unit_exec_start(current)
            self.settings_diff = dict(path=path, before=dict(ExecStart=before[-1] if before else None),
                                      after=dict(ExecStart=exec_start))
            if self.tm.record('write %s (ExecStart=%s); systemctl daemon-reload' % (path, exec_start)):
                if not os.path.isdir(os.path.dirname(path)):
                    os.makedirs(os.path.dirname(path), 0o755)
                self.write_file(path, wanted, 0o644)
                self.change_cmd([systemctl, 'daemon-reload'], 'systemctl daemon-reload')
            else:
                return changed      # check mode: nothing written, nothing to read back
        # What systemd itself will run, read back before anything is stopped.
        rc, out, err = self.read_cmd([systemctl, 'show', '--property=ExecStart', self.unit])
        if rc != 0 or not show_runs(out, self.tm.install_dir):
            if changed:
                if current is None:
                    os.unlink(path)
                else:
                    self.write_file(path, current, 0o644)
                self.read_cmd([systemctl, 'daemon-reload'])
            self.cannot_steer('after %s was written, systemctl show still reports %s (a drop-in of higher '
                              'precedence?)' % (path, (out or err).strip()))
        return changed

    def select_install_sysv(self):
        script = self.read_text(self.init_script)
        try:
            variable = sysv_install_variable(script, self.settings_path, self.tm.install_dir)
        except ServiceError as exc:
            self.cannot_steer(str(exc))
        if variable is None:
            return False        # the script runs this install by its path
        install = self.tm.install_dir
        if UNSAFE_SETTING_RE.search(install):
            self.tm.fail('%s=%r cannot be written to %s: a shell sources that file and would expand or split it; '
                         'use an install directory without $ ` " \\ or line breaks' % (variable, install, self.settings_path))
        text = self.read_text(self.settings_path)
        current = parse_settings(text).get(variable)
        if current == install:
            return False
        self.settings_diff = dict(path=self.settings_path, before={variable: current}, after={variable: install})
        if self.tm.record('set %s=%s in %s' % (variable, install, self.settings_path)):
            self.write_file(self.settings_path, update_settings(text, {variable: install}), 0o644)
            if parse_settings(self.read_text(self.settings_path)).get(variable) != install:
                self.cannot_steer('%s does not read back with %s=%s' % (self.settings_path, variable, install))
        return True

    def write_file(self, path, text, mode):
        directory = os.path.dirname(path) or '.'
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory)
            if os.path.isfile(path) and not os.path.islink(path):
                mode = os.stat(path).st_mode & 0o7777
            tmp = '%s.tmp-%d' % (path, os.getpid())
            if os.path.lexists(tmp):
                os.unlink(tmp)
            # O_EXCL | O_NOFOLLOW: the directory may belong to the EngineOwner; never write through a link
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), mode)
            with os.fdopen(fd, 'w') as handle:
                handle.write(text)
            os.chmod(tmp, mode)
            os.rename(tmp, path)
        except (IOError, OSError) as exc:
            self.tm.fail('cannot write %s: %s; run the task as root (become: true)' % (path, exc))

    # -- starting -------------------------------------------------------------------------------
    def start(self):
        version, build = self.install_version()
        if self.manager == 'direct':
            self.start_direct()
        elif self.manager == 'sysv':
            self.change_cmd([self.init_script, 'start'], '%s start' % self.init_script)
        else:
            self.change_cmd([self.systemctl(), 'start', self.unit], 'systemctl start %s' % self.unit)
        if not self.check:
            return self.wait_healthy(version, build)
        return None

    def start_direct(self):
        argv = [self.tm.tool('tractor-engine'), '--configdir=%s' % self.tm.config_dir, '--daemon',
                '--pidfile=%s' % self.pidfile, '--log=%s' % self.log_file]
        if self.p['start_paused']:
            argv.append('--paused')
        argv.extend(self.p['engine_args'] or [])
        if os.path.exists(self.pidfile) and not self.pidfile_removed:
            if self.tm.record('remove stale pid file %s' % self.pidfile):
                try:
                    os.unlink(self.pidfile)
                except OSError as exc:
                    self.tm.fail('cannot remove the stale pid file %s: %s' % (self.pidfile, exc))
        self.change_cmd(argv, 'tractor-engine --daemon')

    def wait_healthy(self, version, build, started=True):
        """Wait for ctrl?q=status and the expected version in the Server header; fail with the log tail."""
        deadline = time.monotonic() + max(1, self.p['timeout'])
        last = None
        seen_pid = None
        while True:
            remaining = deadline - time.monotonic()
            last = self.probe(timeout=max(1, min(PROBE_TIMEOUT, remaining)))
            if last['healthy'] and last['version'] == version and (not build or not last['build'] or last['build'] == build):
                return last
            if started and not last['answered']:
                if self.manager == 'systemd':
                    if not self.managed_pid()[0]:
                        self.fail_with_log('tractor-engine %s exited during start-up (%s is no longer active)'
                                           % (version, self.unit))
                else:
                    pid = read_pidfile(self.pidfile)
                    if pid:
                        seen_pid = pid
                    if seen_pid and not pid_alive(seen_pid):
                        self.fail_with_log('tractor-engine %s (pid %d) exited during start-up' % (version, seen_pid))
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL if self.manager == 'direct' else SERVICE_POLL)
        if last['healthy'] or (last['answered'] and last['version']):
            if last['version'] != version or (build and last['build'] and last['build'] != build):
                reason = 'the engine at %s answers as Tractor %s (build %s), not %s (build %s)' % (
                    self.address, last['version'], last['build'], version, build)
            else:
                reason = last['error']
        else:
            reason = last['error'] or 'no answer from %s' % self.address
        self.fail_with_log('tractor-engine %s did not become healthy within %s s: %s'
                           % (version, self.p['timeout'], reason))

    def log_tail(self):
        if self.log_file:
            return self.log_file, tail_file(self.log_file)
        if self.manager == 'systemd':
            journalctl = self.module.get_bin_path('journalctl')
            if journalctl:
                rc, out, err = self.read_cmd([journalctl, '-u', self.unit, '-n', str(LOG_TAIL_LINES), '--no-pager'])
                return 'journalctl -u %s' % self.unit, [line for line in out.splitlines() if line.strip()]
        return None, []

    def fail_with_log(self, msg, **kwargs):
        where, lines = self.log_tail()
        hints = ['Look at the engine log %s' % where if where else 'The engine logs to stderr (no log file)',
                 'the PostgreSQL log %s/logfile and `tractor-dbctl --configdir %s --status`'
                 % (self.config.db_data_dir, self.tm.config_dir)]
        text = '%s. %s.' % (msg, ', '.join(hints))
        if lines:
            text += ' Last log lines:\n' + '\n'.join(lines[-MSG_LOG_LINES:])
        kwargs.setdefault('changed', self.tm.changed)
        self.tm.fail(text, log_tail=lines, log_file=self.log_file, service_manager=dict(
            name=self.manager, reason=self.manager_reason), escalated=self.escalated, **kwargs)

    # -- stopping -------------------------------------------------------------------------------
    def stop(self, seen):
        """Stop the engine seen running; escalate to SIGKILL after stop_timeout when allowed."""
        pid = seen['pid']
        if self.manager == 'systemd' and seen['managed']:
            self.change_cmd([self.systemctl(), 'stop', '--no-block', self.unit], 'systemctl stop %s' % self.unit)
            gone = self.check or self.wait_gone(pid, self.p['stop_timeout'], systemd=True)
        elif self.manager == 'sysv' and seen['managed']:
            argv = [self.init_script, 'stop']
            rc, out, err = self.tm.change(argv, owner=False)
            gone = self.check or self.wait_gone(pid, self.p['stop_timeout'] if rc == 0 else 1)
            if not gone and not pid:
                self.tm.fail_command('%s stop failed and the engine pid is unknown' % self.init_script,
                                     argv, rc, out, err)
        else:
            if not pid:
                self.tm.fail('an engine answers at %s, but no local tractor-engine process serving %s was found: '
                             'is engine pointing at another host?' % (self.address, self.tm.config_dir))
            if self.manager != 'direct':
                self.warnings.append('the engine (pid %d) was not started by %s; stopped with SIGTERM'
                                     % (pid, self.manager))
            self.signal(pid, signal.SIGTERM, 'kill -TERM %d' % pid)
            gone = self.check or self.wait_gone(pid, self.p['stop_timeout'])
        if not gone:
            self.escalate(pid)
        self.cleanup_pidfile(pid)

    def escalate(self, pid):
        if not self.p['escalate']:
            self.tm.fail('the engine (pid %s) did not exit within %s s of the stop request; it is still running '
                         '(escalate=false). Look at %s' % (pid, self.p['stop_timeout'], self.log_file or 'its log'),
                         escalated=False)
        self.escalated = True
        self.warnings.append('the engine (pid %s) did not exit within %s s of SIGTERM/stop; it was killed with '
                             'SIGKILL' % (pid, self.p['stop_timeout']))
        if self.manager == 'systemd' and not pid:
            self.change_cmd([self.systemctl(), 'kill', '--kill-who=main', '--signal=SIGKILL', self.unit],
                            'systemctl kill %s' % self.unit)
            self.wait_gone(None, KILL_WAIT, systemd=True)
        else:
            self.signal(pid, signal.SIGKILL, 'kill -KILL %d (no exit %s s after SIGTERM)' % (pid, self.p['stop_timeout']))
            if not self.wait_gone(pid, KILL_WAIT):
                self.tm.fail('the engine (pid %d) is still there %d s after SIGKILL' % (pid, KILL_WAIT))
        # What the engine itself runs on exit: stops PostgreSQL when DBShutdown is True.
        argv = Dbctl(self.tm).argv('--stop-for-engine')
        rc, out, err = self.tm.change(argv)
        if rc != 0:
            self.warnings.append('%s exited %s after the engine was killed; check PostgreSQL with tractor-dbctl '
                                 '--status: %s' % (' '.join(argv), rc, (err or out).strip()))

    def kill(self, seen):
        pid = seen['pid']
        if self.manager == 'systemd' and seen['managed'] and not pid:
            self.change_cmd([self.systemctl(), 'kill', '--kill-who=main', '--signal=SIGKILL', self.unit],
                            'systemctl kill %s' % self.unit)
            if not self.check:
                self.wait_gone(None, KILL_WAIT, systemd=True)
            return
        if not pid:
            self.tm.fail('an engine answers at %s, but no local tractor-engine process serving %s was found: '
                         'is engine pointing at another host?' % (self.address, self.tm.config_dir))
        self.signal(pid, signal.SIGKILL, 'kill -KILL %d' % pid)
        if not self.check and not self.wait_gone(pid, KILL_WAIT):
            self.tm.fail('the engine (pid %d) is still there %d s after SIGKILL' % (pid, KILL_WAIT))
        self.cleanup_pidfile(pid)

    def signal(self, pid, signum, description):
        if self.tm.record(description):
            try:
                os.kill(pid, signum)
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    self.tm.fail('cannot signal the engine (pid %d): %s; run the task as root (become: true)'
                                 % (pid, exc))

    def wait_gone(self, pid, seconds, systemd=False):
        deadline = time.monotonic() + max(0, seconds)
        while True:
            if systemd:
                running, main_pid = self.managed_pid()
                gone = not running
            else:
                gone = not pid_alive(pid)
                if gone and pid and self.manager == 'sysv':
                    # a zombie still has /proc/<pid> and answers kill -0, which is how init scripts
                    # tell whether the engine runs: give its parent a moment to reap it. Nothing
                    # else needs that wait (an orphan's reaper may take seconds, e.g. in a
                    # container), and it would lie inside the downtime of a restart.
                    reap_deadline = time.monotonic() + ZOMBIE_GRACE
                    while os.path.exists('/proc/%d' % pid) and time.monotonic() < reap_deadline:
                        time.sleep(0.1)
            if gone:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(SERVICE_POLL if systemd else POLL)

    def cleanup_pidfile(self, pid):
        if self.manager != 'direct' or not pid or read_pidfile(self.pidfile) != pid:
            return
        self.pidfile_removed = True
        if self.tm.record('remove pid file %s' % self.pidfile):
            try:
                os.unlink(self.pidfile)
            except OSError:
                pass

    # -- dispatching ----------------------------------------------------------------------------
    def read_paused_jobs(self):
        path = self.dispatch['state_file']
        if not os.path.exists(path):
            return None
        try:
            with open(path) as handle:
                data = json.load(handle)
            return sorted(int(jid) for jid in data.get('paused_jobs', []))
        except (IOError, OSError, ValueError, TypeError, AttributeError) as exc:
            self.tm.fail('cannot read the paused-jobs record %s: %s; fix or remove it (it lists the jobs '
                         'dispatching=paused paused and dispatching=running will resume)' % (path, exc))

    def write_paused_jobs(self, jids):
        data = dict(paused_jobs=sorted(jids), engine=self.address, config_dir=self.tm.config_dir,
                    written_by='renderfarm.tractor.tractor_engine',
                    written_at=time.strftime('%Y-%m-%dT%H:%M:%S%z'))
        self.write_file(self.dispatch['state_file'], json.dumps(data, indent=2, sort_keys=True) + '\n', 0o644)

    def dispatcher(self):
        client = self.client(timeout=max(PROBE_TIMEOUT, min(30, self.p['timeout'])))
        return Dispatch(client, self.tm.record, self.p['confirm_timeout'], poll=CONFIRM_POLL)

    def confirmed(self, dispatch, what, method, *args):
        """Run a Dispatch step; its progress goes into the result, and so does a failure's detail."""
        try:
            return method(*args)
        except DispatchError as exc:
            error, details = str(exc), exc.details
        except (EngineUnavailable, EngineRefused, ReplyUnrecognised) as exc:
            error = '%s failed: %s. Nothing more was changed; the engine is left as it is' % (what, exc)
            details = dict(reply=getattr(exc, 'reply', None))
        finally:
            self.progress.extend('%s: %s' % (what, line) for line in dispatch.progress)
            self.warnings.extend(dispatch.warnings)
            dispatch.progress, dispatch.warnings = [], []
        self.tm.fail(error, dispatching=self.dispatch, progress=self.progress, **details)

    def set_dispatching(self, want, engine_up):
        pause = want == 'paused'
        if not engine_up:
            # check mode, engine to be started by this task: nothing to list yet
            self.tm.record('%s dispatching after the start (%s; the jobs cannot be listed before the engine runs)'
                           % ('pause' if pause else 'resume', self.p['dispatch_method']))
            return
        dispatch = self.dispatcher()
        if self.p['dispatch_method'] == 'engine_switch':
            # INVENTED request (fact sheet 6.4): only used when the user opts in with engine_switch.
            current = self.confirmed(dispatch, DISPATCH_STATE_QUERY, dispatch.client.dispatch_switch)
            self.dispatch['engine_paused'] = self.dispatch['engine_paused_before'] = current
            if current != pause and self.tm.record(DISPATCH_SWITCH_QUERY % (1 if pause else 0)):
                try:
                    self.dispatch['engine_paused'] = dispatch.client.dispatch_switch(pause)
                except (EngineUnavailable, EngineRefused, ReplyUnrecognised) as exc:
                    self.tm.fail('the engine-wide dispatch switch (%s) failed: %s. Its URL is not documented by '
                                 'Pixar; use dispatch_method=job_pause on engines that do not answer it'
                                 % (DISPATCH_SWITCH_QUERY % (1 if pause else 0), exc))
                if self.dispatch['engine_paused'] != pause:
                    self.tm.fail('the engine-wide dispatch switch reads back as paused=%s after it was set to %s'
                                 % (self.dispatch['engine_paused'], pause))
            elif current != pause:
                self.dispatch['engine_paused'] = pause
            dispatch.client.logout()
            return
        recorded = self.read_paused_jobs()
        if pause:
            paused_now, confirmed, live = self.confirmed(dispatch, 'pause the unfinished jobs', dispatch.pause)
            new = sorted(set(jid for jid in (recorded or []) if jid in live) | set(paused_now))
            self.dispatch.update(paused_now=paused_now, paused_jobs=new, confirmed=confirmed)
            if recorded is None or new != recorded:
                if self.tm.record('record paused jobs %s in %s' % (new, self.dispatch['state_file'])):
                    self.write_paused_jobs(new)
        else:
            if recorded is None:
                self.dispatch['paused_jobs'] = []
            else:
                self.dispatch['resumed_now'] = self.confirmed(dispatch, 'resume the jobs paused before',
                                                              dispatch.resume, recorded)
                self.dispatch['paused_jobs'] = []
                if self.tm.record('remove %s' % self.dispatch['state_file']):
                    try:
                        os.unlink(self.dispatch['state_file'])
                    except OSError as exc:
                        self.tm.fail('cannot remove %s: %s' % (self.dispatch['state_file'], exc))
        dispatch.client.logout()

    def retry_active(self, engine_up):
        if not engine_up:
            self.tm.record('tq --force --yes retry active (after the start)')
            return
        argv = [self.tm.tool('tq'), '--engine', self.address, '--user', self.p['engine_user'],
                '--force', '--yes', 'retry', 'active']
        if not os.access(argv[0], os.X_OK):
            self.tm.fail('%s is missing or not executable: retry_active needs the install\'s tq' % argv[0])

        def run_tq():
            if not self.tm.record(' '.join(argv)):
                return None
            env = {'TRACTOR_PASSWORD': self.p['engine_password']} if self.p['engine_password'] else {}
            rc, out, err = self.module.run_command(argv, cwd='/', environ_update=env)
            if rc != 0:
                self.tm.fail_command('tq retry active failed (rc=%s); the engine is left as it is' % rc,
                                     argv, rc, out, err)
            return len([line for line in out.splitlines() if line.rstrip().endswith(' retried')])

        dispatch = self.dispatcher()
        result = self.confirmed(dispatch, 'retry the active tasks', dispatch.retry_active, run_tq)
        dispatch.client.logout()
        self.retried = result['retried'] if result['retried'] is not None else len(result['tasks'])
        self.retry = dict(tasks=result['tasks'], commands=result['invocations'], confirmed=result['confirmed'])

    def queue_counts(self):
        """Task counts by state, summed over the live jobs' counters (tractorselect)."""
        dispatch = self.dispatcher()
        counts = self.confirmed(dispatch, 'count the tasks', dispatch.task_counts)
        dispatch.client.logout()
        return counts

    # -- the task -------------------------------------------------------------------------------
    def learn_version(self, seen):
        """A running engine whose version is unknown yet (e.g. still starting): wait for its answer."""
        deadline = time.monotonic() + max(1, self.p['timeout'])
        while True:
            probe = self.probe()
            if probe['version']:
                seen = dict(seen, version=probe['version'], build=probe['build'], probe=probe)
                return seen
            if seen['pid'] and not pid_alive(seen['pid']):
                return self.observe()
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL)
        self.fail_with_log('an engine runs (pid %s) but has not answered at %s within %s s, so its version is '
                           'unknown and the module will not restart it: %s'
                           % (seen['pid'], self.address, self.p['timeout'], probe['error']))

    def run(self):
        state = self.p['state']
        before = self.observe()
        if before['running'] and not before['managed'] and before['pid'] and self.manager != 'direct':
            self.warnings.append('the engine (pid %d) runs, but not under %s (started by hand or by another service '
                                 'manager?)' % (before['pid'], self.manager))
        if self.p['engine_args'] and self.manager != 'direct' and state in ('started', 'restarted'):
            self.warnings.append('engine_args are only used with service_manager=direct; the %s service takes its '
                                 'options from %s' % (self.manager, self.settings_path))
        if state == 'started' and before['running'] and not before['version']:
            before = self.learn_version(before)
        extras = bool(self.p['dispatching'] or self.p['retry_active'])
        if self.p['dispatching'] and self.p['dispatch_method'] == 'job_pause':
            self.recorded_before = self.read_paused_jobs() or []
        if extras and not before['running']:
            if state in ('stopped', 'killed'):
                self.warnings.append('no engine serves %s: dispatching/retry_active skipped' % self.tm.config_dir)
                extras = False
            elif state not in ('started', 'restarted'):
                self.tm.fail('dispatching and retry_active need a running engine; none serves %s at %s'
                             % (self.tm.config_dir, self.address))

        # The runbook's order: pause, retry active, then kill (or stop).
        if extras and state in ('stopped', 'killed'):
            self.extras(True)

        predicted = None
        if state in ('started', 'restarted'):
            self.preflight_start()
            if not before['running'] and before['probe']['answered']:
                self.tm.fail('%s is in use by something that is not a Tractor engine (%s): free the port or fix '
                             'ListenerPort' % (self.address, before['probe']['error']))
            version, build = self.expected
            other = before['running'] and (before['version'] != version or
                                           bool(build and before['build'] and before['build'] != build))
            if state == 'restarted' or not before['running'] or other:
                self.select_install()   # proven before anything is stopped
                if before['running']:
                    self.stop(before)
                self.start()
                predicted = dict(state='running', version=version, build=build)
            else:
                if self.select_install():
                    self.warnings.append('the service now starts %s; that takes effect at its next restart'
                                         % self.tm.install_dir)
                self.wait_healthy(version, build, started=False)
        elif state == 'stopped' and before['running']:
            self.stop(before)
            predicted = dict(state='stopped')
        elif state == 'killed' and before['running']:
            self.kill(before)
            predicted = dict(state='stopped')

        if extras and state not in ('stopped', 'killed'):
            # In check mode nothing was started: only an engine that already runs can be asked.
            self.extras(before['running'] if self.check else True)

        if self.check:
            after = dict(before)
            if predicted:
                after.update(predicted)
                after['running'] = predicted['state'] == 'running'
                if not after['running']:
                    after.update(pid=None, probe=dict(status=None))
                elif not before['running'] or predicted.get('version') != before['version']:
                    after.update(pid=None)
        elif predicted or self.p['dispatching']:
            after = self.observe()
        else:
            after = before
        self.finish(before, after)

    def extras(self, engine_up):
        if self.p['dispatching']:
            self.set_dispatching(self.p['dispatching'], engine_up)
        if self.p['retry_active']:
            self.retry_active(engine_up)

    def finish(self, before, after):
        shown = after if after['running'] else before
        before_desc, after_desc = self.describe(before), self.describe(after)
        if self.p['state'] in ('stopped', 'killed') and not after['running']:
            after_desc.update(version=None, build=None)
        if self.p['dispatch_method'] == 'job_pause' and not self.p['dispatching']:
            recorded = self.read_paused_jobs()
            self.dispatch['paused_jobs'] = recorded or []
        if self.p['dispatching'] and self.p['dispatch_method'] == 'job_pause':
            before_desc['paused_jobs'] = self.recorded_before
            after_desc['paused_jobs'] = self.dispatch['paused_jobs']
        if self.settings_diff:
            before_desc['service_settings'] = self.settings_diff['before']
            after_desc['service_settings'] = self.settings_diff['after']
        if self.dispatch['engine_paused'] is not None:
            before_desc['engine_paused'] = self.dispatch['engine_paused_before']
            after_desc['engine_paused'] = self.dispatch['engine_paused']
        # Task counts of the engine that serves now (not of one only predicted in check mode).
        tasks = {}
        if self.p['state'] in ('status', 'started', 'restarted') and after['running'] and \
                (not self.check or (before['running'] and after.get('pid') == before.get('pid'))):
            tasks = self.queue_counts()
        for warning in self.warnings:
            self.module.warn(warning)
        self.tm.exit(
            state='running' if after['running'] else 'stopped',
            version=shown.get('version'),
            build=shown.get('build'),
            previous_version=before.get('version') if before['running'] else None,
            pid=after.get('pid') if after['running'] else None,
            address=self.address,
            tasks=tasks,
            dispatching=self.dispatch,
            retried_tasks=self.retried,
            retry=self.retry,
            progress=self.progress,
            service_manager=dict(name=self.manager, reason=self.manager_reason),
            escalated=self.escalated,
            log_file=self.log_file,
            pidfile=self.pidfile,
            diff=dict(before=before_desc, after=after_desc),
        )


def argument_spec():
    spec = common_argument_spec()
    spec.update(
        state=dict(type='str', choices=['started', 'stopped', 'restarted', 'killed', 'status']),
        service_manager=dict(type='str', default='auto', choices=['auto', 'systemd', 'sysv', 'direct']),
        service_name=dict(type='str', default='tractor-engine'),
        service_settings=dict(type='path'),
        init_script=dict(type='path'),
        pidfile=dict(type='path'),
        log_file=dict(type='path'),
        engine_args=dict(type='list', elements='str', default=[]),
        start_paused=dict(type='bool', default=False),
        stop_timeout=dict(type='int', default=60),
        escalate=dict(type='bool', default=True),
        dispatching=dict(type='str', choices=['paused', 'running']),
        dispatch_method=dict(type='str', default='job_pause', choices=['job_pause', 'engine_switch']),
        paused_jobs_file=dict(type='path'),
        retry_active=dict(type='bool', default=False),
        confirm_timeout=dict(type='int', default=300),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), required_one_of=COMMON_REQUIRED_ONE_OF,
                           supports_check_mode=True)
    if module.params['state'] == 'status' and (module.params['dispatching'] or module.params['retry_active']):
        module.fail_json(msg='state=status only reports; drop dispatching/retry_active, or omit state to apply them '
                             'to the running engine')
    if module.params['stop_timeout'] < 0 or module.params['timeout'] < 1 or module.params['confirm_timeout'] < 1:
        module.fail_json(msg='stop_timeout must be >= 0, timeout and confirm_timeout >= 1 (seconds)')
    # It names a unit and /etc/init.d/<service_name>, which the module runs: no paths, no spaces.
    if not re.match(r'^[A-Za-z0-9@_.:-]+\Z', module.params['service_name']) or \
            module.params['service_name'].strip('.') == '':
        module.fail_json(msg='service_name must be a service name (letters, digits, @ _ . : -), not %r'
                             % module.params['service_name'])
    tm = TractorModule(module)
    EngineManager(tm).run()


if __name__ == '__main__':
    main()
