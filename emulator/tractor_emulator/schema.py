"""The job database schema of each emulated version, and the upgrades between them (§4, §1.4, §8).

Model (after SRC-DBCTL24 as the fact sheet reads it):

* ``--build`` creates the roles, the database, the tables of the installed version, the ``param``
  rows (§4.3) and sets ``schema-version``; it does not write ``module-checksum``.
* An upgrade is needed when the stored ``schema-version`` differs from the code's, or the stored
  ``module-checksum`` differs (§1.4).  So a fresh build is followed by the four "drop/create all
  views/functions" steps, exactly as the real 2.2 start-up log shows (LOG-22).
* The steps between versions run in one transaction; a failure rolls all of them back (§1.4).

INVENTED (listed in emulator/README.md): the table changes of each version step.  2.1 -> 2.2 is the
one-way migration whose cost grows with the number of jobs (§8: it rewrites every job row).
2.3 and 2.4 change no table (§8: their release notes name no schema change): they keep schema
version 2.2-4, and only their module checksum makes dbctl rebuild the views and functions.
"""

from __future__ import annotations

import dataclasses

from . import versions

LOGIN_WRITE_ROLES = ("bootstrap", "spooler", "dispatcher", "dev_write")
LOGIN_READ_ROLES = ("reader", "dashboard", "dev_read")

ROLES_SQL = "\n".join(
    ["DO $roles$ BEGIN",
     "  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'writeroles') THEN CREATE ROLE writeroles NOLOGIN; END IF;",
     "  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'readroles') THEN CREATE ROLE readroles NOLOGIN; END IF;"]
    + [f"  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{r}') THEN CREATE ROLE {r} LOGIN IN ROLE writeroles; END IF;"
       for r in LOGIN_WRITE_ROLES]
    + [f"  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{r}') THEN CREATE ROLE {r} LOGIN IN ROLE readroles; END IF;"
       for r in LOGIN_READ_ROLES]
    + ["END $roles$;",
       # "prevents multiple engines from running at once" on one database (§4.2).
       "ALTER ROLE bootstrap CONNECTION LIMIT 1;"]
)

# Tables as Tractor 2.1 has them (§4.2: invocation carries bladeid since 2.1).
BASE_TABLES_SQL = """
CREATE TABLE param (name text PRIMARY KEY, value text);
CREATE TABLE job (
    jid bigint PRIMARY KEY, owner text, spoolhost text, spoolfile text, spoolcwd text,
    spooladdr text, title text, assignments text, tier text, priority real DEFAULT 1,
    crews text[], projects text[], tags text[], service text, envkey text[], editpolicy text,
    minslots integer, maxslots integer, etalevel integer, afterjids bigint[],
    spooltime timestamptz DEFAULT now(), pausetime timestamptz, aftertime timestamptz,
    starttime timestamptz, stoptime timestamptz, deletetime timestamptz,
    elapsedsecs real DEFAULT 0, esttotalsecs real DEFAULT 0,
    numtasks integer DEFAULT 0, numblocked integer DEFAULT 0, numready integer DEFAULT 0,
    numactive integer DEFAULT 0, numerror integer DEFAULT 0, numdone integer DEFAULT 0,
    maxtid integer DEFAULT 0, maxcid integer DEFAULT 0, comment text, metadata text,
    maxactive integer DEFAULT 0, serialsubtasks boolean DEFAULT false, dirmap text
);
CREATE TABLE task (
    jid bigint, tid integer, title text, id text, service text, minslots integer, maxslots integer,
    cids integer[], serialsubtasks boolean DEFAULT false, ptids integer[], attached boolean,
    state text DEFAULT 'blocked', statetime timestamptz DEFAULT now(), readytime timestamptz,
    activetime timestamptz, currcid integer, haslog boolean DEFAULT false, preview text[],
    chaser text[], progress real DEFAULT 0, metadata text, resumeblock boolean DEFAULT false,
    PRIMARY KEY (jid, tid)
);
CREATE TABLE command (
    jid bigint, cid integer, tid integer, argv text[], local boolean DEFAULT false,
    expand boolean DEFAULT false, runtype text DEFAULT 'regular', msg text, service text,
    tags text[], id text, refersto text, minslots integer, maxslots integer, envkey text[],
    retryrcodes integer[], metadata text, resumewhile text[], resumepin boolean DEFAULT false,
    PRIMARY KEY (jid, cid)
);
CREATE TABLE invocation (
    jid bigint, tid integer, cid integer, iid integer, current boolean DEFAULT true,
    bladeid text, numslots integer, limits text[], starttime timestamptz, stoptime timestamptz,
    pid integer, rss real, vsz real, cpu real, elapsedapp real, elapsedsys real,
    elapsedreal real, rcode integer, retrycount integer DEFAULT 0, resumecount integer DEFAULT 0,
    resumable boolean DEFAULT false,
    PRIMARY KEY (jid, tid, cid, iid)
);
CREATE TABLE blade (
    name text PRIMARY KEY, ipaddr text, port integer, osname text, osversion text,
    boottime timestamptz, numcpu integer, loadavg real, availmemory real, availdisk real,
    version text, profile text, nimby text, starttime timestamptz, numslots integer,
    udi real, status text, heartbeattime timestamptz, bladeid text
);
CREATE TABLE note (
    noteid serial PRIMARY KEY, itemtype text, itemid text, owner text,
    time timestamptz DEFAULT now(), text text
);
"""


