/**
 * Statements about jobs as clients see them: read, list, cancel, count, purge. Submitting them
 * is in submits.ts; the runner's statements (claim, renew, complete, fail, release, reap) are in
 * claims.ts.
 */
import type { Knex } from 'knex';
import { type Appended, EVENTS, appended, logFinished } from './events.js';
import {
  COLUMNS,
  type JobRow,
  type JobStatus,
  type Owner,
  ownedBy,
  prefixed,
  preparedRows,
  rows,
} from './rows.js';

// Reads one job of `owner`, with the database's clock (`read_at`); changes nothing.
export async function getJob(db: Knex, id: string, owner: Owner): Promise<JobRow | undefined> {
  const [own, ownBindings] = ownedBy('jobs', owner);
  const name = owner === null ? 'merchant_get_job_any' : 'merchant_get_job';
  const [row] = await preparedRows(
    db,
    name,
    `SELECT ${COLUMNS}, now() AS read_at FROM jobs WHERE id = ? AND ${own}`,
    [id, ...ownBindings],
  );
  return row;
}

// Reads the status of one job (any client's); changes nothing.
export async function jobStatus(db: Knex, id: string): Promise<JobStatus | undefined> {
  const [row] = await rows<{ status: JobStatus }>(db, `SELECT status FROM jobs WHERE id = ?`, [id]);
  return row?.status;
}

// Reads up to `limit` of `owner`'s jobs newest first (seq below `beforeSeq` when given),
// optionally only in `statuses` and only of one batch; changes nothing.
export function listJobs(
  db: Knex,
  opts: {
    owner: Owner;
    statuses?: readonly JobStatus[];
    batchId?: string;
    beforeSeq?: string;
    limit: number;
  },
): Promise<JobRow[]> {
  const [own, ownBindings] = ownedBy('jobs', opts.owner);
  const where: string[] = [own];
  const bindings: Knex.RawBinding[] = [...ownBindings];
  if (opts.statuses) {
    where.push('status = ANY(?::text[])');
    bindings.push([...opts.statuses]);
  }
  if (opts.batchId) {
    where.push('batch_id = ?');
    bindings.push(opts.batchId);
  }
  if (opts.beforeSeq) {
    where.push('seq < ?::bigint');
    bindings.push(opts.beforeSeq);
  }
  const filter = `WHERE ${where.join(' AND ')}`;
  return rows(db, `SELECT ${COLUMNS} FROM jobs ${filter} ORDER BY seq DESC LIMIT ?`, [
    ...bindings,
    opts.limit,
  ]);
}

// Sets status=canceled and finished_at=now() on a pending or running job of `owner` (clearing
// any lease, so the running attempt's fenced writes change nothing) and appends its event, which
// tells the runner holding it to abort. Returns nothing when the job is missing, someone else's,
// or terminal.
export async function cancelJob(
  db: Knex,
  id: string,
  owner: Owner,
): Promise<{ row: JobRow; previousStatus: JobStatus; events: Appended } | undefined> {
  const [own, ownBindings] = ownedBy('jobs', owner);
  const [found] = await rows<JobRow & { previous_status: JobStatus; events: unknown }>(
    db,
    `WITH target AS (
       SELECT id, status FROM jobs
       WHERE id = ? AND status IN ('pending', 'running') AND ${own}
       FOR UPDATE
     ), canceled AS (
       UPDATE jobs SET status = 'canceled', finished_at = now(),
         locked_by = NULL, locked_until = NULL
       FROM target WHERE jobs.id = target.id
       RETURNING ${prefixed('jobs')}, target.status AS previous_status
     ), finished AS (
       SELECT id, client_id, batch_id, status FROM canceled
     ), ${logFinished('finished', 'decrement')}
     SELECT canceled.*, ${EVENTS} AS events FROM canceled`,
    [id, ...ownBindings],
  );
  if (!found) return undefined;
  const { previous_status: previousStatus, events, ...row } = found;
  return { row, previousStatus, events: appended(events) };
}

// Counts pending jobs (of one client, or all), stopping at `cap` (a bounded index scan).
export async function countPending(
  db: Knex,
  opts: { clientId?: string; cap: number },
): Promise<number> {
  const [own, ownBindings] = ownedBy('jobs', opts.clientId ?? null);
  const [counted] = await rows<{ n: number }>(
    db,
    `SELECT count(*)::int AS n FROM (
       SELECT 1 FROM jobs WHERE status = 'pending' AND ${own} LIMIT ?
     ) counted`,
    [...ownBindings, opts.cap],
  );
  return counted?.n ?? 0;
}

// Counts pending jobs submitted before `seq`, stopping at `cap` (a bounded index scan).
export async function countPendingBefore(db: Knex, seq: string, cap: number): Promise<number> {
  const [counted] = await rows<{ n: number }>(
    db,
    `SELECT count(*)::int AS n FROM (
       SELECT 1 FROM jobs WHERE status = 'pending' AND seq < ?::bigint LIMIT ?
     ) ahead`,
    [seq, cap],
  );
  return counted?.n ?? 0;
}

// Counts the distinct workers holding running jobs: how many runners share the queue.
export async function countActiveWorkers(db: Knex): Promise<number> {
  const [counted] = await rows<{ n: number }>(
    db,
    `SELECT count(DISTINCT locked_by)::int AS n FROM jobs WHERE status = 'running'`,
  );
  return counted?.n ?? 0;
}

// Deletes up to `limit` finished (succeeded, failed, canceled) jobs outside batches that
// finished more than `olderThanMs` ago, by the database's clock (a service clock running fast
// must not purge what finished minutes ago, idempotency keys included).
export async function purgeFinishedJobs(
  db: Knex,
  opts: { olderThanMs: number; limit: number },
): Promise<number> {
  const res = await db.raw<{ rowCount: number }>(
    `DELETE FROM jobs WHERE id IN (
       SELECT id FROM jobs
       WHERE status IN ('succeeded', 'failed', 'canceled')
         AND finished_at < now() - make_interval(secs => ? / 1000.0)
         AND batch_id IS NULL
       LIMIT ?
     )`,
    [opts.olderThanMs, opts.limit],
  );
  return res.rowCount;
}

// Reads the jobs with these ids (any client's), with the database's clock (`read_at`); changes
// nothing.
export function getJobs(db: Knex, ids: readonly string[]): Promise<JobRow[]> {
  if (ids.length === 0) return Promise.resolve([]);
  return preparedRows(
    db,
    'merchant_get_jobs',
    `SELECT ${COLUMNS}, now() AS read_at FROM jobs WHERE id = ANY(?::uuid[])`,
    [[...ids]],
  );
}
