"""multi_engine, after side_effect collide.yml: the third engine, whose port is staging's, refused.

Runs after the scenario's tests/ (`verify collided`), because the attempt leaves one thing by
design: the staging playbook writes a staging engine's sparse site configuration (its
tractor.config and db.config) and creates its empty data directory before it reads every engine
of the machine to refuse collisions (playbooks/staging.yml, first play; preflight reads the
configuration it compares). Everything
else on the machine must be as converge left it: no process or job database of the third engine,
both engines the same processes with the same jobs, no file of the installs, the configuration,
the data or the backups changed.
"""

from __future__ import annotations

import json

from tractor_checks import STATE_CONVERGED, site_state, state_differences

CLASH_CONFIG = "/etc/tractor-clash"
CLASH_DATA = "/var/spool/tractor-clash"


def test_colliding_third_engine_refused_and_nothing_else_touched(host):
    # No engine process of render01-clash (its configuration directory names it), no database:
    # its data directory is there, empty.
    assert host.run(f"pgrep -f -- '--configdir[= ]{CLASH_CONFIG}'").rc == 1
    assert host.file(CLASH_DATA).is_directory
    assert host.check_output(f"ls -A {CLASH_DATA}") == ""

    before = json.loads(host.file(STATE_CONVERGED).content_string)
    after = site_state(host)
    # Its sparse configuration is all the attempt wrote.
    clash_files = sorted(path for path in after["files"] if path.startswith(CLASH_CONFIG + "/"))
    assert clash_files == [f"{CLASH_CONFIG}/db.config", f"{CLASH_CONFIG}/tractor.config"], clash_files
    differences = [line for line in state_differences(before, after)
                   if not line.startswith((f"/files/{CLASH_CONFIG}:", f"/files/{CLASH_CONFIG}/"))]
    assert not differences, "the refused engine changed render01:\n" + "\n".join(differences)
    # Both engines still answer, with their own versions (the same processes: no difference above).
    assert after["engines"]["render01"]["version"] == "2.2"
    assert after["engines"]["render01-staging"]["version"] == "2.4"
