import type { Knex } from 'knex';

/**
 * The jobs table: one row per submitted transaction, the single source of truth for its state.
 * `attempts` doubles as the fencing token: a claim increments it, and completion only applies
 * while (status, locked_by, attempts) still match the claim.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE jobs (
      id            uuid PRIMARY KEY,
      status        text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'canceled')),
      transaction   jsonb NOT NULL,
      result        jsonb,
      error         jsonb,
      attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
      max_attempts  integer NOT NULL CHECK (max_attempts >= 1),
      run_after     timestamptz NOT NULL DEFAULT now(),
      locked_by     text,
      locked_until  timestamptz,
      created_at    timestamptz NOT NULL DEFAULT now(),
      started_at    timestamptz,
      finished_at   timestamptz,
      CHECK ((status = 'running') = (locked_by IS NOT NULL AND locked_until IS NOT NULL))
    )
  `);
  // Claim order: due pending jobs, oldest first.
  await knex.raw(
    `CREATE INDEX jobs_pending_idx ON jobs (run_after, created_at) WHERE status = 'pending'`,
  );
  // Lease reaping: running jobs whose lease ran out.
  await knex.raw(`CREATE INDEX jobs_running_idx ON jobs (locked_until) WHERE status = 'running'`);
  // Retention purge: finished jobs by age.
  await knex.raw(
    `CREATE INDEX jobs_finished_idx ON jobs (finished_at)
       WHERE status IN ('succeeded', 'failed', 'canceled')`,
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TABLE jobs');
}
