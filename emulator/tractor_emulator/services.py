"""Service files shipped in ``<install>/lib/SystemServices/`` (fact sheet §7.3).

What the real product ships there, and how a site uses it (§7.3, DOC-SVC):

* systemd (shipped since 2.2 b1614082) in ``lib/SystemServices/systemd/``:
  ``tractor-engine.service`` (copied to ``/usr/lib/systemd/system``) plus its settings file
  ``tractor-engine`` (copied to ``/etc/sysconfig/tractor-engine``: installation directory,
  configuration directory, command-line options); the blade likewise with
  ``tractor-blade.service``, ``tractor-blade`` (-> ``/etc/sysconfig/tractor-blade``) and the
  drop-in ``90-tractor-blade-overrides.conf`` (->
  ``/etc/systemd/system/tractor-blade.service.d/``).  Logs go to journald.
* sysVinit in ``lib/SystemServices/``: ``pixar`` (appended to the shared settings file
  ``/etc/sysconfig/pixar``) and the init scripts ``tractor-engine`` / ``tractor-blade`` (copied to
  ``/etc/init.d/``, enabled with ``chkconfig``); ``status`` exits 3 when the service is not running
  (since 2.2 b1614082).

The texts of Pixar's files are not public (§9.4).  Everything below is INVENTED unless a comment
cites the fact sheet; the inventions are listed in emulator/README.md.  All paths are absolute and
computed from the install root, so an install under any prefix (or the .deb's
/opt/pixar/Tractor-<V>) gets service files pointing at itself.
"""

from __future__ import annotations

import os
import re

from . import versions

# §7.3 / DOC-RN: the systemd files and the LSB status code 3 appeared in 2.2 b1614082.
SYSTEMD_SINCE_BUILD = 1614082
STATUS3_SINCE_BUILD = 1614082
# §2.1 / DOC-RN: since 2.2 b1677499 the systemd configuration directory defaults to the
# installation's config/ directory; before that (and for sysVinit) the documented engine default
# /var/spool/tractor/config applies (§2.1 DOC-ENG, DOC-INIT).
SYSTEMD_INSTALL_CONFIG_SINCE_BUILD = 1677499
DOCUMENTED_CONFIG_DIR = "/var/spool/tractor/config"

# Where a site copies the files (§7.3).
SYSCONFIG_DIR = "/etc/sysconfig"
SYSTEMD_UNIT_DIR = "/usr/lib/systemd/system"
BLADE_DROPIN_DIR = "/etc/systemd/system/tractor-blade.service.d"
BLADE_DROPIN = "90-tractor-blade-overrides.conf"

# Characters that would need quoting in a unit file, an EnvironmentFile or a shell script.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+,:@/=-]*$")


def has_systemd(info: versions.TractorVersion) -> bool:
    return int(info.build) >= SYSTEMD_SINCE_BUILD


def systemd_config_dir(target_root: str, info: versions.TractorVersion) -> str:
    """Default --configdir of the systemd service (§2.1: install config/ since 2.2 b1677499)."""
    if int(info.build) >= SYSTEMD_INSTALL_CONFIG_SINCE_BUILD:
        return os.path.join(target_root, "config")
    return DOCUMENTED_CONFIG_DIR


# ---------------------------------------------------------------------------------------------
# systemd
# ---------------------------------------------------------------------------------------------

