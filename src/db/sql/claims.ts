/**
 * The runner's statements: claim due jobs, renew leases, and record what each attempt came to
 * (complete, fail, hand back), and reap leases whose process died.
 *
 * Fencing: a claim increments `attempts` and sets `locked_by`; every later write for that attempt
 * matches on (id, attempts, locked_by, a lease present: see `held`), so an answer from an attempt
 * that lost its lease changes nothing. Every write that makes a job terminal appends its event
 * (events.ts) in the same statement.
 */
import type { Knex } from 'knex';
import { PENDING_CHANNEL } from '../channels.js';
import type { MatchResult } from '../../heuristic/types.js';
import { type Appended, EVENTS, NOTHING_APPENDED, appended, logFinished } from './events.js';
import {
  COLUMNS,
  type Claim,
  type JobError,
  type JobRow,
  prefixed,
  preparedRows,
  rows,
} from './rows.js';

/**
 * SQL condition (one `?`: the worker id): the job in `alias` is running under a claim of that
 * worker. Written without `status`: `locked_by` and `locked_until` are set exactly while
 * `status = 'running'` (CHECK `jobs_check`), so this is the same fence as `status = 'running'
 * AND locked_by = ?`; but a condition on `status` let the planner read the job through
 * `jobs_running_idx` (every running job, then filter) instead of its primary key. It did so
 * whenever the statistics said running jobs were rare, which is what ANALYZE sees between
 * bursts: each completion, renewal or failure then read every running job, 10,000 of them with
 * 10,000 slow jobs in flight (test/runner-writes.plans.test.ts).
 */
export function held(alias: string): string {
  return `${alias}.locked_by = ? AND ${alias}.locked_until IS NOT NULL`;
}

/**
 * SQL condition: the job in `alias` is not waiting on a flight, i.e. no other job is computing
 * its cache key right now (its leader's completion will complete it).
 */
function notInFlight(alias: string): string {
  return `(${alias}.cache_key IS NULL OR NOT EXISTS (
    SELECT 1 FROM flights f JOIN jobs leader ON leader.id = f.job_id
    WHERE f.cache_key = ${alias}.cache_key
      AND leader.status = 'running' AND leader.attempts = f.attempts))`;
}

// Sets status=running, locked_by, locked_until=now()+lease, started_at=now(), attempts+1 for up to
// `limit` due pending jobs (not those waiting on another job computing their cache key),
// skipping rows other claimers hold, and last_claimed_at=now() on the
// clients served. Fair share: clients take turns, longest unserved first, each contributing its
// oldest due job per turn; so one client's backlog of any size delays another client's first
// job by at most one turn per client with due work.
//
// Its plan must not depend on the statistics of `status`, which describe whichever moment ANALYZE
// last saw (the queue goes from empty to thousands pending in a second, and back): every step
// walks `jobs_pending_idx (client_id, run_after, seq)` in its own order, so reading a job it does
// not claim is the exception. The probe "has this client due work" asks for that order too:
// without it, statistics saying pending jobs are common made it a sequential scan from the start
// of the table, through every finished job, under its LIMIT 1. No other index can serve these
// steps (migration 0011; test/claim.plans.test.ts). The update finds the picked rows by primary
// key (`= ANY (ARRAY(…))`): as a join, a generic plan (its LIMITs unknown) hashed the picked ids
// and scanned the whole table for them. The claimed jobs come back in turn order, the order the
// runner starts them in.
//
// The claim commits without waiting for its WAL to reach disk (synchronous_commit off for its
// own transaction only): one fsync less on every job's way to its result. Safe because nothing
// outside the database acts on a claim alone: if Postgres crashes before the claim is flushed,
// the job is pending again and runs again, as after a lost lease; and the attempt's own
// completion commits synchronously, flushing the WAL up to and past the claim first.
export function claimJobs(
  db: Knex,
  opts: { workerId: string; limit: number; leaseMs: number },
): Promise<JobRow[]> {
  const { name, sql, bindings } = claimStatement(opts);
  return preparedRows(db, name, sql, bindings);
}

