"""Tractor configuration files: stock texts, parsing and the stock+site merge (fact sheet §2).

* tractor.config and db.config are read with ``ast.literal_eval`` as tractor-dbctl does, so they
  must be Python literals: ``True``/``False``, ``#`` comments and trailing commas are fine; JSON
  ``true``/``false``/``null`` fail with "Problem evaluating config file" (§2.1).
* Only those two files are merged (stock first, site keys laid over with a top-level
  ``dict.update``; nested dicts such as DBConnection are replaced whole); every other file in a site
  directory replaces the stock file whole (§2.1).
* dbctl expands only ``${TractorDataDirectory}`` and only inside DBDataDir (§2.1).
"""

from __future__ import annotations

import ast
import os

MERGED_FILES = ("tractor.config", "db.config")

# Keys that must exist after the merge, else "<Key> is not defined in config files ..." (§1.3, §2.2, §2.3).
REQUIRED_TRACTOR_KEYS = ("TractorDataDirectory", "EngineOwner")
REQUIRED_DB_KEYS = (
    "DBStartup", "DBUseExisting", "DBAutoUpgrade", "DBInit", "DBShutdown",
    "DBConnection", "DBArchiving", "DBDataDir",
)


class ConfigError(Exception):
    """A config problem; dbctl reports it on stderr and exits 2 (§1.6 EngineConfigError)."""


# The stock files.  The real texts are not public (§9.3); keys and defaults follow §2.2/§2.3.
# The stock EngineOwner is unknown (§2.2); the emulator ships the doc example "tractor".
STOCK_TRACTOR_CONFIG = '''\
# tractor.config -- stock engine settings (Tractor {version} emulator)
# Copy only the keys you change into the site config directory (--configdir);
# the engine and tractor-dbctl merge the site file over this one (fact sheet 2.1).
{{
    "EngineOwner": "tractor",
    "ListenerPort": 80,
    "EngineDiscovery": "tractor-engine",
    #"LicenseLocation": "9010@licenseserver",
    "LicenseLocation": "${{TractorInstallDirectory}}/../pixar.license",
    "MaxConcurrentDispatch": 0,
    "EngineWorkerThreads": 0,
    "TractorDataDirectory": "/var/spool/tractor",
    "EngineLogFile": "",
    "EngineLogVerbosity": "NOTICE",
    "SiteCmdLogServerStartup": "'${{TractorInstallDirectory}}/bin/tractor-cmdlogger' --filetemplate='${{TractorDataDirectory}}/cmd-logs/%u/J%j/T%t.log' --port=9180",
    "SiteCmdLogRetrievalURL": "/tractor/cmd-logs/%u/J%j/T%t.log",
    "SiteURLMap": {{
        "/tractor/cmd-logs/": "${{TractorDataDirectory}}/cmd-logs/",
        "/tractor/dashboard/": "${{TractorDashboardDirectory}}/tv/",
        "/tractor/tv/": "${{TractorDashboardDirectory}}/tv/",
    }},
    "SiteMaxListReplyCount": 2500,
    "JobScriptQuotingMode": "tractor",
    "JobSchedulingMode": "P+FIFO",
    "DispatchTiers": {{"admin": 111, "rush": 99, "default": 50, "batch": 10}},
    "SiteHttpOriginAccess": "*",
    "CmdAutoRetryAttempts": 0,
    "CmdRetryrcRetryAttempts": 1,
    "CmdAutoRetryStopCodes": [-9, -15, 10110, 10111],
    "InitialJobLoadProgressLog": 1000,
    "LogLongRunningRequests": [0.0, 5.0],
    "ListenBacklog": 0,
    "SiteSMTPServer": "smtp",
    "SiteDefaultMailDomain": "",
    "AllowJobOwnerOverride": 0,
}}
'''

STOCK_DB_CONFIG = '''\
# db.config -- stock job database settings (Tractor {version} emulator)
# Python literal syntax: True/False, not JSON true/false (fact sheet 2.1).
{{
    "DBStartup": True,
    "DBUseExisting": True,
    "DBAutoUpgrade": True,
    "DBInit": True,
    "DBShutdown": True,
    "DBArchiving": True,
    "DBDebug": False,
    "DBDataDir": "${{TractorDataDirectory}}/psql",
    "DBConnection": {{"host": "localhost", "port": 9876, "dbname": "tractor"}},
    "DBRolePasswords": {{
        "root": "", "bootstrap": "", "dispatcher": "", "spooler": "",
        "dashboard": "", "reader": "", "dev_read": "", "dev_write": "",
    }},
}}
'''

