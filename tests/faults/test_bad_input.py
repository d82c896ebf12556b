"""Hostile module arguments (property-based, hypothesis): every one must end in fail_json with a
clear message, no traceback, and no change on disk.

The modules run in this process (AnsibleModule with patched arguments, as Ansible's own module
unit tests do), against a real site directory and a real emulated install, so that hundreds of
inputs take seconds. Each case pairs one option with a value that is wrong for it: wrong types,
empty, huge, relative paths with "..", newlines, shell metacharacters, NUL bytes, negative or
non-numeric counters, values outside the choices, nonexistent install and config directories.
The rest of the arguments are valid, chosen so that the module would do real work (write a lock,
read a database, start a backup) if it let the bad value through.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import sys
import tarfile
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tractor_ansible import REPO

sys.path.insert(0, str(REPO / ".collections"))
from ansible.module_utils.parsing.convert_bool import BOOLEANS  # noqa: E402

# meta/runtime.yml requires ansible-core 2.19, which has this helper.
from ansible.module_utils.testing import patch_module_args  # noqa: E402

MODULES = {name: importlib.import_module(f"ansible_collections.renderfarm.tractor.plugins.modules.{name}")
           for name in ("tractor_db", "tractor_engine", "tractor_info", "tractor_jobcounter", "tractor_lock")}

# -- hostile values --------------------------------------------------------------------------------
META = ["; rm -rf /tmp/x", "$(id)", "`reboot`", "| cat /etc/shadow", "&& false", "' \" \\", "a\nb", "line\r\n",
        "*?[]", "~root", "${HOME}", "%s%n", "\t"]
WORDS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
NASTY = st.one_of(st.sampled_from(META), st.builds(lambda a, b: a + b, WORDS, st.sampled_from(META)))
HUGE = st.sampled_from(["A" * 5000, "../" * 2000, "x\n" * 3000])
NUL = st.builds(lambda w: "/tmp/" + w.replace("\x00", "") + "\x00/etc", WORDS)

not_an_int = st.one_of(
    WORDS.filter(lambda s: not s.strip().lstrip("+-").isdigit()), NASTY, HUGE,
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    st.lists(st.integers(), min_size=1, max_size=3), st.dictionaries(WORDS, st.integers(), min_size=1, max_size=2))
negative = st.integers(max_value=-1)
not_a_float = st.one_of(WORDS.filter(lambda s: not _is_float(s)), NASTY,
                        st.lists(st.floats(allow_nan=False), min_size=1, max_size=2))
not_a_bool = st.one_of(
    WORDS.filter(lambda s: s.strip().lower() not in [str(b).lower() for b in BOOLEANS]), NASTY, HUGE,
    st.integers().filter(lambda i: i not in (0, 1)), st.lists(st.booleans(), min_size=1, max_size=2),
    st.dictionaries(WORDS, st.booleans(), min_size=1, max_size=2))
relative_path = st.one_of(
    st.lists(st.sampled_from(["..", ".", "etc", "x", "a b", "a;b", "$(id)", "\n"]), min_size=1, max_size=6)
    .map("/".join).filter(lambda p: not p.startswith("/") and p.strip() not in ("", ".")),
    # (not "$VAR" or "~": Ansible expands those in path options, to whatever they name)
    NASTY.filter(lambda p: not p.startswith("/") and not p.startswith("~") and "$" not in p))
missing_dir = st.one_of(
    st.builds(lambda w: "/nonexistent-renderfarm-tractor/" + w.replace("\x00", ""), st.one_of(WORDS, NASTY)),
    st.just("/nonexistent-renderfarm-tractor/../nonexistent/.."), HUGE.map(lambda h: "/" + h), NUL)
not_a_list = st.dictionaries(WORDS, WORDS, min_size=1, max_size=2)  # (Ansible turns scalars into lists of one)
bad_version = st.one_of(NASTY, HUGE, NUL, st.sampled_from(["../../../..", "2.2/../../../..", "2.2/..", "/etc",
                                                           "2.4 ", " 2.4", "2.4\n", ""]))
bad_engine = st.one_of(NASTY, HUGE, st.sampled_from(["localhost", "localhost:", ":80", "host:http", "host:99999",
                                                     "host:-1", "host:0", "[::1]", "a b:80", "host:80:80", ""]))
bad_service_name = st.one_of(NASTY, HUGE, st.sampled_from(["../../usr/bin/env", "a/b", "..", ".", "", "x y",
                                                           "/etc/init.d/tractor-engine"]))


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def bad_choice(choices):
    return st.one_of(NASTY, HUGE, WORDS).filter(lambda v: v not in choices)


# -- the cases: module, option, hostile values, base arguments ----------------------------------------
def cases(site):
    """(module, option, strategy, base args) for every option that takes a value worth attacking."""
    common = {"install_dir": site["install"], "config_dir": site["config_dir"]}
    lock = {"path": site["lock"], "run_id": "run-1"}
    backup = dict(common, state="backup", path=site["archive"], verify="archive", stop_database=True)
    verify_restore = dict(common, state="verify", path=site["tiny_archive"], verify="restore")
    out = []
    for module in ("tractor_db", "tractor_engine", "tractor_info", "tractor_jobcounter"):
        base = {"tractor_db": dict(common, state="status"), "tractor_engine": dict(common, state="status"),
                "tractor_info": dict(common), "tractor_jobcounter": dict(common)}[module]
        out += [
            (module, "config_dir", st.one_of(relative_path, missing_dir, st.just(site["a_file"]), st.just("")), base),
            (module, "install_dir", st.one_of(relative_path, missing_dir, st.just(site["a_file"])), base),
            (module, "version", bad_version, {k: v for k, v in base.items() if k != "install_dir"}),
            (module, "timeout", st.one_of(not_an_int, negative, st.just(0)), base),
            (module, "engine_owner", st.one_of(NASTY, HUGE, st.sampled_from(["root\n", "-root", "a b", "x" * 33])), base),
        ]
    out += [
        ("tractor_db", "state", bad_choice(["status", "started", "stopped", "backup", "verify", "restore", "absent"]),
         dict(common)),
        ("tractor_db", "path", st.one_of(relative_path, missing_dir), dict(common, state="verify")),
        ("tractor_db", "path", st.one_of(relative_path, st.just(site["config_dir"])), backup),
        ("tractor_db", "method", bad_choice(["native", "dbctl"]), backup),
        ("tractor_db", "verify", bad_choice(["archive", "restore"]), dict(common, state="verify", path=site["archive"])),
        ("tractor_db", "force", not_a_bool, dict(common, state="absent")),
        ("tractor_db", "stop_database", not_a_bool, backup),
        ("tractor_db", "auto_upgrade", not_a_bool, dict(common, state="status")),
        ("tractor_db", "scratch_dir", st.one_of(relative_path, missing_dir), dict(verify_restore)),
        ("tractor_db", "pg_bindir", st.one_of(relative_path, missing_dir), dict(verify_restore)),
        ("tractor_db", "compression_level", st.one_of(not_an_int, negative, st.integers(min_value=10), st.just(0)),
         dict(common, state="status")),
        ("tractor_db", "workers", st.one_of(not_an_int, negative, st.just(0), st.integers(min_value=1025)),
         dict(common, state="status")),
        ("tractor_db", "free_space_factor", st.one_of(not_a_float, st.floats(max_value=-0.001, allow_nan=False,
                                                                              allow_infinity=False)),
         dict(common, state="status")),
        ("tractor_db", "engine", bad_engine, dict(common, state="stopped", force=False)),
        ("tractor_engine", "state", bad_choice(["started", "stopped", "restarted", "killed", "status"]), dict(common)),
        ("tractor_engine", "service_manager", bad_choice(["auto", "systemd", "sysv", "direct"]),
         dict(common, state="status")),
        ("tractor_engine", "service_name", bad_service_name, dict(common, state="status")),
        ("tractor_engine", "dispatching", bad_choice(["paused", "running"]), dict(common)),
        ("tractor_engine", "dispatch_method", bad_choice(["job_pause", "engine_switch"]), dict(common, state="status")),
        ("tractor_engine", "stop_timeout", st.one_of(not_an_int, negative), dict(common, state="stopped")),
        ("tractor_engine", "escalate", not_a_bool, dict(common, state="stopped")),
        ("tractor_engine", "start_paused", not_a_bool, dict(common, state="status")),
        ("tractor_engine", "retry_active", not_a_bool, dict(common)),
        ("tractor_engine", "engine_args", not_a_list, dict(common, state="status")),
        ("tractor_engine", "engine", bad_engine, dict(common, state="status")),
        ("tractor_engine", "pidfile", st.one_of(relative_path, NUL), dict(common, state="status", service_manager="direct")),
        ("tractor_engine", "log_file", st.one_of(relative_path, NUL), dict(common, state="status", service_manager="direct")),
        ("tractor_engine", "service_settings", st.one_of(relative_path, NUL), dict(common, state="status")),
        ("tractor_engine", "init_script", st.one_of(relative_path, NUL), dict(common, state="status")),
        ("tractor_engine", "paused_jobs_file", st.one_of(relative_path, NUL), dict(common, state="status")),
        ("tractor_info", "require_install", not_a_bool, dict(common)),
        ("tractor_info", "measure_database", not_a_bool, dict(common)),
        ("tractor_info", "extra_paths", st.one_of(not_a_list, st.lists(st.one_of(relative_path, NUL), min_size=1,
                                                                       max_size=2)), dict(common)),
        ("tractor_info", "engine", bad_engine, dict(common)),
        ("tractor_jobcounter", "value", st.one_of(not_an_int, negative), dict(common)),
        ("tractor_jobcounter", "on_lower", bad_choice(["fail", "ignore"]), dict(common, value=5)),
        ("tractor_jobcounter", "purge_logs_above", st.one_of(negative, WORDS.filter(lambda s: s.strip() != "last_used"
                                                                                    and not s.strip().isdigit()),
                                                            NASTY, st.booleans(), st.lists(st.integers(), min_size=1),
                                                            st.floats(allow_nan=False).filter(lambda f: not f.is_integer())),
         dict(common)),
        ("tractor_jobcounter", "cmd_logs_dir", st.one_of(relative_path, NUL), dict(common, purge_logs_above=5)),
        ("tractor_lock", "path", st.one_of(relative_path, NUL, missing_dir, st.just(""), st.just(site["config_dir"])),
         dict(lock)),
        ("tractor_lock", "state", bad_choice(["present", "absent"]), dict(lock)),
        ("tractor_lock", "run_id", st.one_of(st.just(""), st.just("   "), HUGE, st.just("a\nb")), dict(lock)),
        ("tractor_lock", "controller_pid", st.one_of(not_an_int, negative, st.just(0)), dict(lock)),
        ("tractor_lock", "stale_after", st.one_of(not_an_int, negative), dict(lock)),
        ("tractor_lock", "break_stale", not_a_bool, dict(lock)),
        ("tractor_lock", "lease", st.one_of(not_an_int, negative, st.integers(min_value=0, max_value=9)), dict(lock)),
        ("tractor_lock", "break_run_id", st.one_of(st.just(""), st.just("   "), HUGE, st.just("a\nb")), dict(lock)),
        ("tractor_lock", "force", not_a_bool, dict(lock, state="absent")),
    ]
    return out


# -- running a module in this process --------------------------------------------------------------
def run_module(name, args):
    """(result dict, exited) of the module's main() with these arguments; a Python exception (a
    traceback) propagates."""
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out):
        try:
            MODULES[name].main()
        except SystemExit:
            pass
        else:
            raise AssertionError(f"{name} returned without exit_json/fail_json")
    text = out.getvalue()
    return json.loads(text[text.index("{"):])


def digest(*roots):
    found = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                st_ = os.lstat(path)
                content = ""
                if os.path.isfile(path) and not os.path.islink(path):
                    with open(path, "rb") as handle:
                        content = hashlib.sha256(handle.read()).hexdigest()
                found[path] = (st_.st_mode, st_.st_uid, content)
    return found


@pytest.fixture(scope="module")
def bad_site(world, owner, installs):
    from tractor_sites import Site

    base = tempfile.mkdtemp(prefix="bad-input-", dir=world)
    os.chmod(base, 0o755)
    site = Site(base, owner, installs)
    locks = os.path.join(base, "locks")
    os.makedirs(locks)
    a_file = os.path.join(base, "a-file")
    open(a_file, "w").close()
    backups = os.path.join(base, "backups")
    os.makedirs(backups)
    os.makedirs(site.db_dir, mode=0o700)  # holds no cluster: a backup that got that far would fail there
    os.chown(site.db_dir, owner.pw_uid, owner.pw_gid)
    sandbox = os.path.join(base, "cwd")  # relative paths land here, if anywhere
    os.makedirs(sandbox)
    # A well-formed archive of a tiny (fake) data directory: verify=restore gets as far as choosing
    # its scratch directory and PostgreSQL binaries.
    tiny = os.path.join(backups, "tiny.tgz")
    with tarfile.open(tiny, "w:gz") as tar:
        for name, data in (("psql/PG_VERSION", b"15\n"), ("psql/global/pg_control", b"\0" * 512)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return {"base": base, "install": installs("2.2"), "config_dir": site.config_dir, "lock": os.path.join(locks, "lock"),
            "archive": os.path.join(backups, "db.tgz"), "a_file": a_file, "sandbox": sandbox, "tiny_archive": tiny}


def clear_message(result, option, value):
    msg = result.get("msg")
    assert isinstance(msg, str) and msg.strip(), result
    assert "Traceback" not in msg and "exception" not in result, result
    assert "MODULE FAILURE" not in msg
    text = " ".join(msg.split())
    shown = value if isinstance(value, str) else json.dumps(value)
    squashed = text.lower().replace("_", "").replace(" ", "")
    named = (option in text or option.replace("_", "") in squashed
             or (isinstance(shown, str) and shown.strip() and (" ".join(shown.split())[:60] in text
                                                               or repr(shown)[1:-1][:60] in text)))
    # AnsibleModule itself refuses a NUL byte in any argument (it cannot log it) before the module runs.
    named = named or ("\x00" in json.dumps(value, default=str).encode().decode("unicode_escape")
                      and "embedded null character" in text)
    assert named, f"the message names neither {option!r} nor the value: {msg!r}"


def test_hostile_module_arguments_fail_cleanly_and_change_nothing(bad_site):
    all_cases = cases(bad_site)
    seen = set()

    @settings(max_examples=400, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(min_value=0, max_value=len(all_cases) - 1).flatmap(
        lambda i: st.tuples(st.just(i), all_cases[i][2])))
    def check(case):
        index, value = case
        module, option, _, base = all_cases[index]
        args = dict(base, **{option: value})
        seen.add(json.dumps([module, option, value], sort_keys=True, default=repr))
        before = digest(bad_site["base"])
        cwd = os.getcwd()
        os.chdir(bad_site["sandbox"])
        try:
            result = run_module(module, args)
        finally:
            os.chdir(cwd)
        assert result.get("failed") is True, f"{module} {option}={value!r} was accepted: {result}"
        clear_message(result, option, value)
        assert digest(bad_site["base"]) == before, f"{module} {option}={value!r} changed files"

    check()
    assert len(seen) >= 100, len(seen)
    covered = {json.loads(s)[1] for s in seen}
    assert len(covered) >= 40, sorted(covered)
