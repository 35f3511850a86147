/**
 * Statements about batches: submit (the batch and its jobs in one statement), read, list a
 * client's batches and a batch's items, purge.
 */
import type { Knex } from 'knex';
import type { Transaction } from '../../heuristic/types.js';
import { type Appended, EVENTS, NOTHING_APPENDED, appended, logFinished } from './events.js';
import { START_COLUMNS, startValues } from './submits.js';
import {
  type BatchItemRow,
  type BatchRow,
  type Idempotency,
  type Owner,
  ownedBy,
  preparedRows,
  rows,
} from './rows.js';

/**
 * The statement that inserts a batch and its jobs from CTE `source`, which must define `t(id, tx,
 * ord, key, result)`: job id, transaction, 1-based position, cache key, cached result (null: a
 * miss). Placeholders after the source's own: batch id, client id, size, idempotency key, request
 * hash, max attempts. Answers one row (none when the idempotency key is
 * taken) with the batch, the cache hits and its events. Not the job ids: the caller chose them
 * (a JSON batch's in `t.id`'s order), and reading 1,000 of them back as a `uuid[]` cost pg's
 * array parser 1.6 µs each, and their garbage, on every batch.
 */
export function insertBatchSql(source: string): string {
  return `WITH ${source}, b AS (
         INSERT INTO batches (id, client_id, size, unfinished, idempotency_key, request_hash)
         SELECT ?, ?, ?, (SELECT count(*) FROM t WHERE t.result IS NULL), ?, ?
         ON CONFLICT (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING id, client_id, created_at, unfinished
       ), j AS (
         INSERT INTO jobs (id, client_id, batch_id, batch_index, transaction, max_attempts,
                           cache_key, ${START_COLUMNS})
         SELECT t.id, b.client_id, b.id, t.ord - 1, t.tx, ?, t.key,
                ${startValues('t.result')}
         FROM b, t
         ORDER BY t.ord
         RETURNING id, client_id, batch_id, batch_index, seq, status, finished_at
       ), finished AS (
         SELECT id, client_id, batch_id, status FROM j WHERE status = 'succeeded'
       ), ${logFinished('finished', { inserted: 'b' })}
       SELECT b.id, b.created_at,
              max(j.seq) FILTER (WHERE j.status = 'pending') AS last_pending_seq,
              count(*) FILTER (WHERE j.status = 'succeeded')::int AS cached,
              max(j.finished_at) AS finished_at,
              ${EVENTS} AS events
       FROM b, j GROUP BY b.id, b.created_at`;
}

// Inserts a batch and one job per transaction (batch_index = position, ids from `jobIds`), in
// one statement:
// pending, or succeeded at once from the result cache (with their events, and batch.completed
// when nothing is left to run); the caller announces pending jobs (jobs.ts announcePending).
// With an idempotency key already taken, inserts nothing and returns the batch that holds the
// key (`created: false`) with its body hash.
export async function insertBatch(
  db: Knex,
  batch: {
    id: string;
    clientId: string;
    transactions: readonly Transaction[];
    /** One id per transaction, in order (UUIDv7, from src/ids.ts). */
    jobIds: readonly string[];
    maxAttempts: number;
    idempotency?: Idempotency;
    /** Result-cache key per transaction (null: not cacheable); hits are stored succeeded. */
    cacheKeys?: readonly (string | null)[];
  },
): Promise<{
  id: string;
  jobIds: string[];
  created: boolean;
  requestHash: string | null;
  /** The new batch as getBatch would read it right after the insert; only when `created`. */
  row?: BatchRow;
  events: Appended;
}> {
  const { idempotency } = batch;
  for (let tries = 0; tries < 3; tries++) {
    const [created] = await preparedRows<InsertedBatch>(
      db,
      'merchant_insert_batch',
      insertBatchSql(
        `t AS (
           SELECT (?::uuid[])[t.ord::int] AS id, t.tx, t.ord, k.key, r.result
           FROM jsonb_array_elements(?::jsonb) WITH ORDINALITY AS t(tx, ord)
           JOIN jsonb_array_elements_text(?::jsonb) WITH ORDINALITY AS k(key, ord)
             ON k.ord = t.ord
           LEFT JOIN results r ON r.cache_key = k.key AND r.expires_at > now()
         )`,
      ),
      [
        [...batch.jobIds],
        JSON.stringify(batch.transactions),
        JSON.stringify(batch.transactions.map((_, i) => batch.cacheKeys?.[i] ?? null)),
        batch.id,
        batch.clientId,
        batch.transactions.length,
        idempotency?.key ?? null,
        idempotency?.requestHash ?? null,
        batch.maxAttempts,
      ],
    );
    if (created) {
      return {
        id: created.id,
        jobIds: [...batch.jobIds],
        created: true,
        requestHash: idempotency?.requestHash ?? null,
        row: newBatchRow(created, batch.clientId, batch.transactions.length),
        events: appended(created.events),
      };
    }
    if (!idempotency) throw new Error('batch insert returned no row');
    const [found] = await rows<{ id: string; request_hash: string; job_ids: string[] | null }>(
      db,
      `SELECT b.id, b.request_hash,
         (SELECT array_agg(j.id ORDER BY j.batch_index) FROM jobs j WHERE j.batch_id = b.id)
           AS job_ids
       FROM batches b WHERE b.client_id = ? AND b.idempotency_key = ?`,
      [batch.clientId, idempotency.key],
    );
    if (found) {
      return {
        id: found.id,
        jobIds: found.job_ids ?? [],
        created: false,
        requestHash: found.request_hash,
        events: NOTHING_APPENDED,
      };
    }
    // The batch holding the key was purged between the two statements: insert again.
  }
  throw new Error('idempotent batch insert kept conflicting with a purge');
}

