"""tractor_config: stock + site merge, macro expansion and parse errors, as tractor-dbctl does them (§2)."""

from __future__ import annotations

import pytest

from ansible_collections.renderfarm.tractor.plugins.module_utils.tractor_config import (
    DB_CONNECTION_DEFAULTS, SiteConfig, TractorConfigError, install_dir_for, load_literal,
)

STOCK_TRACTOR = '''\
# stock tractor.config
{
    "EngineOwner": "tractor",
    "ListenerPort": 80,
    "TractorDataDirectory": "/var/spool/tractor",
    "EngineLogFile": "${TractorDataDirectory}/engine.log",
    "SiteURLMap": {"/tractor/cmd-logs/": "${TractorDataDirectory}/cmd-logs/"},
    "DispatchTiers": {"admin": 111, "default": 50},
}
'''
STOCK_DB = '''\
# Python literals: True/False
{
    "DBStartup": True,
    "DBUseExisting": True,
    "DBAutoUpgrade": True,
    "DBInit": True,
    "DBShutdown": True,
    "DBArchiving": True,
    "DBDataDir": "${TractorDataDirectory}/psql",
    "DBConnection": {"host": "localhost", "port": 9876, "dbname": "tractor"},
}
'''


@pytest.fixture
def dirs(tmp_path):
    install = tmp_path / "Tractor-2.2"
    (install / "config").mkdir(parents=True)
    (install / "config" / "tractor.config").write_text(STOCK_TRACTOR)
    (install / "config" / "db.config").write_text(STOCK_DB)
    site = tmp_path / "site"
    site.mkdir()
    return install, site


def config(dirs, tractor=None, db=None):
    install, site = dirs
    if tractor is not None:
        (site / "tractor.config").write_text(tractor)
    if db is not None:
        (site / "db.config").write_text(db)
    return SiteConfig(str(install), str(site))


def test_install_dir_for():
    assert install_dir_for("2.4") == "/opt/pixar/Tractor-2.4"
    assert install_dir_for("2.2", prefix="/x") == "/x/Tractor-2.2"


def test_sparse_site_dir_uses_stock(dirs):
    cfg = config(dirs)
    assert cfg.engine_owner == "tractor" and cfg.data_dir == "/var/spool/tractor"
    assert cfg.files["tractor.config"] == [str(dirs[0] / "config" / "tractor.config")]
    assert cfg.missing_keys() == []


def test_site_overrides_stock_key_by_key(dirs):
    cfg = config(dirs, tractor='{"ListenerPort": 8181, "EngineOwner": "render"}')
    assert cfg.tractor["ListenerPort"] == 8181
    assert cfg.engine_owner == "render"
    assert cfg.tractor["TractorDataDirectory"] == "/var/spool/tractor"  # untouched keys stay stock
    install, site = dirs
    assert cfg.files["tractor.config"] == [str(install / "config" / "tractor.config"), str(site / "tractor.config")]


def test_nested_dicts_are_replaced_whole(dirs):
    cfg = config(dirs, tractor='{"DispatchTiers": {"rush": 99}}',
                 db='{"DBConnection": {"port": 5555}}')
    assert cfg.tractor["DispatchTiers"] == {"rush": 99}
    assert cfg.db["DBConnection"] == {"port": 5555}  # not deep-merged: host/dbname are gone
    # ... and the documented fallbacks fill what the replaced dict lacks.
    assert cfg.db_connection == {"host": "localhost", "port": 5555, "dbname": "tractor"}


def test_db_connection_defaults_when_absent(dirs):
    install, site = dirs
    (install / "config" / "db.config").write_text('{"DBDataDir": "/d"}')
    assert SiteConfig(str(install), str(site)).db_connection == DB_CONNECTION_DEFAULTS


def test_data_directory_macro_expanded_only_in_dbdatadir(dirs):
    cfg = config(dirs, tractor='{"TractorDataDirectory": "/ssd/tractor"}')
    assert cfg.db_data_dir == "/ssd/tractor/psql"
    assert cfg.db["DBDataDir"] == "${TractorDataDirectory}/psql"  # the raw value is kept
    assert cfg.tractor["EngineLogFile"] == "${TractorDataDirectory}/engine.log"
    assert cfg.tractor["SiteURLMap"] == {"/tractor/cmd-logs/": "${TractorDataDirectory}/cmd-logs/"}
    assert cfg.cmd_logs_dir == "/ssd/tractor/cmd-logs"


def test_other_macros_are_not_expanded_in_dbdatadir(dirs):
    cfg = config(dirs, db='{"DBDataDir": "${TractorInstallDirectory}/psql"}')
    assert cfg.db_data_dir == "${TractorInstallDirectory}/psql"


def test_dbdatadir_default(dirs):
    install, site = dirs
    (install / "config" / "db.config").write_text("{}")
    cfg = SiteConfig(str(install), str(site))
    assert cfg.db_data_dir == "/var/spool/tractor/psql"
    assert "DBDataDir (db.config)" in cfg.missing_keys()


