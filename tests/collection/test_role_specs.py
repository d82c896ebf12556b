"""Each role's meta/argument_specs.yml agrees with its defaults/main.yml and with the preflight.

ansible validates these specs when a role (or a ``tasks_from`` entry point) starts, so a wrong type
or a missing required variable breaks the roles; a spec default that differs from the real default
misleads everyone who reads ``ansible-doc -t role``. The checks:

* every variable of a role's defaults/main.yml is an option of every entry point of the role,
  with the same default and a type that fits it;
* an option with a default is either in defaults/main.yml (same value) or one of the shared
  ``tractor_*`` inventory variables, whose defaults are those the preflight role's "Resolve this
  engine's settings" task applies (parsed from that task, not copied here);
* no defaults/main.yml sets a shared ``tractor_*`` variable (the preflight is the one place);
* every entry point that runs the preflight documents all shared variables the same way;
* the specs are ones ansible accepts, and their ``O(...)`` references name options of the same
  entry point.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

ROOT = Path(__file__).resolve().parents[2]
ROLES_DIR = ROOT / "roles"

# The entry points meant to be called (role -> entry points); each is a tasks/<name>.yml.
ENTRY_POINTS = {
    "preflight": {"main"},
    "backup": {"main", "run", "copy", "finish"},
    "upgrade": {"main", "stage"},
    "downgrade": {"main", "run"},
    "staging": {"main", "configure", "plan"},
    "report": {"main", "record"},
}
# Shared inventory variables the preflight asserts instead of defaulting.
SHARED_REQUIRED = {"tractor_version", "tractor_config_dir"}
# YAML value types that fit each argument spec type.
TYPE_FITS = {
    "str": (str,),
    "path": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "dict": (dict,),
    "list": (list,),
}


def load(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def role_defaults(role: str) -> dict:
    path = ROLES_DIR / role / "defaults" / "main.yml"
    return (load(path) or {}) if path.exists() else {}


def role_specs(role: str) -> dict:
    return load(ROLES_DIR / role / "meta" / "argument_specs.yml")["argument_specs"]


def same_value(a, b) -> bool:
    """Equal and of the same YAML type (1 is not 1.0, 0 is not false)."""
    return type(a) is type(b) and a == b


def jinja_literal(text: str):
    """A Jinja literal such as '', 'root', 120 or false, as a Python value."""
    return ast.literal_eval(re.sub(r"\b(true|false|none)\b",
                                   lambda m: {"true": "True", "false": "False", "none": "None"}[m.group(1)],
                                   text.strip()))


def preflight_shared_defaults() -> dict:
    """Shared tractor_* variable -> default, from the preflight's "Resolve this engine's settings".

    A variable whose default is computed (tractor_install_dir) maps to ``None``.
    """
    tasks = load(ROLES_DIR / "preflight" / "tasks" / "main.yml")
    resolve = [t for t in tasks if "Resolve this engine's settings" in t.get("name", "")]
    assert len(resolve) == 1, "the preflight has no single 'Resolve this engine's settings' task"
    settings = resolve[0]["ansible.builtin.set_fact"]["preflight_engine"]
    shared: dict = {}
    for value in settings.values():
        text = str(value)
        for name in re.findall(r"\b(tractor_[a-z_]+)\b", text):
            shared.setdefault(name, None)
        for name, literal in re.findall(r"\b(tractor_[a-z_]+) \| default\(([^()]*)\)", text):
            shared[name] = jinja_literal(literal)
    return shared


SHARED = preflight_shared_defaults()


def runs_preflight(role: str, entry_point: str) -> bool:
    """Whether tasks/<entry_point>.yml includes the preflight role's main entry point."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            include = node.get("ansible.builtin.include_role")
            if isinstance(include, dict) and include.get("name") == "renderfarm.tractor.preflight" \
                    and "tasks_from" not in include:
                found.append(include)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(load(ROLES_DIR / role / "tasks" / f"{entry_point}.yml"))
    return bool(found)


