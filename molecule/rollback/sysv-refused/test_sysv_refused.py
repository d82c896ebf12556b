"""rollback, after side_effect sysv-refused.yml: an upgrade under a SysV script that hard-codes 2.2.

The script always starts 2.2, so tractor_engine refuses it before anything stops (phase 2 of the
upgrade checks the service in check mode): the same 2.2 engine process serves, and nothing the
site state watches changed (no backup, no drop-in, no settings).
"""

from __future__ import annotations

from tractor_checks import assert_unchanged_since, site_state

SAVED = "/var/lib/molecule/state-before-sysv.json"


def test_the_engine_was_never_stopped_and_nothing_changed(host):
    assert_unchanged_since(host, SAVED, "the refused upgrade")
    engine = next(iter(site_state(host)["engines"].values()))
    assert engine["answers"] and engine["version"] == "2.2"
