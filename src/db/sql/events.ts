/**
 * The event log (job_events): how a job's terminal change is recorded, in the statement that
 * makes it, and how the log is read back.
 *
 * Every statement that makes jobs terminal (complete, fail, cancel, reap, a cache hit at
 * submit) names the rows it finished in a CTE and appends `logFinished(...)`: one event per job,
 * the batch counters decremented, and `batch.completed` for a batch whose last job that was.
 * This is the only place those three things are written, so no terminal path can forget one.
 */
import type { Knex } from 'knex';
import { rows } from './rows.js';

export type EventType = 'job.succeeded' | 'job.failed' | 'job.canceled' | 'batch.completed';
export const EVENT_TYPES: readonly EventType[] = [
  'job.succeeded',
  'job.failed',
  'job.canceled',
  'batch.completed',
];

export interface EventRow {
  /** Increasing in insertion order. */
  id: string;
  /** The appending transaction (xid8 as a decimal string). */
  tx_id: string;
  type: EventType;
  client_id: string;
  /** null for batch.completed */
  job_id: string | null;
  batch_id: string | null;
  created_at: Date;
}

/** How many events of each type a statement appended. */
export type EventCounts = Partial<Record<EventType, number>>;

/**
 * CTEs to append after a CTE named `finished` with columns (id, client_id, batch_id, status)
 * that lists the jobs this statement made terminal. Defines `logged(type)`: the events
 * appended; select `${EVENT_COUNTS} AS events` to report them.
 *
 * `batches`:
 * - `decrement`: the batches of finished jobs have their `unfinished` count decremented (rows
 *   locked in id order, so concurrent statements neither deadlock nor both miss the last job),
 *   and the one reaching 0 gets `batch.completed`;
 * - `{ inserted: cte }`: the batch was inserted by this very statement (in CTE `cte`, with
 *   `unfinished` already net of `finished`): `batch.completed` if nothing is left to run;
 * - `none`: the finished jobs belong to no batch.
 */
export function logFinished(
  finished: string,
  batches: 'decrement' | 'none' | { inserted: string },
): string {
  const jobs = `job_logged AS (
    INSERT INTO job_events (type, client_id, job_id, batch_id)
    SELECT 'job.' || f.status, f.client_id, f.id, f.batch_id FROM ${finished} f ORDER BY f.id
    RETURNING type
  )`;
  if (batches === 'none') {
    return `${jobs}, logged AS (SELECT type FROM job_logged)`;
  }
  if (typeof batches === 'object') {
    return `${jobs}, batch_logged AS (
      INSERT INTO job_events (type, client_id, batch_id)
      SELECT 'batch.completed', client_id, id FROM ${batches.inserted} WHERE unfinished = 0
      RETURNING type
    ), logged AS (SELECT type FROM job_logged UNION ALL SELECT type FROM batch_logged)`;
  }
  return `${jobs}, batch_locked AS (
    SELECT b.id FROM batches b
    WHERE b.id IN (SELECT batch_id FROM ${finished} WHERE batch_id IS NOT NULL)
    ORDER BY b.id FOR NO KEY UPDATE
  ), batch_counted AS (
    UPDATE batches b SET unfinished = b.unfinished - f.n
    FROM (SELECT batch_id, count(*)::int AS n FROM ${finished}
          WHERE batch_id IS NOT NULL GROUP BY batch_id) f
    WHERE b.id = f.batch_id AND b.id IN (SELECT id FROM batch_locked)
    RETURNING b.id, b.client_id, b.unfinished
  ), batch_logged AS (
    INSERT INTO job_events (type, client_id, batch_id)
    SELECT 'batch.completed', client_id, id FROM batch_counted WHERE unfinished = 0
    RETURNING type
  ), logged AS (SELECT type FROM job_logged UNION ALL SELECT type FROM batch_logged)`;
}

/** SQL expression: the `logged` CTE's counts per type, as a JSON object. */
export const EVENT_COUNTS = `(SELECT coalesce(jsonb_object_agg(type, n), '{}'::jsonb)
  FROM (SELECT type, count(*)::int AS n FROM logged GROUP BY type) counted)`;

/** The events of one transaction (named by an EVENTS_CHANNEL notification); changes nothing. */
export function eventsOfTransaction(db: Knex, txId: string): Promise<EventRow[]> {
  return rows<EventRow>(
    db,
    `SELECT id, tx_id::text, type, client_id, job_id, batch_id, created_at
     FROM job_events WHERE tx_id = ?::xid8 ORDER BY id`,
    [txId],
  );
}

