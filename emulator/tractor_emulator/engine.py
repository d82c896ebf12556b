"""Emulated ``tractor-engine`` (fact sheet §6, §7.2, §8).

Start-up follows the real 2.2 journal (§7.2, LOG-22): banner, directories, listener, operating
login, ``tractor-dbctl --start-for-engine`` of the engine's own version (which builds or upgrades
the schema as db.config says, §8), the database connection as ``bootstrap`` (one per database,
§4.2), then the queue.  Requests that arrive while the database is being started or upgraded wait
(§8 "communication with the engine will block").  SIGTERM/SIGINT stop dispatching and run
``--stop-for-engine`` (§1.2: stops PostgreSQL only if DBShutdown); SIGKILL leaves PostgreSQL
running, as with a killed real engine.  The HTTP API is described in emulator/PROTOCOL.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import config as configmod
from . import faults, pgwire, query, versions
from .pgwire import literal as q

BLADE_DOWN_AFTER = 30.0  # seconds without a heartbeat (INVENTED)
TASK_STATES = ("blocked", "ready", "active", "error", "done")


class EngineError(Exception):
    pass


class Log:
    """Engine log: ``--log FILE`` or stderr; SIGHUP reopens the file (§7.2, DOC-LOG)."""

    LEVELS = {"SEVERE": 0, "WARNING": 1, "NOTICE": 2, "INFO": 3, "DEBUG": 4, "TRACE": 5}

    def __init__(self, path: str | None, verbosity: str):
        self.path = path
        self.level = self.LEVELS.get(verbosity.upper(), 2)
        self.lock = threading.Lock()
        self.stream = None
        self.reopen()

    def reopen(self) -> None:
        with self.lock:
            if self.path:
                if self.stream is not None:
                    self.stream.close()
                self.stream = open(self.path, "a", encoding="utf-8", buffering=1)
            else:
                self.stream = sys.stderr

    def __call__(self, level: str, message: str) -> None:
        if self.LEVELS[level] > self.level:
            return
        stamp = time.strftime("%m/%d %H:%M:%S")
        with self.lock:
            self.stream.write(f"{stamp} {level} {message}\n")
            self.stream.flush()


class Engine:
    def __init__(self, info: versions.TractorVersion, install_root: str, config_dir: str,
                 cfg: configmod.MergedConfig, log: Log, paused: bool):
        self.info = info
        self.install_root = install_root
        self.config_dir = config_dir
        self.cfg = cfg
        self.log = log
        self.paused = paused
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.db_lock = threading.RLock()
        self.db: pgwire.Connection | None = None
        self.sessions: dict[str, str] = {}
        self.start_time = time.time()
        self.has_retrycount = False
        # tractorselect's view of the tables: table -> {column: kind}, read from the database
        self.columns: dict[str, dict[str, str]] = {}
        # Retries of active tasks wait for their blade to report the kill (PROTOCOL.md): the
        # invocations (jid, tid, cid, iid) whose kill is pending.  In memory only (INVENTED):
        # an engine restart forgets them.
        self.pending_kills: set[tuple[int, int, int, int]] = set()

    # -- database -----------------------------------------------------------------------------------
    def sql(self, statement: str) -> list[list[str | None]]:
        with self.db_lock:
            return self.db.query(statement)

    def run_dbctl(self, operation: str) -> int:
        dbctl = os.path.join(self.install_root, "bin", "tractor-dbctl")
        argv = [dbctl, operation, f"--config-dir={self.config_dir}"]
        self.log("NOTICE", f"launching {dbctl}")
        # dbctl's messages are logged as they come, so a long schema upgrade shows its progress.
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            self.log("NOTICE", f"  {line.rstrip()}")
        rc = proc.wait()
        level = "NOTICE" if rc == 0 else "SEVERE"
        self.log(level, f"dbctl {'ok' if rc == 0 else 'failed'}, rc={rc}")
        return rc

    def connect_database(self) -> None:
        conn = self.cfg.connection
        try:
            self.db = pgwire.Connection("localhost" if conn["host"] == "localhost" else conn["host"],
                                        conn["port"], "bootstrap", conn["dbname"], application="tractor-engine")
        except pgwire.PgError as exc:
            if "too many connections" in str(exc):
                raise EngineError(
                    f"another engine is already connected to the job database {conn['dbname']} on port "
                    f"{conn['port']} (role bootstrap allows one connection); stop it first") from None
            raise EngineError(f"cannot connect to the job database: {exc}") from None
        except OSError as exc:
            raise EngineError(f"cannot connect to the job database on port {conn['port']}: {exc}") from None
        # tractorselect prints times in UTC (PROTOCOL.md, INVENTED format)
        self.db.query("SET TimeZone TO 'UTC'")
        self.log("NOTICE", f"database: host={conn['host']}:{conn['port']} db={conn['dbname']}")

    def check_schema(self) -> None:
        params = dict(self.sql("SELECT name, value FROM param"))
        stored = params.get("schema-version", "0")
        if versions.schema_key(stored) > versions.schema_key(self.info.schema_version):
            raise EngineError(
                f"the job database has schema version {stored}, newer than this engine "
                f"(Tractor {self.info.version}, schema {self.info.schema_version}) can use; "
                "restore a backup made with this version or start the newer engine")
        if stored != self.info.schema_version or params.get("module-checksum") != self.info.module_checksum:
            raise EngineError(
                f"the job database schema {stored} must be upgraded to {self.info.schema_version} before "
                "this engine can run (DBAutoUpgrade is False): run tractor-dbctl --upgrade")
        self.columns = {}
        for table, column, data_type, udt_name in self.sql(
                "SELECT table_name, column_name, data_type, udt_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name IN "
                "('job', 'task', 'command', 'invocation', 'blade', 'param') ORDER BY table_name, ordinal_position"):
            self.columns.setdefault(table, {})[column] = query.kind_of(data_type, udt_name)
        self.has_retrycount = "retrycount" in self.columns.get("task", {})

    def load_queue(self) -> None:
        counts = dict(self.sql("SELECT state, count(*) FROM task t JOIN job j USING (jid) "
                               "WHERE j.deletetime IS NULL GROUP BY state"))
        jobs = self.sql("SELECT count(*) FROM job WHERE deletetime IS NULL")[0][0]
        self.log("NOTICE", f"job queue loaded: {jobs} jobs, {counts.get('active', '0')} active tasks")

    def update_job_counts(self, jid: int) -> None:
        self.sql(
            "UPDATE job j SET (numtasks, numblocked, numready, numactive, numerror, numdone) = "
            "(SELECT count(*), count(*) FILTER (WHERE state = 'blocked'), count(*) FILTER (WHERE state = 'ready'), "
            "count(*) FILTER (WHERE state = 'active'), count(*) FILTER (WHERE state = 'error'), "
            "count(*) FILTER (WHERE state = 'done') FROM task t WHERE t.jid = j.jid) "
            f"WHERE jid = {q(jid)}; "
            "UPDATE job SET stoptime = now() WHERE jid = " + q(jid) + " AND numdone = numtasks AND stoptime IS NULL; "
            "UPDATE job SET stoptime = NULL WHERE jid = " + q(jid) + " AND numdone < numtasks")

    # -- queue operations ---------------------------------------------------------------------------
    def spool(self, owner: str, job: dict, spoolhost: str, spoolfile: str, cwd: str) -> int:
        tasks = job.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise EngineError("the job has no tasks")
        rows: list[tuple] = []   # (tid, parent tid, title, [(cid, argv)])
        counters = {"tid": 0, "cid": 0}

        def walk(task: dict, parent: int | None) -> None:
            if not isinstance(task, dict):
                raise EngineError("each task must be an object")
            counters["tid"] += 1
            tid = counters["tid"]
            cmds = task.get("cmds")
            if cmds is None:
                cmds = [{"argv": task["argv"]}] if "argv" in task else []
            commands = []
            for cmd in cmds:
                argv = cmd.get("argv") if isinstance(cmd, dict) else None
                if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
                    raise EngineError(f"task {tid}: each command needs an argv list of strings")
                counters["cid"] += 1
                commands.append((counters["cid"], argv))
            rows.append((tid, parent, str(task.get("title", f"task {tid}")), commands,
                         bool(task.get("subtasks"))))
            for sub in task.get("subtasks") or []:
                walk(sub, tid)

        for task in tasks:
            walk(task, None)
        with self.db_lock:
            jid = int(self.sql("SELECT TractorNewJid()")[0][0])
            stmts = ["BEGIN",
                     "INSERT INTO job (jid, owner, spoolhost, spoolfile, spoolcwd, title, priority, service, comment, "
                     "metadata, maxtid, maxcid, dirmap) VALUES (" + ", ".join(q(v) for v in (
                         jid, owner, spoolhost, spoolfile, cwd, str(job.get("title", "untitled")),
                         float(job.get("priority", 1)), str(job.get("service", "")), str(job.get("comment", "")),
                         json.dumps(job.get("metadata", "")), counters["tid"], counters["cid"])) + ", '[]')"]
            for tid, parent, title, commands, has_children in rows:
                state = "blocked" if has_children else "ready"
                cids = [c for c, _ in commands]
                stmts.append(
                    "INSERT INTO task (jid, tid, title, cids, ptids, state, currcid) VALUES (" + ", ".join((
                        q(jid), q(tid), q(title), f"{q(cids)}::integer[]" if cids else "'{}'",
                        f"{q([parent])}::integer[]" if parent else "'{}'", q(state),
                        q(cids[0]) if cids else "NULL")) + ")")
                for cid, argv in commands:
                    stmts.append("INSERT INTO command (jid, cid, tid, argv) VALUES (" + ", ".join(
                        (q(jid), q(cid), q(tid), f"{q(argv)}::text[]")) + ")")
            stmts.append("COMMIT")
            try:
                self.sql(";\n".join(stmts))
            except pgwire.PgError:
                self.sql("ROLLBACK")
                raise
            # tasks without commands (pure grouping tasks) are done as soon as they are ready
            self.settle(jid)
            self.update_job_counts(jid)
        self.log("NOTICE", f"spooled jid {jid} ({owner}): {len(rows)} tasks")
        return jid

    def settle(self, jid: int) -> None:
        """Unblock parents whose children are all done; finish command-less ready tasks."""
        for _ in range(1000):
            changed = self.sql(
                "UPDATE task SET state = 'done', statetime = now() WHERE jid = " + q(jid) +
                " AND state = 'ready' AND cardinality(cids) = 0 RETURNING tid")
            unblocked = self.sql(
                "UPDATE task p SET state = 'ready', readytime = now(), statetime = now() WHERE p.jid = " + q(jid) +
                " AND p.state = 'blocked' AND NOT EXISTS (SELECT 1 FROM task c WHERE c.jid = p.jid "
                "AND p.tid = ANY(c.ptids) AND c.state <> 'done') RETURNING tid")
            if not changed and not unblocked:
                return

    def next_command(self, blade: str) -> dict | None:
        if self.paused or self.stopping.is_set():
            return None
        with self.db_lock:
            rows = self.sql(
                "SELECT t.jid, t.tid, t.currcid, j.owner, t.title, j.spoolcwd FROM task t JOIN job j USING (jid) "
                "WHERE t.state = 'ready' AND j.pausetime IS NULL AND j.deletetime IS NULL "
                "ORDER BY j.priority DESC, j.spooltime, t.jid, t.tid LIMIT 1")
            if not rows:
                return None
            jid, tid, cid, owner, title, cwd = rows[0]
            iid = int(self.sql(f"SELECT coalesce(max(iid), 0) + 1 FROM invocation WHERE jid = {jid} AND tid = {tid} "
                               f"AND cid = {cid}")[0][0])
            argv_rows = self.sql(f"SELECT array_to_json(argv) FROM command WHERE jid = {jid} AND cid = {cid}")
            self.sql(
                f"UPDATE invocation SET current = false WHERE jid = {jid} AND tid = {tid}; "
                f"INSERT INTO invocation (jid, tid, cid, iid, current, bladeid, numslots, starttime) VALUES "
                f"({jid}, {tid}, {cid}, {iid}, true, {q(blade)}, 1, now()); "
                f"UPDATE task SET state = 'active', activetime = now(), statetime = now() WHERE jid = {jid} AND tid = {tid}; "
                f"UPDATE job SET starttime = now() WHERE jid = {jid} AND starttime IS NULL")
            self.update_job_counts(int(jid))
        self.log("INFO", f"dispatch J{jid} T{tid} C{cid} I{iid} to {blade}")
        return {"jid": int(jid), "tid": int(tid), "cid": int(cid), "iid": iid, "owner": owner or "",
                "argv": json.loads(argv_rows[0][0]), "title": title or "", "cwd": cwd or ""}

    def command_status(self, jid: int, tid: int, cid: int, iid: int, rc: int) -> bool:
        """Record the end of an invocation; False when it is no longer current (ignored)."""
        key = (jid, tid, cid, iid)
        with self.db_lock:
            current = self.sql(
                f"UPDATE invocation SET stoptime = now(), rcode = {int(rc)} WHERE jid = {jid} AND tid = {tid} "
                f"AND cid = {cid} AND iid = {iid} AND current AND stoptime IS NULL RETURNING iid")
            if not current:
                self.pending_kills.discard(key)
                return False
            if key in self.pending_kills:
                # The blade killed the command of a retried task: only now is the task ready again.
                self.pending_kills.discard(key)
                self.sql(f"UPDATE invocation SET current = false WHERE jid = {jid} AND tid = {tid} "
                         f"AND cid = {cid} AND iid = {iid}")
                self.make_ready(jid, tid, retried=True)
                self.log("NOTICE", f"retry J{jid} T{tid}: the blade reported the end of I{iid} (rc={rc}); "
                                   "the task is ready")
                return True
            task = self.sql(f"SELECT array_to_json(cids), state FROM task WHERE jid = {jid} AND tid = {tid}")
            cids = json.loads(task[0][0])
            if rc != 0:
                self.sql(f"UPDATE task SET state = 'error', statetime = now() WHERE jid = {jid} AND tid = {tid}")
            else:
                following = cids[cids.index(cid) + 1:] if cid in cids else []
                if following:
                    self.sql(f"UPDATE task SET state = 'ready', currcid = {following[0]}, statetime = now() "
                             f"WHERE jid = {jid} AND tid = {tid}")
                else:
                    self.sql(f"UPDATE task SET state = 'done', statetime = now() WHERE jid = {jid} AND tid = {tid}")
                    self.settle(jid)
            self.update_job_counts(jid)
        self.log("INFO", f"J{jid} T{tid} C{cid} I{iid} finished rc={rc}")
        return True

    def stop_invocation(self, jid: int, tid: int) -> None:
        """Mark the task's running invocation stopped; the blade kills it at its next heartbeat."""
        self.pending_kills = {key for key in self.pending_kills if key[:2] != (jid, tid)}
        self.sql(f"UPDATE invocation SET stoptime = now(), rcode = -15, current = false "
                 f"WHERE jid = {jid} AND tid = {tid} AND current AND stoptime IS NULL")

    def require_job(self, jid: int) -> None:
        if not self.sql(f"SELECT 1 FROM job WHERE jid = {jid} AND deletetime IS NULL"):
            raise OperationRefused(2, f"no such job {jid}")

    def make_ready(self, jid: int, tid: int, retried: bool) -> None:
        cids = json.loads(self.sql(f"SELECT array_to_json(cids) FROM task WHERE jid = {jid} AND tid = {tid}")[0][0])
        retry = ", retrycount = coalesce(retrycount, 0) + 1" if retried and self.has_retrycount else ""
        self.sql(f"UPDATE task SET state = 'ready', currcid = {q(cids[0] if cids else None)}, "
                 f"statetime = now(), readytime = now(){retry} WHERE jid = {jid} AND tid = {tid}")
        self.settle(jid)
        self.update_job_counts(jid)

    def retry_task(self, jid: int, tid: int) -> None:
        """§6.3 tretry.  An active task stays active, its invocation current, until its blade reports
        the end of the killed command (inferred [I]: a real engine cannot know the command stopped
        before the blade says so); only then is it ready again (command_status)."""
        with self.db_lock:
            row = self.sql(f"SELECT state FROM task WHERE jid = {jid} AND tid = {tid}")
            if not row:
                raise OperationRefused(2, f"no such task {jid} {tid}")
            state = row[0][0]
            if state == "blocked":
                return
            if state == "active":
                running = self.sql(f"SELECT cid, iid FROM invocation WHERE jid = {jid} AND tid = {tid} "
                                   "AND current AND stoptime IS NULL")
                if running:
                    for cid, iid in running:
                        self.pending_kills.add((jid, tid, int(cid), int(iid)))
                    self.log("NOTICE", f"retry J{jid} T{tid} (was active): kill of I{running[0][1]} pending "
                                       "until its blade reports")
                    return
            self.make_ready(jid, tid, retried=True)
        self.log("NOTICE", f"retry J{jid} T{tid} (was {state})")

    def retry_job(self, jid: int, subset: str) -> list[int]:
        self.require_job(jid)
        if subset not in ("active", "error"):
            raise OperationRefused(2, f"tsubset must be active or error, not {subset!r}")
        tids = [int(r[0]) for r in self.sql(f"SELECT tid FROM task WHERE jid = {jid} AND state = {q(subset)} ORDER BY tid")]
        for tid in tids:
            self.retry_task(jid, tid)
        return tids

    def interrupt(self, jid: int, tid: int | None) -> list[int]:
        self.require_job(jid)
        with self.db_lock:
            where = f"jid = {jid} AND state = 'active'" + (f" AND tid = {tid}" if tid is not None else "")
            tids = [int(r[0]) for r in self.sql(f"SELECT tid FROM task WHERE {where}")]
            for one in tids:
                self.stop_invocation(jid, one)
                self.sql(f"UPDATE task SET state = 'error', statetime = now() WHERE jid = {jid} AND tid = {one}")
            self.update_job_counts(jid)
        return tids

    def retire(self, jid: int) -> None:
        self.require_job(jid)
        with self.db_lock:
            self.interrupt(jid, None)
            self.sql(f"UPDATE job SET deletetime = now() WHERE jid = {jid}")

    def set_job_attr(self, jid: int, params: dict) -> None:
        self.require_job(jid)
        sets = []
        if "set_pause" in params:
            sets.append("pausetime = " + ("now()" if params["set_pause"] not in ("0", "false") else "NULL"))
        if "set_priority" in params:
            sets.append(f"priority = {q(float(params['set_priority']))}")
        if "set_comment" in params:
            sets.append(f"comment = {q(params['set_comment'])}")
        if not sets:
            raise OperationRefused(2, "jattr needs set_pause, set_priority or set_comment")
        self.sql(f"UPDATE job SET {', '.join(sets)} WHERE jid = {jid}")

    # -- blades -------------------------------------------------------------------------------------
    def register_blade(self, params: dict, address: str) -> None:
        name = params["blade"]
        values = {
            "name": name, "ipaddr": address, "port": int(params.get("port") or 9005),
            "osname": params.get("osname", ""), "version": params.get("version", ""),
            "profile": params.get("profile", "default"), "numslots": int(params.get("slots") or 1),
            "status": "up",
        }
        cols = ", ".join(values)
        vals = ", ".join(q(v) for v in values.values())
        updates = ", ".join(f"{k} = EXCLUDED.{k}" for k in values if k != "name")
        self.sql(f"INSERT INTO blade ({cols}, starttime, heartbeattime) VALUES ({vals}, now(), now()) "
                 f"ON CONFLICT (name) DO UPDATE SET {updates}, starttime = now(), heartbeattime = now()")
        self.log("NOTICE", f"blade {name} registered from {address} (version {values['version']})")

    def heartbeat(self, blade: str, running: list[dict]) -> list[dict]:
        with self.db_lock:
            self.sql(f"UPDATE blade SET heartbeattime = now(), status = 'up' WHERE name = {q(blade)}")
            kill = []
            for inv in running:
                key = tuple(int(inv[k]) for k in ("jid", "tid", "cid", "iid"))
                alive = self.sql(
                    f"SELECT 1 FROM invocation WHERE jid = {key[0]} AND tid = {key[1]} AND cid = {key[2]} "
                    f"AND iid = {key[3]} AND current AND stoptime IS NULL")
                if not alive or key in self.pending_kills:
                    kill.append(dict(zip(("jid", "tid", "cid", "iid"), key)))
            return kill

    def sweep_blades(self) -> None:
        """Blades without a heartbeat for BLADE_DOWN_AFTER seconds are "down" (INVENTED)."""
        self.sql(f"UPDATE blade SET status = 'down' WHERE status = 'up' AND heartbeattime < now() - interval "
                 f"'{int(BLADE_DOWN_AFTER)} seconds'")

    # -- emulator introspection -----------------------------------------------------------------
    def emulator_status(self) -> dict:
        """``emulator?q=status``: for tests only, never called by the collection (PROTOCOL.md)."""
        counts = {state: 0 for state in TASK_STATES}
        for state, count in self.sql("SELECT t.state, count(*) FROM task t JOIN job j USING (jid) "
                                     "WHERE j.deletetime IS NULL GROUP BY t.state"):
            counts[state] = int(count)
        jobs = int(self.sql("SELECT count(*) FROM job WHERE deletetime IS NULL")[0][0])
        blades = self.sql(f"SELECT count(*), count(*) FILTER (WHERE heartbeattime > now() - interval "
                          f"'{int(BLADE_DOWN_AFTER)} seconds') FROM blade")[0]
        params = dict(self.sql("SELECT name, value FROM param"))
        with self.db_lock:
            pending = sorted(self.pending_kills)
        return {
            "rc": 0, "msg": "ok", "engine": self.info.banner, "version": self.info.version,
            "build": self.info.build, "schema-version": params.get("schema-version"),
            "starttime": int(self.start_time), "uptime": round(time.time() - self.start_time, 1),
            "pid": os.getpid(), "dispatching": {"paused": self.paused},
            "queue": {"jobs": jobs, "tasks": counts},
            "blades": {"registered": int(blades[0]), "up": int(blades[1])},
            "pending-kills": [dict(zip(("jid", "tid", "cid", "iid"), key)) for key in pending],
        }

    # -- lists ----------------------------------------------------------------------------------
    def tractorselect(self, args: list, user: str) -> list[dict]:
        """``db?q=tractorselect('<table>', '<clause>', '<cols>', '<sort>', <limit>, 't'|'f', '<aliases>')``
        (§6.6).  The aliases argument is accepted and ignored (INVENTED)."""
        if len(args) != 7:
            raise query.QueryError(f"tractorselect takes 7 arguments (table, clause, columns, sort, limit, "
                                   f"archives, aliases), not {len(args)}")
        table, clause, cols, sort, limit, archived, _aliases = args
        for name, value in (("table", table), ("clause", clause), ("columns", cols), ("sort", sort)):
            if value is not None and not isinstance(value, str):
                raise query.QueryError(f"tractorselect: the {name} must be a string")
        if limit is not None and not isinstance(limit, int):
            raise query.QueryError("tractorselect: the limit must be a number or NULL")
        if limit is not None and limit < 0:
            raise query.QueryError("tractorselect: the limit must not be negative")
        select = query.build_select(table or "", clause or "", cols or "", sort or "", limit,
                                    query.is_true(archived), user, self.columns)
        rows = self.sql(select.sql)
        return [{name: (json.loads(cell) if cell is not None else None) for name, cell in zip(select.names, row)}
                for row in rows]

    def monitor_jobs(self, params: dict) -> dict:
        """``monitor?q=jobs``: the Dashboard's per-user job feed (§6.6, Acedyn/Harvest_API).  The
        field set beyond user/jid/title/projects/nTasks is INVENTED; nTasks is [total, active, done,
        error] (the public client reads nTasks[1] as the active count)."""
        where = ["deletetime IS NULL"]
        if params.get("owner"):
            where.append(f"owner = {q(params['owner'])}")
        rows = self.sql(
            "SELECT jid, owner, title, priority, (pausetime IS NOT NULL)::int, to_json(projects)::text, "
            "to_json(crews)::text, to_json(tags)::text, coalesce(tier, ''), coalesce(comment, ''), "
            "coalesce(spoolhost, ''), coalesce(spoolfile, ''), coalesce(spoolcwd, ''), "
            "to_char(spooltime AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), "
            "numtasks, numactive, numdone, numerror, numblocked, numready "
            f"FROM job WHERE {' AND '.join(where)} ORDER BY jid")
        users: dict[str, dict] = {}
        for row in rows:
            (jid, owner, title, priority, paused, projects, crews, tags, tier, comment, spoolhost, spoolfile,
             cwd, spooldate, numtasks, numactive, numdone, numerror, numblocked, numready) = row
            counts = [int(numtasks or 0), int(numactive or 0), int(numdone or 0), int(numerror or 0)]
            state = "done" if counts[0] == counts[2] else "error" if counts[3] else "active" if counts[1] \
                else "ready" if int(numready or 0) else "blocked"
            users.setdefault(owner or "", {})[str(jid)] = {"data": {
                "user": owner or "", "jid": int(jid), "title": title or "", "priority": float(priority or 0),
                "paused": int(paused), "projects": json.loads(projects or "[]"), "crews": json.loads(crews or "[]"),
                "tags": json.loads(tags or "[]"), "tier": tier, "comment": comment, "spoolhost": spoolhost,
                "sourcefile": spoolfile, "cwd": cwd, "spooldate": spooldate, "nTasks": counts, "state": state,
            }}
        return {"users": users}

    def monitor_blades(self) -> dict:
        """``monitor?q=blades``: the Dashboard's blade feed with its short keys (§6.6,
        Acedyn/Harvest_API).  ``t``/``t0`` are epoch seconds; the other values are what the
        emulated blade table holds (load, memory and disk are not measured: 0)."""
        rows = self.sql(
            "SELECT b.name, coalesce(b.ipaddr, ''), coalesce(b.port, 0), coalesce(b.version, ''), "
            "coalesce(b.profile, ''), coalesce(b.osname, ''), coalesce(b.osversion, ''), "
            "extract(epoch FROM b.heartbeattime), extract(epoch FROM b.starttime), coalesce(b.numcpu, 0), "
            "coalesce(b.numslots, 0), coalesce(b.udi, 0), coalesce(b.loadavg, 0), coalesce(b.availmemory, 0), "
            "coalesce(b.availdisk, 0), coalesce(b.nimby, ''), coalesce(b.status, ''), "
            "(SELECT count(*) FROM invocation i WHERE i.bladeid = b.name AND i.current AND i.stoptime IS NULL), "
            "(SELECT coalesce(sum(coalesce(i.numslots, 1)), 0) FROM invocation i WHERE i.bladeid = b.name "
            " AND i.current AND i.stoptime IS NULL), "
            "(SELECT to_json(coalesce(array_agg(DISTINCT j.owner), '{}'))::text FROM invocation i JOIN job j "
            " USING (jid) WHERE i.bladeid = b.name AND i.current AND i.stoptime IS NULL) "
            "FROM blade b ORDER BY b.name")
        blades = []
        for (name, addr, port, vers, profile, osname, osversion, beat, start, ncpu, ns, udi, load, mem, disk,
             nimby, note, numcmd, siu, owners) in rows:
            blades.append({
                "hnm": name, "addr": addr, "lp": int(port), "vers": vers, "profile": profile, "osname": osname,
                "osversion": osversion, "t": float(beat) if beat else 0, "t0": float(start) if start else 0,
                "ncpu": int(ncpu), "ns": int(ns), "siu": int(siu), "numcmd": int(numcmd),
                "as": max(0, int(ns) - int(siu)), "udi": float(udi), "cpu": float(load), "mem": float(mem),
                "disk": float(disk), "nimby": nimby, "note": note, "owners": json.loads(owners) if owners else [],
            })
        return {"blades": blades}

    def append_log(self, owner: str, jid: int, tid: int, data: bytes) -> None:
        """The engine plays tractor-cmdlogger: %u/J%j/T%t.log under cmd-logs (§3)."""
        safe_owner = os.path.basename(owner) or "unknown"
        directory = os.path.join(self.cfg.data_dir, "cmd-logs", safe_owner, f"J{jid}")
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, f"T{tid}.log"), "ab") as handle:  # reused jids append (§1.5)
            handle.write(data)


