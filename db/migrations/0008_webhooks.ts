import type { Knex } from 'knex';

/**
 * Push delivery: webhook endpoints per client, one delivery per (event, endpoint), and the
 * fan-out cursor over the event log (job_events).
 *
 * - `webhook_endpoints`: a client's URL, the event types it wants and its signing secret (kept
 *   in clear: signing needs it; the API shows it once). `previous_secret` keeps signing beside
 *   the new one until `previous_secret_expires_at` after a rotation. `start_tx` is the creating
 *   transaction: the endpoint receives events of later transactions (`tx_id > start_tx`), a
 *   position in the log rather than a clock, so the fan-out can never skip one it wants.
 *   `enabled = false` with `disabled_reason` manual (PATCH), gone (HTTP 410) or failing (no
 *   success for WEBHOOK_DISABLE_AFTER_MS).
 * - `webhook_deliveries`: one row per (endpoint, event), UNIQUE, so fanning an event out twice
 *   delivers it once. `id` is the `webhook-id` header, the same for every attempt. `payload` is
 *   the exact body, built once at fan-out (a retry 3 days later sends the same bytes even if the
 *   job was purged). Claimed like jobs: `status = 'delivering'`, `locked_by`, `locked_until`
 *   (a lease), `attempts + 1`; outcomes are written fenced on (id, locked_by, attempts).
 * - `webhook_fanout`: one row, the log position up to which events have been fanned out. A
 *   fan-out round locks it (SKIP LOCKED: one process at a time), reads events after it with the
 *   gap-free cursor read, inserts their deliveries and moves it, in one transaction.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE webhook_endpoints (
      id                          uuid PRIMARY KEY,
      client_id                   uuid NOT NULL REFERENCES clients (id),
      url                         text NOT NULL,
      description                 text,
      event_types                 text[] NOT NULL CHECK (
        cardinality(event_types) > 0 AND event_types <@
          ARRAY['job.succeeded', 'job.failed', 'job.canceled', 'batch.completed']),
      secret                      text NOT NULL,
      previous_secret             text,
      previous_secret_expires_at  timestamptz,
      enabled                     boolean NOT NULL DEFAULT true,
      disabled_reason             text CHECK (disabled_reason IN ('manual', 'gone', 'failing')),
      disabled_at                 timestamptz,
      start_tx                    xid8 NOT NULL DEFAULT pg_current_xact_id(),
      failing_since               timestamptz,
      last_success_at             timestamptz,
      last_failure_at             timestamptz,
      created_at                  timestamptz NOT NULL DEFAULT now(),
      updated_at                  timestamptz NOT NULL DEFAULT now(),
      CHECK (enabled = (disabled_reason IS NULL))
    )
  `);
  await knex.raw(`CREATE INDEX webhook_endpoints_client_idx ON webhook_endpoints (client_id)`);

  await knex.raw(`
    CREATE TABLE webhook_deliveries (
      id               uuid PRIMARY KEY,
      endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
      event_id         bigint NOT NULL,
      event_type       text NOT NULL,
      payload          text NOT NULL,
      status           text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'delivering', 'delivered', 'failed')),
      attempts         integer NOT NULL DEFAULT 0,
      retry_from       integer NOT NULL DEFAULT 0,
      next_attempt_at  timestamptz DEFAULT now(),
      locked_by        text,
      locked_until     timestamptz,
      last_attempt_at  timestamptz,
      last_status      integer,
      last_error       text,
      created_at       timestamptz NOT NULL DEFAULT now(),
      finished_at      timestamptz,
      UNIQUE (endpoint_id, event_id)
    )
  `);
  // Claims: due deliveries per endpoint, and what is in flight (the per-endpoint cap, leases).
  await knex.raw(`CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries
                  (endpoint_id, next_attempt_at) WHERE status = 'pending'`);
  await knex.raw(`CREATE INDEX webhook_deliveries_inflight_idx ON webhook_deliveries
                  (endpoint_id, locked_until) WHERE status = 'delivering'`);
  // Retention purge of finished deliveries.
  await knex.raw(`CREATE INDEX webhook_deliveries_finished_idx ON webhook_deliveries
                  (finished_at) WHERE finished_at IS NOT NULL`);

  await knex.raw(`
    CREATE TABLE webhook_fanout (
      id        boolean PRIMARY KEY DEFAULT true CHECK (id),
      tx_id     xid8 NOT NULL DEFAULT '0',
      event_id  bigint NOT NULL DEFAULT 0
    )
  `);
  await knex.raw(`INSERT INTO webhook_fanout DEFAULT VALUES`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TABLE webhook_fanout`);
  await knex.raw(`DROP TABLE webhook_deliveries`);
  await knex.raw(`DROP TABLE webhook_endpoints`);
}
