"""docs/examples/inventory.yml is what docs/inventory.md says it is, and the roles would accept it.

The inventory is loaded the way a user would look at it, with the venv's ``ansible-inventory
--list`` run from the repository root. The checks:

* groups and hosts: production and staging engines, all of them in ``tractor_engines``;
* ``report_dir`` lives in group ``all`` (the controller-side report play reads it);
* every variable the example sets is one the roles, the playbooks or ansible know, and its value
  passes the argument specs of the entry points that will read it;
* engines that share an ``ansible_host`` differ in what the preflight compares (listener port,
  PostgreSQL port, configuration directory, TractorDataDirectory, DBDataDir) - checked with the
  preflight's own ``tractor_collisions`` filter and the collection's own configuration reader -
  and also in command-log server port and service.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = Path("docs") / "examples" / "inventory.yml"
DOC = ROOT / "docs" / "inventory.md"

PRODUCTION = {"render01-prod", "render02-prod"}
STAGING = {"render01-staging"}
# Variables the playbooks (not the roles) read.
PLAYBOOK_VARS = {"tractor_become", "tractor_hosts", "staging_hosts", "upgrade_serial",
                 "upgrade_max_fail_percentage", "upgrade_batch_delay"}
# tractor-cmdlogger's port in the stock SiteCmdLogServerStartup (fact sheet 2.2).
STOCK_CMDLOG_PORT = 9180


def load_module(name: str, relative: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


filters = load_module("tractor_filters", "plugins/filter/tractor.py")
tractor_config = load_module("tractor_config", "plugins/module_utils/tractor_config.py")


def ansible_inventory(*extra: str) -> dict:
    tool = Path(sys.executable).parent / "ansible-inventory"
    if not tool.exists():
        pytest.fail(f"ansible-inventory not found next to {sys.executable}; run with .venv/bin/pytest")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    result = subprocess.run([str(tool), "-i", str(EXAMPLE), "--list", *extra], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def inventory() -> dict:
    return ansible_inventory()


@pytest.fixture(scope="module")
def exported() -> dict:
    """--export keeps group variables in their groups instead of folding them into the hosts."""
    return ansible_inventory("--export")


@pytest.fixture(scope="module")
def hostvars(inventory) -> dict:
    return inventory["_meta"]["hostvars"]


def group_hosts(inventory: dict, group: str) -> set:
    """Hosts of a group, its child groups included."""
    node = inventory.get(group, {})
    hosts = set(node.get("hosts", []))
    for child in node.get("children", []):
        hosts |= group_hosts(inventory, child)
    return hosts


def specs(role: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]


# --- groups and hosts ------------------------------------------------------------------------

def test_groups_and_hosts(inventory):
    assert group_hosts(inventory, "tractor_production") == PRODUCTION
    assert group_hosts(inventory, "tractor_staging") == STAGING
    # Staging engines are engines too: the preflight compares against group tractor_engines.
    assert group_hosts(inventory, "tractor_engines") == PRODUCTION | STAGING
    assert set(inventory["tractor_engines"]["children"]) == {"tractor_production", "tractor_staging"}
    assert group_hosts(inventory, "all") == PRODUCTION | STAGING


def test_report_dir_is_set_in_group_all(exported, hostvars):
    # The report play runs on localhost, which is in no engine group.
    assert exported["all"]["vars"]["report_dir"] == "/srv/tractor/reports"
    for group, node in exported.items():
        if group not in ("all", "_meta"):
            assert "report_dir" not in node.get("vars", {}), group
    assert all(v["report_dir"] == "/srv/tractor/reports" for v in hostvars.values())


def test_shared_settings_are_group_variables(exported):
    engine_vars = exported["tractor_engines"]["vars"]
    assert engine_vars["tractor_install_prefix"] == "/opt/pixar"
    assert engine_vars["tractor_become"] is True
    assert engine_vars["backup_dir"] == "/var/backups/tractor"
    assert (engine_vars["backup_keep_last"], engine_vars["backup_keep_days"]) == (7, 14)


# --- each engine -----------------------------------------------------------------------------

def test_versions_and_machines(hostvars):
    expected = {"render01-prod": ("render01.example.com", "2.2"),
                "render01-staging": ("render01.example.com", "2.4"),
                "render02-prod": ("render02.example.com", "2.2")}
    for host, (machine, version) in expected.items():
        assert hostvars[host]["ansible_host"] == machine
        # A quoted string: an unquoted 2.2 would be a float, and 2.10 would become 2.1.
        assert hostvars[host]["tractor_version"] == version and isinstance(hostvars[host]["tractor_version"], str)
        assert hostvars[host]["tractor_config_dir"].startswith("/")
        # The configuration directory outlives upgrades: it is not inside a versioned install.
        assert "/Tractor-" not in hostvars[host]["tractor_config_dir"]


def test_no_role_defaults_for_shared_variables_are_needed(hostvars):
    # tractor_version and tractor_config_dir are the only shared variables without a default.
    for host, hv in hostvars.items():
        assert {"tractor_version", "tractor_config_dir"} <= set(hv), host


def test_every_variable_is_known(hostvars):
    known = set(PLAYBOOK_VARS)
    for role in ("backup", "upgrade", "downgrade", "staging", "report", "preflight"):
        for spec in specs(role).values():
            known |= set(spec["options"])
    for host, hv in hostvars.items():
        unknown = sorted(n for n in hv if n not in known and not n.startswith("ansible_"))
        assert not unknown, f"{host}: variables no role or playbook reads: {unknown}"


def test_every_variable_is_explained_in_docs_inventory(hostvars):
    text = DOC.read_text(encoding="utf-8")
    names = {n for hv in hostvars.values() for n in hv}
    missing = sorted(n for n in names if not re.search(r"\b%s\b" % re.escape(n), text))
    assert not missing, f"docs/inventory.md does not mention {missing}"


ENTRY_POINTS_PER_GROUP = {
    "tractor_production": [("backup", "main"), ("upgrade", "main"), ("downgrade", "main")],
    "tractor_staging": [("staging", "configure"), ("staging", "main"), ("backup", "main")],
}


@pytest.mark.parametrize("group", sorted(ENTRY_POINTS_PER_GROUP))
def test_values_pass_the_argument_specs(inventory, hostvars, group):
    for host in group_hosts(inventory, group):
        for role, entry_point in ENTRY_POINTS_PER_GROUP[group]:
            options = specs(role)[entry_point]["options"]
            given = {k: v for k, v in hostvars[host].items() if k in options}
            # What the playbooks pass on the command line for these entry points.
            given.setdefault("upgrade_version", "2.4")
            given.setdefault("downgrade_version", "2.2")
            given = {k: v for k, v in given.items() if k in options}
            result = ArgumentSpecValidator(options).validate(given)
            assert not result.error_messages, (host, role, entry_point, result.error_messages)


# --- engines on one machine ------------------------------------------------------------------

def effective_config(hv: dict):
    """The merged configuration the preflight would read, as the collection's reader computes it.

    A production engine keeps the stock values (the example says so); a staging engine gets what
    the staging role's configure step writes from its staging_* variables.
    """
    config = tractor_config.SiteConfig("/nonexistent/install", "/nonexistent/config")
    cmdlog_port = STOCK_CMDLOG_PORT
    if "staging_data_dir" in hv:
        config.tractor.update({"TractorDataDirectory": hv["staging_data_dir"],
                               "ListenerPort": int(hv["staging_listener_port"]),
                               "EngineOwner": hv["staging_engine_owner"]})
        config.tractor.update(hv.get("staging_tractor_config", {}))
        config.db.update({"DBConnection": {"host": "localhost", "port": int(hv["staging_db_port"]),
                                           "dbname": "tractor"}})
        config.db.update(hv.get("staging_db_config", {}))
        cmdlog_port = int(hv["staging_cmdlog_port"])
    return config, cmdlog_port


def preflight_info(hv: dict) -> dict:
    """A tractor_info result of this engine, as far as tractor_collisions reads it (local disks)."""
    config, _cmdlog = effective_config(hv)

    def where(path):
        return {"path": path, "realpath": os.path.normpath(path), "network": False,
                "mount_point": "/", "mount_source": "/dev/sda1"}

    # tractor_info reports the machine's identity (/etc/machine-id); one id per machine here.
    return {"machine": {"id": "machine-id-of-" + hv["ansible_host"], "hostname": hv["ansible_host"].split(".")[0]},
            "config": {"listener_port": config.listener[1], "db_port": int(config.db_connection["port"])},
            "paths": {"config_dir": where(hv["tractor_config_dir"]), "data_dir": where(config.data_dir),
                      "db_data_dir": where(config.db_data_dir)}}


def with_info(hostvars: dict) -> dict:
    return {host: dict(hv, preflight_info=preflight_info(hv)) for host, hv in hostvars.items()}


def test_engines_sharing_a_machine(hostvars):
    machines: dict = {}
    for host, hv in hostvars.items():
        machines.setdefault(hv["ansible_host"], set()).add(host)
    assert machines == {"render01.example.com": {"render01-prod", "render01-staging"},
                        "render02.example.com": {"render02-prod"}}


def test_engines_on_one_machine_differ_in_what_the_preflight_compares(hostvars):
    prod, staging = hostvars["render01-prod"], hostvars["render01-staging"]
    prod_cfg, prod_cmdlog = effective_config(prod)
    stag_cfg, stag_cmdlog = effective_config(staging)
    assert prod_cfg.listener[1] != stag_cfg.listener[1]
    assert prod_cfg.db_connection["port"] != stag_cfg.db_connection["port"]
    assert prod["tractor_config_dir"] != staging["tractor_config_dir"]
    assert prod_cfg.data_dir != stag_cfg.data_dir
    assert prod_cfg.db_data_dir != stag_cfg.db_data_dir
    assert prod_cmdlog != stag_cmdlog
    # No directory of one engine lies inside another's.
    dirs = [prod["tractor_config_dir"], prod_cfg.data_dir, prod_cfg.db_data_dir]
    for mine in (staging["tractor_config_dir"], stag_cfg.data_dir, stag_cfg.db_data_dir):
        for theirs in dirs:
            assert not (mine + "/").startswith(theirs + "/") and not (theirs + "/").startswith(mine + "/"), \
                (mine, theirs)
    # The addresses the modules use match the listener ports.
    for hv, cfg in ((prod, prod_cfg), (staging, stag_cfg)):
        assert int(hv["tractor_engine_address"].rsplit(":", 1)[1]) == cfg.listener[1]


def test_engines_on_one_machine_do_not_share_a_service(hostvars):
    services = [(hv["tractor_service_manager"], hv["tractor_service_name"])
                for host, hv in hostvars.items() if hv["ansible_host"] == "render01.example.com"]
    managed = [name for manager, name in services if manager != "direct"]
    assert len(managed) == len(set(managed)), services
    assert len({name for _manager, name in services}) == len(services), services


def test_preflight_collision_check_passes_for_every_engine(hostvars):
    hv = with_info(hostvars)
    for me in hv:
        assert filters.tractor_collisions(hv, sorted(hv), me) == [], me


def test_preflight_collision_check_would_refuse_a_shared_port(hostvars):
    # The check above is live: the staging engine on production's port is refused.
    broken = {host: dict(v) for host, v in hostvars.items()}
    broken["render01-staging"]["staging_listener_port"] = 80
    problems = filters.tractor_collisions(with_info(broken), sorted(broken), "render01-staging")
    assert problems and "engine port 80" in problems[0]
