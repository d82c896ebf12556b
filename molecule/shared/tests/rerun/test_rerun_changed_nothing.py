"""After Molecule's idempotence step (converge run a second time): nothing changed on any host.

The side_effect ../shared/snapshot.yml saved each host's state (tractor-site-state) right after
converge. Molecule's idempotence step judges Ansible's `changed` counts; this judges the hosts:
the same engine process and version, the same jobs and job counter, the same files (no new
backup, no lock left behind, no rewritten settings). Run as `verify ../shared/tests/rerun`.
"""

from __future__ import annotations

from tractor_checks import STATE_CONVERGED, assert_unchanged_since


def test_rerun_changed_nothing(host):
    assert_unchanged_since(host, STATE_CONVERGED, "the re-run")