# INVENTED (§9.4): unit text.  Facts used: ExecStart runs <install>/bin/tractor-engine with the
# options from /etc/sysconfig/tractor-engine (§7.3), OPTIONS is the variable name seen in ArtFX's
# 2.4 unit (§7.3 ARTFX), the real 2.2 engine was launched through a shell (§7.3 LOG-22), stderr
# goes to the journal (§7.3 DOC-LOG), the engine starts as root to bind its port and then drops
# to EngineOwner (§7.3 DOC-INIT), so there is no User= line.
ENGINE_UNIT = """\
# tractor-engine.service -- Tractor {version} (build {build}) engine.
# renderfarm.tractor emulator: a stand-in for Pixar's unit, not Pixar's text.
#
# Install (fact sheet 7.3):
#   cp {root}/lib/SystemServices/systemd/tractor-engine.service {unit_dir}/
#   cp {root}/lib/SystemServices/systemd/tractor-engine {sysconfig_dir}/tractor-engine
#   systemctl daemon-reload; systemctl enable --now tractor-engine
# Settings (installation dir, config dir, options) live in {sysconfig_dir}/tractor-engine;
# the values below are only the defaults used when that file is missing.
# Logs: journalctl -u tractor-engine (unless OPTIONS has --log=FILE).

[Unit]
Description=Pixar Tractor {version} engine (renderfarm.tractor emulator)
Documentation=file://{root}/lib/SystemServices/systemd/tractor-engine.service
After=network-online.target remote-fs.target
Wants=network-online.target

[Service]
Type=simple
Environment="TRACTOR_INSTALL_DIR={root}"
Environment="TRACTOR_CONFIG_DIR={config_dir}"
Environment="OPTIONS="
EnvironmentFile=-{sysconfig_dir}/tractor-engine
# A shell so that TRACTOR_INSTALL_DIR from the settings file can pick the installation.
ExecStart=/bin/sh -c 'exec "$${{TRACTOR_INSTALL_DIR:-{root}}}/bin/tractor-engine" --configdir="$${{TRACTOR_CONFIG_DIR}}" $${{OPTIONS}}'
# SIGHUP makes the engine reopen its --log file (fact sheet 7.2).
ExecReload=/bin/kill -HUP $MAINPID
# Only the engine gets SIGTERM: it stops PostgreSQL itself through tractor-dbctl
# --stop-for-engine when DBShutdown is True, and leaves it running when it is False.
KillMode=process
TimeoutStopSec=120
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""

# INVENTED (§9.4): settings-file text and variable names (except OPTIONS, §7.3 ARTFX).
ENGINE_SYSCONFIG = """\
# {sysconfig_dir}/tractor-engine -- settings of tractor-engine.service
# Tractor {version} (build {build}), renderfarm.tractor emulator.
# Copy from {root}/lib/SystemServices/systemd/tractor-engine (fact sheet 7.3).
# Read by systemd (EnvironmentFile=): VAR=value lines, no shell expansion.

# The Tractor installation the service runs.
TRACTOR_INSTALL_DIR={root}

# The site configuration directory, passed as --configdir (fact sheet 2.1).  Since
# 2.2 b1677499 the systemd service defaults to the installation's config/ directory.
# Point it at a site directory holding only the files and keys you override.
TRACTOR_CONFIG_DIR={config_dir}

# More tractor-engine options (fact sheet 7.2), for example
#   OPTIONS="--log=/var/log/tractor-engine.log --debug"
# Without --log the engine logs to stderr, which systemd sends to the journal.
OPTIONS=""
"""

# INVENTED (§9.4): unit text.  Facts used: the blade finds its engine through --engine or the
# TRACTOR_ENGINE environment variable (§7.5).
BLADE_UNIT = """\
# tractor-blade.service -- Tractor {version} (build {build}) blade.
# renderfarm.tractor emulator: a stand-in for Pixar's unit, not Pixar's text.
#
# Install (fact sheet 7.3):
#   cp {root}/lib/SystemServices/systemd/tractor-blade.service {unit_dir}/
#   cp {root}/lib/SystemServices/systemd/tractor-blade {sysconfig_dir}/tractor-blade
#   mkdir -p {dropin_dir}
#   cp {root}/lib/SystemServices/systemd/{dropin} {dropin_dir}/
#   systemctl daemon-reload; systemctl enable --now tractor-blade

[Unit]
Description=Pixar Tractor {version} blade (renderfarm.tractor emulator)
Documentation=file://{root}/lib/SystemServices/systemd/tractor-blade.service
After=network-online.target remote-fs.target
Wants=network-online.target

[Service]
Type=simple
Environment="TRACTOR_INSTALL_DIR={root}"
Environment="OPTIONS="
EnvironmentFile=-{sysconfig_dir}/tractor-blade
ExecStart=/bin/sh -c 'exec "$${{TRACTOR_INSTALL_DIR:-{root}}}/bin/tractor-blade" $${{OPTIONS}}'
# Render commands are children of the blade; restarting the blade leaves them running.
KillMode=process
TimeoutStopSec=60