def test_json_true_is_a_clear_error(dirs):
    with pytest.raises(TractorConfigError) as err:
        config(dirs, db='{"DBShutdown": true}')
    message = str(err.value)
    assert str(dirs[1] / "db.config") in message
    assert "write True/False, not true/false" in message


def test_json_null_is_an_error_too(dirs):
    with pytest.raises(TractorConfigError, match="cannot parse"):
        config(dirs, tractor='{"EngineOwner": null}')


def test_comments_and_trailing_commas_are_fine(dirs):
    cfg = config(dirs, db='# site\n{\n  "DBShutdown": False,  # keep PG up\n}\n')
    assert cfg.db_flag("DBShutdown") is False
    assert cfg.db_flag("DBStartup") is True


def test_not_a_dict(dirs):
    with pytest.raises(TractorConfigError, match="does not hold a dictionary"):
        config(dirs, tractor='["EngineOwner"]')


def test_latin1_in_a_comment_is_accepted_as_tractors_python_2_7_does(tmp_path):
    """A hand-edited comment in Latin-1 (byte 0xe9): Python 2.7's ast.literal_eval accepts it."""
    path = tmp_path / "tractor.config"
    path.write_bytes(b'{\n    # r\xe9glages du site\n    "EngineOwner": "tractor",  # caf\xe9\n    "Note": "a # b",\n}\n')
    assert load_literal(str(path)) == {"EngineOwner": "tractor", "Note": "a # b"}
    path.write_bytes('{"Note": "caf\u00e9"}  # caf\u00e9\n'.encode("utf-8"))
    assert load_literal(str(path)) == {"Note": "caf\u00e9"}


@pytest.mark.parametrize("line", [b'    "Note": "caf\xe9",', b"    'Note': 'x # caf\xe9',"])
def test_latin1_inside_a_value_names_the_file_and_line(tmp_path, line):
    path = tmp_path / "tractor.config"
    path.write_bytes(b"{\n    # fine\n" + line + b"\n}\n")
    with pytest.raises(TractorConfigError) as info:
        load_literal(str(path))
    assert str(info.value).startswith("%s line 3: byte 0xe9 (column " % path)
    assert "save the file as UTF-8" in str(info.value)


def test_unreadable_file(tmp_path):
    with pytest.raises(TractorConfigError, match="cannot read"):
        load_literal(str(tmp_path / "nope.config"))


def test_flag_fallbacks_when_absent(dirs):
    install, site = dirs
    (install / "config" / "db.config").write_text("{}")
    cfg = SiteConfig(str(install), str(site))
    assert cfg.db_flag("DBAutoUpgrade") is True
    assert cfg.db_flag("DBStartup") is False and cfg.db_flag("DBShutdown") is False


def test_missing_required_keys(dirs):
    install, site = dirs
    (install / "config" / "tractor.config").write_text('{"EngineOwner": ""}')
    cfg = SiteConfig(str(install), str(site))
    assert cfg.missing_keys() == ["TractorDataDirectory (tractor.config)"]
    assert cfg.engine_owner == ""


@pytest.mark.parametrize("value, expected", [(80, ("", 80)), ("8181", ("", 8181)),
                                             ("localhost:8181", ("localhost", 8181))])
def test_listener(dirs, value, expected):
    cfg = config(dirs, tractor='{"ListenerPort": %r}' % (value,))
    assert cfg.listener == expected


@pytest.mark.parametrize("value, expected", [
    (80, "localhost:80"), ("0.0.0.0:8181", "localhost:8181"), ("*:8181", "localhost:8181"),
    ("[::]:8181", "localhost:8181"), ("10.1.2.3:8181", "10.1.2.3:8181"), ("render01:80", "render01:80")])
def test_client_address_is_what_a_client_on_this_host_connects_to(dirs, value, expected):
    """One rule for every module: a wildcard listener is reached at localhost."""
    cfg = config(dirs, tractor='{"ListenerPort": %r}' % (value,))
    assert cfg.client_address() == expected
    assert cfg.client_address("engine.example:8080") == "engine.example:8080"


def test_planned_site_config_replaces_the_site_files(dirs):
    install, site = dirs
    (site / "tractor.config").write_text('{"ListenerPort": 8181, "EngineOwner": "render"}')
    planned = {"tractor.config": {"ListenerPort": 8080}, "db.config": {}}
    cfg = SiteConfig(str(install), str(site), planned=planned)
    assert cfg.listener == ("", 8080)
    assert cfg.engine_owner == "tractor"  # the site file is not read: the stock owner stays
    assert cfg.files["tractor.config"] == [str(install / "config" / "tractor.config")]
    absent = SiteConfig(str(install), str(site / "not-yet"), planned=planned)
    assert absent.listener == ("", 8080) and absent.missing_keys() == []
