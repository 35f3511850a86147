import { expect } from 'chai';
import type { Knex } from 'knex';
import { clientId, freshDatabase, insertJobs } from './support/db.js';

/**
 * `jobs (batch_id, batch_index)` indexes batch jobs only (migration 0012): single jobs, the
 * bulk of the table, have no batch, and every version of each (insert, claim, completion)
 * wrote an entry nothing ever read. The batch reads must still find their rows through it.
 */
describe('the index of batch items (migration 0012)', () => {
  let db: Knex;
  beforeEach(async () => {
    db = await freshDatabase(1);
  });
  afterEach(async () => {
    await db.destroy();
  });

  const indexPages = async () =>
    Number(
      (
        await db.raw<{ rows: [{ pages: string }] }>(
          `SELECT pg_relation_size('jobs_batch_items_idx') / current_setting('block_size')::int
             AS pages`,
        )
      ).rows[0].pages,
    );

  async function insertBatch(size: number): Promise<string> {
    const owner = await clientId(db, 'a');
    const { rows } = await db.raw<{ rows: [{ id: string }] }>(
      `WITH b AS (
         INSERT INTO batches (id, client_id, size, unfinished)
         VALUES (gen_random_uuid(), ?, ?, ?) RETURNING id
       )
       INSERT INTO jobs (id, client_id, batch_id, batch_index, transaction, max_attempts)
       SELECT gen_random_uuid(), ?, b.id, i,
              jsonb_build_object('date', '2026-04-03', 'description', 'ITEM ' || i, 'amount', i), 3
       FROM b, generate_series(0, ? - 1) AS i
       RETURNING batch_id AS id`,
      [owner, size, size, owner, size],
    );
    return rows[0].id;
  }

  it('holds no entry for single jobs, through their claim and completion', async () => {
    await insertJobs(db, 'a', 2000);
    await db.raw(
      `UPDATE jobs SET status = 'running', locked_by = 'w', locked_until = now(), attempts = 1`,
    );
    await db.raw(
      `UPDATE jobs SET status = 'succeeded', locked_by = NULL, locked_until = NULL,
         result = '{"merchant": null}', finished_at = now()`,
    );
    // The metapage only: an index over every row would hold 6,000 entries (about 20 pages).
    expect(await indexPages()).to.equal(1);
    await insertBatch(10);
    expect(await indexPages()).to.be.greaterThan(1);
  });

  it("still serves a batch's items and keeps their positions unique", async () => {
    await insertJobs(db, 'a', 2000);
    const batchId = await insertBatch(500);
    await db.raw('ANALYZE jobs');
    const { rows } = await db.raw<{ rows: { 'QUERY PLAN': string }[] }>(
      `EXPLAIN SELECT id, batch_index FROM jobs
       WHERE batch_id = ? AND batch_index > ? AND batch_index <= ? ORDER BY batch_index LIMIT 100`,
      [batchId, 100, 200],
    );
    expect(rows.map((r) => r['QUERY PLAN']).join('\n')).to.include('jobs_batch_items_idx');
    const error = await db
      .raw(
        `INSERT INTO jobs (id, client_id, batch_id, batch_index, transaction, max_attempts)
         SELECT gen_random_uuid(), client_id, batch_id, 7, transaction, 3 FROM jobs
         WHERE batch_id = ? AND batch_index = 0`,
        [batchId],
      )
      .then(
        () => undefined,
        (err: { constraint?: string }) => err,
      );
    expect(error?.constraint).to.equal('jobs_batch_items_idx');
  });
});
