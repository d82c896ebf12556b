-- Job database contents for the benchmarks (renderfarm.tractor bench/, not shipped).
-- Run through `tractor-dbctl --exec-sql` as the EngineOwner on a freshly built Tractor 2.1 schema
-- (emulator/tractor_emulator/schema.py; the tables of fact sheet §4.2). bench/benchlib.py puts
--   \set ntasks N      tasks in all
--   \set tpj T         tasks per job (jobs = N / T)
-- in front of this file.  Everything is generated set-wise with generate_series, in one psql run.
--
-- The shape of a render farm's history: every job renders T frames, one command per frame
-- (a prman argv), one finished invocation per command on one of 400 blades; every 50th job is
-- still running (half its frames ready, no invocation yet); a third of the jobs carry a directory
-- map (the 2.1 text that the 2.2 schema upgrade converts to JSON, rewriting every job and task).
SET synchronous_commit = off;

INSERT INTO job (jid, owner, spoolhost, spoolfile, spoolcwd, spooladdr, title, tier, priority, projects,
                 service, envkey, minslots, maxslots, spooltime, starttime, stoptime, elapsedsecs,
                 numtasks, numready, numdone, maxtid, maxcid, comment, metadata, dirmap)
SELECT j,
       'artist' || (j % 37),
       'ws' || (j % 113) || '.studio.lan',
       '/show/prod/seq' || (j % 90) || '/shot' || lpad((j % 997)::text, 4, '0') || '/render_v' || (j % 23) || '.alf',
       '/show/prod/seq' || (j % 90),
       '10.20.' || (j % 250) || '.' || (j % 200),
       'seq' || (j % 90) || ' shot' || lpad((j % 997)::text, 4, '0') || ' beauty v' || (j % 23) || ' [' || md5(j::text) || ']',
       'default', 1 + (j % 5), ARRAY['prod', 'seq' || (j % 90)], 'PixarRender', ARRAY['rman-24'], 1, 4,
       now() - ((:ntasks / :tpj - j) || ' minutes')::interval,
       now() - ((:ntasks / :tpj - j) || ' minutes')::interval + interval '30 seconds',
       CASE WHEN j % 50 = 0 THEN NULL
            ELSE now() - ((:ntasks / :tpj - j) || ' minutes')::interval + interval '40 minutes' END,
       (random() * 90000)::real,
       :tpj,
       CASE WHEN j % 50 = 0 THEN :tpj / 2 ELSE 0 END,
       CASE WHEN j % 50 = 0 THEN :tpj - :tpj / 2 ELSE :tpj END,
       :tpj, :tpj, '', '{"frames": "1-' || :tpj || '"}',
       CASE WHEN j % 3 = 0 THEN '[["/show", "/Volumes/show", "NFS"]]' ELSE '' END
FROM generate_series(1, :ntasks / :tpj) AS j;

INSERT INTO task (jid, tid, title, id, service, minslots, maxslots, cids, ptids, attached, state, statetime,
                  readytime, activetime, currcid, haslog, progress, metadata)
SELECT 1 + (g - 1) / :tpj, 1 + (g - 1) % :tpj,
       'frame ' || (1 + (g - 1) % :tpj), 'f' || (1 + (g - 1) % :tpj),
       'PixarRender', 1, 4, ARRAY[1 + (g - 1) % :tpj], '{}', false,
       CASE WHEN (1 + (g - 1) / :tpj) % 50 = 0 AND (g - 1) % :tpj < :tpj / 2 THEN 'ready' ELSE 'done' END,
       now() - ((:ntasks - g) || ' seconds')::interval,
       now() - ((:ntasks - g + 60) || ' seconds')::interval,
       now() - ((:ntasks - g + 30) || ' seconds')::interval,
       1 + (g - 1) % :tpj, true, 100, ''
FROM generate_series(1, :ntasks) AS g;

INSERT INTO command (jid, cid, tid, argv, service, tags, id, minslots, maxslots, envkey, retryrcodes, metadata)
SELECT 1 + (g - 1) / :tpj, 1 + (g - 1) % :tpj, 1 + (g - 1) % :tpj,
       ARRAY['prman', '-t:4', '-Progress', '-recover', '1', '-checkpoint', '5m',
             '/show/prod/seq' || ((1 + (g - 1) / :tpj) % 90) || '/shot'
             || lpad(((1 + (g - 1) / :tpj) % 997)::text, 4, '0')
             || '/rib/beauty.' || lpad((1 + (g - 1) % :tpj)::text, 4, '0') || '.rib'],
       'PixarRender', ARRAY['prman'], 'c' || g, 1, 4, ARRAY['rman-24'], ARRAY[10110], ''
FROM generate_series(1, :ntasks) AS g;

INSERT INTO invocation (jid, tid, cid, iid, current, bladeid, numslots, starttime, stoptime, pid, rss, vsz,
                        cpu, elapsedapp, elapsedsys, elapsedreal, rcode)
SELECT 1 + (g - 1) / :tpj, 1 + (g - 1) % :tpj, 1 + (g - 1) % :tpj, 1, true,
       'blade' || lpad((g % 400)::text, 3, '0'), 4,
       now() - ((:ntasks - g + 30) || ' seconds')::interval, now() - ((:ntasks - g) || ' seconds')::interval,
       1000 + (g % 60000), (random() * 32)::real, (random() * 64)::real, (random() * 4)::real,
       (random() * 3600)::real, (random() * 60)::real, (random() * 3600)::real, 0
FROM generate_series(1, :ntasks) AS g
WHERE NOT ((1 + (g - 1) / :tpj) % 50 = 0 AND (g - 1) % :tpj < :tpj / 2);

INSERT INTO blade (name, ipaddr, port, osname, osversion, numcpu, version, profile, numslots, status)
SELECT 'blade' || lpad(b::text, 3, '0'), '10.30.' || (b / 250) || '.' || (b % 250), 9005, 'Linux', '5.14', 32,
       '2.1', 'default', 4, 'down'
FROM generate_series(0, 399) AS b;

UPDATE param SET value = (:ntasks / :tpj)::text WHERE name = 'jidcounter';
ANALYZE;
CHECKPOINT;
