"""After Molecule's idempotence step (converge run a second time): nothing changed on the hosts.

Runs first of this scenario's tests (pytest takes the files in name order), before any test that
spools a job. Molecule's idempotence step judges Ansible's `changed` counts; this judges the hosts
against the state converge recorded at its end (shared/snapshot.yml): the same engine process and
version, the same jobs and job counter, the same files (no new backup, no lock left behind, no
rewritten settings).
"""

from __future__ import annotations

from tractor_checks import STATE_CONVERGED, assert_unchanged_since


def test_rerun_changed_nothing(host):
    assert_unchanged_since(host, STATE_CONVERGED, "the re-run")