/** A position in the log: read in (tx_id, id) order. */
export interface EventCursor {
  txId: string;
  id: string;
}

/**
 * Up to `limit` events after `after` (from the start without it), in log order, optionally of
 * one client, some types, one batch; changes nothing. Only events of transactions older than
 * every transaction still running are returned, so an event that commits later always sorts
 * after what was returned: a reader that moves its cursor past what it got never skips one.
 */
export function readEvents(
  db: Knex,
  opts: {
    after?: EventCursor;
    limit: number;
    clientId?: string;
    types?: readonly EventType[];
    batchId?: string;
  },
): Promise<EventRow[]> {
  const where = ['tx_id < pg_snapshot_xmin(pg_current_snapshot())'];
  const bindings: Knex.RawBinding[] = [];
  if (opts.after) {
    where.push('(tx_id, id) > (?::xid8, ?::bigint)');
    bindings.push(opts.after.txId, opts.after.id);
  }
  if (opts.clientId) {
    where.push('client_id = ?');
    bindings.push(opts.clientId);
  }
  if (opts.types) {
    where.push('type = ANY(?::text[])');
    bindings.push([...opts.types]);
  }
  if (opts.batchId) {
    where.push('batch_id = ?');
    bindings.push(opts.batchId);
  }
  return rows<EventRow>(
    db,
    `SELECT id, tx_id::text, type, client_id, job_id, batch_id, created_at FROM job_events
     WHERE ${where.join(' AND ')} ORDER BY tx_id, id LIMIT ?`,
    [...bindings, opts.limit],
  );
}

/**
 * Whether events after `after` (of one client, some types, one batch) exist that `readEvents`
 * holds back yet, because a transaction older than theirs is still running; changes nothing.
 * Reads only the newest part of the log.
 */
export async function eventsHeldBack(
  db: Knex,
  opts: { after: EventCursor; clientId?: string; types?: readonly EventType[]; batchId?: string },
): Promise<boolean> {
  const [row] = await rows<{ held: boolean }>(
    db,
    `SELECT EXISTS (
       SELECT 1 FROM job_events
       WHERE tx_id >= pg_snapshot_xmin(pg_current_snapshot())
         AND (tx_id, id) > (?::xid8, ?::bigint)
         AND (?::uuid IS NULL OR client_id = ?)
         AND (?::text[] IS NULL OR type = ANY(?::text[]))
         AND (?::uuid IS NULL OR batch_id = ?)
     ) AS held`,
    [
      opts.after.txId,
      opts.after.id,
      opts.clientId ?? null,
      opts.clientId ?? null,
      opts.types ? [...opts.types] : null,
      opts.types ? [...opts.types] : null,
      opts.batchId ?? null,
      opts.batchId ?? null,
    ],
  );
  return row?.held === true;
}

/** The log position of event `id` (of client `clientId`, if given), if it is still kept; changes nothing. */
export async function eventCursor(
  db: Knex,
  id: string,
  clientId?: string,
): Promise<EventCursor | undefined> {
  const [row] = await rows<{ tx_id: string; id: string }>(
    db,
    `SELECT tx_id::text, id FROM job_events WHERE id = ?::bigint AND (?::uuid IS NULL OR client_id = ?)`,
    [id, clientId ?? null, clientId ?? null],
  );
  return row && { txId: row.tx_id, id: row.id };
}

/**
 * The position of "now" in the log: every event after it committed after this call began, or
 * was still being written then (so none is skipped, and a few written just before may follow).
 */
export async function logPosition(db: Knex): Promise<EventCursor> {
  const [row] = await rows<{ tx_id: string }>(
    db,
    `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS tx_id`,
  );
  if (!row) throw new Error('no snapshot');
  return { txId: row.tx_id, id: '0' };
}

// Deletes up to `limit` events older than `retentionMs` (database time).
export async function purgeEvents(
  db: Knex,
  opts: { retentionMs: number; limit: number },
): Promise<number> {
  const res = await db.raw<{ rowCount: number }>(
    `DELETE FROM job_events WHERE id IN (
       SELECT id FROM job_events
       WHERE created_at < now() - make_interval(secs => ? / 1000.0)
       LIMIT ?
     )`,
    [opts.retentionMs, opts.limit],
  );
  return res.rowCount;
}

/** Parses the EVENT_COUNTS column (absent or null when the statement returned no row). */
export function eventCounts(value: unknown): EventCounts {
  return value !== null && typeof value === 'object' ? value : {};
}
