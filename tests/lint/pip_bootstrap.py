"""Give ansible-test the pip bootstrap it would download, from PyPI instead.

``ansible-test sanity`` runs each sanity test in a virtualenv of its own (under
``~/.ansible/test/venv``), created without pip. It puts pip into it with a ``get-pip.py`` that it
downloads from https://ci-files.testing.ansible.com, and caches it as
``~/.ansible/test/cache/get_pip_<version>.py``. That host is unreachable here (only PyPI is), so
this script writes that cache file itself: a small stand-in for get-pip.py that runs pip from the
pip wheel of exactly the version ansible-test asks for, downloaded from PyPI with pip. ansible-test
then installs its own pinned sanity requirements (ansible_test/_data/requirements/sanity.*.txt)
from PyPI as usual.

Run it with the Python of the venv whose ansible-test will run (``make lint`` does, for .venv and
.venv-2.19). It is idempotent.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import tempfile

import ansible_test

STUB = '''\
"""get-pip stand-in written by renderfarm.tractor tests/lint/pip_bootstrap.py: runs pip {version}
from its wheel (from PyPI) to install the packages ansible-test names (pip=={version})."""
import sys
sys.path.insert(0, {wheel!r})
from pip._internal.cli.main import main
# get-pip.py's own options (it installs no setuptools or wheel unless asked); pip has none such.
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall"] + args))
'''


def wanted_pip_version() -> str:
    """The pip version ansible-test bootstraps (python_requirements.get_venv_packages)."""
    source = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
    match = re.search(r"default_packages = dict\(\s*pip='([0-9.]+)'", source.read_text(encoding="utf-8"))
    if not match:
        sys.exit(f"pip_bootstrap: cannot find the pip version in {source}")
    return match.group(1)


def main() -> int:
    version = wanted_pip_version()
    cache = pathlib.Path(os.path.expanduser("~/.ansible/test/cache"))
    script = cache / f"get_pip_{version.replace('.', '_')}.py"
    wheel = cache / f"pip-{version}-py3-none-any.whl"
    cache.mkdir(parents=True, exist_ok=True)
    # `make lint` runs ansible-test on two Pythons at once, and other checkouts may share this
    # cache: the wheel and the script appear under their names only when complete (os.replace).
    if not wheel.is_file():
        with tempfile.TemporaryDirectory(dir=cache, prefix=".pip-download-") as tmp:
            # The pip pin of constraints.txt is the venvs' own pip; this one is ansible-test's
            # choice, so no -c here (the two would conflict).
            subprocess.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
                            "--quiet", "--no-deps", "--only-binary=:all:", "--dest", tmp, f"pip=={version}"],
                           check=True)
            os.replace(os.path.join(tmp, wheel.name), wheel)
    text = STUB.format(version=version, wheel=str(wheel))
    if not script.is_file() or script.read_text(encoding="utf-8") != text:
        fd, tmp_script = tempfile.mkstemp(dir=cache, prefix=".get_pip-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp_script, 0o644)
        os.replace(tmp_script, script)
    print(f"ansible-test pip {version} bootstrap: {script}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
