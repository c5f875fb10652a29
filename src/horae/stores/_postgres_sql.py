"""The SQL text of :class:`~horae.stores.postgres.PostgresStore`, one schema at a time.

Every statement is a template over ``{s}`` (the quoted schema name) and the quoted
names of the schema's sequences; :meth:`Statements.for_schema` fills them in once per store. The
schema name is validated by the store before it gets here, and quoted all the same.

Tables (see ``docs/store-postgres.md``):

- ``jobs``: one row per job. ``due_at`` is when the row may next be acquired: its
  ``next_run_time`` while nobody holds it, its ``lease_expires`` while a scheduler
  does, ``NULL`` while the job is paused or *held* (``Release.hold_while_running``: a
  row with a ``next_run_time``, no lease and no ``due_at`` is held, nothing else is).
  The due-job query and ``next_run_time()`` read only that column, through a partial
  index, so both stay O(log n) however many jobs are leased, paused or held.
  ``run_count`` counts the runs started so far (``Lease.run_count``).
- ``running``: runs in flight (handed to an executor, not finished): what
  ``max_instances`` counts. It only holds what runs now, so it stays small. Each row is
  leased: ``holder`` renews ``expires_at`` while the run goes on; a row whose expiry
  passed is claimed by another scheduler through the ``running_expires_at`` index.
  ``holds_job`` marks the runs that keep their job held: the finish of such a run
  (without a retry) frees the job; a retry inherits the mark. See ``_RELEASE_HOLD``.
- ``runs``: finished runs, ordered by ``seq`` (taken when the run was recorded).
  Finishing a run moves it from ``running`` to ``runs``: a delete and an insert by
  primary key, never an update of an indexed column.
- ``schema_version``: one row, the layout version; :data:`MIGRATIONS` upgrades it.
- ``schedulers``: the register of the schedulers sharing the schema, one row each,
  written by their heartbeats (:class:`~horae.stores.base.SchedulerInfo` without the
  lease counts, which are counted from ``jobs`` and ``running`` when read). Not part of
  the versioned layout: see ``_REGISTER``.
"""

from __future__ import annotations

import re

import attrs

__all__ = ["CURRENT_VERSION", "MIGRATIONS", "SCHEMA_NAME", "Statements", "quote_ident"]

#: A schema name the store accepts: a plain PostgreSQL identifier (at most 63 bytes,
#: the server's limit), so that it also names the LISTEN/NOTIFY channel unchanged.
SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

#: The layout this code reads and writes.
CURRENT_VERSION = 3

#: ``MIGRATIONS[v]`` takes a schema from layout ``v - 1`` to ``v`` (0: nothing there).
#: Each runs in the start-up transaction, under the schema's advisory lock, so several
#: processes starting at once upgrade it exactly once.
MIGRATIONS: dict[int, str] = {
    1: """
CREATE SEQUENCE {s}.lease_tokens;
CREATE SEQUENCE {s}.run_order;
CREATE TABLE {s}.jobs (
    id            text PRIMARY KEY,
    next_run_time timestamptz,
    due_at        timestamptz,
    payload       text NOT NULL,
    lease_holder  text,
    lease_expires timestamptz,
    lease_token   bigint NOT NULL DEFAULT 0
);
CREATE INDEX jobs_due_at ON {s}.jobs (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX jobs_lease_holder ON {s}.jobs (lease_holder) WHERE lease_holder IS NOT NULL;
CREATE TABLE {s}.running (
    id             uuid PRIMARY KEY,
    job_id         text NOT NULL,
    scheduled_time timestamptz NOT NULL,
    started_at     timestamptz,
    finished_at    timestamptz,
    outcome        text,
    result         text,
    error          text,
    scheduler_id   text NOT NULL,
    attempt        integer NOT NULL,
    coalesced      integer NOT NULL
);
CREATE INDEX running_job_id ON {s}.running (job_id);
CREATE TABLE {s}.runs (
    id             uuid PRIMARY KEY,
    job_id         text NOT NULL,
    seq            bigint NOT NULL DEFAULT nextval({run_order}),
    scheduled_time timestamptz NOT NULL,
    started_at     timestamptz,
    finished_at    timestamptz,
    outcome        text NOT NULL,
    result         text,
    error          text,
    scheduler_id   text NOT NULL,
    attempt        integer NOT NULL,
    coalesced      integer NOT NULL
);
CREATE INDEX runs_job_id_seq ON {s}.runs (job_id, seq);
""",
    # Leases of in-flight runs. Rows already there were left by version-1 schedulers,
    # which never renew them: they get an expiry of -infinity (claimable at once) and no
    # holder. The defaults change afterwards so that a version-1 process still running
    # during an upgrade can go on inserting runs (the columns are not in its statements):
    # those rows never expire, as in version 1, instead of being taken over mid-run.
    2: """
ALTER TABLE {s}.running
    ADD COLUMN holder text NOT NULL DEFAULT '',
    ADD COLUMN expires_at timestamptz NOT NULL DEFAULT '-infinity';
ALTER TABLE {s}.running ALTER COLUMN expires_at SET DEFAULT 'infinity';
CREATE INDEX running_expires_at ON {s}.running (expires_at);
""",
    # Runs started per job, the mark of the runs that keep their job held, and the
    # function the finish of such a run calls to free its job. Both columns have
    # constant defaults (no table rewrite): existing jobs have started no run as far as
    # layout 3 knows, and nothing is held yet.
    # free_held() locks the given jobs in id order, clears the hold of those still held
    # (due at their next run time again) and NOTIFYs the other schedulers if it freed
    # any. The finish statements call it with the jobs of the runs marked `holds_job`
    # (see _RELEASE_HOLD) that ended without a retry (see _free_held).
    # - A function, because it is VOLATILE: each of its statements takes a new
    #   snapshot, so it sees a hold that committed after the finish statement's own
    #   snapshot (a finish deleting a marked run waited for that hold to commit).
    # - A finish whose runs hold nothing passes an empty array: it returns at once,
    #   without reading a job row.
    3: """
ALTER TABLE {s}.jobs ADD COLUMN run_count bigint NOT NULL DEFAULT 0;
ALTER TABLE {s}.running ADD COLUMN holds_job boolean NOT NULL DEFAULT false;
CREATE FUNCTION {s}.free_held(job_ids text[], channel text, sender text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    freed integer;
BEGIN
    IF cardinality(job_ids) = 0 THEN
        RETURN 0;
    END IF;
    PERFORM FROM {s}.jobs WHERE id = ANY(job_ids) ORDER BY id FOR NO KEY UPDATE;
    UPDATE {s}.jobs SET due_at = next_run_time
    WHERE id = ANY(job_ids)
        AND lease_holder IS NULL AND due_at IS NULL AND next_run_time IS NOT NULL;
    GET DIAGNOSTICS freed = ROW_COUNT;
    IF freed > 0 THEN
        PERFORM pg_notify(channel, sender);
    END IF;
    RETURN freed;
END
$$;
""",
}