[Install]
WantedBy=multi-user.target
"""

# INVENTED (§9.4).
BLADE_SYSCONFIG = """\
# {sysconfig_dir}/tractor-blade -- settings of tractor-blade.service
# Tractor {version} (build {build}), renderfarm.tractor emulator.
# Copy from {root}/lib/SystemServices/systemd/tractor-blade (fact sheet 7.3).
# Read by systemd (EnvironmentFile=): VAR=value lines, no shell expansion.

# The Tractor installation the service runs.
TRACTOR_INSTALL_DIR={root}

# The engine, HOST[:PORT].  The blade reads TRACTOR_ENGINE itself; when it is not set it
# looks for the host name tractor-engine, port 80 (fact sheet 7.5).
#TRACTOR_ENGINE=tractor-engine:80

# More tractor-blade options (fact sheet 7.5), for example
#   OPTIONS="--log=/var/log/tractor-blade.log --profile=linux64"
OPTIONS=""
"""

# INVENTED (§9.4): only the file name and its location are known (§7.3).
BLADE_OVERRIDES = """\
# {dropin} -- site overrides for tractor-blade.service
# Tractor {version} (build {build}), renderfarm.tractor emulator.
# Install (fact sheet 7.3):
#   mkdir -p {dropin_dir}
#   cp {root}/lib/SystemServices/systemd/{dropin} {dropin_dir}/
#   systemctl daemon-reload
# Render commands inherit these limits from the blade.

[Unit]
# Shared project file systems should be mounted before the blade takes work.
After=remote-fs.target

[Service]
LimitNOFILE=65536
#LimitCORE=infinity
#Environment="TRACTOR_ENGINE=tractor-engine:80"
"""


# ---------------------------------------------------------------------------------------------
# sysVinit
# ---------------------------------------------------------------------------------------------

# INVENTED (§9.4): the shared settings file's text and variable names (§7.3 only says it is
# /etc/sysconfig/pixar and that the Tractor entries are appended to it).
PIXAR_SYSCONFIG = """\
# Tractor {version} (build {build}) entries for {sysconfig_dir}/pixar, the settings
# file shared by Pixar's init scripts (renderfarm.tractor emulator).
# Append them (fact sheet 7.3):
#   cat {root}/lib/SystemServices/pixar >> {sysconfig_dir}/pixar
# Sourced by /etc/init.d/tractor-engine and /etc/init.d/tractor-blade (sh syntax).

# The Tractor installation the init scripts run.
TRACTOR_INSTALL_DIR={root}
# The engine's site configuration directory (--configdir, fact sheet 2.1).
TRACTOR_CONFIG_DIR={config_dir}
# More tractor-engine options (fact sheet 7.2); --daemon and --pidfile are added by the script.
TRACTOR_ENGINE_OPTIONS="--log=/var/log/tractor-engine.log"
TRACTOR_ENGINE_PIDFILE=/var/run/tractor-engine.pid
# The blade's engine, HOST[:PORT] (fact sheet 7.5); empty: the blade's own default.
TRACTOR_ENGINE=""
# More tractor-blade options (fact sheet 7.5); --daemon and --pidfile are added by the script.
TRACTOR_BLADE_OPTIONS="--log=/var/log/tractor-blade.log"
TRACTOR_BLADE_PIDFILE=/var/run/tractor-blade.pid
"""

# INVENTED (§9.4): the script text.  Facts used: location and chkconfig use (§7.3), status exits 3
# when not running since 2.2 b1614082 (§7.3), the engine's --daemon/--pidfile/--configdir/--log
# options (§7.2), the blade's --daemon/--log and TRACTOR_ENGINE (§7.5).  The blade's --pidfile is
# INVENTED (DOC-BLADE lists --daemon but the fact sheet records no pid-file option for the blade).
# The exit code of status for a stopped service before b1614082 is INVENTED (1).
# PIXAR_SYSCONFIG as an environment override of the settings file path is INVENTED (a test hook).
INIT_SCRIPT = """\
#!/bin/sh
#
# {tool} -- SysV init script for the Tractor {version} (build {build}) {what}.
# renderfarm.tractor emulator: a stand-in for Pixar's script, not Pixar's text.
#
# Install (fact sheet 7.3):
#   cp {root}/lib/SystemServices/{tool} /etc/init.d/{tool}
#   cat {root}/lib/SystemServices/pixar >> {sysconfig_dir}/pixar
#   chkconfig {tool} on; /etc/init.d/{tool} start
#
# chkconfig: 345 {start_prio} {stop_prio}
# description: Pixar Tractor {what} (renderfarm.tractor emulator)
#
### BEGIN INIT INFO
# Provides:          {tool}
# Required-Start:    $network $remote_fs
# Required-Stop:     $network $remote_fs
# Default-Start:     3 4 5
# Default-Stop:      0 1 2 6
# Short-Description: Pixar Tractor {version} {what} (renderfarm.tractor emulator)
### END INIT INFO
#
# status exits 0 when running, 1 when dead with a stale pid file, {stopped_rc} when stopped.