ROLE_ENTRY_POINTS = [(role, ep) for role in sorted(ENTRY_POINTS) for ep in sorted(ENTRY_POINTS[role])]


def test_shared_variables_parsed_from_the_preflight():
    # Guards the parser above: these are the shared variables docs/inventory.md documents.
    assert set(SHARED) == {
        "tractor_version", "tractor_config_dir", "tractor_install_prefix", "tractor_install_dir",
        "tractor_engine_owner", "tractor_engine_address", "tractor_engine_user",
        "tractor_service_manager", "tractor_service_name", "tractor_engine_pidfile",
        "tractor_engine_log_file", "tractor_engine_timeout", "tractor_lock_lease",
        "tractor_lock_break", "tractor_lock_stale_after", "tractor_version_adopt_live"}
    assert SHARED["tractor_install_prefix"] == "/opt/pixar"
    assert same_value(SHARED["tractor_engine_timeout"], 120)
    assert same_value(SHARED["tractor_lock_lease"], 900)
    assert SHARED["tractor_install_dir"] is None  # computed from the prefix and the version


def test_every_role_is_covered():
    roles = {p.name for p in ROLES_DIR.iterdir() if (p / "tasks").is_dir()}
    assert roles == set(ENTRY_POINTS)


@pytest.mark.parametrize("role", sorted(ENTRY_POINTS))
def test_entry_points_are_the_callable_task_files(role):
    specs = role_specs(role)
    assert set(specs) == ENTRY_POINTS[role]
    for entry_point in specs:
        assert (ROLES_DIR / role / "tasks" / f"{entry_point}.yml").is_file(), entry_point
        assert specs[entry_point].get("short_description"), entry_point


@pytest.mark.parametrize("role", sorted(ENTRY_POINTS))
def test_defaults_hold_no_shared_variable(role):
    stray = sorted(name for name in role_defaults(role) if name in SHARED)
    assert not stray, f"{role}/defaults/main.yml sets shared inventory variables {stray}; the preflight defaults them"


@pytest.mark.parametrize("role,entry_point", ROLE_ENTRY_POINTS)
def test_spec_covers_every_default_with_the_same_value(role, entry_point):
    options = role_specs(role)[entry_point]["options"]
    problems = []
    for name, value in role_defaults(role).items():
        if name not in options:
            problems.append(f"{name}: in defaults/main.yml, not in the spec")
            continue
        option = options[name]
        if "default" not in option:
            problems.append(f"{name}: the spec has no default (defaults/main.yml: {value!r})")
        elif not same_value(option["default"], value):
            problems.append(f"{name}: spec default {option['default']!r}, defaults/main.yml {value!r}")
        if not isinstance(value, TYPE_FITS[option["type"]]) or (option["type"] == "int" and isinstance(value, bool)):
            problems.append(f"{name}: type {option['type']} does not fit the default {value!r}")
    assert not problems, f"{role} {entry_point}:\n" + "\n".join(problems)


@pytest.mark.parametrize("role,entry_point", ROLE_ENTRY_POINTS)
def test_spec_defaults_come_from_defaults_or_the_preflight(role, entry_point):
    defaults = role_defaults(role)
    problems = []
    for name, option in role_specs(role)[entry_point]["options"].items():
        if "default" not in option:
            continue
        if name in defaults:
            continue  # compared in the test above
        if name in SHARED and SHARED[name] is not None:
            if not same_value(option["default"], SHARED[name]):
                problems.append(f"{name}: spec default {option['default']!r}, the preflight applies {SHARED[name]!r}")
            continue
        problems.append(f"{name}: the spec gives default {option['default']!r} but nothing applies it "
                        f"(not in defaults/main.yml, not a shared variable the preflight defaults)")
    assert not problems, f"{role} {entry_point}:\n" + "\n".join(problems)


PREFLIGHT_RUNNERS = [(role, ep) for role, ep in ROLE_ENTRY_POINTS
                     if role == "preflight" or runs_preflight(role, ep)]