_PREPARE = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.schema_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  integer NOT NULL
);
"""

# The register of schedulers (Store.heartbeat, get_schedulers), created at every start
# after the migrations, if missing, rather than by a MIGRATIONS step: a new table that
# only the register reads or writes changes nothing any other statement sees, so it
# needs no new layout version, and without one a process of an older horae sharing the
# schema keeps starting (a bumped version would be "newer than this horae reads") and
# working; it ignores the table, as it never heartbeats. A later migration must
# therefore not assume the table missing, nor present on schemas of layout 3.
# No index on expires_at: the table holds one row per scheduler, read whole.
_REGISTER = """
CREATE TABLE IF NOT EXISTS {s}.schedulers (
    id           text PRIMARY KEY,
    host         text NOT NULL,
    pid          bigint NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    state        text NOT NULL,
    version      text NOT NULL
)
"""

# Serializes schema creation and upgrades between processes; released at commit.
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"

_VERSION = "SELECT version FROM {s}.schema_version"
_SET_VERSION = """
INSERT INTO {s}.schema_version (version) VALUES ($1)
ON CONFLICT (only_row) DO UPDATE SET version = excluded.version
"""

_RUN_COLUMNS = (
    "id, job_id, scheduled_time, started_at, finished_at, outcome, result, error, "
    "scheduler_id, attempt, coalesced"
)

# $1 ids, $2 next run times, $3 payloads, $4 channel, $5 scheduler id. A duplicate id
# fails the whole statement (unique violation): nothing of the batch is written.
_INSERT_JOBS = """
WITH added AS (
    INSERT INTO {s}.jobs (id, next_run_time, due_at, payload)
    SELECT id, nrt, nrt, payload
    FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS u(id, nrt, payload)
    RETURNING 1
)
SELECT (SELECT count(*) FROM added) AS added, pg_notify($4, $5) AS notified
"""

# A replaced job that is leased keeps its lease (and due_at): the holder's release
# decides with the "updated while leased" rule. One that is not is due at its new next
# run time, which also frees it if it was held (Release.hold_while_running).
_UPSERT_JOBS = """
WITH added AS (
    INSERT INTO {s}.jobs (id, next_run_time, due_at, payload)
    SELECT id, nrt, nrt, payload
    FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS u(id, nrt, payload)
    ON CONFLICT (id) DO UPDATE SET
        payload = excluded.payload,
        next_run_time = excluded.next_run_time,
        due_at = CASE WHEN jobs.lease_holder IS NULL THEN excluded.next_run_time
                      ELSE jobs.due_at END
    RETURNING 1
)
SELECT (SELECT count(*) FROM added) AS added, pg_notify($4, $5) AS notified
"""

_EXISTING_IDS = "SELECT id FROM {s}.jobs WHERE id = ANY($1::text[]) ORDER BY id"

_GET_JOB = "SELECT next_run_time, payload FROM {s}.jobs WHERE id = $1"

_GET_JOBS = """
SELECT id, next_run_time, payload FROM {s}.jobs ORDER BY next_run_time NULLS LAST, id
"""

# $1 id, $2 payload, $3 next run time, $4 channel, $5 scheduler id. As in _UPSERT_JOBS,
# a job not leased is due at its new next run time: a held job is freed.
_UPDATE_JOB = """
WITH changed AS (
    UPDATE {s}.jobs SET
        payload = $2,
        next_run_time = $3,
        due_at = CASE WHEN lease_holder IS NULL THEN $3 ELSE due_at END
    WHERE id = $1
    RETURNING 1
)
SELECT (SELECT count(*) FROM changed) AS changed,
       (SELECT pg_notify($4, $5) WHERE EXISTS (SELECT FROM changed)) AS notified
