import type { Knex } from 'knex';

/**
 * `jobs_batch_idx (batch_id, batch_index)` (0002) indexed every job, batch or not: a single
 * submit has `batch_id` NULL, and a btree keeps NULL entries. Nothing reads those (each query of
 * a batch's jobs says `batch_id = …`, which implies `batch_id IS NOT NULL`; the uniqueness it
 * enforces never applies to NULLs), but every version of every single job wrote one: the insert,
 * the claim and the completion (neither update is HOT, since each changes `status`, which
 * partial indexes name). Under a single-submit load with the runner on, that was about one index
 * insert in four on `jobs` (docs/performance.md). The replacement indexes batch jobs only.
 * Test: test/batch-index.test.ts.
 *
 * Built CONCURRENTLY under a new name and then swapped, as 0011 does: submits go on while it
 * builds on a big table. A run killed half-way is finished by the next start (src/db/knex.ts
 * frees the lock knex leaves set): a build left invalid is dropped and redone, while one that
 * completed is kept, so the table is never without an index of batch items in between
 * (test/process.test.ts kills a start in the middle of this build).
 */
export const config = { transaction: false };

export async function up(knex: Knex): Promise<void> {
  const { rows } = await knex.raw<{ rows: { valid: boolean }[] }>(
    `SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass('jobs_batch_items_idx')`,
  );
  if (rows[0]?.valid !== true) await buildBatchItemsIndex(knex);
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS jobs_batch_idx`);
}

async function buildBatchItemsIndex(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS jobs_batch_items_idx`);
  await knex.raw(
    `CREATE UNIQUE INDEX CONCURRENTLY jobs_batch_items_idx ON jobs (batch_id, batch_index)
     WHERE batch_id IS NOT NULL`,
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS jobs_batch_idx`);
  await knex.raw(`CREATE UNIQUE INDEX CONCURRENTLY jobs_batch_idx ON jobs (batch_id, batch_index)`);
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS jobs_batch_items_idx`);
}