# Defaults; the shared settings file overrides them.
TRACTOR_INSTALL_DIR={root}
TRACTOR_CONFIG_DIR={config_dir}
TRACTOR_ENGINE_OPTIONS="--log=/var/log/tractor-engine.log"
TRACTOR_ENGINE_PIDFILE=/var/run/tractor-engine.pid
TRACTOR_ENGINE=""
TRACTOR_BLADE_OPTIONS="--log=/var/log/tractor-blade.log"
TRACTOR_BLADE_PIDFILE=/var/run/tractor-blade.pid
TRACTOR_STOP_TIMEOUT={stop_timeout}
settings=${{PIXAR_SYSCONFIG:-{sysconfig_dir}/pixar}}
if [ -r "$settings" ]; then
    . "$settings"
fi

name={tool}
program="$TRACTOR_INSTALL_DIR/bin/{tool}"
pidfile=${pidfile_var}

read_pid() {{
    pid=
    if [ -s "$pidfile" ]; then
        read -r pid < "$pidfile" || true
    fi
    case "$pid" in
        ''|*[!0-9]*) pid=; return 1 ;;
    esac
    return 0
}}

running() {{
    read_pid || return 1
    kill -0 "$pid" 2>/dev/null || [ -d "/proc/$pid" ]
}}

start() {{
    if running; then
        echo "$name is already running (pid $pid)."
        return 0
    fi
    if [ ! -x "$program" ]; then
        echo "$name: $program not found or not executable." >&2
        return 5
    fi
    rm -f "$pidfile"
    printf 'Starting %s: ' "$name"
{start_command}
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "failed (exit $rc)."
        return 1
    fi
    # --daemon returns at once; wait for the pid file of the detached process.
    tries=0
    while [ "$tries" -lt 10 ]; do
        if running; then
            echo "ok (pid $pid)."
            return 0
        fi
        tries=$((tries + 1))
        sleep 1
    done
    echo "failed (no live process in $pidfile)."
    return 1
}}

stop() {{
    if ! running; then
        rm -f "$pidfile"
        echo "$name is not running."
        return 0
    fi
    printf 'Stopping %s (pid %s): ' "$name" "$pid"
    kill -TERM "$pid" 2>/dev/null
{stop_note}    waited=0
    while [ "$waited" -lt "$TRACTOR_STOP_TIMEOUT" ]; do
        if ! kill -0 "$pid" 2>/dev/null && [ ! -d "/proc/$pid" ]; then
            rm -f "$pidfile"
            echo "ok."
            return 0
        fi
        waited=$((waited + 1))
        sleep 1
    done
    echo "failed (still running after $TRACTOR_STOP_TIMEOUT s)."
    return 1
}}

status() {{
    if running; then
        echo "$name (pid $pid) is running."
        return 0
    fi
    if [ -f "$pidfile" ]; then
        echo "$name is dead but $pidfile exists."
        return 1
    fi
    echo "$name is stopped."
    return {stopped_rc}
}}

case "$1" in
    start) start ;;
    stop) stop ;;
    restart) stop && start ;;
    try-restart|condrestart)
        if running; then stop && start; else exit 0; fi ;;
    status) status ;;
    *)
        echo "Usage: $0 {{start|stop|restart|try-restart|status}}" >&2
        exit 2 ;;