class OperationRefused(Exception):
    def __init__(self, rc: int, msg: str, status: int = 200):
        super().__init__(msg)
        self.rc = rc
        self.msg = msg
        self.status = status


def make_handler(engine: Engine):
    class Handler(BaseHTTPRequestHandler):
        server_version = "Pixar_Tractor"
        protocol_version = "HTTP/1.0"

        def version_string(self) -> str:  # the Server header of §6.1
            return engine.info.server_header

        def log_message(self, fmt, *args):  # requests go to the engine log at DEBUG
            engine.log("DEBUG", "http " + (fmt % args))

        def reply(self, status: int, body: dict | bytes, content_type: str = "application/json; charset=utf-8"):
            data = body if isinstance(body, bytes) else (json.dumps(body) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.send_header("X-Tractor-STUN", self.client_address[0])
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.handle_request(b"")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            self.handle_request(self.rfile.read(length) if length else b"")

        def handle_request(self, body: bytes):
            # Requests block while the database starts or its schema is upgraded (§8).
            while not engine.ready.wait(0.5):
                if engine.stopping.is_set():
                    return self.reply(503, {"rc": 1, "msg": "engine is shutting down"})
            url = urllib.parse.urlsplit(self.path)
            params = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype == "application/x-www-form-urlencoded" and body:
                params.update({k: v[-1] for k, v in urllib.parse.parse_qs(body.decode(), keep_blank_values=True).items()})
            try:
                if url.path.startswith("/tractor/cmd-logs/"):
                    return self.serve_log(url.path[len("/tractor/cmd-logs/"):])
                parts = url.path.strip("/").split("/")
                if len(parts) != 2 or parts[0] != "Tractor":
                    return self.reply(404, {"rc": 404, "msg": f"no such URL {url.path}"})
                route = ROUTES.get((parts[1], params.get("q", "")))
                if parts[1] == "spool":
                    route = route_spool
                elif parts[1] == "db":
                    route = route_db
                if route is None:
                    return self.reply(404, {"rc": 404, "msg": f"unknown request {parts[1]}?q={params.get('q', '')}"})
                result = route(engine, params, body, self)
                return self.reply(200, result)
            except OperationRefused as exc:
                return self.reply(exc.status, {"rc": exc.rc, "msg": exc.msg})
            except (KeyError, ValueError, TypeError) as exc:
                return self.reply(400, {"rc": 400, "msg": f"bad request: {exc}"})
            except pgwire.PgError as exc:
                engine.log("SEVERE", f"database error: {exc}")
                return self.reply(500, {"rc": 500, "msg": f"database error: {exc}"})

        def serve_log(self, rest: str):
            root = os.path.realpath(os.path.join(engine.cfg.data_dir, "cmd-logs"))
            path = os.path.realpath(os.path.join(root, urllib.parse.unquote(rest)))
            if not path.startswith(root + os.sep) or not os.path.isfile(path):
                return self.reply(404, {"rc": 404, "msg": "no such log"})
            with open(path, "rb") as handle:
                return self.reply(200, handle.read(), "text/plain; charset=utf-8")

    return Handler


# -- routes ------------------------------------------------------------------------------------------
def need_session(engine: Engine, params: dict) -> str:
    user = engine.sessions.get(params.get("tsid", ""))
    if user is None:
        raise OperationRefused(1, "login required")
    return user


def r_login(engine, params, body, handler):
    user = params.get("user") or "root"
    tsid = f"{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:8]}-{len(engine.sessions) + 1:05d}"
    engine.sessions[tsid] = user
    return {"rc": 0, "login": "ok", "host": handler.client_address[0], "user": user, "tsid": tsid,
            "crews": ["ValidLogins"], "access": {"jnotes": 1, "bnotes": 1}, "engine": engine.info.banner,
            "protocol": "sv-1.6"}


def r_logout(engine, params, body, handler):
    engine.sessions.pop(params.get("tsid", ""), None)
    return {"rc": 0, "msg": "logged out"}


def r_status(engine, params, body, handler):
    """``ctrl?q=status``: the ping/session check of §6.3.  Only ``rc`` is public (§6.6), so the
    body is minimal; ``&qlen=1&enumq=1`` changes nothing (INVENTED)."""
    if faults.on("engine-unhealthy", engine.config_dir):
        raise OperationRefused(1, "engine unhealthy (emulator fault engine-unhealthy)", status=503)
    return {"rc": 0, "msg": "ok"}


def r_emulator_status(engine, params, body, handler):
    """Emulator only, for tests: version, pid, schema, queue counts ... (PROTOCOL.md)."""
    return engine.emulator_status()


def r_dispatching(engine, params, body, handler):
    need_session(engine, params)
    if "pause" in params:
        engine.paused = params["pause"] not in ("0", "false")
        engine.log("NOTICE", f"dispatching {'paused' if engine.paused else 'resumed'} by request")
    return {"rc": 0, "dispatching": {"paused": engine.paused}}


def r_jobs(engine, params, body, handler):
    return engine.monitor_jobs(params)


def r_blades(engine, params, body, handler):
    return engine.monitor_blades()


def route_db(engine, params, body, handler):
    """``db?q=tractorselect(...)`` (§6.6).  Any other SQL is refused (the real engine runs it)."""
    user = need_session(engine, params)
    try:
        name, args = query.parse_call(params.get("q", ""))
        if name != "tractorselect":
            raise query.QueryError(f"the emulated engine only answers db?q=tractorselect(...), not {name}(...)")
        rows = engine.tractorselect(args, user)
    except query.QueryError as exc:
        raise OperationRefused(1, f"tractorselect: {exc}") from None
    except pgwire.PgError as exc:  # e.g. a bad regular expression after "like"
        raise OperationRefused(1, f"tractorselect: {exc}") from None
    return {"rc": 0, "msg": f"{len(rows)} rows", "rows": rows}


def r_jattr(engine, params, body, handler):
    need_session(engine, params)
    engine.set_job_attr(int(params["jid"]), params)
    return {"rc": 0}


def r_jretry(engine, params, body, handler):
    need_session(engine, params)
    return {"rc": 0, "retried": engine.retry_job(int(params["jid"]), params.get("tsubset", "error"))}


def r_tretry(engine, params, body, handler):
    need_session(engine, params)
    engine.require_job(int(params["jid"]))
    engine.retry_task(int(params["jid"]), int(params["tid"]))
    return {"rc": 0}


def r_jinterrupt(engine, params, body, handler):
    need_session(engine, params)
    tid = int(params["tid"]) if params.get("tid") else None
    return {"rc": 0, "interrupted": engine.interrupt(int(params["jid"]), tid)}


def r_jretire(engine, params, body, handler):
    need_session(engine, params)
    engine.retire(int(params["jid"]))
    return {"rc": 0}


def route_spool(engine, params, body, handler):
    user = need_session(engine, params)
    try:
        job = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OperationRefused(1, f"job script rejected: not JSON ({exc})") from None
    if not isinstance(job, dict):
        raise OperationRefused(1, "job script rejected: the job must be a JSON object")
    owner = params.get("jobOwner") or user
    try:
        jid = engine.spool(owner, job, params.get("hnm", ""), params.get("jobFile", ""), params.get("cwd", ""))
    except EngineError as exc:
        raise OperationRefused(1, f"job script rejected: {exc}") from None
    return {"rc": 0, "msg": f"job script accepted, jid: {jid}", "jid": jid}


def r_register(engine, params, body, handler):
    engine.register_blade(params, handler.client_address[0])
    return {"rc": 0, "engine": engine.info.banner}


def r_heartbeat(engine, params, body, handler):
    payload = json.loads(body.decode() or "{}") if body else {}
    return {"rc": 0, "kill": engine.heartbeat(params["blade"], payload.get("running", []))}


def r_nextcmd(engine, params, body, handler):
    return {"rc": 0, "cmd": engine.next_command(params["blade"])}


def r_log(engine, params, body, handler):
    engine.append_log(params.get("owner", ""), int(params["jid"]), int(params["tid"]), body)
    return {"rc": 0}


def r_cstatus(engine, params, body, handler):
    recorded = engine.command_status(int(params["jid"]), int(params["tid"]), int(params["cid"]),
                                     int(params["iid"]), int(params["rc"]))
    return {"rc": 0, "ignored": not recorded}


ROUTES = {
    ("monitor", "login"): r_login,
    ("monitor", "logout"): r_logout,
    ("monitor", "jobs"): r_jobs,
    ("monitor", "blades"): r_blades,
    ("ctrl", "status"): r_status,
    ("emulator", "status"): r_emulator_status,  # emulator only, for tests (PROTOCOL.md)
    ("ctrl", "dispatching"): r_dispatching,  # INVENTED URL for the Dashboard's pause switch (§6.4)
    ("queue", "jattr"): r_jattr,
    ("queue", "jretry"): r_jretry,
    ("queue", "tretry"): r_tretry,
    ("queue", "jinterrupt"): r_jinterrupt,
    ("queue", "jretire"): r_jretire,
    ("btrack", "register"): r_register,
    ("btrack", "heartbeat"): r_heartbeat,
    ("task", "nextcmd"): r_nextcmd,
    ("task", "log"): r_log,
    ("task", "cstatus"): r_cstatus,
}


# -- command line ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tractor-engine", description="Tractor engine (renderfarm.tractor emulator)")
    parser.add_argument("--version", action="store_true", help="print version information, and exit")
    parser.add_argument("-c", "--configdir", help="site config directory (env TRACTOR_CONFIG)")
    parser.add_argument("--port", help="listener port, or addr:port (default: ListenerPort)")
    parser.add_argument("--log", help="log file (default stderr)")
    parser.add_argument("--paused", action="store_true", help="start with all dispatching paused")
    parser.add_argument("--daemon", action="store_true", help="run in the background")
    parser.add_argument("--pidfile", help="pid file (daemon mode)")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--trace", action="store_true")
    return parser


def drop_privileges(owner: str) -> None:
    """The engine binds as root, then setuid()s to EngineOwner (§2.2, §7.3)."""
    entry = pwd.getpwnam(owner)
    os.setgroups([])
    os.initgroups(owner, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=entry.pw_dir, USER=owner, LOGNAME=owner)


def daemonize(pidfile: str | None) -> None:
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if pidfile:
        with open(pidfile, "w", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n")


def main(version: str, install_root: str, argv: list[str]) -> int:
    info = versions.get(version)
    opts = build_parser().parse_args(argv)
    if opts.version:
        print(info.banner)  # same banner as the start-up log line (§6.5)
        return 0
    config_dir = os.path.abspath(opts.configdir or os.environ.get("TRACTOR_CONFIG")
                                 or os.path.join(install_root, "config"))
    try:
        cfg = configmod.MergedConfig(install_root, config_dir)
        cfg.require()
    except configmod.ConfigError as exc:
        sys.stderr.write(f"tractor-engine: {exc}\n")
        return 2
    verbosity = "DEBUG" if opts.debug else "TRACE" if opts.trace else "INFO" if opts.verbose else \
        "SEVERE" if opts.quiet else str(cfg.tractor.get("EngineLogVerbosity", "NOTICE"))
    try:
        log = Log(opts.log, verbosity)
    except OSError as exc:
        sys.stderr.write(f"tractor-engine: cannot open the log file {opts.log}: {exc.strerror}\n")
        return 2
    log("NOTICE", info.banner)
    log("NOTICE", f"application dir: {install_root}")
    log("NOTICE", f"config file dir: {config_dir}")
    log("NOTICE", f"data dir: {cfg.data_dir}")
    log("NOTICE", f"cmd-log dir: {os.path.join(cfg.data_dir, 'cmd-logs')}")

    host, port = cfg.listener_port()
    if opts.port:
        host, _, port_text = opts.port.rpartition(":")
        port = int(port_text)
    try:
        server = ThreadingHTTPServer((host or "", port), lambda *a: None)  # handler set below
    except OSError as exc:
        log("SEVERE", f"cannot listen on tcp port {port}: {exc.strerror}")
        return 1
    log("NOTICE", f"listening on tcp port {port}")

    owner = cfg.engine_owner
    as_root = os.geteuid() == 0
    if as_root and (not owner or owner == "root"):
        log("SEVERE", "EngineOwner must name an unprivileged account when the engine is started as root")
        return 1
    # Detach and write the pid file while still root (it may live in /var/run), then drop to
    # EngineOwner; the log file is handed to EngineOwner so that SIGHUP can reopen it.
    if opts.daemon:
        daemonize(opts.pidfile)
        log.reopen()
    elif opts.pidfile:
        with open(opts.pidfile, "w", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n")
    if as_root:
        try:
            if opts.log:
                entry = pwd.getpwnam(owner)
                os.chown(opts.log, entry.pw_uid, entry.pw_gid)
            drop_privileges(owner)
        except (KeyError, OSError) as exc:
            log("SEVERE", f"cannot switch to EngineOwner {owner!r}: {exc}")
            return 1
    log("NOTICE", f"engine operating login: '{pwd.getpwuid(os.geteuid()).pw_name}'")

    engine = Engine(info, install_root, config_dir, cfg, log, paused=opts.paused)
    server.RequestHandlerClass = make_handler(engine)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()

    def on_term(signum, frame):
        if faults.on("engine-hangs-on-sigterm", config_dir):
            log("NOTICE", "SIGTERM ignored (emulator fault engine-hangs-on-sigterm)")
            return
        engine.stopping.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, lambda s, f: log.reopen())

    exit_after = faults.value("engine-exit-after", config_dir)
    if exit_after is not None:
        def crash():
            time.sleep(float(exit_after))
            log("SEVERE", "exiting (emulator fault engine-exit-after)")
            os._exit(1)  # like a crash: nothing is stopped, PostgreSQL keeps running
        threading.Thread(target=crash, daemon=True).start()

    try:
        if engine.run_dbctl("--start-for-engine") != 0:
            raise EngineError("tractor-dbctl --start-for-engine failed; see the lines above")
        engine.connect_database()
        engine.check_schema()
        engine.load_queue()
    except (EngineError, pgwire.PgError) as exc:
        log("SEVERE", str(exc))
        engine.stopping.set()
        server.shutdown()
        server.server_close()
        return 1
    if engine.paused:
        log("NOTICE", "dispatching is paused (--paused)")
    engine.ready.set()
    log("NOTICE", "engine ready")

    while not engine.stopping.wait(1.0):
        try:
            engine.sweep_blades()
        except (pgwire.PgError, OSError) as exc:
            log("WARNING", f"blade sweep failed: {exc}")
    log("NOTICE", "shutting down: dispatching stopped")
    server.shutdown()
    server.server_close()
    with engine.db_lock:
        if engine.db is not None:
            engine.db.close()
    engine.run_dbctl("--stop-for-engine")
    log("NOTICE", "engine exit")
    return 0
