/**
 * A whole file as one batch (POST /normalize_merchant/batch with an NDJSON or CSV body): the rows
 * are COPYed into a staging table as they arrive, then inserted into `batches` and `jobs` by the
 * same statement as a JSON batch (insertBatchSql), in one transaction. Nothing is
 * stored unless every row arrived and was valid. COPY is pg-copy-streams (brianc, the author of
 * pg): the fastest way to get rows into Postgres, and a stream, so the file is never held whole.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Knex } from 'knex';
import { from as copyFrom } from 'pg-copy-streams';
import type { Transaction } from '../../heuristic/types.js';
import { type InsertedBatch, insertBatchSql, newBatchRow } from './batches.js';
import { type Appended, NOTHING_APPENDED, appended } from './events.js';
import {
  type BatchItemRow,
  type BatchRow,
  type Idempotency,
  type Owner,
  ownedBy,
  rows,
} from './rows.js';

/** One row of the file, ready to store. */
export interface FileRow {
  /** The job's id (UUIDv7, from src/ids.ts). */
  id: string;
  transaction: Transaction;
  /** Result-cache key (null: not cacheable); a hit is stored succeeded. */
  cacheKey: string | null;
}

/** The pooled pg connection an upload holds. */
interface PgConnection {
  query<R>(config: {
    text: string;
    values?: readonly unknown[];
    query_timeout?: number;
  }): Promise<{ rows: R[] }>;
  query(stream: NodeJS.WritableStream): NodeJS.WritableStream;
}

/** Rows COPYed at once: a short statement each, the memory of a few hundred KiB. */
const ROWS_PER_COPY = 5000;

/** A value as COPY's text format writes it: backslash, newline, CR and tab escaped; `\N` is null. */
function copyText(value: string | null): string {
  if (value === null) return '\\N';
  return value.replace(/[\\\n\r\t]/g, (c) =>
    c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t',
  );
}

