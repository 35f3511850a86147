/**
 * A whole file as one batch (POST /normalize_merchant/batch with an NDJSON or CSV body): the rows
 * are streamed with COPY into a staging table as they arrive, then inserted into `batches` and
 * `jobs` by the same statement as a JSON batch (insertBatchSql), in one transaction. Nothing is
 * stored unless every row arrived and was valid. COPY is pg-copy-streams (brianc, the author of
 * pg): the fastest way to get rows into Postgres, and a stream, so the file is never held whole.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Knex } from 'knex';
import { from as copyFrom } from 'pg-copy-streams';
import type { Transaction } from '../../heuristic/types.js';
import { PENDING_CHANNEL } from '../channels.js';
import { type InsertedBatch, insertBatchSql, newBatchRow } from './batches.js';
import { type EventCounts, eventCounts } from './events.js';
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

interface CopyConnection {
  query(stream: NodeJS.WritableStream): NodeJS.WritableStream;
}

/** A value as COPY's text format writes it: backslash, newline, CR and tab escaped; `\N` is null. */
function copyText(value: string | null): string {
  if (value === null) return '\\N';
  return value.replace(/[\\\n\r\t]/g, (c) =>
    c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t',
  );
}

/** COPY input: one line per row, in chunks of about 64 KiB. */
async function* copyLines(
  source: AsyncIterable<FileRow>,
  counted: { n: number },
): AsyncGenerator<string> {
  let chunk = '';
  for await (const row of source) {
    counted.n += 1;
    chunk += `${counted.n}\t${row.id}\t${copyText(JSON.stringify(row.transaction))}\t${copyText(row.cacheKey)}\n`;
    if (chunk.length >= 65536) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}

// Inserts a batch and one job per row of `rows` (batch_index = position), all or nothing, in one
// transaction: COPYs the rows into a temporary staging table as they come, calls `admit(n)`
// (which may refuse by throwing), then inserts as insertBatch does (cache hits succeeded with
// their events, batch.completed when nothing is left to run, NOTIFY when any is pending). With
// the idempotency key (read once every row arrived) already taken, inserts nothing and returns
// the batch holding it with its body hash. `timeoutMs` bounds the whole transaction (the COPY
// lasts as long as the upload).
export async function insertBatchFile(
  db: Knex,
  batch: {
    id: string;
    clientId: string;
    rows: AsyncIterable<FileRow>;
    maxAttempts: number;
    idempotency: () => Idempotency | undefined;
    admit: (n: number) => Promise<void>;
    timeoutMs: number;
  },
): Promise<{
  id: string;
  created: boolean;
  requestHash: string | null;
  /** The new batch as getBatch would read it right after the insert; only when `created`. */
  row?: BatchRow;
  size: number;
  events: EventCounts;
}> {
  return db.transaction(async (trx) => {
    await trx.raw(`SET LOCAL statement_timeout = ${Math.max(1, Math.floor(batch.timeoutMs))}`);
    await trx.raw(
      `CREATE TEMPORARY TABLE batch_file_rows (ord integer, id uuid, tx jsonb, key text)
       ON COMMIT DROP`,
    );
    // knex hands a transaction's own connection to whoever acquires one from its client.
    const client = trx.client as { acquireConnection(): Promise<CopyConnection> };
    const conn = await client.acquireConnection();
    const copy = copyFrom('COPY batch_file_rows (ord, id, tx, key) FROM STDIN');
    // pg's read timeout (the pool's query_timeout) would end a COPY that lasts as long as the
    // upload; statement_timeout above bounds it instead.
    (copy as unknown as { query_timeout: number }).query_timeout = batch.timeoutMs + 1000;
    const counted = { n: 0 };
    await pipeline(Readable.from(copyLines(batch.rows, counted)), conn.query(copy));
    const size = counted.n;
    await batch.admit(size);
    await trx.raw('ANALYZE batch_file_rows');
    const idempotency = batch.idempotency();
    const [created] = await rows<InsertedBatch>(
      trx,
      insertBatchSql(
        `t AS (
           SELECT u.id, u.tx, u.ord, u.key, r.result
           FROM batch_file_rows u
           LEFT JOIN results r ON r.cache_key = u.key AND r.expires_at > now()
         )`,
        { jobIds: false },
      ),
      [
        batch.id,
        batch.clientId,
        size,
        idempotency?.key ?? null,
        idempotency?.requestHash ?? null,
        batch.maxAttempts,
        PENDING_CHANNEL,
      ],
    );
    if (created) {
      return {
        id: created.id,
        created: true,
        requestHash: idempotency?.requestHash ?? null,
        row: newBatchRow(created, batch.clientId, size),
        size,
        events: eventCounts(created.events),
      };
    }
    if (!idempotency) throw new Error('batch insert returned no row');
    const [found] = await rows<{ id: string; request_hash: string }>(
      trx,
      `SELECT id, request_hash FROM batches WHERE client_id = ? AND idempotency_key = ?`,
      [batch.clientId, idempotency.key],
    );
    if (!found) throw new Error('idempotent batch insert conflicted with a purge');
    return {
      id: found.id,
      created: false,
      requestHash: found.request_hash,
      size,
      events: {},
    };
  });
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
