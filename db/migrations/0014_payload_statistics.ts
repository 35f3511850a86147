import type { Knex } from 'knex';

/**
 * No planner statistics for the payload columns of `jobs`: `transaction`, `result` and `error`
 * (jsonb). No statement filters, joins or sorts on them (they are read and written whole, by id),
 * so their statistics were never used; but every ANALYZE of `jobs` (autovacuum's, and the
 * reaper's when the table has outgrown its statistics, src/db/sql/statistics.ts) read them out of
 * its 30,000-row sample and sorted them for histograms and most common values: 155 ms of a
 * 20,000-row table's ANALYZE, against 70 ms without them (docs/performance-log.md,
 * "Fixed: ANALYZE read the payload"). The other columns
 * keep the default target. `SET STATISTICS` takes a SHARE UPDATE EXCLUSIVE lock: reads and writes
 * go on. What an earlier ANALYZE kept for them stays in pg_statistic (only a superuser may delete
 * it), unused. Test: test/statistics.test.ts.
 */
const PAYLOAD = ['transaction', 'result', 'error'] as const;

export async function up(knex: Knex): Promise<void> {
  await setStatistics(knex, 0);
}

export async function down(knex: Knex): Promise<void> {
  await setStatistics(knex, -1); // the default target
}

async function setStatistics(knex: Knex, target: 0 | -1): Promise<void> {
  await knex.raw(
    `ALTER TABLE jobs ${PAYLOAD.map((c) => `ALTER COLUMN "${c}" SET STATISTICS ${target}`).join(', ')}`,
  );
}
