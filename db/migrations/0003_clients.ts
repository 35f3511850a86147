import type { Knex } from 'knex';

/**
 * Clients, API keys and per-client scoping.
 *
 * - `clients`: who submits. `last_claimed_at` is when a runner last started one of its jobs:
 *   claims serve the clients that waited longest first (fair share).
 * - `api_keys`: a client may hold several keys (rotation). `id` is the key's public part (shown
 *   by `keys list`, used by `keys revoke`); `key_hash` is SHA-256 of the whole key, which is
 *   never stored. A revoked key stays listed with `revoked_at`.
 * - `jobs.client_id`, `batches.client_id`: every row belongs to a client; idempotency keys are
 *   unique per client, so two clients can never collide on (or probe) each other's keys.
 * - Rows from before this migration, if any, are given to a client named "legacy" (no keys:
 *   create one with `keys create --client legacy` to read them).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE clients (
      id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      name             text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
      created_at       timestamptz NOT NULL DEFAULT now(),
      last_claimed_at  timestamptz
    )
  `);
  await knex.raw(`
    CREATE TABLE api_keys (
      id          text PRIMARY KEY,
      client_id   uuid NOT NULL REFERENCES clients (id),
      key_hash    bytea NOT NULL CHECK (octet_length(key_hash) = 32),
      created_at  timestamptz NOT NULL DEFAULT now(),
      revoked_at  timestamptz
    )
  `);
  await knex.raw(`CREATE INDEX api_keys_client_idx ON api_keys (client_id)`);

  await knex.raw(`ALTER TABLE jobs ADD COLUMN client_id uuid REFERENCES clients (id)`);
  await knex.raw(`ALTER TABLE batches ADD COLUMN client_id uuid REFERENCES clients (id)`);
  const existing = await knex.raw<{ rows: { any: boolean }[] }>(
    `SELECT EXISTS (SELECT 1 FROM jobs) OR EXISTS (SELECT 1 FROM batches) AS any`,
  );
  if (existing.rows[0]?.any) {
    await knex.raw(`
      WITH legacy AS (INSERT INTO clients (name) VALUES ('legacy') RETURNING id),
      b AS (UPDATE batches SET client_id = (SELECT id FROM legacy))
      UPDATE jobs SET client_id = (SELECT id FROM legacy)
    `);
  }
  await knex.raw(`ALTER TABLE jobs ALTER COLUMN client_id SET NOT NULL`);
  await knex.raw(`ALTER TABLE batches ALTER COLUMN client_id SET NOT NULL`);

  await knex.raw(`DROP INDEX jobs_idempotency_key_idx`);
  await knex.raw(
    `CREATE UNIQUE INDEX jobs_idempotency_key_idx ON jobs (client_id, idempotency_key)
       WHERE idempotency_key IS NOT NULL`,
  );
  await knex.raw(`DROP INDEX batches_idempotency_key_idx`);
  await knex.raw(
    `CREATE UNIQUE INDEX batches_idempotency_key_idx ON batches (client_id, idempotency_key)
       WHERE idempotency_key IS NOT NULL`,
  );
  // GET /jobs: a client's jobs newest first.
  await knex.raw(`CREATE INDEX jobs_client_seq_idx ON jobs (client_id, seq)`);
  // Claims (per client, oldest due first) and the per-client pending count (quota).
  await knex.raw(`DROP INDEX jobs_pending_idx`);
  await knex.raw(
    `CREATE INDEX jobs_pending_idx ON jobs (client_id, run_after, seq) WHERE status = 'pending'`,
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX jobs_pending_idx`);
  await knex.raw(`CREATE INDEX jobs_pending_idx ON jobs (run_after, seq) WHERE status = 'pending'`);
  await knex.raw(`DROP INDEX jobs_client_seq_idx`);
  await knex.raw(`DROP INDEX batches_idempotency_key_idx`);
  await knex.raw(`DROP INDEX jobs_idempotency_key_idx`);
  // Keys were unique per client; across clients they may now collide: keep the newest.
  await knex.raw(`
    UPDATE jobs SET idempotency_key = NULL, request_hash = NULL
    WHERE idempotency_key IS NOT NULL AND seq NOT IN (
      SELECT max(seq) FROM jobs WHERE idempotency_key IS NOT NULL GROUP BY idempotency_key)
  `);
  await knex.raw(`
    UPDATE batches SET idempotency_key = NULL, request_hash = NULL
    WHERE idempotency_key IS NOT NULL AND id NOT IN (
      SELECT DISTINCT ON (idempotency_key) id FROM batches
      WHERE idempotency_key IS NOT NULL ORDER BY idempotency_key, created_at DESC)
  `);
  await knex.raw(
    `CREATE UNIQUE INDEX jobs_idempotency_key_idx ON jobs (idempotency_key)
       WHERE idempotency_key IS NOT NULL`,
  );
  await knex.raw(
    `CREATE UNIQUE INDEX batches_idempotency_key_idx ON batches (idempotency_key)
       WHERE idempotency_key IS NOT NULL`,
  );
  await knex.raw(`ALTER TABLE jobs DROP COLUMN client_id`);
  await knex.raw(`ALTER TABLE batches DROP COLUMN client_id`);
  await knex.raw(`DROP TABLE api_keys`);
  await knex.raw(`DROP TABLE clients`);
}
