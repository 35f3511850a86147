import type { Knex } from 'knex';

/**
 * A completion finishes the jobs waiting on its jobs' cache keys (`followers` in
 * src/db/sql/outcomes.ts), and found them through `jobs_pending_cache_key_idx (cache_key) WHERE
 * status = 'pending' AND cache_key IS NOT NULL` (0004). Any query that can use that index can
 * also use the claim's `jobs_pending_idx (…) WHERE status = 'pending'`, and when the statistics
 * said pending jobs were rare (taken between bursts) the planner read every pending job through
 * the latter instead, on every completion: 5.3 ms of a 5.9 ms completion of one job with 16,000
 * jobs waiting (docs/performance-log.md, "The followers' lookup").
 *
 * The replacement names no status: `(cache_key) WHERE cache_key IS NOT NULL AND finished_at IS
 * NULL`, the jobs not finished yet (pending ones, and running ones, which the completion's update
 * then skips). The lookup says `finished_at IS NULL` instead of `status = 'pending'`, so no index
 * over `status` can serve it and this one is the only index it can use. Test:
 * test/runner-writes.plans.test.ts.
 *
 * Built CONCURRENTLY and swapped as 0012 is: a build left invalid by a killed start is redone,
 * one that completed is kept.
 */
export const config = { transaction: false };

export async function up(knex: Knex): Promise<void> {
  const { rows } = await knex.raw<{ rows: { valid: boolean }[] }>(
    `SELECT indisvalid AS valid FROM pg_index
     WHERE indexrelid = to_regclass('jobs_unfinished_cache_key_idx')`,
  );
  if (rows[0]?.valid !== true) {
    await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS jobs_unfinished_cache_key_idx`);
    await knex.raw(
      `CREATE INDEX CONCURRENTLY jobs_unfinished_cache_key_idx ON jobs (cache_key)
       WHERE cache_key IS NOT NULL AND finished_at IS NULL`,
    );
  }
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS jobs_pending_cache_key_idx`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS jobs_pending_cache_key_idx`);
  await knex.raw(
    `CREATE INDEX CONCURRENTLY jobs_pending_cache_key_idx ON jobs (cache_key)
     WHERE status = 'pending' AND cache_key IS NOT NULL`,
  );
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS jobs_unfinished_cache_key_idx`);
}