def test_preflight_runners_found():
    assert set(PREFLIGHT_RUNNERS) == {("preflight", "main"), ("backup", "main"), ("upgrade", "main"),
                                      ("downgrade", "main"), ("staging", "main")}


@pytest.mark.parametrize("role,entry_point", PREFLIGHT_RUNNERS)
def test_preflight_runners_document_every_shared_variable(role, entry_point):
    options = role_specs(role)[entry_point]["options"]
    reference = role_specs("preflight")["main"]["options"]
    problems = []
    for name, default in SHARED.items():
        option = options.get(name)
        if option is None:
            problems.append(f"{name}: not documented")
            continue
        if name in SHARED_REQUIRED:
            if option.get("required") is not True or "default" in option:
                problems.append(f"{name}: must be required, without a default")
        elif default is None:
            if "default" in option:
                problems.append(f"{name}: its default is computed; the spec must not give one")
        elif "default" not in option or not same_value(option["default"], default):
            problems.append(f"{name}: default {option.get('default')!r}, the preflight applies {default!r}")
        if role != "preflight":
            # One definition everywhere: same type, choices and text as the preflight's own spec.
            if option != reference.get(name):
                problems.append(f"{name}: differs from roles/preflight/meta/argument_specs.yml")
    assert not problems, f"{role} {entry_point}:\n" + "\n".join(problems)


@pytest.mark.parametrize("role,entry_point", ROLE_ENTRY_POINTS)
def test_spec_is_one_ansible_accepts(role, entry_point):
    options = role_specs(role)[entry_point]["options"]
    for name, option in options.items():
        assert option.get("description"), f"{name}: no description"
        assert option.get("type") in TYPE_FITS, f"{name}: type {option.get('type')!r}"
        assert not (option.get("required") and "default" in option), f"{name}: required and a default"
        if "choices" in option and "default" in option:
            assert option["default"] in option["choices"], f"{name}: default not among the choices"
    # ansible's own validator, on the documented defaults (templated ones are plain strings here).
    values = {name: option["default"] for name, option in options.items() if "default" in option}
    values.update({name: "x" for name, option in options.items() if option.get("required")})
    values = {name: ("/x" if options[name]["type"] == "path" and value == "x" else value)
              for name, value in values.items()}
    if "preflight_caller" in values:
        values["preflight_caller"] = "backup"
    result = ArgumentSpecValidator(options).validate(values)
    assert not result.error_messages, result.error_messages


@pytest.mark.parametrize("role,entry_point", ROLE_ENTRY_POINTS)
def test_option_references_name_options_of_the_entry_point(role, entry_point):
    spec = role_specs(role)[entry_point]
    text = yaml.safe_dump(spec)
    dangling = sorted(set(re.findall(r"O\(([a-z0-9_]+)", text)) - set(spec["options"]))
    assert not dangling, f"{role} {entry_point}: O() names no option of this entry point: {dangling}"


# --- ansible itself, on the values the callers pass -------------------------------------------