/** The claim's prepared statement, name, text (knex `?` placeholders) and bindings. */
export function claimStatement(opts: { workerId: string; limit: number; leaseMs: number }) {
  // Candidates beyond `limit` let concurrent claimers (other processes) skip each other's rows.
  const window = opts.limit * 4;
  return {
    name: 'merchant_claim_jobs',
    sql: `WITH turns AS (
       SELECT c.id, row_number() OVER (ORDER BY c.last_claimed_at NULLS FIRST, c.id) AS turn
       FROM clients c CROSS JOIN LATERAL (
         SELECT 1 FROM jobs j
         WHERE j.client_id = c.id AND j.status = 'pending' AND j.run_after <= now()
         ORDER BY j.run_after, j.seq
         LIMIT 1
       ) due_work
       ORDER BY c.last_claimed_at NULLS FIRST, c.id
       LIMIT ?
     ), candidates AS (
       SELECT q.id, q.rank, t.turn
       FROM turns t CROSS JOIN LATERAL (
         SELECT id, row_number() OVER (ORDER BY run_after, seq) AS rank FROM (
           SELECT id, run_after, seq FROM jobs AS due
           WHERE client_id = t.id AND status = 'pending' AND run_after <= now()
             AND ${notInFlight('due')}
           ORDER BY run_after, seq
           LIMIT ?
         ) oldest
       ) q
       ORDER BY q.rank, t.turn
       LIMIT ?
     ), picked AS (
       SELECT j.id, c.rank, c.turn FROM jobs j JOIN candidates c ON c.id = j.id
       WHERE j.status = 'pending' AND j.run_after <= now()
       ORDER BY c.rank, c.turn
       LIMIT ?
       FOR UPDATE OF j SKIP LOCKED
     ), claimed AS (
       UPDATE jobs SET status = 'running', locked_by = ?,
         locked_until = now() + make_interval(secs => ? / 1000.0),
         started_at = now(), attempts = attempts + 1
       WHERE jobs.id = ANY (ARRAY(SELECT id FROM picked))
       RETURNING ${prefixed('jobs')}
     ), served AS (
       UPDATE clients SET last_claimed_at = clock_timestamp()
       FROM (SELECT id FROM clients WHERE id IN (SELECT client_id FROM claimed)
             ORDER BY id FOR NO KEY UPDATE SKIP LOCKED) s
       WHERE clients.id = s.id
     )
     SELECT claimed.* FROM claimed JOIN picked ON picked.id = claimed.id
     WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL
     ORDER BY picked.rank, picked.turn`,
    bindings: [window, opts.limit, window, opts.limit, opts.workerId, opts.leaseMs],
  };
}

// Extends locked_until to now()+lease for this worker's claims that still hold; returns their ids.
export async function renewLeases(
  db: Knex,
  opts: { workerId: string; claims: readonly Claim[]; leaseMs: number },
): Promise<Set<string>> {
  if (opts.claims.length === 0) return new Set();
  const { sql, bindings } = renewStatement(opts);
  const res = await db.raw<{ rows: { id: string }[] }>(sql, bindings);
  return new Set(res.rows.map((r) => r.id));
}

/** renewLeases' statement (knex `?` placeholders) and bindings. */
export function renewStatement(opts: {
  workerId: string;
  claims: readonly Claim[];
  leaseMs: number;
}) {
  return {
    sql: `UPDATE jobs SET locked_until = now() + make_interval(secs => ? / 1000.0)
     FROM unnest(?::uuid[], ?::int[]) AS c(id, attempts)
     WHERE jobs.id = c.id AND jobs.attempts = c.attempts AND ${held('jobs')}
     RETURNING jobs.id`,
    bindings: [
      opts.leaseMs,
      opts.claims.map((c) => c.id),
      opts.claims.map((c) => c.attempts),
      opts.workerId,
    ],
  };
}

// For each item whose claim still holds: status=succeeded, result, finished_at=now(), lease
// cleared, its event appended; with a cache key (and `cacheTtlMs` > 0) the answer is stored in
// `results`, every pending job waiting on the same key is completed too (`followers`, each with
// its event) and the flight ends. One statement for any number of items (group commit). Returns
// one entry per item, in order: the completed row, or undefined when its claim was lost; and the
// events appended.
//
// The jobs waiting on a completed key are looked up key by key (`waiting`: a nested loop driven
// by `keyed`, which `OFFSET 0` keeps the planner from flattening, so no key means no lookup)
// through `jobs_unfinished_cache_key_idx`, by `finished_at IS NULL` rather than `status`: a
// condition on `status` let stale statistics send the lookup through every pending job (migration
// 0013, test/runner-writes.plans.test.ts). The update then takes only those still pending, by
// primary key: its `status = (SELECT 'pending')` is `status = 'pending'` to the executor, but not
// a constant the planner could match to the predicate of a partial index over pending jobs (with
// the plain constant it scanned `jobs_pending_idx` once per follower).
//
// Each item carries its job's row as the claim returned it; the completed row is that row with
// what the completion changed (status, result, error, finished_at, lease), so the statement
// returns only those instead of every column again. Nothing else changes a job's row while its
// claim holds (a cancel or a lost lease ends the claim, and then the item has no row).
export async function completeJobs(
  db: Knex,
  opts: {
    workerId: string;
    items: readonly { job: JobRow; result: MatchResult }[];
    cacheTtlMs?: number;
  },
): Promise<{ rows: ((JobRow & { followers: number }) | undefined)[]; events: Appended }> {
  if (opts.items.length === 0) return { rows: [], events: NOTHING_APPENDED };
  const { name, sql, bindings } = completeStatement(opts);
  const done = await preparedRows<Completed & { events: unknown }>(db, name, sql, bindings);
  const byId = new Map(done.map((row) => [row.id, row]));
  return {
    rows: opts.items.map(({ job }) => {
      const row = byId.get(job.id);
      if (!row) return undefined;
      return {
        ...job,
        status: 'succeeded',
        result: row.result,
        error: null,
        finished_at: row.finished_at,
        locked_by: null,
        locked_until: null,
        followers: row.followers,
      };
    }),
    events: appended(done.map((row) => row.events)),
  };
}