STOCK_BLADE_CONFIG = '''\
{{
    "ProfileDefaults": {{
        "ProfileName": "default",
        "Hosts": {{"Platform": "*"}},
        "Access": {{"Crews": ["*"]}},
        "Provides": ["PixarRender", "PixarNRM", "RfMRender", "default"],
        "EnvKeys": ["default"],
        "CmdOutputLogging": "logserver=${{TRACTOR_ENGINE}}:9180",
        "VersionPin": "",
        "MaxSlots": 1
    }},
    "BladeProfiles": [
        {{"ProfileName": "default"}}
    ]
}}
'''

STOCK_CREWS_CONFIG = '''\
{{
    "Crews": {{
        "Administrators": {{"Users": ["root", "tractor"]}},
        "Wranglers": {{"Users": []}},
        "ValidLogins": {{"Users": ["*"]}}
    }},
    "SitePasswordValidator": ""
}}
'''

STOCK_LIMITS_CONFIG = '''\
{{
    "Limits": {{
        "prman": {{"SiteMax": 32, "Shares": {{}}}},
        "maya": {{"SiteMax": -1, "Shares": {{}}}}
    }}
}}
'''

STOCK_FILES = {
    "tractor.config": STOCK_TRACTOR_CONFIG,
    "db.config": STOCK_DB_CONFIG,
    "blade.config": STOCK_BLADE_CONFIG,
    "crews.config": STOCK_CREWS_CONFIG,
    "limits.config": STOCK_LIMITS_CONFIG,
}


def stock_text(name: str, version: str) -> str:
    return STOCK_FILES[name].format(version=version)


def parse_python_literal(path: str) -> dict:
    """Parse one tractor.config/db.config as dbctl does (ast.literal_eval, §2.1)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"Problem reading config file {path}: {exc.strerror}") from None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise ConfigError(f"Problem evaluating config file {path}: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"Problem evaluating config file {path}: the top level is not a dictionary")
    return value


class MergedConfig:
    """Stock + site tractor.config and db.config, merged as §2.1 describes."""

    def __init__(self, install_root: str, config_dir: str):
        self.install_root = install_root
        self.stock_dir = os.path.join(install_root, "config")
        self.site_dir = config_dir
        self.tractor = self._merge("tractor.config")
        self.db = self._merge("db.config")

    def _merge(self, name: str) -> dict:
        merged: dict = {}
        for directory in (self.stock_dir, self.site_dir):
            path = os.path.join(directory, name)
            if os.path.exists(path):
                merged.update(parse_python_literal(path))
        return merged

    def paths(self, name: str) -> tuple[str, str]:
        return os.path.join(self.stock_dir, name), os.path.join(self.site_dir, name)

    def require(self) -> None:
        for name, keys, values in (
            ("tractor.config", REQUIRED_TRACTOR_KEYS, self.tractor),
            ("db.config", REQUIRED_DB_KEYS, self.db),
        ):
            stock, site = self.paths(name)
            for key in keys:
                if key not in values:
                    raise ConfigError(f"{key} is not defined in config files {stock} nor {site}")

    # -- derived values -------------------------------------------------------------------
    @property
    def data_dir(self) -> str:
        return str(self.tractor["TractorDataDirectory"])

    @property
    def engine_owner(self) -> str:
        return str(self.tractor.get("EngineOwner") or "")

    @property
    def db_data_dir(self) -> str:
        return str(self.db["DBDataDir"]).replace("${TractorDataDirectory}", self.data_dir)

    @property
    def connection(self) -> dict:
        conn = {"host": "localhost", "port": 9876, "dbname": "tractor"}  # code fallbacks (§2.3)
        conn.update(self.db.get("DBConnection") or {})
        return conn

    def flag(self, key: str, fallback: bool) -> bool:
        return bool(self.db.get(key, fallback))

    def listener_port(self) -> tuple[str, int]:
        """ListenerPort is an int or an "iface:port" string (§2.2)."""
        value = self.tractor.get("ListenerPort", 80)
        if isinstance(value, str) and ":" in value:
            host, _, port = value.rpartition(":")
            return host, int(port)
        return "", int(value)
