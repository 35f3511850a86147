/**
 * Every SQL statement about jobs. Each function is one statement, takes its database handle,
 * and says above it what it changes. Routes and the runner never build queries themselves.
 *
 * Fencing: a claim increments `attempts` and sets `locked_by`; every later write for that attempt
 * matches on (id, status = 'running', locked_by, attempts), so an answer from an attempt that
 * lost its lease changes nothing.
 */
import type { Knex } from 'knex';
import type { Merchant, Transaction } from '../heuristic/types.js';
import type { JobError } from './errors.js';

export type JobStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'canceled';
export const TERMINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'canceled'];

/** Channel on which a NOTIFY announces that jobs became claimable. */
export const PENDING_CHANNEL = 'merchant_jobs_pending';

export interface JobRow {
  id: string;
  status: JobStatus;
  transaction: Transaction;
  result: { merchant: Merchant | null } | null;
  error: JobError | null;
  attempts: number;
  max_attempts: number;
  run_after: Date;
  locked_by: string | null;
  locked_until: Date | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
}

/** The claim held by one attempt: what fenced writes match on. */
export interface Claim {
  id: string;
  attempts: number;
}

const COLUMNS = `id, status, transaction, result, error, attempts, max_attempts, run_after,
  locked_by, locked_until, created_at, started_at, finished_at`;

async function rows(
  db: Knex,
  sql: string,
  bindings: readonly Knex.RawBinding[],
): Promise<JobRow[]> {
  const res = await db.raw<{ rows: JobRow[] }>(sql, bindings);
  return res.rows;
}

// Inserts one pending job and NOTIFYs waiting runners (delivered when the insert commits).
export async function insertJob(
  db: Knex,
  job: { id: string; transaction: Transaction; maxAttempts: number },
): Promise<JobRow> {
  const [row] = await rows(
    db,
    `WITH inserted AS (
       INSERT INTO jobs (id, transaction, max_attempts) VALUES (?, ?::jsonb, ?)
       RETURNING ${COLUMNS}
     )
     SELECT inserted.*, pg_notify(?, '') AS notified FROM inserted`,
    [job.id, JSON.stringify(job.transaction), job.maxAttempts, PENDING_CHANNEL],
  );
  if (!row) throw new Error('insert returned no row');
  return row;
}

// Reads one job; changes nothing.
export async function getJob(db: Knex, id: string): Promise<JobRow | undefined> {
  const [row] = await rows(db, `SELECT ${COLUMNS} FROM jobs WHERE id = ?`, [id]);
  return row;
}

// Sets status=running, locked_by, locked_until=now()+lease, started_at=now(), attempts+1 for up to
// `limit` due pending jobs, oldest first, skipping rows other claimers hold.
export function claimJobs(
  db: Knex,
  opts: { workerId: string; limit: number; leaseMs: number },
): Promise<JobRow[]> {
  return rows(
    db,
    `UPDATE jobs SET status = 'running', locked_by = ?,
       locked_until = now() + make_interval(secs => ? / 1000.0),
       started_at = now(), attempts = attempts + 1
     WHERE id IN (
       SELECT id FROM jobs
       WHERE status = 'pending' AND run_after <= now()
       ORDER BY run_after, created_at
       LIMIT ?
       FOR UPDATE SKIP LOCKED
     )
     RETURNING ${COLUMNS}`,
    [opts.workerId, opts.leaseMs, opts.limit],
  );
}

// Extends locked_until to now()+lease for this worker's claims that still hold; returns their ids.
export async function renewLeases(
  db: Knex,
  opts: { workerId: string; claims: readonly Claim[]; leaseMs: number },
): Promise<Set<string>> {
  if (opts.claims.length === 0) return new Set();
  const res = await db.raw<{ rows: { id: string }[] }>(
    `UPDATE jobs SET locked_until = now() + make_interval(secs => ? / 1000.0)
     FROM unnest(?::uuid[], ?::int[]) AS c(id, attempts)
     WHERE jobs.id = c.id AND jobs.attempts = c.attempts
       AND jobs.status = 'running' AND jobs.locked_by = ?
     RETURNING jobs.id`,
    [opts.leaseMs, opts.claims.map((c) => c.id), opts.claims.map((c) => c.attempts), opts.workerId],
  );
  return new Set(res.rows.map((r) => r.id));
}

