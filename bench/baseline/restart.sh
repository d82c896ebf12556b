#!/bin/bash
# Baseline for bench section 2: the bare restart of an engine, as a person would type it.
#   restart.sh INSTALL_DIR CONFIG_DIR PIDFILE LOGFILE
# Stops the engine of PIDFILE with SIGTERM (the engine stops its PostgreSQL on exit), waits for
# it to exit, and starts INSTALL_DIR's tractor-engine on the same site as the tractor_engine
# module's direct service manager does. It does not wait for the new engine: the bench's
# poller sees when it answers.
set -euo pipefail
install_dir=$1 config_dir=$2 pidfile=$3 logfile=$4
pid=$(cat "$pidfile")
kill -TERM "$pid"
while kill -0 "$pid" 2>/dev/null && ! grep -q '^Z' <(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null); do
    sleep 0.05
done
rm -f "$pidfile"
"$install_dir/bin/tractor-engine" --configdir="$config_dir" --daemon --pidfile="$pidfile" --log="$logfile"