esac
exit $?
"""

ENGINE_START = """\
    "$program" --configdir="$TRACTOR_CONFIG_DIR" --daemon --pidfile="$pidfile" \\
        $TRACTOR_ENGINE_OPTIONS"""

BLADE_START = """\
    if [ -n "$TRACTOR_ENGINE" ]; then
        TRACTOR_ENGINE="$TRACTOR_ENGINE"; export TRACTOR_ENGINE
    else
        unset TRACTOR_ENGINE
    fi
    "$program" --daemon --pidfile="$pidfile" $TRACTOR_BLADE_OPTIONS"""

ENGINE_STOP_NOTE = """\
    # The engine stops PostgreSQL through tractor-dbctl --stop-for-engine before it exits.
"""


def _check_path(path: str) -> str:
    if not _SAFE_PATH.match(path):
        raise ValueError(
            f"install root {path!r} must be an absolute path without spaces, quotes, '$' or '%' "
            "(it is written into systemd units, settings files and shell scripts)"
        )
    return path


def _write(path: str, text: str, mode: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def render(target_root: str, info: versions.TractorVersion) -> dict[str, tuple[str, int]]:
    """The files under lib/SystemServices/: {relative path: (text, mode)}."""
    target_root = _check_path(os.path.normpath(target_root))
    common = {
        "root": target_root,
        "version": info.version,
        "build": info.build,
        "sysconfig_dir": SYSCONFIG_DIR,
        "unit_dir": SYSTEMD_UNIT_DIR,
        "dropin_dir": BLADE_DROPIN_DIR,
        "dropin": BLADE_DROPIN,
    }
    files: dict[str, tuple[str, int]] = {}
    if has_systemd(info):
        sd = dict(common, config_dir=_check_path(systemd_config_dir(target_root, info)))
        files["systemd/tractor-engine.service"] = (ENGINE_UNIT.format(**sd), 0o644)
        files["systemd/tractor-engine"] = (ENGINE_SYSCONFIG.format(**sd), 0o644)
        files["systemd/tractor-blade.service"] = (BLADE_UNIT.format(**sd), 0o644)
        files["systemd/tractor-blade"] = (BLADE_SYSCONFIG.format(**sd), 0o644)
        files[f"systemd/{BLADE_DROPIN}"] = (BLADE_OVERRIDES.format(**sd), 0o644)

    init = dict(common, config_dir=DOCUMENTED_CONFIG_DIR,
                stopped_rc=3 if int(info.build) >= STATUS3_SINCE_BUILD else 1)
    files["pixar"] = (PIXAR_SYSCONFIG.format(**init), 0o644)
    files["tractor-engine"] = (INIT_SCRIPT.format(
        **init, tool="tractor-engine", what="engine", start_prio=95, stop_prio="05",
        stop_timeout=120, pidfile_var="TRACTOR_ENGINE_PIDFILE",
        start_command=ENGINE_START, stop_note=ENGINE_STOP_NOTE), 0o755)
    files["tractor-blade"] = (INIT_SCRIPT.format(
        **init, tool="tractor-blade", what="blade", start_prio=96, stop_prio="04",
        stop_timeout=60, pidfile_var="TRACTOR_BLADE_PIDFILE",
        start_command=BLADE_START, stop_note=""), 0o755)
    return files


def write_system_services(root: str, info: versions.TractorVersion, *,
                          target_root: str | None = None) -> None:
    """Write ``<root>/lib/SystemServices/`` (§7.3).

    ``target_root`` is the path the files refer to; it defaults to ``root`` (an install used in
    place).  dist.py writes a staging tree whose files must name /opt/pixar/Tractor-<V>.
    Files this version does not ship (systemd before 2.2 b1614082) are removed if present.
    """
    base = os.path.join(root, "lib", "SystemServices")
    files = render(target_root or os.path.abspath(root), info)
    for rel, (text, mode) in files.items():
        _write(os.path.join(base, rel), text, mode)
    systemd_dir = os.path.join(base, "systemd")
    if not has_systemd(info) and os.path.isdir(systemd_dir):
        for name in os.listdir(systemd_dir):
            os.unlink(os.path.join(systemd_dir, name))
        os.rmdir(systemd_dir)
