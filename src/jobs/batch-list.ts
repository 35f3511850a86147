/**
 * The SQL behind `GET /batches`: a client's batches, newest first, each counted per status as
 * `getBatch` counts one. One statement; changes nothing.
 */
import type { Knex } from 'knex';
import type { BatchRow } from './store.js';

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
  const res = await db.raw<{ rows: (BatchRow & { created_us: string })[] }>(
    `WITH page AS (
       SELECT id, client_id, size, created_at FROM batches
       WHERE client_id = ? ${after}
       ORDER BY created_at DESC, id DESC
       LIMIT ?
     )
     SELECT p.id, p.client_id, p.size, p.created_at,
       (extract(epoch FROM p.created_at) * 1000000)::bigint::text AS created_us,
       count(*) FILTER (WHERE j.status = 'pending')::int   AS pending,
       count(*) FILTER (WHERE j.status = 'running')::int   AS running,
       count(*) FILTER (WHERE j.status = 'succeeded')::int AS succeeded,
       count(*) FILTER (WHERE j.status = 'failed')::int    AS failed,
       count(*) FILTER (WHERE j.status = 'canceled')::int  AS canceled,
       min(j.started_at) AS started_at,
       max(j.finished_at) AS finished_at,
       max(j.seq) FILTER (WHERE j.status = 'pending') AS last_pending_seq
     FROM page p LEFT JOIN jobs j ON j.batch_id = p.id
     GROUP BY p.id, p.client_id, p.size, p.created_at
     ORDER BY p.created_at DESC, p.id DESC`,
    [opts.owner, ...(opts.after ? [opts.after.createdUs, opts.after.id] : []), opts.limit],
  );
  return res.rows.map(({ created_us: createdUs, ...row }) => ({
    ...row,
    position: { createdUs, id: row.id },
  }));
}
