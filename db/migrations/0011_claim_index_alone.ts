import type { Knex } from 'knex';

/**
 * The claim gets an index of its own. `jobs_pending_seq_idx (seq) WHERE status = 'pending'`
 * (0005) was there for "how many jobs are ahead of this one" (`seq < $1`), but the claim could use
 * it too, and when the statistics said pending jobs were rare (taken before a burst of submits)
 * the planner found scanning all of it, filtering on the client, as cheap as the claim's own
 * `jobs_pending_idx (client_id, run_after, seq)`: each claim then read every pending job
 * (docs/performance-log.md, "The claim's plans").
 *
 * Its replacement's predicate also names `seq IS NOT NULL`. `seq` is never null, so it indexes
 * the same rows, but only a query that constrains `seq` implies that predicate (`seq < $1` does:
 * `<` is strict), so the planner can use it there and nowhere else; the claim, which says nothing
 * about `seq` in its WHERE, is left with `jobs_pending_idx`. Test: test/claim.plans.test.ts.
 *
 * Built CONCURRENTLY (outside a transaction), so submits and claims go on while it builds on a
 * big table; a build interrupted half-way leaves an invalid index, dropped and rebuilt on the
 * next start (both ways: `down` too starts by dropping what it builds).
 */
export const config = { transaction: false };

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS jobs_pending_ahead_idx`);
  await knex.raw(
    `CREATE INDEX CONCURRENTLY jobs_pending_ahead_idx ON jobs (seq)
     WHERE status = 'pending' AND seq IS NOT NULL`,
  );
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS jobs_pending_seq_idx`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS jobs_pending_seq_idx`);
  await knex.raw(
    `CREATE INDEX CONCURRENTLY jobs_pending_seq_idx ON jobs (seq) WHERE status = 'pending'`,
  );
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS jobs_pending_ahead_idx`);
}