// Sets status=succeeded, result, finished_at=now() and clears the lease, if the claim still holds.
export async function completeJob(
  db: Knex,
  opts: { workerId: string; claim: Claim; merchant: Merchant | null },
): Promise<JobRow | undefined> {
  const [row] = await rows(
    db,
    `UPDATE jobs SET status = 'succeeded', result = ?::jsonb, error = NULL,
       finished_at = now(), locked_by = NULL, locked_until = NULL
     WHERE id = ? AND attempts = ? AND status = 'running' AND locked_by = ?
     RETURNING ${COLUMNS}`,
    [
      JSON.stringify({ merchant: opts.merchant }),
      opts.claim.id,
      opts.claim.attempts,
      opts.workerId,
    ],
  );
  return row;
}

// Records a failed attempt if the claim still holds: back to pending with run_after=now()+retryDelay
// when `retry` and attempts remain (NOTIFYing runners), else status=failed with finished_at=now().
export async function failAttempt(
  db: Knex,
  opts: { workerId: string; claim: Claim; error: JobError; retry: boolean; retryDelayMs: number },
): Promise<JobRow | undefined> {
  const [row] = await rows(
    db,
    `WITH failed AS (
       UPDATE jobs SET
         status = CASE WHEN ? AND attempts < max_attempts THEN 'pending' ELSE 'failed' END,
         error = ?::jsonb,
         run_after = now() + make_interval(secs => ? / 1000.0),
         finished_at = CASE WHEN ? AND attempts < max_attempts THEN NULL ELSE now() END,
         locked_by = NULL, locked_until = NULL
       WHERE id = ? AND attempts = ? AND status = 'running' AND locked_by = ?
       RETURNING ${COLUMNS}
     )
     SELECT failed.*, CASE WHEN status = 'pending' AND run_after <= now()
                           THEN pg_notify(?, '') END AS notified
     FROM failed`,
    [
      opts.retry,
      JSON.stringify(opts.error),
      opts.retryDelayMs,
      opts.retry,
      opts.claim.id,
      opts.claim.attempts,
      opts.workerId,
      PENDING_CHANNEL,
    ],
  );
  return row;
}

// Hands this worker's unfinished claims back: status=pending, run_after=now(), attempts-1 (an
// attempt interrupted by shutdown does not count), lease cleared; NOTIFYs other runners.
export async function releaseClaims(
  db: Knex,
  opts: { workerId: string; claims: readonly Claim[] },
): Promise<number> {
  if (opts.claims.length === 0) return 0;
  const res = await db.raw<{ rows: { released: number }[] }>(
    `WITH released AS (
       UPDATE jobs SET status = 'pending', attempts = jobs.attempts - 1, run_after = now(),
         locked_by = NULL, locked_until = NULL
       FROM unnest(?::uuid[], ?::int[]) AS c(id, attempts)
       WHERE jobs.id = c.id AND jobs.attempts = c.attempts
         AND jobs.status = 'running' AND jobs.locked_by = ?
       RETURNING jobs.id
     )
     SELECT count(*)::int AS released, CASE WHEN count(*) > 0 THEN pg_notify(?, '') END
     FROM released`,
    [
      opts.claims.map((c) => c.id),
      opts.claims.map((c) => c.attempts),
      opts.workerId,
      PENDING_CHANNEL,
    ],
  );
  return res.rows[0]?.released ?? 0;
}

// For up to `limit` running jobs whose lease expired (their process died): status=pending again,
// or status=failed when that was the last attempt; error says the lease expired; NOTIFYs runners.
export async function reapExpiredLeases(
  db: Knex,
  opts: { limit: number },
): Promise<{ requeued: number; failed: number }> {
  const res = await db.raw<{ rows: { requeued: number; failed: number }[] }>(
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
         ORDER BY locked_until LIMIT ? FOR UPDATE SKIP LOCKED
       )
       RETURNING status
     )
     SELECT count(*) FILTER (WHERE status = 'pending')::int AS requeued,
            count(*) FILTER (WHERE status = 'failed')::int AS failed,
            CASE WHEN count(*) FILTER (WHERE status = 'pending') > 0 THEN pg_notify(?, '') END
     FROM reaped`,
    [opts.limit, PENDING_CHANNEL],
  );
  const counts = res.rows[0];
  return { requeued: counts?.requeued ?? 0, failed: counts?.failed ?? 0 };
}

// Deletes up to `limit` finished (succeeded, failed, canceled) jobs with finished_at before `before`.
export async function purgeFinishedJobs(
  db: Knex,
  opts: { before: Date; limit: number },
): Promise<number> {
  const res = await db.raw<{ rowCount: number }>(
    `DELETE FROM jobs WHERE id IN (
       SELECT id FROM jobs
       WHERE status IN ('succeeded', 'failed', 'canceled') AND finished_at < ?
       LIMIT ?
     )`,
    [opts.before, opts.limit],
  );
  return res.rowCount;
}
