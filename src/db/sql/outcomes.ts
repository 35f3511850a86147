/**
 * What an attempt came to, written for the runner: completions (in groups) and failures, each
 * fenced by the attempt's claim (`held`, claims.ts), and each terminal change appending its
 * event (events.ts) in the same statement.
 */
import type { Knex } from 'knex';
import { PENDING_CHANNEL } from '../channels.js';
import type { MatchResult } from '../../heuristic/types.js';
import { PENDING_UNMATCHED, claimsById, held, ofItem } from './claims.js';
import { type Appended, EVENTS, NOTHING_APPENDED, appended, logFinished } from './events.js';
import { COLUMNS, type Claim, type JobError, type JobRow, preparedRows, rows } from './rows.js';

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
// primary key (PENDING_UNMATCHED, claims.ts: with the plain constant it scanned
// `jobs_pending_idx` once per follower).
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
    sql: `WITH done AS (
       UPDATE jobs SET status = 'succeeded', result = input.items -> jobs.id::text -> 'result',
         error = NULL, finished_at = now(), locked_by = NULL, locked_until = NULL
       FROM (SELECT ?::jsonb AS items) input
       WHERE jobs.id = ANY (?::uuid[]) AND ${ofItem('jobs', 'input.items')} AND ${held('jobs')}
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
       WHERE jobs.id = waiting.id AND jobs.status = ${PENDING_UNMATCHED}
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
      claimsById(
        opts.items.map((i) => i.job),
        opts.items.map((i) => i.result),
      ),
      opts.items.map((i) => i.job.id),
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
