#!/usr/bin/env python3
"""`make demo`: the collection's main job on emulated engines on this machine (no containers).

1. installs emulated Tractor 2.2, and builds the 2.4 tarball a site would deploy;
2. starts a production engine on 2.2 with a blade and three jobs (one runs through the upgrade);
3. brings up a staging 2.4 engine beside it (renderfarm.tractor.staging, staged from the tarball);
4. backs production up (renderfarm.tractor.backup): the engine is down only while its database is
   copied, the archive is written from the copy while it serves again. The demo's database is
   small, so the archive is written at 4 MiB/s (backup_max_rate) to show the progress lines a
   large one prints;
5. upgrades production to 2.4 (renderfarm.tractor.upgrade): the same copy in phase 3, the archive
   of the 2.2 database written in phase 6 while 2.4 serves;
6. downgrades it back to 2.2 (renderfarm.tractor.downgrade): 2.4 kept the 2.2 schema, so the job
   database is kept, every job with it (the report says so; downgrade_restore=always restores instead);
7. shows the reports and the production queue, then stops everything (DEMO_KEEP=1 keeps it running).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
WORLD = Path(os.environ.get("DEMO_WORLD", "/var/tmp/tractor-demo"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def banner(text: str) -> None:
    print(f"\n\033[1m=== {text} ===\033[0m", flush=True)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("$ " + " ".join(str(a) for a in argv), flush=True)
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    proc = subprocess.run([str(a) for a in argv], cwd=REPO, env=env, check=False, **kwargs)
    if proc.returncode != 0:
        print(f"demo: step failed (exit {proc.returncode}); the world is kept in {WORLD} for a look", file=sys.stderr)
        sys.exit(proc.returncode)
    return proc


def playbook(name: str, inventory: Path, *extra: str) -> None:
    run([VENV_BIN / "ansible-playbook", name, "-i", inventory, *extra])


def main() -> int:
    owner = "tractor" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    inventory = WORLD / "inventory.yml"
    if inventory.exists():  # a previous demo that was kept or failed: stop it first
        subprocess.run([str(VENV_BIN / "ansible-playbook"), "demo/teardown.yml", "-i", str(inventory)],
                       cwd=REPO, capture_output=True, check=False)
    shutil.rmtree(WORLD, ignore_errors=True)
    prefix = WORLD / "opt" / "pixar"
    packages = WORLD / "packages"
    for path in (WORLD, prefix, packages):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o755)

    banner("1. Install emulated Tractor 2.2; build the 2.4 tarball a site deploys")
    run([VENV_BIN / "tractor-emulator", "install", "--version", "2.2", "--prefix", prefix])
    run([VENV_BIN / "tractor-emulator", "dist", "--version", "2.4", "--out", packages])
    tarball = glob.glob(str(packages / "Tractor-2.4_*.tar.gz"))[0]

    ports = {"production": free_port(), "production_db": free_port(), "staging": free_port(),
             "staging_db": free_port(), "staging_cmdlog": free_port()}
    engines = {
        "production": {"tractor_version": "2.2", "tractor_config_dir": str(WORLD / "production" / "config"),
                       "demo_data_dir": str(WORLD / "production" / "data"), "demo_port": ports["production"],
                       "demo_db_port": ports["production_db"]},
        "staging": {"tractor_version": "2.4", "tractor_config_dir": str(WORLD / "staging" / "config"),
                    "staging_data_dir": str(WORLD / "staging" / "data"), "staging_listener_port": ports["staging"],
                    "staging_db_port": ports["staging_db"], "staging_cmdlog_port": ports["staging_cmdlog"],
                    "staging_engine_owner": owner, "staging_package": tarball, "staging_package_remote": True,
                    "demo_data_dir": str(WORLD / "staging" / "data")},
    }
    common = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3",
              "tractor_become": False, "tractor_install_prefix": str(prefix), "tractor_service_manager": "direct",
              "demo_world": str(WORLD), "demo_owner": owner, "backup_dir": str(WORLD / "backups")}
    inventory.write_text(json.dumps({
        "all": {"vars": {"report_dir": str(WORLD / "reports")}},  # the controller's report play reads it too
        "tractor_engines": {"hosts": engines, "vars": common,
                            "children": {"tractor_staging": {"hosts": {"staging": {}}}}},
    }, indent=2))
    print(f"inventory: {inventory}")
    (WORLD / "backups").mkdir(mode=0o755)

    banner("2. Production engine on 2.2 with a blade and three jobs")
    playbook("demo/setup.yml", inventory)

    banner("3. Staging engine on 2.4 beside it (renderfarm.tractor.staging)")
    playbook("playbooks/staging.yml", inventory)

    banner("4. Back up production (renderfarm.tractor.backup): down only for the copy, archived while serving "
           "(at 4 MiB/s, to show its progress)")
    playbook("playbooks/backup.yml", inventory, "-e", "tractor_hosts=production", "-e", "backup_max_rate=4M")

    banner("5. Upgrade production to 2.4 (renderfarm.tractor.upgrade); the long job keeps running, the archive is written after the switch")
    playbook("playbooks/upgrade.yml", inventory, "-e", "tractor_hosts=production", "-e", "upgrade_version=2.4")

    banner("6. Downgrade production back to 2.2; the schema is unchanged, so the job database is kept")
    backups = sorted(glob.glob(str(WORLD / "backups" / "production" / "*.tgz")), key=os.path.getmtime)
    playbook("playbooks/downgrade.yml", inventory, "-e", "tractor_hosts=production",
             "-e", "tractor_version=2.4", "-e", "downgrade_version=2.2", "-e", f"downgrade_backup={backups[-1]}")

    banner("7. Production after the round trip")
    tq = prefix / "Tractor-2.2" / "bin" / "tq"
    run([tq, "--engine", f"127.0.0.1:{ports['production']}", "ping"])
    run([tq, "--engine", f"127.0.0.1:{ports['production']}", "jobs"])
    for report in sorted(glob.glob(str(WORLD / "reports" / "*" / "report.md")), key=os.path.getmtime):
        print(f"\n--- {report}")
        print(Path(report).read_text())

    if os.environ.get("DEMO_KEEP"):
        print(f"\nDEMO_KEEP is set: engines left running; inventory {inventory}; "
              f"stop them with: .venv/bin/ansible-playbook demo/teardown.yml -i {inventory}")
    else:
        banner("8. Stop the engines and the blade")
        playbook("demo/teardown.yml", inventory)
    print(f"\nDemo finished in {time.monotonic() - START:.0f} s. Reports: {WORLD / 'reports'}")
    return 0


START = time.monotonic()

if __name__ == "__main__":
    sys.exit(main())
