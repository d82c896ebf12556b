"""The emulated install layout, its service files, the deployable artifacts and the CLI.

Each test names the fact-sheet section it pins down: §7.1 (install layout), §2 (config files and
the stock+site merge), §7.3 (service files), §0 (RPM-like artifact names).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile

import pytest

from tractor_emulator import cli, config, dist, install, services, versions

ALL_VERSIONS = list(versions.VERSIONS)
PACKAGE_DIR = os.path.dirname(install.__file__)
HAVE_DBCTL = os.path.exists(os.path.join(PACKAGE_DIR, "dbctl.py"))
INIT_SCRIPTS = ("tractor-engine", "tractor-blade")
SYSTEMD_FILES = ("tractor-engine.service", "tractor-engine", "tractor-blade.service", "tractor-blade",
                 "90-tractor-blade-overrides.conf")


def run(argv, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120, **kwargs)


def sh_vars(path: str, *names: str) -> dict[str, str]:
    """Source a settings file with sh and read variables back (it must be valid sh)."""
    script = ". \"$1\"; " + "; ".join(f'printf "%s\\n" "${name}"' for name in names)
    proc = run(["sh", "-c", script, "sh", path], env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return dict(zip(names, proc.stdout.splitlines()))


# -- §7.1 layout --------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_bin_tools_are_executable_launchers_pinned_to_the_version(installs, version):
    root = installs(version)
    assert os.path.basename(root) == f"Tractor-{version}"  # §7.1 /opt/pixar/Tractor-<MAJOR.MINOR>
    for tool in ("tractor-engine", "tractor-dbctl", "tq", "tractor-blade", "tractor-spool"):
        path = os.path.join(root, "bin", tool)
        assert install.is_executable(path), path
        mode = os.stat(path).st_mode
        assert mode & stat.S_IXOTH and mode & stat.S_IROTH, "EngineOwner must be able to run it"
        text = open(path, encoding="utf-8").read()
        assert text.startswith("#!/bin/sh\n")
        assert f"--tractor-version {version} " in text
        assert f"Tractor {version} (build {versions.get(version).build})" in text
    pinned = open(os.path.join(root, "lib", "python", "tractor_emulator", "_pinned.py")).read()
    assert f'VERSION = "{version}"' in pinned


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_stock_tractor_and_db_config_parse_as_python_literals_with_defaults(installs, version):
    root = installs(version)
    tractor = config.parse_python_literal(os.path.join(root, "config", "tractor.config"))
    db = config.parse_python_literal(os.path.join(root, "config", "db.config"))
    # §2.2
    for key in config.REQUIRED_TRACTOR_KEYS:
        assert key in tractor
    assert tractor["TractorDataDirectory"] == "/var/spool/tractor"
    assert tractor["ListenerPort"] == 80
    assert tractor["JobSchedulingMode"] == "P+FIFO"
    assert tractor["SiteMaxListReplyCount"] == 2500
    assert tractor["DispatchTiers"] == {"admin": 111, "rush": 99, "default": 50, "batch": 10}
    assert "LogDir" not in tractor and "CmdOutputLogging" not in tractor
    # §2.3
    for key in config.REQUIRED_DB_KEYS:
        assert key in db
    assert db["DBConnection"] == {"host": "localhost", "port": 9876, "dbname": "tractor"}
    assert db["DBDataDir"] == "${TractorDataDirectory}/psql"
    for key in ("DBStartup", "DBUseExisting", "DBAutoUpgrade", "DBInit", "DBShutdown"):
        assert db[key] is True, key
    assert db["DBDebug"] is False
    assert "DBPort" not in db and "DBHost" not in db
    assert set(db["DBRolePasswords"]) == {"root", "bootstrap", "dispatcher", "spooler", "dashboard",
                                          "reader", "dev_read", "dev_write"}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_other_stock_configs_parse_as_json(installs, version):
    root = installs(version)
    for name in ("blade.config", "crews.config", "limits.config"):  # §2.1 whole-file configs
        with open(os.path.join(root, "config", name), encoding="utf-8") as handle:
            assert isinstance(json.load(handle), dict), name
    blade = json.load(open(os.path.join(root, "config", "blade.config")))
    assert blade["ProfileDefaults"]["CmdOutputLogging"] == "logserver=${TRACTOR_ENGINE}:9180"  # §2.2 note


# -- §7.3 service files -------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_system_services_files_present(installs, version):
    root = installs(version)
    base = os.path.join(root, "lib", "SystemServices")
    info = versions.get(version)
    assert os.path.isfile(os.path.join(base, "pixar"))
    for name in INIT_SCRIPTS:
        assert install.is_executable(os.path.join(base, name)), name
    systemd_dir = os.path.join(base, "systemd")
    if int(info.build) >= services.SYSTEMD_SINCE_BUILD:  # shipped since 2.2 b1614082
        assert sorted(os.listdir(systemd_dir)) == sorted(SYSTEMD_FILES)
        for name in SYSTEMD_FILES:
            assert not install.is_executable(os.path.join(systemd_dir, name))
    else:
        assert not os.path.exists(systemd_dir)


SYSTEMD_VERSIONS = [v for v in ALL_VERSIONS if services.has_systemd(versions.get(v))]


@pytest.mark.parametrize("version", SYSTEMD_VERSIONS)
def test_systemd_engine_unit_runs_the_install_with_the_sysconfig_settings(installs, version):
    root = installs(version)
    sd = os.path.join(root, "lib", "SystemServices", "systemd")
    unit = open(os.path.join(sd, "tractor-engine.service"), encoding="utf-8").read()
    assert "EnvironmentFile=-/etc/sysconfig/tractor-engine\n" in unit
    exec_start = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert len(exec_start) == 1
    # <root>/bin/tractor-engine unless the settings file names another installation (§7.3)
    assert f'"$${{TRACTOR_INSTALL_DIR:-{root}}}/bin/tractor-engine"' in exec_start[0]
    assert f'Environment="TRACTOR_INSTALL_DIR={root}"' in unit
    assert '--configdir="$${TRACTOR_CONFIG_DIR}"' in exec_start[0]
    assert "$${OPTIONS}" in exec_start[0]
    assert "User=" not in unit  # starts as root, drops to EngineOwner itself (§7.3)
    assert "/opt/pixar" not in unit  # paths come from the install root
    # The settings file: valid sh and EnvironmentFile syntax; config dir = install config/ since
    # 2.2 b1677499 (§2.1).
    values = sh_vars(os.path.join(sd, "tractor-engine"), "TRACTOR_INSTALL_DIR", "TRACTOR_CONFIG_DIR", "OPTIONS")
    assert values == {"TRACTOR_INSTALL_DIR": root, "TRACTOR_CONFIG_DIR": os.path.join(root, "config"),
                      "OPTIONS": ""}
    blade = open(os.path.join(sd, "tractor-blade.service"), encoding="utf-8").read()
    assert "EnvironmentFile=-/etc/sysconfig/tractor-blade\n" in blade
    assert f'"$${{TRACTOR_INSTALL_DIR:-{root}}}/bin/tractor-blade"' in blade
    assert sh_vars(os.path.join(sd, "tractor-blade"), "TRACTOR_INSTALL_DIR")["TRACTOR_INSTALL_DIR"] == root


def test_systemd_exec_start_expands_as_systemd_would(installs, tmp_path):
    """Run the ExecStart shell command the way systemd hands it over ($$ -> $)."""
    root = installs("2.2")
    unit = open(os.path.join(root, "lib", "SystemServices", "systemd", "tractor-engine.service")).read()
    line = next(l for l in unit.splitlines() if l.startswith("ExecStart="))
    prefix = "ExecStart=/bin/sh -c '"
    assert line.startswith(prefix) and line.endswith("'")
    command = line[len(prefix):-1].replace("$$", "$")
    fake = tmp_path / "Tractor-X"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "tractor-engine").write_text('#!/bin/sh\nfor a in "$@"; do echo "[$a]"; done\n')
    (fake / "bin" / "tractor-engine").chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "TRACTOR_INSTALL_DIR": str(fake), "TRACTOR_CONFIG_DIR": "/site/config",
           "OPTIONS": "--log=/var/log/e.log --debug"}
    proc = run(["/bin/sh", "-c", command], env=env)
    assert proc.stdout.splitlines() == ["[--configdir=/site/config]", "[--log=/var/log/e.log]", "[--debug]"]
    # Without TRACTOR_INSTALL_DIR the unit's own installation runs.
    del env["TRACTOR_INSTALL_DIR"]
    proc = run(["/bin/sh", "-c", command.replace("exec ", "exec echo ", 1)], env=env)
    assert proc.stdout.split()[0] == f"{root}/bin/tractor-engine"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("version", SYSTEMD_VERSIONS)
def test_systemd_units_pass_systemd_analyze_verify(installs, version, tmp_path):
    sd = os.path.join(installs(version), "lib", "SystemServices", "systemd")
    # Lay the units out as a site would, with the blade drop-in in its .service.d directory.
    shutil.copy(os.path.join(sd, "tractor-engine.service"), tmp_path)
    shutil.copy(os.path.join(sd, "tractor-blade.service"), tmp_path)
    dropin = tmp_path / "tractor-blade.service.d"
    dropin.mkdir()
    shutil.copy(os.path.join(sd, services.BLADE_DROPIN), dropin)
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{tmp_path}:", SYSTEMD_LOG_LEVEL="notice")
    for unit in ("tractor-engine.service", "tractor-blade.service"):
        proc = run(["systemd-analyze", "verify", str(tmp_path / unit)], env=env)
        assert proc.returncode == 0, proc.stderr
        # warnings (e.g. "Missing '='") do not change the exit code; none may name our files
        assert str(tmp_path) not in proc.stderr, proc.stderr


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_init_scripts_are_valid_sh(installs, version):
    base = os.path.join(installs(version), "lib", "SystemServices")
    for name in INIT_SCRIPTS:
        proc = run(["sh", "-n", os.path.join(base, name)])
        assert proc.returncode == 0, proc.stderr
        text = open(os.path.join(base, name), encoding="utf-8").read()
        assert "# chkconfig: 345" in text and "### BEGIN INIT INFO" in text  # chkconfig use (§7.3)
        assert "--daemon --pidfile=" in text
    values = sh_vars(os.path.join(base, "pixar"), "TRACTOR_INSTALL_DIR", "TRACTOR_ENGINE_PIDFILE")
    assert values["TRACTOR_INSTALL_DIR"] == installs(version)


@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_init_script_status_codes(installs, version, tmp_path):
    """status: 0 running, 1 stale pid file, 3 stopped -- 3 since 2.2 b1614082 (§7.3)."""
    script = os.path.join(installs(version), "lib", "SystemServices", "tractor-engine")
    settings = tmp_path / "pixar"
    pidfile = tmp_path / "engine.pid"
    settings.write_text(f"TRACTOR_ENGINE_PIDFILE={pidfile}\n")
    env = {"PATH": "/usr/bin:/bin", "PIXAR_SYSCONFIG": str(settings)}
    stopped = run(["sh", script, "status"], env=env)
    assert stopped.returncode == (3 if version != "2.1" else 1), stopped.stdout
    assert "stopped" in stopped.stdout
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        pidfile.write_text(f"{sleeper.pid}\n")
        running = run(["sh", script, "status"], env=env)
        assert running.returncode == 0 and f"pid {sleeper.pid}" in running.stdout
        # The sleeper is our child: reap it while the script waits for it to go away.
        stop = subprocess.Popen(["sh", script, "stop"], env=env, stdout=subprocess.PIPE, text=True)
        assert sleeper.wait(timeout=10) == -signal.SIGTERM
        out, _ = stop.communicate(timeout=30)
        assert stop.returncode == 0, out
        assert not pidfile.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    pidfile.write_text("4194999\n")  # above pid_max: certainly dead
    stale = run(["sh", script, "status"], env=env)
    assert stale.returncode == 1 and "dead" in stale.stdout
    assert run(["sh", script, "bogus"], env=env).returncode == 2


def test_service_paths_follow_the_install_root(tmp_path):
    info = versions.get("2.4")
    files = services.render("/srv/tools/Tractor-2.4", info)
    for rel, (text, _mode) in files.items():
        assert "/opt/pixar" not in text, rel
    assert "/srv/tools/Tractor-2.4}/bin/tractor-engine" in files["systemd/tractor-engine.service"][0]
    with pytest.raises(ValueError):
        services.render("/srv/with space/Tractor-2.4", info)


# -- §0 / §7.1 artifacts --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    built = {}

    def get(version):
        if version not in built:
            built[version] = dist.dist(version, str(out / version))
        return built[version]

    return get


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_dist_tarball(artifacts, version):
    info = versions.get(version)
    result = artifacts(version)
    tarball = result["tarball"]
    assert os.path.basename(tarball) == f"Tractor-{version}_{info.build}-linuxEmulated_py3.x86_64.tar.gz"
    assert result["tarball_sha256"] == hashlib.sha256(open(tarball, "rb").read()).hexdigest()
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    top = f"Tractor-{version}"
    assert {n.split("/", 1)[0] for n in names} == {top}  # tar xzf F -C /opt/pixar
    assert names[0] == top and members[0].isdir()
    assert names == sorted(names, key=lambda n: n.split("/"))  # stable ordering
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == "" for m in members)
    by_name = {m.name: m for m in members}
    for tool in ("tractor-engine", "tractor-dbctl", "tq", "tractor-blade", "tractor-spool"):
        member = by_name[f"{top}/bin/{tool}"]
        assert member.isfile() and member.mode & 0o111 == 0o111, tool
    for name in ("tractor.config", "db.config", "blade.config", "crews.config", "limits.config"):
        assert by_name[f"{top}/config/{name}"].mode == 0o644
    # Service files name the place the tarball is meant to be extracted to (§7.1, §7.3).
    with tarfile.open(tarball) as tar:
        init = tar.extractfile(f"{top}/lib/SystemServices/tractor-engine").read().decode()
    assert f"TRACTOR_INSTALL_DIR=/opt/pixar/{top}\n" in init


def test_dist_is_reproducible(artifacts, tmp_path):
    again = dist.dist("2.2", str(tmp_path))
    assert again["tarball_sha256"] == artifacts("2.2")["tarball_sha256"]
    assert again["deb_sha256"] == artifacts("2.2")["deb_sha256"]


def deb_field(info_text: str, field: str) -> str:
    for line in info_text.splitlines():
        if line.strip().startswith(f"{field}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {field} in\n{info_text}")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_dist_deb(artifacts, version):
    info = versions.get(version)
    result = artifacts(version)
    deb = result["deb"]
    assert os.path.basename(deb) == f"pixar-tractor-{version}_{version}.{info.build}_all.deb"
    assert result["deb_sha256"] == hashlib.sha256(open(deb, "rb").read()).hexdigest()
    meta = run(["dpkg-deb", "--info", deb])
    assert meta.returncode == 0, meta.stderr
    assert deb_field(meta.stdout, "Package") == f"pixar-tractor-{version}"
    assert deb_field(meta.stdout, "Version") == f"{version}.{info.build}"
    assert deb_field(meta.stdout, "Architecture") == "all"
    assert deb_field(meta.stdout, "Depends") == "python3 (>= 3.9), postgresql-15 | postgresql, tar, gzip"
    assert "renderfarm.tractor emulator, not Pixar's product" in " ".join(meta.stdout.split())
    contents = run(["dpkg-deb", "--contents", deb])
    assert contents.returncode == 0, contents.stderr
    paths = []
    for line in contents.stdout.splitlines():
        fields = line.split()
        assert fields[1] == "root/root", line
        paths.append(fields[5])
    install_dir = f"./opt/pixar/Tractor-{version}/"
    payload = [p for p in paths if p not in ("./", "./opt/", "./opt/pixar/")]
    assert payload and all(p.startswith(install_dir) for p in payload)
    for tool in ("tractor-engine", "tractor-dbctl", "tq"):
        line = next(l for l in contents.stdout.splitlines() if l.endswith(f"{install_dir}bin/{tool}"))
        assert line.startswith("-rwxr-xr-x"), line
    assert f"{install_dir}lib/SystemServices/tractor-engine" in paths


def test_deb_installs_and_its_dbctl_runs(artifacts, tmp_path):
    deb = artifacts("2.2")["deb"]
    root = tmp_path / "root"
    proc = run(["dpkg", "-x", deb, str(root)])
    assert proc.returncode == 0, proc.stderr
    dbctl = root / "opt" / "pixar" / "Tractor-2.2" / "bin" / "tractor-dbctl"
    assert os.access(dbctl, os.X_OK)
    unit = (root / "opt/pixar/Tractor-2.2/lib/SystemServices/systemd/tractor-engine.service").read_text()
    assert "/opt/pixar/Tractor-2.2}/bin/tractor-engine" in unit
    help_run = run([str(dbctl), "-h"], env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    if HAVE_DBCTL:
        # §1.6: a help request exits 2
        assert help_run.returncode == 2, help_run.stderr
        out = help_run.stdout + help_run.stderr
        assert "--start-for-engine" in out and "--configdir" in out
        assert "Traceback" not in out
    else:
        assert help_run.returncode == 2
        assert "tractor-dbctl: not emulated yet" in help_run.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="already running unprivileged: the other dist tests cover it")
def test_dist_works_unprivileged(installs, owner, world):
    """Build as EngineOwner from an installed copy: dpkg-deb --root-owner-group needs no root."""
    out = tempfile.mkdtemp(prefix="dist-", dir=world)
    os.chown(out, owner.pw_uid, owner.pw_gid)
    env = {"PATH": "/usr/bin:/bin", "HOME": owner.pw_dir, "LANG": "C.UTF-8", "TMPDIR": out,
           "PYTHONPATH": os.path.join(installs("2.3"), "lib", "python")}
    proc = run(["/usr/bin/python3", "-m", "tractor_emulator.cli", "dist", "--version", "2.3", "--out", out],
               env=env, cwd=out, user=owner.pw_uid, group=owner.pw_gid, extra_groups=[])
    assert proc.returncode == 0, proc.stderr
    tarball, deb = proc.stdout.splitlines()
    assert os.stat(deb).st_uid == owner.pw_uid
    contents = run(["dpkg-deb", "--contents", deb]).stdout
    assert all(line.split()[1] == "root/root" for line in contents.splitlines())
    with tarfile.open(tarball) as tar:
        assert all(m.uid == 0 and m.gid == 0 for m in tar.getmembers())


# -- CLI ------------------------------------------------------------------------------------------------
def test_cli_versions(capsys):
    assert cli.main(["versions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["VERSION", "BUILD", "SCHEMA-VERSION", "RPM-STEM"]
    rows = [line.split() for line in lines[1:]]
    assert [row[0] for row in rows] == ALL_VERSIONS
    for row in rows:
        info = versions.get(row[0])
        assert row[1:] == [info.build, info.schema_version, info.rpm_stem]


def test_cli_versions_as_a_program():
    exe = shutil.which("tractor-emulator", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    argv = [exe] if exe else [sys.executable, "-m", "tractor_emulator.cli"]
    proc = run([*argv, "versions"])
    assert proc.returncode == 0, proc.stderr
    assert "2.2      1715407  2.2-4" in proc.stdout


def test_cli_install_and_dist_print_paths(tmp_path, capsys):
    assert cli.main(["install", "--version", "2.3", "--prefix", str(tmp_path / "opt")]) == 0
    root = capsys.readouterr().out.strip()
    assert root == str(tmp_path / "opt" / "Tractor-2.3") and os.path.isdir(os.path.join(root, "bin"))
    assert cli.main(["dist", "--version", "2.3", "--out", str(tmp_path / "out"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert os.path.basename(result["deb"]) == "pixar-tractor-2.3_2.3.1923604_all.deb"
    assert os.path.exists(result["tarball"])
    with pytest.raises(SystemExit):
        cli.main(["install", "--version", "9.9", "--prefix", str(tmp_path)])


@pytest.mark.skipif(not HAVE_DBCTL, reason="tractor-dbctl is not emulated yet")
def test_cli_demo_round_trip_passes_and_cleans_up(world, capsys):
    """`make demo`: backup, upgrade, refused downgrade, destroy + restore (§1.5, §8)."""
    rc = cli.main(["demo", "--world-parent", world])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "demo passed: 14 steps" in out
    assert out.count("(refused as it must be)") == 1
    assert "Upgrading database schema from version 2.1-2 to version 2.2-4." in out
    assert not [name for name in os.listdir(world) if name.startswith("tractor-demo-")]


# -- §2.1 merge -----------------------------------------------------------------------------------------
@pytest.fixture
def stock_and_site(installs, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    return installs("2.2"), site


def test_site_tractor_config_overrides_stock_key_by_key(stock_and_site):
    root, site = stock_and_site
    (site / "tractor.config").write_text('{"ListenerPort": 8000, "EngineOwner": "render",}\n')
    merged = config.MergedConfig(root, str(site))
    assert merged.tractor["ListenerPort"] == 8000
    assert merged.engine_owner == "render"
    assert merged.tractor["TractorDataDirectory"] == "/var/spool/tractor"  # from stock
    assert merged.tractor["JobSchedulingMode"] == "P+FIFO"
    assert merged.db_data_dir == "/var/spool/tractor/psql"  # stock db.config, macro expanded
    merged.require()


def test_site_db_config_replaces_nested_dbconnection_whole(stock_and_site):
    root, site = stock_and_site
    (site / "db.config").write_text('# site\n{"DBConnection": {"port": 5555}, "DBShutdown": False}\n')
    merged = config.MergedConfig(root, str(site))
    assert merged.db["DBConnection"] == {"port": 5555}  # no deep merge (§2.1)
    assert merged.db["DBShutdown"] is False
    assert merged.db["DBStartup"] is True  # other stock keys stay
    assert merged.connection == {"host": "localhost", "port": 5555, "dbname": "tractor"}  # code fallbacks (§2.3)


def test_json_true_in_site_db_config_fails(stock_and_site):
    root, site = stock_and_site
    path = site / "db.config"
    path.write_text('{"DBShutdown": true}\n')
    with pytest.raises(config.ConfigError, match="Problem evaluating config file") as err:
        config.MergedConfig(root, str(site))
    assert str(path) in str(err.value)


def test_missing_engine_owner_in_both(tmp_path):
    fake_root = tmp_path / "Tractor-2.2"
    (fake_root / "config").mkdir(parents=True)
    stock = ast.literal_eval(config.stock_text("tractor.config", "2.2"))
    del stock["EngineOwner"]
    (fake_root / "config" / "tractor.config").write_text(repr(stock))
    (fake_root / "config" / "db.config").write_text(config.stock_text("db.config", "2.2"))
    site = tmp_path / "site"
    site.mkdir()
    (site / "tractor.config").write_text('{"ListenerPort": 8000}')
    merged = config.MergedConfig(str(fake_root), str(site))
    with pytest.raises(config.ConfigError) as err:
        merged.require()
    assert str(err.value) == (f"EngineOwner is not defined in config files {fake_root}/config/tractor.config "
                              f"nor {site}/tractor.config")
