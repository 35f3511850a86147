import type { Knex } from 'knex';

/**
 * Events are announced after the commit by the process that wrote them (src/jobs/events.ts), no
 * longer by the statement trigger of 0006 inside the writing transaction. A transaction that
 * NOTIFYs holds Postgres's global notify lock from its pre-commit until its commit is flushed,
 * so with the trigger every completing statement of every process committed one at a time
 * (docs/performance.md).
 *
 * Additive, like every migration since 0005: the trigger stays for versions before this one,
 * which rely on it, and is skipped by sessions that announce for themselves: the service sets
 * `merchant.events_announced = 'after_commit'` on each connection (src/db/knex.ts). A later
 * release drops it once no version before this one runs. During a deploy with both side by side,
 * the newer processes read the older ones' notifications (a bare transaction id); the older ones
 * ignore the newer ones' (`origin:tx,tx`), so their long-poll waiters answer at their deadline,
 * and their event streams at their next poll.
 */
/** 0006's trigger function, NOTIFYing when `condition` holds and events were appended. */
const notifyFunction = (condition: string) => `
  CREATE OR REPLACE FUNCTION merchant_job_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF ${condition} AND EXISTS (SELECT 1 FROM appended) THEN
      PERFORM pg_notify('merchant_events', pg_current_xact_id()::text);
    END IF;
    RETURN NULL;
  END $$
`;

export async function up(knex: Knex): Promise<void> {
  await knex.raw(
    notifyFunction(
      `current_setting('merchant.events_announced', true) IS DISTINCT FROM 'after_commit'`,
    ),
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(notifyFunction('true'));
}
