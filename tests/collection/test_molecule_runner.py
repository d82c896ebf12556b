"""molecule/run.sh (make molecule, make molecule-all, make test): a failed scenario fails the run.

No containers: a fake `molecule` (the runner's MOLECULE hook) passes or fails each scenario as the
test says, and a fake `podman` answers the runner's image check. The real scenarios' failure
path (a verifier that expects the wrong version) was proven by hand; molecule/README.md says how.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "molecule" / "run.sh"

FAKE_MOLECULE = """#!/bin/sh
# Fake molecule: `... test --scenario-name NAME ...`; fails NAME when it is listed in $FAKE_FAIL.
while [ $# -gt 0 ]; do
    [ "$1" = --scenario-name ] && name="$2"
    shift
done
echo "fake molecule: scenario $name"
echo "$name" >> "$FAKE_RAN"
case " $FAKE_FAIL " in *" $name "*) echo "fake molecule: $name FAILED"; exit 3 ;; esac
exit 0
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def runner(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "molecule", FAKE_MOLECULE)
    _executable(bin_dir / "podman", "#!/bin/sh\nexit 0\n")  # `podman image exists IMAGE`: yes
    ran = tmp_path / "ran.txt"
    logs = tmp_path / "logs"

    def run(*scenarios: str, fail: tuple[str, ...] = (), jobs: int = 1) -> tuple[subprocess.CompletedProcess, list[str]]:
        env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", MOLECULE=str(bin_dir / "molecule"),
                   MOLECULE_LOG_DIR=str(logs), MOLECULE_WORK_DIR=str(tmp_path / "work"), FAKE_FAIL=" ".join(fail), FAKE_RAN=str(ran))
        env.pop("MOLECULE_JOBS", None)
        ran.write_text("")
        result = subprocess.run([str(RUNNER), "-j", str(jobs), "--", *scenarios], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=60, check=False)
        return result, ran.read_text().split()

    run.logs = logs
    return run


def _summary(stdout: str) -> dict[str, str]:
    """scenario -> passed / FAILED(rc) from the runner's closing table."""
    table = stdout.split("Molecule scenarios (")[-1]
    return {m.group(1): m.group(2) for m in re.finditer(r"^  (\w+)\s+(passed|FAILED\(\d+\))\s+\d+ s$", table, re.M)}


@pytest.mark.parametrize("jobs", [1, 2])
def test_all_passing_scenarios_pass(runner, jobs):
    result, ran = runner("default", "rollback", jobs=jobs)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(ran) == ["default", "rollback"]
    assert _summary(result.stdout) == {"default": "passed", "rollback": "passed"}


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failed_scenario_fails_the_run_and_the_others_still_run(runner, jobs):
    result, ran = runner("default", "backup_restore", "rollback", fail=("backup_restore",), jobs=jobs)
    assert result.returncode != 0, result.stdout + result.stderr
    # The scenarios after the failed one ran too, and the table says which failed.
    assert sorted(ran) == ["backup_restore", "default", "rollback"]
    assert _summary(result.stdout) == {"default": "passed", "backup_restore": "FAILED(3)", "rollback": "passed"}
    # Its log holds molecule's output, each line stamped with the time.
    log = (runner.logs / "backup_restore.log").read_text()
    assert re.search(r"^\d\d:\d\d:\d\d fake molecule: backup_restore FAILED$", log, re.M), log


def test_an_unknown_scenario_is_refused_before_anything_runs(runner):
    result, ran = runner("default", "no_such_scenario")
    assert result.returncode == 2
    assert "no scenario molecule/no_such_scenario" in result.stderr
    assert ran == []