/** What the completing statement returns per completed job. */
interface Completed {
  id: string;
  result: MatchResult;
  finished_at: Date;
  followers: number;
}

/** completeJobs' prepared statement: name, text (knex `?` placeholders) and bindings. */
export function completeStatement(opts: {
  workerId: string;
  /** The claimed jobs (only their claims, id and attempt, are read here) and their answers. */
  items: readonly { job: Claim; result: MatchResult }[];
  cacheTtlMs?: number;
}) {
  const ttl = opts.cacheTtlMs ?? 0;
  return {
    name: 'merchant_complete_jobs',
    sql: `WITH input AS (
       SELECT * FROM unnest(?::uuid[], ?::int[], ?::jsonb[]) AS i(id, attempts, result)
     ), done AS (
       UPDATE jobs SET status = 'succeeded', result = input.result, error = NULL,
         finished_at = now(), locked_by = NULL, locked_until = NULL
       FROM input
       WHERE jobs.id = input.id AND jobs.attempts = input.attempts
         AND ${held('jobs')}
       RETURNING jobs.id, jobs.client_id, jobs.batch_id, jobs.status, jobs.cache_key,
         jobs.result, jobs.finished_at
     ), keyed AS (
       SELECT DISTINCT ON (cache_key) cache_key, result, id AS leader_id FROM done
       WHERE cache_key IS NOT NULL ORDER BY cache_key, id
     ), cached AS (
       INSERT INTO results (cache_key, result, expires_at)
       SELECT cache_key, result, now() + make_interval(secs => ? / 1000.0) FROM keyed WHERE ? > 0
       ON CONFLICT (cache_key) DO UPDATE
         SET result = excluded.result, created_at = now(), expires_at = excluded.expires_at
     ), waiting AS (
       SELECT w.id, k.result, k.leader_id
       FROM keyed k CROSS JOIN LATERAL (
         SELECT id FROM jobs w WHERE w.cache_key = k.cache_key AND w.finished_at IS NULL
         OFFSET 0
       ) w
     ), followers AS (
       UPDATE jobs SET status = 'succeeded', result = waiting.result, error = NULL,
         started_at = now(), finished_at = now()
       FROM waiting
       WHERE jobs.id = waiting.id AND jobs.status = (SELECT 'pending')
       RETURNING jobs.id, jobs.client_id, jobs.batch_id, jobs.status, waiting.leader_id
     ), landed AS (
       DELETE FROM flights USING done
       WHERE flights.cache_key = done.cache_key AND flights.job_id = done.id
     ), finished AS (
       SELECT id, client_id, batch_id, status FROM done
       UNION ALL SELECT id, client_id, batch_id, status FROM followers
     ), ${logFinished('finished', 'decrement')}
     SELECT done.id, done.result, done.finished_at,
            (SELECT count(*) FROM followers f WHERE f.leader_id = done.id)::int AS followers,
            CASE WHEN row_number() OVER () = 1 THEN ${EVENTS} END AS events
     FROM done`,
    bindings: [
      opts.items.map((i) => i.job.id),
      opts.items.map((i) => i.job.attempts),
      opts.items.map((i) => JSON.stringify(i.result)),
      opts.workerId,
      ttl,
      ttl,
    ],
  };
}

// Records a failed attempt if the claim still holds: back to pending with run_after=now()+retryDelay
// when `retry` and attempts remain, else status=failed with finished_at=now() and its event
// appended. NOTIFYs runners when it is due again, or when jobs with its cache key may have
// waited on this attempt (they are claimable now).
export async function failAttempt(
  db: Knex,
  opts: { workerId: string; claim: Claim; error: JobError; retry: boolean; retryDelayMs: number },
): Promise<{ row: JobRow | undefined; events: Appended }> {
  const { sql, bindings } = failStatement(opts);
  const [found] = await rows<JobRow & { events: unknown }>(db, sql, bindings);
  if (!found) return { row: undefined, events: NOTHING_APPENDED };
  const { events, ...row } = found;
  return { row, events: appended(events) };
}

