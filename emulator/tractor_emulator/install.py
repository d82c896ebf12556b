"""Lay out an emulated Tractor install as a real one is laid out (fact sheet §7.1).

``install(version, prefix)`` writes ``<prefix>/Tractor-<version>/`` with:

* ``bin/`` -- thin launchers pinned to the version (tractor-engine, tractor-dbctl, tq,
  tractor-blade, tractor-spool);
* ``config/`` -- the stock tractor.config, db.config, blade.config, crews.config, limits.config;
* ``lib/python/tractor_emulator/`` -- a copy of this package, so the install needs nothing but a
  Python 3 interpreter and the host's PostgreSQL server binaries (the real product bundles its own
  Python and PostgreSQL under lib/, §1.1, §7.1);
* ``lib/SystemServices/`` -- service files (see services.py, §7.3).
"""

from __future__ import annotations

import os
import shutil
import stat

from . import config, versions

LAUNCHED_TOOLS = ("tractor-engine", "tractor-dbctl", "tq", "tractor-blade", "tractor-spool")

LAUNCHER = """\
#!/bin/sh
# {tool} -- Tractor {version} (build {build}), renderfarm.tractor emulator launcher.
# Pinned to this version; finds its install root from its own location as the real tools do.
root=$(cd "$(dirname "$0")/.." && pwd -P)
if [ -n "$TRACTOR_EMULATOR_PYTHON" ]; then py=$TRACTOR_EMULATOR_PYTHON
elif [ -x /usr/bin/python3 ]; then py=/usr/bin/python3
else py=python3
fi
PYTHONPATH="$root/lib/python" exec "$py" -m tractor_emulator.launch \\
    --tractor-version {version} --install-root "$root" {tool} "$@"
"""

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def install_dir_name(version: str) -> str:
    return f"Tractor-{version}"


def _write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _copy_package(dest: str) -> None:
    if os.path.exists(dest):
        shutil.rmtree(dest)
    shutil.copytree(PACKAGE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for dirpath, dirnames, filenames in os.walk(dest):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)


def install(version: str, prefix: str) -> str:
    """Write (or refresh) ``<prefix>/Tractor-<version>`` and return its path."""
    info = versions.get(version)
    root = os.path.join(os.path.abspath(prefix), install_dir_name(version))
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    for tool in LAUNCHED_TOOLS:
        text = LAUNCHER.format(tool=tool, version=info.version, build=info.build)
        _write(os.path.join(root, "bin", tool), text, 0o755)
    for name in config.STOCK_FILES:
        _write(os.path.join(root, "config", name), config.stock_text(name, info.version))
    _copy_package(os.path.join(root, "lib", "python", "tractor_emulator"))
    _write(os.path.join(root, "lib", "python", "tractor_emulator", "_pinned.py"),
           f'"""Written by install(): the version this copy was installed as."""\nVERSION = "{info.version}"\n')
    try:
        from . import services
    except ImportError:  # pragma: no cover - services.py is part of the package
        services = None
    if services is not None:
        services.write_system_services(root, info)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
    return root


def is_executable(path: str) -> bool:
    return os.path.isfile(path) and bool(os.stat(path).st_mode & stat.S_IXUSR)