/** knex-style `?` placeholders to `$1…$n` (the statements here have no other `?`). */
function positional(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

// Inserts a batch and one job per row of `rows` (batch_index = position), all or nothing, on one
// pinned connection. As the rows arrive they are COPYed, ROWS_PER_COPY at a time, each COPY its
// own short transaction, into a temporary staging table of the session; no transaction stays
// open while the client uploads (one would hold back every reader of the event log, which waits
// for the oldest open write transaction on the server). Once all are in: calls `admit(n)` (which
// may refuse by throwing), then in one transaction inserts as insertBatch does (cache hits
// succeeded with their events, batch.completed when nothing is left to run; the caller
// announces pending jobs). With the idempotency key (read once every row arrived) already taken, inserts
// nothing and returns the batch holding it with its body hash. `insertTimeoutMs` bounds that
// last transaction's statements. The staging table is dropped in any case (and with the session,
// should the process die).
export async function insertBatchFile(
  db: Knex,
  batch: {
    id: string;
    clientId: string;
    rows: AsyncIterable<FileRow>;
    maxAttempts: number;
    idempotency: () => Idempotency | undefined;
    admit: (n: number) => Promise<void>;
    insertTimeoutMs: number;
  },
): Promise<{
  id: string;
  created: boolean;
  requestHash: string | null;
  /** The new batch as getBatch would read it right after the insert; only when `created`. */
  row?: BatchRow;
  size: number;
  events: Appended;
}> {
  // knex has no public API for pinning one pooled connection; prepared.ts uses the same two.
  const pool = db.client as {
    acquireConnection(): Promise<PgConnection>;
    releaseConnection(conn: PgConnection): Promise<void>;
  };
  const conn = await pool.acquireConnection();
  try {
    await conn.query({
      text: `CREATE TEMPORARY TABLE IF NOT EXISTS batch_file_rows
               (ord integer, id uuid, tx jsonb, key text)`,
    });
    await conn.query({ text: 'TRUNCATE batch_file_rows' });
    const size = await stage(conn, batch.rows);
    await batch.admit(size);
    await conn.query({ text: 'BEGIN' });
    try {
      const result = await insertStaged(conn, { ...batch, size });
      await conn.query({ text: 'COMMIT' });
      return result;
    } catch (err) {
      await conn.query({ text: 'ROLLBACK' }).catch(() => {});
      throw err;
    }
  } finally {
    await conn.query({ text: 'DROP TABLE IF EXISTS batch_file_rows' }).catch(() => {});
    await pool.releaseConnection(conn);
  }
}

/** COPYs `rows` into batch_file_rows, ROWS_PER_COPY at a time; answers how many there were. */
async function stage(conn: PgConnection, rows: AsyncIterable<FileRow>): Promise<number> {
  const iterator = rows[Symbol.asyncIterator]();
  let n = 0;
  try {
    for (let done = false; !done;) {
      let text = '';
      const start = n;
      while (n - start < ROWS_PER_COPY) {
        const next = await iterator.next();
        if (next.done) {
          done = true;
          break;
        }
        n += 1;
        const { id, transaction, cacheKey } = next.value;
        text += `${n}\t${id}\t${copyText(JSON.stringify(transaction))}\t${copyText(cacheKey)}\n`;
      }
      if (text === '') break;
      const copy = conn.query(copyFrom('COPY batch_file_rows (ord, id, tx, key) FROM STDIN'));
      await pipeline(Readable.from([text]), copy);
    }
  } catch (err) {
    await iterator.return?.();
    throw err;
  }
  return n;
}

/** In the open transaction: the batch and its jobs from batch_file_rows. */
async function insertStaged(
  conn: PgConnection,
  batch: {
    id: string;
    clientId: string;
    size: number;
    maxAttempts: number;
    idempotency: () => Idempotency | undefined;
    insertTimeoutMs: number;
  },
) {
  const timeout = Math.max(1, Math.floor(batch.insertTimeoutMs));
  // A large file takes longer than the pool's statement_timeout (and pg's read timeout).
  await conn.query({ text: `SET LOCAL statement_timeout = ${timeout}` });
  await conn.query({ text: 'ANALYZE batch_file_rows' });
  const idempotency = batch.idempotency();
  const {
    rows: [created],
  } = await conn.query<InsertedBatch>({
    text: positional(
      insertBatchSql(
        `t AS (
           SELECT u.id, u.tx, u.ord, u.key, r.result
           FROM batch_file_rows u
           LEFT JOIN results r ON r.cache_key = u.key AND r.expires_at > now()
         )`,
      ),
    ),
    values: [
      batch.id,
      batch.clientId,
      batch.size,
      idempotency?.key ?? null,
      idempotency?.requestHash ?? null,
      batch.maxAttempts,
    ],
    query_timeout: timeout + 1000,
  });
  if (created) {
    return {
      id: created.id,
      created: true,
      requestHash: idempotency?.requestHash ?? null,
      row: newBatchRow(created, batch.clientId, batch.size),
      size: batch.size,
      events: appended(created.events),
    };
  }
  if (!idempotency) throw new Error('batch insert returned no row');
  const {
    rows: [found],
  } = await conn.query<{ id: string; request_hash: string }>({
    text: 'SELECT id, request_hash FROM batches WHERE client_id = $1 AND idempotency_key = $2',
    values: [batch.clientId, idempotency.key],
  });
  if (!found) throw new Error('idempotent batch insert conflicted with a purge');
  return {
    id: found.id,
    created: false,
    requestHash: found.request_hash,
    size: batch.size,
    events: NOTHING_APPENDED,
  };
}

// Reads the items of one of `owner`'s batches with `from` <= batch_index < `to`, in submission
// order, each with its transaction (the pages of a results file); changes nothing. A range, not a
// LIMIT: right after a large batch is inserted the planner has no statistics on it, and a LIMIT
// page planned as a bitmap scan reads (and sorts) every later item of the batch each time.
export async function getBatchFileItems(
  db: Knex,
  opts: { batchId: string; owner: Owner; from: number; to: number },
): Promise<(BatchItemRow & { transaction: Transaction })[]> {
  const [own, ownBindings] = ownedBy('jobs', opts.owner);
  return rows<BatchItemRow & { transaction: Transaction }>(
    db,
    `SELECT id, batch_index, status, transaction->>'reference' AS reference, result, error,
            transaction
     FROM jobs WHERE batch_id = ? AND batch_index >= ? AND batch_index < ? AND ${own}
     ORDER BY batch_index`,
    [opts.batchId, opts.from, opts.to, ...ownBindings],
  );
}
