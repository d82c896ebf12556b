"""multi_engine, after side_effect collide.yml: the third engine, whose port is staging's, refused.

Runs after the scenario's tests/ (`verify collided`). The staging playbook reads every engine of
the machine, the new one as `configure` would write it, before it writes anything
(playbooks/staging.yml, first play), so the refused engine leaves nothing behind: no
configuration, no data directory, no process or job database, and every file of the installs, the
configuration, the data and the backups as converge left them.
"""

from __future__ import annotations

from tractor_checks import STATE_CONVERGED, assert_unchanged_since, site_state

CLASH_CONFIG = "/etc/tractor-clash"
CLASH_DATA = "/var/spool/tractor-clash"


def test_colliding_third_engine_refused_and_nothing_else_touched(host):
    # No engine process of render01-clash (its configuration directory names it), nothing written.
    assert host.run(f"pgrep -f -- '--configdir[= ]{CLASH_CONFIG}'").rc == 1
    assert not host.file(CLASH_CONFIG).exists
    assert not host.file(CLASH_DATA).exists

    assert_unchanged_since(host, STATE_CONVERGED, "the refused engine")
    after = site_state(host)
    # Both engines still answer, with their own versions (the same processes: no difference above).
    assert after["engines"]["render01"]["version"] == "2.2"
    assert after["engines"]["render01-staging"]["version"] == "2.4"
