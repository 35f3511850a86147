import type { Knex } from 'knex';

/**
 * Batches, idempotency keys and submission order.
 *
 * - `batches`: one row per `POST /normalize_merchant/batch`; its jobs point at it with
 *   `batch_id` and keep their position in `batch_index`. Deleting a batch deletes its jobs.
 * - `seq`: a global submission counter. Claims take due jobs in `seq` order (so a batch runs in
 *   submission order) and `GET /jobs` pages on it (an exact, opaque cursor).
 * - `idempotency_key` + `request_hash` on jobs and batches: a replayed POST finds its row through
 *   the unique index; the hash tells a replay from a different body under the same key. A key is
 *   remembered as long as its row (retention: JOB_RETENTION_DAYS after it finished).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE batches (
      id               uuid PRIMARY KEY,
      size             integer NOT NULL CHECK (size >= 1),
      idempotency_key  text,
      request_hash     text,
      created_at       timestamptz NOT NULL DEFAULT now(),
      CHECK ((idempotency_key IS NULL) = (request_hash IS NULL))
    )
  `);
  await knex.raw(
    `CREATE UNIQUE INDEX batches_idempotency_key_idx ON batches (idempotency_key)
       WHERE idempotency_key IS NOT NULL`,
  );
  await knex.raw(`CREATE INDEX batches_created_idx ON batches (created_at)`);

  await knex.raw(`
    ALTER TABLE jobs
      ADD COLUMN seq              bigserial NOT NULL,
      ADD COLUMN batch_id         uuid REFERENCES batches (id) ON DELETE CASCADE,
      ADD COLUMN batch_index      integer,
      ADD COLUMN idempotency_key  text,
      ADD COLUMN request_hash     text,
      ADD CONSTRAINT jobs_batch_position CHECK ((batch_id IS NULL) = (batch_index IS NULL)),
      ADD CONSTRAINT jobs_idempotency CHECK ((idempotency_key IS NULL) = (request_hash IS NULL))
  `);
  await knex.raw(`CREATE UNIQUE INDEX jobs_seq_idx ON jobs (seq)`);
  await knex.raw(`CREATE UNIQUE INDEX jobs_batch_idx ON jobs (batch_id, batch_index)`);
  await knex.raw(
    `CREATE UNIQUE INDEX jobs_idempotency_key_idx ON jobs (idempotency_key)
       WHERE idempotency_key IS NOT NULL`,
  );
  await knex.raw(`CREATE INDEX jobs_status_seq_idx ON jobs (status, seq)`);
  // Claim order is now (run_after, seq).
  await knex.raw(`DROP INDEX jobs_pending_idx`);
  await knex.raw(`CREATE INDEX jobs_pending_idx ON jobs (run_after, seq) WHERE status = 'pending'`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX jobs_pending_idx`);
  await knex.raw(
    `CREATE INDEX jobs_pending_idx ON jobs (run_after, created_at) WHERE status = 'pending'`,
  );
  await knex.raw(`DROP INDEX jobs_status_seq_idx`);
  await knex.raw(`
    ALTER TABLE jobs
      DROP COLUMN seq, DROP COLUMN batch_id, DROP COLUMN batch_index,
      DROP COLUMN idempotency_key, DROP COLUMN request_hash
  `);
  await knex.raw('DROP TABLE batches');
}
