import type { Knex } from 'knex';

/**
 * Fewer index entries per job state change. A claim and a completion change `status`, so
 * every such update writes a new entry into each full index on jobs (no HOT update is possible).
 *
 * - `jobs_status_seq_idx (status, seq)` indexed every row, finished ones included, for counts
 *   of pending jobs: a partial index on pending rows does that job.
 * - `jobs_seq_idx` (unique seq) served nothing any more: listing pages on (client_id, seq), and
 *   `seq` is unique by its sequence.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX jobs_status_seq_idx`);
  await knex.raw(`CREATE INDEX jobs_pending_seq_idx ON jobs (seq) WHERE status = 'pending'`);
  await knex.raw(`DROP INDEX jobs_seq_idx`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`CREATE UNIQUE INDEX jobs_seq_idx ON jobs (seq)`);
  await knex.raw(`DROP INDEX jobs_pending_seq_idx`);
  await knex.raw(`CREATE INDEX jobs_status_seq_idx ON jobs (status, seq)`);
}