"""

_REMOVE_JOB = """
WITH removed AS (DELETE FROM {s}.jobs WHERE id = $1 RETURNING 1)
SELECT (SELECT count(*) FROM removed) AS removed,
       (SELECT pg_notify($2, $3) WHERE EXISTS (SELECT FROM removed)) AS notified
"""

_REMOVE_ALL_JOBS = """
WITH removed AS (DELETE FROM {s}.jobs RETURNING 1)
SELECT (SELECT count(*) FROM removed) AS removed, pg_notify($1, $2) AS notified
"""

# A leased job counts at its lease expiry: a scheduler sleeping until then takes over
# the job of one that crashed. A held job (due_at NULL) does not count.
_NEXT_RUN_TIME = "SELECT min(due_at) FROM {s}.jobs"

# $1 now, $2 limit, $3 scheduler id, $4 lease expiry. One round trip: the due rows are
# locked with SKIP LOCKED (concurrent acquirers take disjoint rows, nobody waits) and
# leased in the same statement. A row whose lease expired but whose job was paused or
# rescheduled later meanwhile (update_job keeps due_at at the lease expiry) is not
# leased: its lease is cleared and it goes back to its own next run time.
# The in-flight runs of just-leased jobs, counted in a statement of their own rather than
# inside _ACQUIRE: that statement's snapshot can predate a release that committed (with a
# still valid token) while the acquire waited for its row lock, and so miss a run that
# release started. A new statement takes a new snapshot.
_COUNT_RUNNING = """
SELECT job_id, count(*) AS running FROM {s}.running
WHERE job_id = ANY($1::text[])
GROUP BY job_id
"""

_ACQUIRE = """
WITH due AS (
    SELECT id, due_at, next_run_time IS NOT NULL AND next_run_time <= $1 AS take
    FROM {s}.jobs
    WHERE due_at <= $1
    ORDER BY due_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE {s}.jobs j SET
    lease_holder = CASE WHEN due.take THEN $3 END,
    lease_expires = CASE WHEN due.take THEN $4::timestamptz END,
    due_at = CASE WHEN due.take THEN $4::timestamptz ELSE j.next_run_time END,
    lease_token = CASE WHEN due.take THEN nextval({lease_tokens}) ELSE j.lease_token END
FROM due
WHERE j.id = due.id
RETURNING j.id, j.next_run_time, j.payload, j.lease_token, j.run_count, due.due_at, due.take
"""


def _columns(alias: str) -> str:
    """``_RUN_COLUMNS`` qualified by ``alias``."""
    return ", ".join(f"{alias}.{c.strip()}" for c in _RUN_COLUMNS.split(","))


# One round trip for a batch of releases; _RELEASE_HOLD when one of them holds its job.
#   $1..$6: one element per release: job id, token, released next run time, the
#           leased job's next run time (NULL for an unreadable job), whether the lease
#           carried a readable job, remove.
#   $7..$17: one element per run to record: outcome NULL for a started one (it goes
#            to `running`), else a finished one (to `runs`, in this order).
#   $18, $19: jobs whose old finished runs to trim, and how many of them to keep.
#   $20 channel, $21 scheduler id, $22 whether to notify.
#   $23: the releasing scheduler, holder of the started runs; $24: one element per run
#        to record, the lease expiry of a started run (NULL for a finished one).
#   $25: one element per release, how many runs it started (added to run_count).
#   $26 (_RELEASE_HOLD only): one element per release, its hold_while_running.
# Only releases whose token is the job's current one (and still held) are applied;
# their ids come back, every other one was stale. The job rows are locked in id order,
# as free_held() (MIGRATIONS[3]) locks them: statements that lock several job rows each,
# all in one order, cannot deadlock on them.
def _release(hold: bool) -> str:
    """The release statement; with ``hold``, one that may also hold jobs."""
    hold_in = ", $26::integer[]" if hold else ""
    hold_as = ", hold" if hold else ""
    if hold:
        deciding = """
in_flight AS MATERIALIZED (
    SELECT id, job_id, holds_job FROM {s}.running
    WHERE job_id = ANY(ARRAY(SELECT id FROM r WHERE hold > 0))
    FOR NO KEY UPDATE SKIP LOCKED
),
decided AS (
    SELECT a.id, a.drop, a.nrt, a.nstarted,
        a.hold > 0 AND NOT a.drop AND a.nrt IS NOT NULL
            AND a.nstarted + (SELECT count(*) FROM in_flight f WHERE f.job_id = a.id)
                >= a.hold AS holds
    FROM accepted a
),
flagged AS (
    UPDATE {s}.running SET holds_job = true
    WHERE id IN (
        SELECT f.id FROM in_flight f JOIN decided d ON d.id = f.job_id
        WHERE d.holds AND NOT f.holds_job
    )
),"""
        source, due_at = "decided", "CASE WHEN h.holds THEN NULL ELSE h.nrt END"
        holds_in, holds_as = ", holds_job", ", job_id IN (SELECT id FROM decided WHERE holds)"
    else:
        deciding = ""
        source, due_at = "accepted", "h.nrt"
        holds_in = holds_as = ""
    return (
        """
WITH r AS (
    SELECT * FROM unnest(
        $1::text[], $2::bigint[], $3::timestamptz[], $4::timestamptz[],
        $5::boolean[], $6::boolean[], $25::integer[]"""
        + hold_in
        + """
    ) AS r(id, token, next_run_time, leased_nrt, has_job, remove, nstarted"""
        + hold_as
        + """)
),
accepted AS (
    SELECT j.id,
        r.remove AND r.has_job
            AND j.next_run_time IS NOT DISTINCT FROM r.leased_nrt AS drop,
        CASE WHEN NOT r.has_job OR j.next_run_time IS NOT DISTINCT FROM r.leased_nrt
             THEN r.next_run_time ELSE j.next_run_time END AS nrt,
        r.nstarted"""
        + hold_as.replace(", ", ", r.")
        + """
    FROM {s}.jobs j JOIN r ON j.id = r.id
    WHERE j.id = ANY($1::text[]) AND j.lease_token = r.token AND j.lease_holder IS NOT NULL
    ORDER BY j.id
    FOR UPDATE OF j
),"""
        + deciding
        + """
dropped AS (
    DELETE FROM {s}.jobs j USING accepted h WHERE j.id = h.id AND h.drop
),
kept AS (
    UPDATE {s}.jobs j SET
        next_run_time = h.nrt,
        due_at = """
        + due_at
        + """,
        lease_holder = NULL,
        lease_expires = NULL,
        run_count = j.run_count + h.nstarted
    FROM """
        + source
        + """ h
    WHERE j.id = h.id AND NOT h.drop
),
trimmed AS (
    DELETE FROM {s}.runs WHERE id = ANY(ARRAY(
        SELECT old.id
        FROM unnest($18::text[], $19::integer[]) AS t(job_id, keep)
        CROSS JOIN LATERAL (
            SELECT ru.id FROM {s}.runs ru
            WHERE ru.job_id = t.job_id
            ORDER BY ru.seq DESC
            OFFSET t.keep
        ) old
        WHERE t.job_id IN (SELECT id FROM accepted)
    ))
),
u AS (
    SELECT * FROM unnest(
        $7::uuid[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[],
        $12::text[], $13::text[], $14::text[], $15::text[], $16::integer[], $17::integer[],
        $24::timestamptz[]
    ) WITH ORDINALITY AS u(
        id, job_id, scheduled_time, started_at, finished_at, outcome, result, error,
        scheduler_id, attempt, coalesced, expires_at, ord
    )
    WHERE u.job_id IN (SELECT id FROM accepted)
),
started AS (
    INSERT INTO {s}.running ("""
        + _RUN_COLUMNS
        + ", holder, expires_at"
        + holds_in
        + """)
    SELECT """
        + _RUN_COLUMNS
        + ", $23, expires_at"
        + holds_as
        + """
    FROM u WHERE outcome IS NULL
),
ended AS (
    INSERT INTO {s}.runs ("""
        + _RUN_COLUMNS
        + """)
    SELECT """
        + _RUN_COLUMNS
        + """
    FROM u WHERE outcome IS NOT NULL
    ORDER BY ord
)
SELECT array(SELECT id FROM accepted) AS accepted,
       (SELECT pg_notify($20, $21) WHERE $22 AND EXISTS (SELECT FROM accepted)) AS notified
"""
    )


_RELEASE = _release(hold=False)

# Holding a job (Release.hold_while_running) needs its runs in flight counted, and the
# count must never include a run whose finish will not see the hold: that finish would
# not free the job, and with no run left to free it the job would stay held for good.
# A plain count cannot promise that under READ COMMITTED: this statement's snapshot can
# predate a finish that deleted the run and committed meanwhile, and a finish whose own
# snapshot predates this commit reads the job as not held.
# So the runs are counted by locking them (`in_flight`): a row deleted by a finish that
# committed is skipped, and so is one a finish is deleting (locked by it: SKIP LOCKED;
# that run is leaving). The rows locked are alive when this statement commits; if the
# job is held they are marked `holds_job` (`flagged`), as are the runs started here. A
# finish deleting a marked row waits for this commit or comes after it, and either way
# its DELETE returns the row's newest version, marked, so it frees the job (see
# _free_held) whatever its own snapshot says. The job is held only when the marked runs
# alone fill its slots, and a retry inherits the mark: a held job always has a marked
# run in flight to free it.
# SKIP LOCKED also means never waiting for a run row while holding job rows, which a
# finish locks after its run rows: no deadlock. A run skipped because another statement
# had it locked (a renewal, a claim) is neither counted nor marked: the job may then not
# be held when it could have been (the scheduler acquires it, sees its runs in flight
# and holds it again), or, held by the marked runs alone, it is freed by the end of one
# of those only, not of that run (its slots were full without it). The lock on the job
# rows (`accepted`) keeps a concurrent update_job from interleaving with the decision.
_RELEASE_HOLD = _release(hold=True)


def _retried(first: int) -> str:
    """The CTE putting retries in flight in place of the runs ``ended`` removed.

    Thirteen arrays from ``$first``, one element per retry: the id of the run it takes
    the place of, the retry's columns (as in _RUN_COLUMNS), its lease expiry. A retry
    enters `running` only if the run it follows was still there for this statement to
    delete: a concurrent finish of the same run waits on the row lock and then finds it
    gone, so of two finishes of a run exactly one puts its retry in flight. A retry is
    held by its own scheduler_id, and keeps its job held if its run did (holds_job).
    """
    types = ["uuid", "uuid", "text"] + ["timestamptz"] * 3 + ["text"] * 4
    types += ["integer", "integer", "timestamptz"]
    arrays = ", ".join(f"${first + k}::{t}[]" for k, t in enumerate(types))
    return f"""
retried AS (
    INSERT INTO {{s}}.running ({_RUN_COLUMNS}, holder, expires_at, holds_job)
    SELECT {_columns("n")}, n.scheduler_id, n.expires_at, e.holds_job
    FROM unnest({arrays}) AS n(
        after, id, job_id, scheduled_time, started_at, finished_at, outcome, result, error,
        scheduler_id, attempt, coalesced, expires_at
    )
    JOIN ended e ON e.id = n.after
)"""


def _free_held(retry_after: int, channel: int) -> str:
    """The condition freeing the held jobs of the runs ``ended`` removed without a retry.

    ``$retry_after``: the ids of the runs given a retry; ``$channel`` and the parameter
    after it: the NOTIFY channel and the scheduler id, for the wake-up. See
    ``free_held()`` in MIGRATIONS[3].

    It always holds (``free_held`` returns how many jobs it freed, never NULL). The call
    is in a scalar subquery, an InitPlan: evaluated exactly once, even when the
    statement deletes no row (a bare volatile call would be evaluated per row), and
    only once `ended` is read through, so every run row of the batch is deleted before
    any job row is locked. Releases lock job rows and never wait for run rows (SKIP
    LOCKED), and both lock job rows in id order: no deadlock. It is a condition of the
    finish statement's trim rather than a SELECT of its own at the end because the
    finish statement is planned on every call, and that costs the common finish
    (nothing held) about 20 us less; CTEs of plain SQL instead cost about 70 us more.
    """
    return f"""(SELECT {{s}}.free_held(
    ARRAY(
        SELECT e.job_id FROM ended e
        WHERE e.holds_job AND e.id <> ALL(${retry_after}::uuid[])
    ),
    ${channel},
    ${channel + 1}
)) IS NOT NULL"""


# A batch of finished runs in one statement: $1..$11 one element per run to keep (as in
# _RUN_COLUMNS; at most the retention per job), $12 the retention, $13 the ids of every
# run of the batch, $14..$26 the retries (see _retried), $27 channel, $28 scheduler id.
# Each run leaves `running` (if it was there: run_job runs and runs another scheduler
# finished first were not); those kept enter `runs`, taking the next ``seq`` in the
# batch's order, unless a run of that id is recorded already (the first record stays).
# The statement's snapshot does not see the batch in `runs` yet, so the trim keeps
# the retention minus the job's runs in the batch. Held jobs are freed in the trim's
# condition (see _free_held).
_FINISH_RUNS = (
    """
WITH f AS MATERIALIZED (
    SELECT u.*, nextval({run_order}) AS new_seq
    FROM unnest(
        $1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[],
        $6::text[], $7::text[], $8::text[], $9::text[], $10::integer[], $11::integer[]
    ) WITH ORDINALITY AS u(
        id, job_id, scheduled_time, started_at, finished_at, outcome, result, error,
        scheduler_id, attempt, coalesced, ord
    )
    ORDER BY u.ord
),
ended AS (
    DELETE FROM {s}.running WHERE id = ANY($13::uuid[]) RETURNING id, job_id, holds_job
),"""
    + _retried(14)
    + """,
recorded AS (
    INSERT INTO {s}.runs ("""
    + _RUN_COLUMNS
    + """, seq)
    SELECT """
    + _RUN_COLUMNS
    + """, new_seq
    FROM f
    ON CONFLICT (id) DO NOTHING
)
DELETE FROM {s}.runs
WHERE """
    + _free_held(14, 27)
    + """
AND id = ANY(ARRAY(
    SELECT old.id
    FROM (SELECT job_id, greatest($12 - count(*), 0) AS keep FROM f GROUP BY job_id) c
    CROSS JOIN LATERAL (
        SELECT ru.id FROM {s}.runs ru
        WHERE ru.job_id = c.job_id
        ORDER BY ru.seq DESC
        OFFSET c.keep
    ) old
))
"""
)

# run_retention = 0: nothing finished is kept. $1 the ids of the batch's runs, $2 their
# jobs, $3..$15 the retries (see _retried), $16 channel, $17 scheduler id.
_FORGET_RUNS = (
    """
WITH ended AS (
    DELETE FROM {s}.running WHERE id = ANY($1::uuid[]) RETURNING id, job_id, holds_job
),"""
    + _retried(3)
    + """
DELETE FROM {s}.runs WHERE """
    + _free_held(3, 16)
    + """ AND job_id = ANY($2::text[])
"""
)

# Removing the jobs a finish leaves with nothing to do (Store.finish_run's
# remove_finished_job): in the finish's transaction, after its statement, these two.
# $1 the job ids (for both), $2 channel, $3 scheduler id.
# The job rows are locked first, in a statement of their own: the removal's statement
# then takes its snapshot once it holds them. Two finishes of the last two runs of a
# job, both asking for the removal, thus go one after the other: the first sees the
# other run in flight and keeps the job, the second sees the first one's run gone (its
# transaction committed before the lock was granted) and removes it. Within one
# statement, READ COMMITTED would check `running` in a snapshot taken before the lock
# was granted, and each could see the other's run in flight: the job would stay.
# Rows are locked after the finish statement's run rows, as free_held() locks them
# (MIGRATIONS[3]), and in id order. (A job asked to be removed is not leased, nor held,
# unless the user changed it meanwhile: only then can a release or free_held() hold its
# row too; should that ever close a cycle of waits, PostgreSQL aborts one of them, the
# transaction rolls back whole, and the scheduler writes the outcome again.)
# remove_job_if_idle() runs the same two statements, in a transaction of their own,
# after a release that kept a job (no next run time) because a run of it was in flight
# when acquired. Against the finish of that run (statements F1 = the finish statement,
# which deletes the `running` row, F2 = this lock, F3 = the removal; the release R is
# one statement, whose `accepted` locks the job row FOR UPDATE; the scheduler sends
# I = remove_job_if_idle once R committed):
# - F2 before R locks the row: R waits for F's commit (FOR UPDATE, then the row, which
#   F did not change, still matches), so F3 may have seen the job leased and declined;
#   but I starts after R's commit, hence after F's, and its removal sees the run gone.
# - R commits before F2 is granted: F3's snapshot, taken under the lock, sees the job
#   released, and F removes it; I then finds no job (or waits for F's lock, then
#   finds none).
# - I's lock granted between F1 and F2: I's snapshot still sees F's `running` row (not
#   committed) and declines; F2 waits for I, then F3 sees R committed and removes.
# The removals read `running` only in a snapshot taken under the job row's lock (R
# does not read it at all): F and I cannot both decline a job that R released.
_LOCK_JOBS = "SELECT id FROM {s}.jobs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"

# As _REMOVE_JOB, for the jobs among $1 without a next run time (so not held either),
# lease or run in flight; returns their ids.
_REMOVE_IDLE_JOBS = """
WITH removed AS (
    DELETE FROM {s}.jobs j
    WHERE j.id = ANY($1::text[]) AND j.next_run_time IS NULL AND j.lease_holder IS NULL
        AND NOT EXISTS (SELECT FROM {s}.running r WHERE r.job_id = j.id)
    RETURNING j.id
)
SELECT array(SELECT id FROM removed) AS removed,
       (SELECT pg_notify($2, $3) WHERE EXISTS (SELECT FROM removed)) AS notified
"""

# $1 scheduler id, $2 run ids, $3 new expiry: the runs among $2 still held by $1.
# A run being claimed or finished concurrently is waited for, then no longer matches.
_EXTEND_RUNS = """
WITH renewed AS (
    UPDATE {s}.running SET expires_at = $3
    WHERE id = ANY($2::uuid[]) AND holder = $1
    RETURNING id
)
SELECT array(SELECT id FROM renewed) AS renewed
"""

# $1 scheduler id, $2 now, $3 limit, $4 new expiry. As _ACQUIRE: SKIP LOCKED lets
# concurrent claimers take disjoint rows, and a row renewed or claimed meanwhile fails
# the re-checked `expires_at <= $2` once locked. The old expiry comes back for the order.
_CLAIM_RUNS = (
    """
WITH due AS (
    SELECT id, expires_at FROM {s}.running
    WHERE expires_at <= $2
    ORDER BY expires_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE {s}.running r SET holder = $1, expires_at = $4
FROM due
WHERE r.id = due.id
RETURNING """
    + _columns("r")
    + """, due.expires_at AS expired_at
"""
)

# $1 job id, $2 limit. Runs in flight for one scheduled time go by id: an order of
# their own, which _GET_LATEST_RUNS follows.
_GET_RUNS = (
    "SELECT "
    + _RUN_COLUMNS
    + """
FROM (
    (SELECT """
    + _RUN_COLUMNS
    + """, 0 AS part, scheduled_time AS at, 0::bigint AS seq
     FROM {s}.running WHERE job_id = $1)
    UNION ALL
    (SELECT """
    + _RUN_COLUMNS
    + """, 1, NULL, seq
     FROM {s}.runs WHERE job_id = $1 ORDER BY seq DESC LIMIT $2)
) AS history
ORDER BY part, at DESC, seq DESC, id
LIMIT $2
"""
)

# Every job id, payloads unread (jobs that cannot be read back are listed too). The
# store sorts them: Python's order (code points), whatever the database's collation.
_GET_JOB_IDS = "SELECT array(SELECT id FROM {s}.jobs) AS ids"

# $1 distinct job ids: the first run each one's _GET_RUNS would return, in one statement.
# Per id, at most two index probes (`running_job_id`, then `runs_job_id_seq` read
# backwards): the cost follows the number of ids, never the length of the histories.
# The in-flight tie order is _GET_RUNS' (run id); ids without a run give no row.
_GET_LATEST_RUNS = (
    "SELECT "
    + _columns("latest")
    + """
FROM unnest($1::text[]) AS w(job_id)
CROSS JOIN LATERAL (
    SELECT """
    + _RUN_COLUMNS
    + """
    FROM (
        (SELECT """
    + _RUN_COLUMNS
    + """, 0 AS part
         FROM {s}.running WHERE job_id = w.job_id
         ORDER BY scheduled_time DESC, id LIMIT 1)
        UNION ALL
        (SELECT """
    + _RUN_COLUMNS
    + """, 1
         FROM {s}.runs WHERE job_id = w.job_id
         ORDER BY seq DESC LIMIT 1)
    ) AS candidates
    ORDER BY part
    LIMIT 1
) AS latest
"""
)

# $1 limit. `running` holds only the runs going on, so it is read whole, with no index
# of its own to keep up on every release and finish. A uuid compares byte by byte, as
# its canonical text (lower-case hex at fixed places) does: `id` orders as str(run.id).
_GET_RUNS_IN_FLIGHT = (
    "SELECT " + _RUN_COLUMNS + " FROM {s}.running ORDER BY scheduled_time, id LIMIT $1"
)

# Leases this scheduler still holds when its store stops: given back at once rather
# than left to expire, so another scheduler need not wait out lease_duration.
_DROP_LEASES = """
UPDATE {s}.jobs SET lease_holder = NULL, lease_expires = NULL, due_at = next_run_time
WHERE lease_holder = $1
"""

# $1..$8 the record (in the table's column order), $9 the cutoff: records that expired
# before it are dropped in the same statement. No NOTIFY: nobody waits for a heartbeat.
# The stale rows are locked with SKIP LOCKED, so a heartbeat never waits in its cleanup:
# a row locked by another transaction is being dropped by another heartbeat or
# remove_scheduler, or renewed (no longer stale), and in any case a later heartbeat
# finds it again. Two heartbeats dropping each other's rows in opposite orders cannot
# deadlock. The writer's own row is left to the upsert (a statement must not modify a
# row twice).
_HEARTBEAT = """
WITH dropped AS (
    DELETE FROM {s}.schedulers WHERE id = ANY(ARRAY(
        SELECT id FROM {s}.schedulers
        WHERE expires_at < $9 AND id <> $1
        FOR UPDATE SKIP LOCKED
    ))
)
INSERT INTO {s}.schedulers (
    id, host, pid, started_at, heartbeat_at, expires_at, state, version
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (id) DO UPDATE SET
    host = excluded.host,
    pid = excluded.pid,
    started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at,
    expires_at = excluded.expires_at,
    state = excluded.state,
    version = excluded.version
"""

_REMOVE_SCHEDULER = "DELETE FROM {s}.schedulers WHERE id = $1"

# $1 now. The job leases a scheduler holds are counted through the partial index on
# jobs.lease_holder (only the leased rows of the schedulers listed are read); the runs
# it holds in one pass over `running` (small: the runs in flight), grouped by holder.
# By id in code point order, as everywhere else (COLLATE "C": the database's own
# collation may order otherwise).
_GET_SCHEDULERS = """
WITH run_leases AS (
    SELECT holder, count(*) AS held FROM {s}.running
    WHERE expires_at > $1
    GROUP BY holder
)
SELECT s.id, s.host, s.pid, s.started_at, s.heartbeat_at, s.expires_at, s.state, s.version,
    (SELECT count(*) FROM {s}.jobs j
     WHERE j.lease_holder = s.id AND j.lease_expires > $1) AS job_leases,
    coalesce(r.held, 0) AS run_leases
FROM {s}.schedulers s
LEFT JOIN run_leases r ON r.holder = s.id
ORDER BY s.id COLLATE "C"
"""


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@attrs.frozen
class Statements:
    """The store's statements for one schema."""

    prepare: str
    lock: str
    version: str
    set_version: str
    migrations: dict[int, str]
    insert_jobs: str
    upsert_jobs: str
    existing_ids: str
    get_job: str
    get_jobs: str
    update_job: str
    remove_job: str
    remove_all_jobs: str
    next_run_time: str
    acquire: str
    count_running: str
    release: str
    release_hold: str
    finish_runs: str
    forget_runs: str
    lock_jobs: str
    remove_idle_jobs: str
    extend_runs: str
    claim_runs: str
    get_runs: str
    get_job_ids: str
    get_latest_runs: str
    get_runs_in_flight: str
    drop_leases: str
    register: str
    heartbeat: str
    remove_scheduler: str
    get_schedulers: str

    @classmethod
    def for_schema(cls, schema: str) -> Statements:
        """The statements of ``schema`` (a name :data:`SCHEMA_NAME` accepts)."""
        s = quote_ident(schema)
        names = {
            "s": s,
            "lease_tokens": _quote_literal(f"{s}.lease_tokens") + "::regclass",
            "run_order": _quote_literal(f"{s}.run_order") + "::regclass",
        }

        def fill(template: str) -> str:
            return template.format(**names)

        return cls(
            prepare=fill(_PREPARE),
            lock=_LOCK,
            version=fill(_VERSION),
            set_version=fill(_SET_VERSION),
            migrations={v: fill(sql) for v, sql in MIGRATIONS.items()},
            insert_jobs=fill(_INSERT_JOBS),
            upsert_jobs=fill(_UPSERT_JOBS),
            existing_ids=fill(_EXISTING_IDS),
            get_job=fill(_GET_JOB),
            get_jobs=fill(_GET_JOBS),
            update_job=fill(_UPDATE_JOB),
            remove_job=fill(_REMOVE_JOB),
            remove_all_jobs=fill(_REMOVE_ALL_JOBS),
            next_run_time=fill(_NEXT_RUN_TIME),
            acquire=fill(_ACQUIRE),
            count_running=fill(_COUNT_RUNNING),
            release=fill(_RELEASE),
            release_hold=fill(_RELEASE_HOLD),
            finish_runs=fill(_FINISH_RUNS),
            forget_runs=fill(_FORGET_RUNS),
            lock_jobs=fill(_LOCK_JOBS),
            remove_idle_jobs=fill(_REMOVE_IDLE_JOBS),
            extend_runs=fill(_EXTEND_RUNS),
            claim_runs=fill(_CLAIM_RUNS),
            get_runs=fill(_GET_RUNS),
            get_job_ids=fill(_GET_JOB_IDS),
            get_latest_runs=fill(_GET_LATEST_RUNS),
            get_runs_in_flight=fill(_GET_RUNS_IN_FLIGHT),
            drop_leases=fill(_DROP_LEASES),
            register=fill(_REGISTER),
            heartbeat=fill(_HEARTBEAT),
            remove_scheduler=fill(_REMOVE_SCHEDULER),
            get_schedulers=fill(_GET_SCHEDULERS),
        )
