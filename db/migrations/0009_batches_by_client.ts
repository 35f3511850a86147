import type { Knex } from 'knex';

/**
 * `GET /batches` (the dashboard's batch list): a client's batches newest first, paged on
 * (created_at, id). Without it the list walks every client's batches by `created_at`.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE INDEX batches_client_created_idx ON batches (client_id, created_at, id)`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX batches_client_created_idx`);
}
