import type { Knex } from 'knex';

/**
 * The result cache and single-flight.
 *
 * - `jobs.cache_key`: the heuristic's `version` and `key(tx)` ("version:key"), set at submit;
 *   NULL when the heuristic said "do not cache".
 * - `results`: answers by cache key, each with its own expiry (RESULT_CACHE_TTL_MS). A submit
 *   whose key is here is stored already succeeded, without running the heuristic.
 * - `flights`: the job whose attempt is computing a key right now (the leader). A flight is live
 *   while that job is running that attempt; other jobs with the key wait pending (claims skip
 *   them) and are completed by the leader's completion, in the same statement.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE jobs ADD COLUMN cache_key text`);
  await knex.raw(
    `CREATE INDEX jobs_pending_cache_key_idx ON jobs (cache_key)
       WHERE status = 'pending' AND cache_key IS NOT NULL`,
  );
  await knex.raw(`
    CREATE TABLE results (
      cache_key   text PRIMARY KEY,
      result      jsonb NOT NULL,
      created_at  timestamptz NOT NULL DEFAULT now(),
      expires_at  timestamptz NOT NULL
    )
  `);
  await knex.raw(`CREATE INDEX results_expires_idx ON results (expires_at)`);
  await knex.raw(`
    CREATE TABLE flights (
      cache_key  text PRIMARY KEY,
      job_id     uuid NOT NULL,
      attempts   integer NOT NULL
    )
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TABLE flights`);
  await knex.raw(`DROP TABLE results`);
  await knex.raw(`DROP INDEX jobs_pending_cache_key_idx`);
  await knex.raw(`ALTER TABLE jobs DROP COLUMN cache_key`);
}