@dataclasses.dataclass(frozen=True)
class Step:
    description: str
    sql: str


# Table changes that lead *to* a version (INVENTED contents, see module doc).
TABLE_STEPS: dict[str, list[Step]] = {
    "2.1": [],
    "2.2": [
        Step("Convert job directory maps to JSON (rewrites every job)",
             "ALTER TABLE job ALTER COLUMN dirmap TYPE json USING "
             "(CASE WHEN dirmap IS NULL OR dirmap = '' THEN '[]' ELSE dirmap END)::json;"),
        Step("Add task retry counters (rewrites every task)",
             "ALTER TABLE task ADD COLUMN retrycount integer; "
             "UPDATE task SET retrycount = 0; "
             "ALTER TABLE task ALTER COLUMN retrycount SET DEFAULT 0;"),
        # Named by later docs (fact sheet §4.2, DOC-GLOSS); 2.3 and 2.4 keep the 2.2 schema, so
        # they belong to the 2.2 one.
        Step("Add job pil and lastnoteid columns",
             "ALTER TABLE job ADD COLUMN pil integer DEFAULT 0, ADD COLUMN lastnoteid integer DEFAULT 0;"),
        Step("Add blade cleartime and gpulabel columns",
             "ALTER TABLE blade ADD COLUMN cleartime timestamptz, ADD COLUMN gpulabel text;"),
    ],
    "2.3": [],
    "2.4": [],
}

# Views and functions as of every version (rebuilt wholesale on each upgrade, as in LOG-22).
DROP_VIEWS_SQL = "DROP VIEW IF EXISTS jobinfo; DROP VIEW IF EXISTS bladeuse;"
CREATE_VIEWS_SQL = """
CREATE VIEW jobinfo AS SELECT jid, owner, title, priority, numtasks, numblocked, numready,
    numactive, numerror, numdone, spooltime, deletetime FROM ONLY job;
CREATE VIEW bladeuse AS SELECT bladeid, count(*) AS numinvocations FROM ONLY invocation
    WHERE current AND stoptime IS NULL GROUP BY bladeid;
"""
DROP_FUNCTIONS_SQL = """
DROP FUNCTION IF EXISTS TractorNewJid();
DROP FUNCTION IF EXISTS TractorPurgeLive();
DROP FUNCTION IF EXISTS TractorPurgeArchive();
DROP FUNCTION IF EXISTS TractorResetJobCounter();
"""
# TractorNewJid increments then returns, so jidcounter holds the last used jid (§4.3).
# The real functions are plpython2u/SQL; ours are plpgsql (INVENTED: no plpython2u here).
CREATE_FUNCTIONS_SQL = """
CREATE FUNCTION TractorNewJid() RETURNS bigint LANGUAGE sql AS
  $$ UPDATE param SET value = (value::bigint + 1)::text WHERE name = 'jidcounter' RETURNING value::bigint $$;
CREATE FUNCTION TractorPurgeLive() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM ONLY invocation; DELETE FROM ONLY command; DELETE FROM ONLY task; DELETE FROM ONLY job;
END $$;
CREATE FUNCTION TractorPurgeArchive() RETURNS void LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_class p ON p.oid = i.inhparent
           WHERE p.relname IN ('job', 'task', 'command', 'invocation') LOOP
    EXECUTE format('DROP TABLE IF EXISTS %I', r.relname);
  END LOOP;
END $$;
CREATE FUNCTION TractorResetJobCounter() RETURNS void LANGUAGE sql AS
  $$ UPDATE param SET value = '0' WHERE name = 'jidcounter' $$;
"""

