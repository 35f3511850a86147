import type { Knex } from 'knex';

/**
 * The event log: one row per terminal change, appended in the same statement as the change.
 *
 * - `job_events`: `job.succeeded`, `job.failed`, `job.canceled` (with the job and, for a batch
 *   job, its batch) and `batch.completed` (the batch only). `id` increases in insertion order.
 *   `tx_id` is the inserting transaction: readers that must never skip an event (a cursor over
 *   the log) read in (tx_id, id) order and only below the oldest running transaction, so an
 *   event committed late cannot land behind a cursor that has moved past it.
 * - `batches.unfinished`: jobs of the batch not yet terminal, decremented by each terminal
 *   change in the same statement. The change that takes it to 0 appends `batch.completed`;
 *   row locking on the batch makes exactly one change do so, however many run at once. It is
 *   nullable so that an older version (rolled back to, or still running during a deploy) can
 *   still insert batches; those never get `batch.completed` (nor do older versions append any
 *   events): see README "Decisions", migration policy.
 *
 * - A statement trigger NOTIFYs `merchant_events` with the inserting transaction's id once per
 *   transaction that appended events (identical payloads in one transaction are delivered once),
 *   at commit. Each process reads that transaction's events by `tx_id`: one signal and one read
 *   per committed statement, however many jobs it finished.
 *
 * Events are purged with the same retention as jobs, by their own time.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE job_events (
      id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      tx_id       xid8 NOT NULL DEFAULT pg_current_xact_id(),
      type        text NOT NULL
                  CHECK (type IN ('job.succeeded', 'job.failed', 'job.canceled', 'batch.completed')),
      client_id   uuid NOT NULL,
      job_id      uuid,
      batch_id    uuid,
      created_at  timestamptz NOT NULL DEFAULT now(),
      CHECK ((type = 'batch.completed') = (job_id IS NULL)),
      CHECK (job_id IS NOT NULL OR batch_id IS NOT NULL)
    )
  `);
  // Cursor reads (SSE, webhook fan-out): in commit-safe order.
  await knex.raw(`CREATE INDEX job_events_tx_idx ON job_events (tx_id, id)`);
  // Retention purge by age: a BRIN index, since rows arrive in time order.
  await knex.raw(`CREATE INDEX job_events_created_idx ON job_events USING brin (created_at)`);

  await knex.raw(`
    CREATE FUNCTION merchant_job_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS (SELECT 1 FROM appended) THEN
        PERFORM pg_notify('merchant_events', pg_current_xact_id()::text);
      END IF;
      RETURN NULL;
    END $$
  `);
  await knex.raw(`
    CREATE TRIGGER job_events_notify AFTER INSERT ON job_events
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION merchant_job_events_notify()
  `);

  await knex.raw(`ALTER TABLE batches ADD COLUMN unfinished integer`);
  await knex.raw(`
    UPDATE batches b SET unfinished = (
      SELECT count(*) FROM jobs j WHERE j.batch_id = b.id AND j.status IN ('pending', 'running'))
  `);
  await knex.raw(`ALTER TABLE batches ADD CONSTRAINT batches_unfinished CHECK (unfinished >= 0)`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE batches DROP COLUMN unfinished`);
  await knex.raw(`DROP TABLE job_events`);
  await knex.raw(`DROP FUNCTION merchant_job_events_notify()`);
}
