import type { Knex } from 'knex';

/**
 * Events are announced after the commit by the process that wrote them (src/jobs/events.ts), no
 * longer by the statement trigger of 0006. A transaction that NOTIFYs holds Postgres's global
 * notify lock from its pre-commit until its commit is flushed, so with the trigger every
 * completing statement of every process committed one at a time (docs/performance.md).
 *
 * During a rolling upgrade across this migration, processes of the previous version neither
 * announce their events nor read the new announcements (`origin:tx,tx`): their long-poll
 * waiters answer at their deadline, and their event streams at their next poll, until they are
 * replaced.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP TRIGGER job_events_notify ON job_events`);
  await knex.raw(`DROP FUNCTION merchant_job_events_notify()`);
}

export async function down(knex: Knex): Promise<void> {
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
}