# Every entry point, included the way its callers (roles and playbooks) include it. Run with a tag nothing carries,
# only the tasks tagged `always` run: ansible's argument validation of each entry point, and the
# lock release and report record of the roles' always sections (the record goes to report_dir).
CALLS = [
    ("engine", "preflight", "main", {"preflight_caller": "upgrade",
                                     "preflight_target_version": "{{ upgrade_version | string }}",
                                     "preflight_target_stageable": "{{ upgrade_package | length > 0 }}",
                                     "preflight_backup_dir": "{{ backup_dir | default('/var/backups/tractor') }}",
                                     "preflight_lock": False}),
    ("engine", "backup", "main", {"backup_fail_on_error": False}),
    ("engine", "backup", "run", {"backup_lock": False, "backup_restart_engine": False}),
    ("engine", "backup", "copy", {"backup_engine_dir": "/var/backups/tractor/engine",
                                  "backup_copy_dir": "/var/backups/tractor/engine/.copy-x"}),
    ("engine", "backup", "finish", {"backup_engine_dir": "/var/backups/tractor/engine"}),
    ("engine", "upgrade", "main", {"upgrade_fail_on_error": False}),
    ("staging", "upgrade", "stage", {"upgrade_version": "{{ tractor_version | string }}",
                                     "upgrade_package": "{{ staging_package }}",
                                     "upgrade_package_remote": "{{ staging_package_remote }}",
                                     "upgrade_new_install": "/opt/pixar/Tractor-{{ tractor_version }}"}),
    ("engine", "downgrade", "main", {"downgrade_version": "2.2", "downgrade_backup": "/b/engine/x.tgz",
                                     "downgrade_fail_on_error": False}),
    ("engine", "downgrade", "run", {"downgrade_version": "{{ tractor_version }}", "downgrade_backup": "/b/engine/x.tgz",
                                    "downgrade_verify": "archive", "downgrade_lock": False,
                                    "downgrade_rollback": True}),
    ("staging", "staging", "plan", {}),
    ("staging", "staging", "configure", {}),
    ("staging", "staging", "main", {"staging_fail_on_error": False}),
    ("localhost", "report", "main", {"report_playbook": "specs", "report_hosts": ["engine", "staging"]}),
    ("engine", "report", "record", {"report_var": "no_such_fact", "report_playbook": "specs"}),
]


def run_validation(tmp_path, *extra_args):
    import json as _json
    import os
    import subprocess
    import sys

    inventory = {
        "all": {"vars": {"report_dir": str(tmp_path / "reports"), "ansible_connection": "local",
                         "ansible_python_interpreter": sys.executable}},
        "tractor_engines": {
            "vars": {"tractor_install_prefix": "/opt/pixar", "tractor_service_manager": "direct",
                     "backup_dir": "/var/backups/tractor", "upgrade_version": "2.4", "upgrade_package": ""},
            "hosts": {"engine": {"tractor_version": "2.2", "tractor_config_dir": "/opt/pixar/config",
                                 "tractor_engine_timeout": 180}},
            "children": {"tractor_staging": {"hosts": {"staging": {
                "tractor_version": "2.4", "tractor_config_dir": "/opt/pixar/config-staging",
                "staging_listener_port": 8080, "staging_data_dir": "/var/spool/tractor-staging",
                "staging_package": "/srv/Tractor-2.4.tar.gz", "staging_package_remote": False}}}}},
    }
    plays = []
    for host in ("engine", "staging", "localhost"):
        tasks = [{"name": f"Include {role} {entry_point}",
                  "ansible.builtin.include_role": {"name": f"renderfarm.tractor.{role}", "tasks_from": entry_point},
                  "vars": variables, "tags": ["always"]}
                 for h, role, entry_point, variables in CALLS if h == host]
        plays.append({"name": f"Entry points on {host}", "hosts": host, "gather_facts": False, "tasks": tasks})
    (tmp_path / "inventory.json").write_text(_json.dumps(inventory))
    (tmp_path / "playbook.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory.json"),
                           str(tmp_path / "playbook.yml"), "--tags", "renderfarm_tractor_specs_only", *extra_args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def validated(output: str) -> set:
    return set(re.findall(r"TASK \[renderfarm\.tractor\.(\w+) : Validating arguments against arg spec '(\w+)'", output))


def test_ansible_validates_every_entry_point_with_what_its_callers_pass(tmp_path):
    result = run_validation(tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert validated(result.stdout) == {(role, ep) for role in ENTRY_POINTS for ep in ENTRY_POINTS[role]}
    assert "Validation of arguments failed" not in result.stdout


def test_ansible_refuses_a_wrong_type(tmp_path):
    result = run_validation(tmp_path, "-e", "tractor_engine_timeout=soon")
    assert result.returncode != 0
    assert "Validation of arguments failed" in result.stdout
    assert "tractor_engine_timeout" in result.stdout
