"""After `molecule check` (the converge playbook with --check): nothing changed on any host.

shared/prepare.yml saved each host's state at the end of prepare (tractor-site-state: engines,
job database parameters and jobs, services, packages, the files of the installs, the site
configuration, the data and backup directories, systemd's and sysconfig's files); check mode ran
right after it. Every scenario's test_sequence runs this file as `verify ../shared/tests/check`.
"""

from __future__ import annotations

from tractor_checks import STATE_PREPARED, assert_unchanged_since


def test_check_mode_changed_nothing(host):
    assert_unchanged_since(host, STATE_PREPARED, "check mode")


def test_check_mode_left_no_lock(host):
    assert not host.file("/var/spool/tractor/.renderfarm-tractor.lock").exists