/** failAttempt's statement (knex `?` placeholders) and bindings. */
export function failStatement(opts: {
  workerId: string;
  claim: Claim;
  error: JobError;
  retry: boolean;
  retryDelayMs: number;
}) {
  return {
    sql: `WITH failed AS (
       UPDATE jobs SET
         status = CASE WHEN ? AND attempts < max_attempts THEN 'pending' ELSE 'failed' END,
         error = ?::jsonb,
         run_after = now() + make_interval(secs => ? / 1000.0),
         finished_at = CASE WHEN ? AND attempts < max_attempts THEN NULL ELSE now() END,
         locked_by = NULL, locked_until = NULL
       WHERE id = ? AND attempts = ? AND ${held('jobs')}
       RETURNING ${COLUMNS}
     ), finished AS (
       SELECT id, client_id, batch_id, status FROM failed WHERE status = 'failed'
     ), ${logFinished('finished', 'decrement')}
     SELECT failed.*, CASE WHEN (status = 'pending' AND run_after <= now())
                                OR cache_key IS NOT NULL
                           THEN pg_notify(?, '') END AS notified,
            ${EVENTS} AS events
     FROM failed`,
    bindings: [
      opts.retry,
      JSON.stringify(opts.error),
      opts.retryDelayMs,
      opts.retry,
      opts.claim.id,
      opts.claim.attempts,
      opts.workerId,
      PENDING_CHANNEL,
    ],
  };
}

// Hands this worker's unfinished claims back: status=pending, run_after=now(), attempts-1 (an
// attempt interrupted by shutdown does not count), lease cleared; NOTIFYs other runners.
export async function releaseClaims(
  db: Knex,
  opts: { workerId: string; claims: readonly Claim[] },
): Promise<number> {
  if (opts.claims.length === 0) return 0;
  const { sql, bindings } = releaseStatement(opts);
  const res = await db.raw<{ rows: { released: number }[] }>(sql, bindings);
  return res.rows[0]?.released ?? 0;
}

/** releaseClaims' statement (knex `?` placeholders) and bindings. */
export function releaseStatement(opts: { workerId: string; claims: readonly Claim[] }) {
  return {
    sql: `WITH released AS (
       UPDATE jobs SET status = 'pending', attempts = jobs.attempts - 1, run_after = now(),
         locked_by = NULL, locked_until = NULL
       FROM unnest(?::uuid[], ?::int[]) AS c(id, attempts)
       WHERE jobs.id = c.id AND jobs.attempts = c.attempts AND ${held('jobs')}
       RETURNING jobs.id
     )
     SELECT count(*)::int AS released, CASE WHEN count(*) > 0 THEN pg_notify(?, '') END
     FROM released`,
    bindings: [
      opts.claims.map((c) => c.id),
      opts.claims.map((c) => c.attempts),
      opts.workerId,
      PENDING_CHANNEL,
    ],
  };
}

// For up to `limit` running jobs whose lease expired (their process died), but those in
// `except`: status=pending again, or status=failed (with its event) when that was the last
// attempt; error says the lease expired; NOTIFYs runners when any are pending again.
export async function reapExpiredLeases(
  db: Knex,
  opts: {
    limit: number;
    /** Jobs not to reap: the caller's own live attempts, whatever their lease says. */
    except?: readonly string[];
  },
): Promise<{ requeued: number; failed: number; events: Appended }> {
  const [counts] = await rows<{ requeued: number; failed: number; events: unknown }>(
    db,
    `WITH reaped AS (
       UPDATE jobs SET
         status = CASE WHEN attempts < max_attempts THEN 'pending' ELSE 'failed' END,
         finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE now() END,
         run_after = now(),
         error = jsonb_build_object(
           'code', 'lease_expired',
           'message', 'the worker running this attempt stopped renewing its lease (it crashed or hung)',
           'attempt', attempts),
         locked_by = NULL, locked_until = NULL
       WHERE id IN (
         SELECT id FROM jobs WHERE status = 'running' AND locked_until < now()
           AND NOT (id = ANY(?::uuid[]))
         ORDER BY locked_until LIMIT ? FOR UPDATE SKIP LOCKED
       )
       RETURNING id, client_id, batch_id, status
     ), finished AS (
       SELECT id, client_id, batch_id, status FROM reaped WHERE status = 'failed'
     ), ${logFinished('finished', 'decrement')}
     SELECT count(*) FILTER (WHERE status = 'pending')::int AS requeued,
            count(*) FILTER (WHERE status = 'failed')::int AS failed,
            CASE WHEN count(*) FILTER (WHERE status = 'pending') > 0 THEN pg_notify(?, '') END,
            ${EVENTS} AS events
     FROM reaped`,
    [[...(opts.except ?? [])], opts.limit, PENDING_CHANNEL],
  );
  return {
    requeued: counts?.requeued ?? 0,
    failed: counts?.failed ?? 0,
    events: appended(counts?.events),
  };
}