/** What insertBatchSql answers for a new batch. */
export interface InsertedBatch {
  id: string;
  created_at: Date;
  last_pending_seq: string | null;
  cached: number;
  finished_at: Date | null;
  events: unknown;
}

/** The batch insertBatchSql just inserted, as getBatch would read it. */
export function newBatchRow(created: InsertedBatch, clientId: string, size: number): BatchRow {
  return {
    id: created.id,
    client_id: clientId,
    size,
    created_at: created.created_at,
    pending: size - created.cached,
    running: 0,
    succeeded: created.cached,
    failed: 0,
    canceled: 0,
    started_at: created.finished_at,
    finished_at: created.finished_at,
    last_pending_seq: created.last_pending_seq,
  };
}

// A batch's jobs (alias `j`) counted per status, with when they started and finished: the
// columns of BatchRow that getBatch and listBatches compute alike.
const JOB_COUNTS = `count(*) FILTER (WHERE j.status = 'pending')::int   AS pending,
       count(*) FILTER (WHERE j.status = 'running')::int   AS running,
       count(*) FILTER (WHERE j.status = 'succeeded')::int AS succeeded,
       count(*) FILTER (WHERE j.status = 'failed')::int    AS failed,
       count(*) FILTER (WHERE j.status = 'canceled')::int  AS canceled,
       min(j.started_at) AS started_at,
       max(j.finished_at) AS finished_at,
       max(j.seq) FILTER (WHERE j.status = 'pending') AS last_pending_seq`;

// Reads one batch of `owner` and counts its jobs per status; changes nothing.
export async function getBatch(db: Knex, id: string, owner: Owner): Promise<BatchRow | undefined> {
  const [own, ownBindings] = ownedBy('b', owner);
  const res = await db.raw<{ rows: BatchRow[] }>(
    `SELECT b.id, b.client_id, b.size, b.created_at,
       ${JOB_COUNTS}
     FROM batches b LEFT JOIN jobs j ON j.batch_id = b.id
     WHERE b.id = ? AND ${own}
     GROUP BY b.id`,
    [id, ...ownBindings],
  );
  return res.rows[0];
}

/** Where a page starts: after the batch made at `createdUs` (µs since the epoch) with `id`. */
export interface BatchPosition {
  createdUs: string;
  id: string;
}

// Reads up to `limit` of `owner`'s batches older than `after` (all when absent), newest first,
// with their jobs counted per status; changes nothing.
export async function listBatches(
  db: Knex,
  opts: { owner: string; after?: BatchPosition; limit: number },
): Promise<(BatchRow & { position: BatchPosition })[]> {
  const after = opts.after
    ? `AND (created_at, id) < (timestamptz 'epoch' + ?::bigint * interval '1 microsecond', ?::uuid)`
    : '';
  const found = await rows<BatchRow & { created_us: string }>(
    db,
    `WITH page AS (
       SELECT id, client_id, size, created_at FROM batches
       WHERE client_id = ? ${after}
       ORDER BY created_at DESC, id DESC
       LIMIT ?
     )
     SELECT p.id, p.client_id, p.size, p.created_at,
       (extract(epoch FROM p.created_at) * 1000000)::bigint::text AS created_us,
       ${JOB_COUNTS}
     FROM page p LEFT JOIN jobs j ON j.batch_id = p.id
     GROUP BY p.id, p.client_id, p.size, p.created_at
     ORDER BY p.created_at DESC, p.id DESC`,
    [opts.owner, ...(opts.after ? [opts.after.createdUs, opts.after.id] : []), opts.limit],
  );
  return found.map(({ created_us: createdUs, ...row }) => ({
    ...row,
    position: { createdUs, id: row.id },
  }));
}

// Reads up to `limit` items of one of `owner`'s batches with batch_index > `afterIndex`, in
// submission order. The upper bound is what LIMIT says (a batch's indexes are 0..size-1, its
// jobs are deleted only with it), spelt as a range so that a large batch just inserted, with no
// statistics yet, is not planned as a bitmap scan reading every later item for each page.
export async function getBatchItems(
  db: Knex,
  opts: { batchId: string; owner: Owner; afterIndex: number; limit: number },
): Promise<BatchItemRow[]> {
  const [own, ownBindings] = ownedBy('jobs', opts.owner);
  const res = await db.raw<{ rows: BatchItemRow[] }>(
    `SELECT id, batch_index, status, transaction->>'reference' AS reference, result, error
     FROM jobs WHERE batch_id = ? AND batch_index > ? AND batch_index <= ?::bigint AND ${own}
     ORDER BY batch_index LIMIT ?`,
    [opts.batchId, opts.afterIndex, opts.afterIndex + opts.limit, ...ownBindings, opts.limit],
  );
  return res.rows;
}

// Deletes up to `limit` batches (and, by cascade, their jobs) whose jobs all finished more than
// `olderThanMs` ago by the database's clock: a batch is kept whole until its last job ages out.
export async function purgeFinishedBatches(
  db: Knex,
  opts: { olderThanMs: number; limit: number },
): Promise<number> {
  const res = await db.raw<{ rowCount: number }>(
    `WITH cutoff AS (SELECT now() - make_interval(secs => ? / 1000.0) AS at)
     DELETE FROM batches WHERE id IN (
       SELECT b.id FROM batches b, cutoff
       WHERE b.created_at < cutoff.at
         AND NOT EXISTS (
           SELECT 1 FROM jobs j WHERE j.batch_id = b.id
             AND (j.status NOT IN ('succeeded', 'failed', 'canceled') OR j.finished_at >= cutoff.at)
         )
       LIMIT ?
     )`,
    [opts.olderThanMs, opts.limit],
  );
  return res.rowCount;
}
