#!/bin/bash
# Baseline for bench section 4: the runbook's nine downgrade steps (fact sheet §8) as a plain
# script, on the same engine the downgrade playbook runs on. No checks beyond what each tool
# does itself, no lock, no report: what a person would paste from the runbook.
#   downgrade.sh OLD_INSTALL CONFIG_DIR DATA_DIR PORT BACKUP OLD_VERSION
# The EngineOwner's tools run through runuser when this runs as root.
set -euo pipefail
old_install=$1 config_dir=$2 data_dir=$3 port=$4 backup=$5 old_version=$6
engine=127.0.0.1:$port
pidfile=$data_dir/tractor-engine.pid
as_owner=()
if [ "$(id -u)" = 0 ]; then as_owner=(runuser -u tractor --); fi
dbctl() { "${as_owner[@]}" "$old_install/bin/tractor-dbctl" --configdir "$config_dir" "$@"; }
tq() { "$old_install/bin/tq" --engine "$engine" --user root "$@"; }

# 1. pause dispatching: pause every unfinished job (what the collection's default job_pause does)
tq --force --yes pause "not done and not paused" >/dev/null
# 2. retry every active task
tq --force --yes retry active >/dev/null
# 3. kill the engine
pid=$(cat "$pidfile")
kill -KILL "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
rm -f "$pidfile"
# 4. destroy the job database (the killed engine left PostgreSQL running)
dbctl --stop 2>/dev/null
dbctl --destroy 2>/dev/null
# 5. restore the backup
dbctl --restore "$backup" 2>/dev/null
# 6. start the database for the old engine, without a schema upgrade
dbctl --start-for-engine --no-auto-upgrade 2>/dev/null
# 7. note the last used job id; remove the command logs of higher ones
last=$(dbctl --show-params 2>/dev/null | sed -n 's/^jidcounter = //p')
for dir in "$data_dir"/cmd-logs/*/J*; do
    [ -d "$dir" ] || continue
    jid=${dir##*/J}
    if [ "$jid" -gt "$last" ]; then rm -rf "$dir"; fi
done
# 8. (set the job counter: not needed, the restored counter is kept, as the playbook's default)
# 9. start the old engine and wait until it answers as the old version
"$old_install/bin/tractor-engine" --configdir="$config_dir" --daemon --pidfile="$pidfile" \
    --log="$data_dir/engine.log"
until curl -sf -o /dev/null -D - "http://$engine/Tractor/ctrl?q=status" | grep -q "^Server: Pixar_Tractor/$old_version "; do
    sleep 0.05
done
