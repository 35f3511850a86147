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
import { EVENTS_CHANNEL } from '../channels.js';
import { preparedRows, rows } from './rows.js';

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
 * What one statement appended to the log, as it reports it (the EVENTS column): counts by type,
 * the appending transaction (absent when it appended nothing), and the rows themselves when there
 * are at most EVENT_ROWS_MAX of them (a large batch's cache hits are read back by `txId`).
 */
export interface Appended {
  counts: EventCounts;
  txId?: string;
  rows?: EventRow[];
}

/** Nothing appended. */
export const NOTHING_APPENDED: Appended = Object.freeze({ counts: Object.freeze({}) });

/** A statement reports its appended rows when there are at most this many. */
export const EVENT_ROWS_MAX = 1000;

/**
 * CTEs to append after a CTE named `finished` with columns (id, client_id, batch_id, status)
 * that lists the jobs this statement made terminal. Defines `logged`: the events appended, with
 * every column; select `${EVENTS} AS events` (on one row of the answer) to report them.
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
    RETURNING ${LOGGED_COLUMNS}
  )`;
  if (batches === 'none') {
    return `${jobs}, logged AS (SELECT * FROM job_logged)`;
  }
  if (typeof batches === 'object') {
    return `${jobs}, batch_logged AS (
      INSERT INTO job_events (type, client_id, batch_id)
      SELECT 'batch.completed', client_id, id FROM ${batches.inserted} WHERE unfinished = 0
      RETURNING ${LOGGED_COLUMNS}
    ), logged AS (SELECT * FROM job_logged UNION ALL SELECT * FROM batch_logged)`;
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
    RETURNING ${LOGGED_COLUMNS}
  ), logged AS (SELECT * FROM job_logged UNION ALL SELECT * FROM batch_logged)`;
}

const LOGGED_COLUMNS = 'id, tx_id, type, client_id, job_id, batch_id, created_at';

/**
 * SQL expression: what the `logged` CTE appended, as a JSON object `{counts, tx, rows}` (see
 * `Appended`; parse it with `appended`). The transaction id is what other processes are told
 * after the commit (src/jobs/events.ts); the rows let this process hand the events on without
 * reading them back.
 *
 * The rows go by column (one array per column, in id order) with the transaction and the time
 * once: every row of one statement has the same `tx_id` and `created_at` (their defaults,
 * `pg_current_xact_id()` and `now()`, are the transaction's). Built as one jsonb object per row,
 * they were a quarter of a completion's time in Postgres: 300 events took 4-4.8 ms, by column
 * under 1 ms (docs/performance-log.md, "Completions planned for a table with no running job").
 * `json`, not `jsonb`: the value is only sent, and `jsonb` would be built and printed again.
 */
export const EVENTS = `(SELECT json_build_object(
    'counts', (SELECT coalesce(json_object_agg(type, n), '{}'::json)
               FROM (SELECT type, count(*)::int AS n FROM logged GROUP BY type) counted),
    'tx', (SELECT pg_current_xact_id()::text WHERE EXISTS (SELECT 1 FROM logged)),
    'rows', CASE WHEN (SELECT count(*) FROM logged) <= ${EVENT_ROWS_MAX} THEN
      (SELECT json_build_object(
         'created_at', min(created_at), 'id', array_agg(id::text ORDER BY id),
         'type', array_agg(type ORDER BY id), 'client_id', array_agg(client_id ORDER BY id),
         'job_id', array_agg(job_id ORDER BY id), 'batch_id', array_agg(batch_id ORDER BY id))
       FROM logged) END))`;

/** The events of some transactions (named by EVENTS_CHANNEL notifications); changes nothing. */
export function eventsOfTransactions(db: Knex, txIds: readonly string[]): Promise<EventRow[]> {
  return rows<EventRow>(
    db,
    `SELECT id, tx_id::text, type, client_id, job_id, batch_id, created_at
     FROM job_events WHERE tx_id = ANY(?::xid8[]) ORDER BY tx_id, id`,
    [[...txIds]],
  );
}

/** Tells every process (EVENTS_CHANNEL) of transactions that appended events (src/jobs/events.ts). */
export async function announceEvents(db: Knex, payload: string): Promise<void> {
  await preparedRows(db, 'merchant_announce_events', `SELECT pg_notify(?, ?)`, [
    EVENTS_CHANNEL,
    payload,
  ]);
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
 * Whether committed events after `after` (of one client, some types, one batch) exist: ones
 * `readEvents` holds back yet, because a transaction older than theirs is still running, and
 * ones that became readable since the caller's last read. A reader is caught up only when there
 * are none; asking about the held-back ones alone missed an event whose older transaction ended
 * between the read and this question, and the reader stopped looking with it unread. Changes
 * nothing; reads only the newest part of the log.
 */
export async function eventsAfter(
  db: Knex,
  opts: { after: EventCursor; clientId?: string; types?: readonly EventType[]; batchId?: string },
): Promise<boolean> {
  const [row] = await rows<{ held: boolean }>(
    db,
    `SELECT EXISTS (
       SELECT 1 FROM job_events
       WHERE (tx_id, id) > (?::xid8, ?::bigint)
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

/**
 * Parses the EVENTS column: of a single row, or of the rows of an answer where one row carries
 * it (absent or null when the statement returned no row).
 */
export function appended(value: unknown): Appended {
  if (Array.isArray(value)) {
    return appended(value.find((v) => v !== null && v !== undefined));
  }
  if (value === null || typeof value !== 'object') return NOTHING_APPENDED;
  const {
    counts,
    tx,
    rows: logged,
  } = value as { counts?: EventCounts; tx?: string | null; rows?: LoggedColumns | null };
  return {
    counts: counts ?? {},
    ...(typeof tx === 'string' && { txId: tx }),
    ...(logged && { rows: eventRowsOf(logged, tx ?? '') }),
  };
}

/** The rows of EVENTS, by column (null arrays when nothing was logged). */
interface LoggedColumns {
  created_at: string | null;
  id: string[] | null;
  type: EventType[] | null;
  client_id: string[] | null;
  job_id: (string | null)[] | null;
  batch_id: (string | null)[] | null;
}

function eventRowsOf(logged: LoggedColumns, txId: string): EventRow[] {
  const { id, type, client_id: clients, job_id: jobs, batch_id: batches } = logged;
  if (!id || !type || !clients || !jobs || !batches || logged.created_at === null) return [];
  const at = Date.parse(logged.created_at);
  return id.map((eventId, i) => ({
    id: eventId,
    tx_id: txId,
    type: type[i] as EventType,
    client_id: clients[i] as string,
    job_id: jobs[i] ?? null,
    batch_id: batches[i] ?? null,
    created_at: new Date(at),
  }));
}