GRANTS_SQL = """
GRANT USAGE ON SCHEMA public TO writeroles, readroles;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO writeroles;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO readroles;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO writeroles;
"""

VIEW_FUNCTION_STEPS_BEFORE = [
    Step("Drop all views.", DROP_VIEWS_SQL),
    Step("Drop all functions.", DROP_FUNCTIONS_SQL),
]
VIEW_FUNCTION_STEPS_AFTER = [
    Step("Create all views.", CREATE_VIEWS_SQL),
    Step("Create all functions.", CREATE_FUNCTIONS_SQL + GRANTS_SQL),
]


def build_sql(version: str, archiving: bool) -> str:
    """Tables and param rows of a fresh database at ``version`` (run inside the new database)."""
    parts = [BASE_TABLES_SQL]
    for v in versions.ORDER[: versions.ORDER.index(version) + 1]:
        parts.extend(step.sql for step in TABLE_STEPS[v])
    schema_version = versions.get(version).schema_version
    parts.append(
        "INSERT INTO param (name, value) VALUES "
        f"('jidcounter', '0'), ('maxrecords', '10000'), ('archiving', '{1 if archiving else 0}'), "
        f"('schema-version', '{schema_version}');"
    )
    parts.append("ALTER TABLE job OWNER TO dispatcher; ALTER TABLE task OWNER TO dispatcher; "
                 "ALTER TABLE command OWNER TO dispatcher; ALTER TABLE invocation OWNER TO dispatcher; "
                 "ALTER TABLE blade OWNER TO dispatcher; ALTER TABLE param OWNER TO dispatcher; "
                 "ALTER TABLE note OWNER TO dispatcher;")
    return "\n".join(parts)


def version_of_schema(schema_version: str) -> str | None:
    """The oldest emulated release with this schema-version (later ones add no table step), if any."""
    for info in versions.VERSIONS.values():
        if info.schema_version == schema_version:
            return info.version
    return None


def upgrade_steps(stored_schema: str, stored_checksum: str | None, target: str) -> list[Step]:
    """Steps from the stored schema to ``target``'s; empty when the schema is current (§1.4).

    Raises ValueError when the stored schema is newer than the target knows.
    """
    info = versions.get(target)
    if versions.schema_key(stored_schema) > versions.schema_key(info.schema_version):
        raise ValueError(stored_schema)
    if stored_schema == info.schema_version and stored_checksum == info.module_checksum:
        return []
    table_steps: list[Step] = []
    stored_release = version_of_schema(stored_schema)
    if stored_release is not None:
        start = versions.ORDER.index(stored_release) + 1
    else:  # an older schema than any emulated release: apply every step up to target
        start = 0
    for v in versions.ORDER[start: versions.ORDER.index(target) + 1]:
        table_steps.extend(TABLE_STEPS[v])
    return VIEW_FUNCTION_STEPS_BEFORE + table_steps + VIEW_FUNCTION_STEPS_AFTER
