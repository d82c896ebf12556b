"""The Tractor versions the emulator knows, and what differs between them.

Build numbers and dates of 2.2/2.4 come from real artefacts (fact sheet §0 "Version
landmarks", §6.1, §6.5); the schema version of 2.2 is the one a real 2.2 b1715407 reports
(§4.3, LOG-22).  Everything marked INVENTED is listed in emulator/README.md.
"""

from __future__ import annotations

import dataclasses
import hashlib


@dataclasses.dataclass(frozen=True)
class TractorVersion:
    version: str            # "2.2"
    build: str              # "1715407"
    build_date: str         # "Feb 15 2017 11:38:27" as printed in the engine banner
    schema_version: str     # value of the param row "schema-version"
    tq_date: str            # tq -v suffix, e.g. "17 Aug 2020 05:40:13"

    @property
    def platform(self) -> str:
        # Real banners say "linux-ix86-64-gcc44icc150-release" (§6.1); ours says what it is.
        return "linux-emulated-release"

    @property
    def banner(self) -> str:
        """The engine banner: 'Tractor 2.2 (Feb 15 2017 11:38:27 1715407 linux-...)' (§6.5)."""
        return f"Tractor {self.version} ({self.build_date} {self.build} {self.platform})"

    @property
    def server_header(self) -> str:
        """Value of the HTTP Server header (§6.1, HTTP-24)."""
        return f"Pixar_Tractor/{self.version} ({self.build_date} {self.build} {self.platform})"

    @property
    def module_checksum(self) -> str:
        """Stand-in for the SHA-1 of the shipped EngineDB.py (§1.4): one value per build."""
        return hashlib.sha1(f"tractor-emulator EngineDB {self.version} {self.build}".encode()).hexdigest()

    @property
    def rpm_stem(self) -> str:
        """Name stem of the real RPMs (§0 "RPM names seen"), with 'emulated' as platform."""
        return f"Tractor-{self.version}_{self.build}-linuxEmulated_py3"


# 2.1 b1505289 and 2.3 b1923604 are real build numbers (§0, DOC-RN); their dates and the
# schema version of 2.1 are INVENTED (§4.3 says it is unknown, §9.5). 2.3 and 2.4 keep 2.2's
# schema: their release notes name no schema change (§8), so only the module checksum differs.
VERSIONS: dict[str, TractorVersion] = {
    v.version: v
    for v in (
        TractorVersion("2.1", "1505289", "Sep 21 2015 14:02:11", "2.1-2", "21 Sep 2015 14:03:40"),
        TractorVersion("2.2", "1715407", "Feb 15 2017 11:38:27", "2.2-4", "15 Feb 2017 11:39:02"),
        TractorVersion("2.3", "1923604", "Jun 12 2019 09:12:55", "2.2-4", "12 Jun 2019 09:13:30"),
        TractorVersion("2.4", "2091325", "Aug 17 2020 05:39:38", "2.2-4", "17 Aug 2020 05:40:13"),
    )
}

ORDER = list(VERSIONS)  # oldest first


def get(version: str) -> TractorVersion:
    try:
        return VERSIONS[version]
    except KeyError:
        raise ValueError(
            f"unknown Tractor version {version!r}; the emulator knows {', '.join(ORDER)}"
        ) from None


def schema_key(schema_version: str) -> tuple[int, int, int]:
    """Sort key of a schema-version value.

    Tractor 2.0 stored bare integers; later code reads a value without '-' as '2.0-<n>' (§4.3).
    """
    if "-" not in schema_version:
        schema_version = f"2.0-{schema_version}"
    release, _, step = schema_version.partition("-")
    major, _, minor = release.partition(".")
    return int(major), int(minor), int(step)
