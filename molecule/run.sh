#!/usr/bin/env bash
# Runs Molecule scenarios and prints how long each took.
#
#   molecule/run.sh [-j N] [molecule test options] -- SCENARIO...
#
# `make molecule SCENARIO=name` and `make molecule-all` call this after `make venv image
# collections`; it can also be run by hand afterwards. Every scenario runs even when another one
# failed; the exit status is non-zero when any failed. Each scenario's full output is written to
# .cache/molecule-logs/<scenario>.log, every line stamped with the time of day.
#
# -j N (or MOLECULE_JOBS=N) runs up to N scenarios at once, in the order given (put the longest
# first). Their containers have distinct names, so they do not meet. With one job the output
# goes to the console as it comes; with more, each scenario's result is printed when it ends, and
# the end of a failed scenario's log after all have ended.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"

jobs="${MOLECULE_JOBS:-1}"
args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case "$1" in
        -j) jobs="$2"; shift 2 ;;
        -j*) jobs="${1#-j}"; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
[ "${1:-}" = "--" ] && shift
if [ $# -eq 0 ]; then
    echo "usage: $0 [-j N] [molecule test options] -- SCENARIO..." >&2
    exit 2
fi

# The molecule command (the runner's own test, tests/collection/test_molecule_runner.py, puts a
# fake one here) and where the logs go.
MOLECULE="${MOLECULE:-molecule}"
LOG_DIR="${MOLECULE_LOG_DIR:-.cache/molecule-logs}"

# Molecule must find ansible-config, pytest (testinfra) and tractor-emulator on PATH.
export PATH="$repo/.venv/bin:$PATH"
# containers.podman from `make collections`, renderfarm.tractor from the .collections link to this
# checkout; nothing from the system or ~/.ansible.
export ANSIBLE_COLLECTIONS_PATH="$repo/.cache/collections:$repo/.collections"
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=False
# The scenarios live in molecule/ (the collection layout would look in extensions/molecule).
export MOLECULE_GLOB="molecule/*/molecule.yml"
# The image `make image` built for the current recipe.
RENDERFARM_TRACTOR_IMAGE="$(molecule/image/build.sh --name)"
export RENDERFARM_TRACTOR_IMAGE
if ! podman image exists "$RENDERFARM_TRACTOR_IMAGE"; then
    echo "$0: image $RENDERFARM_TRACTOR_IMAGE is missing; run 'make image'" >&2
    exit 1
fi
export ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}"
export PY_COLORS="${PY_COLORS:-0}"
# Live output through the pipe.
export PYTHONUNBUFFERED=1

mkdir -p "$LOG_DIR"
for scenario in "$@"; do
    if [ ! -f "molecule/$scenario/molecule.yml" ]; then
        echo "$0: no scenario molecule/$scenario (there are: $(cd molecule && ls -d */molecule.yml | sed 's,/molecule.yml,,' | tr '\n' ' '))" >&2
        exit 2
    fi
done

# stamp LOG CONSOLE: each input line into LOG with the time of day it arrived, and to stdout too
# when CONSOLE is 1. (A shell loop, not awk: Debian's mawk reads its input in blocks, so the
# stamps would be the time a block arrived.)
stamp() {
    local line
    : > "$1"
    while IFS= read -r line || [ -n "$line" ]; do
        printf '%(%H:%M:%S)T %s\n' -1 "$line" >> "$1"
        [ "$2" = 1 ] && printf '%s\n' "$line"
    done
    return 0
}

# run_one SCENARIO CONSOLE: molecule test; the log gets stamped lines, the console (when CONSOLE
# is 1) the plain ones. Writes "<exit status> <seconds>" to the scenario's .result file.
run_one() {
    local scenario="$1" console="$2" log="$LOG_DIR/$1.log" start=$SECONDS rc
    # A fresh ephemeral directory (inventory, Molecule's state, the playbooks' reports) per run:
    # Molecule's own is keyed by the checkout's name only, and a run that was killed leaves its
    # state there ("created"), which would make the next run skip create. The test sequences
    # start with create, not destroy: the create playbook replaces stale containers.
    export MOLECULE_EPHEMERAL_DIRECTORY="${MOLECULE_WORK_DIR:-$repo/.cache/molecule}/$scenario"
    rm -rf "$MOLECULE_EPHEMERAL_DIRECTORY"
    "$MOLECULE" --base-config molecule/config.yml test --scenario-name "$scenario" "${args[@]}" 2>&1 \
        | stamp "$log" "$console"
    rc=${PIPESTATUS[0]}
    echo "$rc $((SECONDS - start))" > "$LOG_DIR/$scenario.result"
    return "$rc"
}

line() {  # line SCENARIO: the summary line of a finished scenario
    local rc took
    read -r rc took < "$LOG_DIR/$1.result"
    printf '%-16s %-10s %5d s' "$1" "$([ "$rc" -eq 0 ] && echo passed || echo "FAILED($rc)")" "$took"
}

total_start=$SECONDS
failed=()
if [ "$jobs" -le 1 ]; then
    for scenario in "$@"; do
        echo "=== molecule scenario $scenario (log: $LOG_DIR/$scenario.log)"
        run_one "$scenario" 1 || failed+=("$scenario")
        echo "=== molecule scenario $(line "$scenario")"
    done
else
    declare -A running=()
    queue=("$@")
    while [ ${#queue[@]} -gt 0 ] || [ ${#running[@]} -gt 0 ]; do
        while [ ${#queue[@]} -gt 0 ] && [ ${#running[@]} -lt "$jobs" ]; do
            scenario="${queue[0]}"; queue=("${queue[@]:1}")
            run_one "$scenario" 0 &
            running[$!]="$scenario"
            echo "=== molecule scenario $scenario started $(date +%T) (log: $LOG_DIR/$scenario.log)"
        done
        wait -n -p done_pid "${!running[@]}"
        scenario="${running[$done_pid]}"
        unset "running[$done_pid]"
        read -r rc _ < "$LOG_DIR/$scenario.result"
        [ "$rc" -eq 0 ] || failed+=("$scenario")
        echo "=== molecule scenario $(line "$scenario") (ended $(date +%T))"
    done
    for scenario in "${failed[@]}"; do
        echo
        echo "=== molecule scenario $scenario FAILED; the end of $LOG_DIR/$scenario.log:"
        tail -n 80 "$LOG_DIR/$scenario.log"
    done
fi

echo
echo "Molecule scenarios (image $RENDERFARM_TRACTOR_IMAGE, $jobs at a time):"
for scenario in "$@"; do echo "  $(line "$scenario")"; done
printf '  %-16s %-10s %5d s\n' "total" "" "$((SECONDS - total_start))"
[ ${#failed[@]} -eq 0 ]
