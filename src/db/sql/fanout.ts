/**
 * The fan-out's statements: the cursor over the event log up to which events have been turned
 * into webhook deliveries, and inserting those deliveries (one per endpoint and event).
 */
import type { Knex } from 'knex';
import { WEBHOOKS_CHANNEL } from '../channels.js';
import type { EventCursor } from './events.js';
import { rows } from './rows.js';

// Locks the fan-out cursor (SKIP LOCKED: undefined while another transaction holds it) and moves
// it forward past what no endpoint can want: events of transactions before the oldest enabled
// endpoint's, or (with none) before the oldest running transaction (any endpoint not visible
// here started at or after that one). Returns the cursor.
export async function lockFanoutCursor(trx: Knex.Transaction): Promise<EventCursor | undefined> {
  const [row] = await rows<{ tx_id: string; event_id: string }>(
    trx,
    `WITH target AS (
       SELECT least((SELECT min(start_tx) FROM webhook_endpoints WHERE enabled),
                    pg_snapshot_xmin(pg_current_snapshot())) AS tx
     )
     UPDATE webhook_fanout f SET
       tx_id = CASE WHEN (t.tx, 0::bigint) > (f.tx_id, f.event_id) THEN t.tx ELSE f.tx_id END,
       event_id = CASE WHEN (t.tx, 0::bigint) > (f.tx_id, f.event_id) THEN 0 ELSE f.event_id END
     FROM target t
     WHERE f.id IN (SELECT id FROM webhook_fanout FOR UPDATE SKIP LOCKED)
     RETURNING f.tx_id::text, f.event_id::text`,
  );
  return row && { txId: row.tx_id, id: row.event_id };
}

// Sets the fan-out cursor (held locked by this transaction).
export async function setFanoutCursor(trx: Knex.Transaction, cursor: EventCursor): Promise<void> {
  await trx.raw(`UPDATE webhook_fanout SET tx_id = ?::xid8, event_id = ?::bigint`, [
    cursor.txId,
    cursor.id,
  ]);
}

export interface NewDelivery {
  id: string;
  endpointId: string;
  eventId: string;
  eventType: string;
  payload: string;
}

// Inserts deliveries, one per (endpoint, event) however often an event is fanned out, due now;
// NOTIFYs WEBHOOKS_CHANNEL (`due`) when any was new. Returns how many were.
export async function insertDeliveries(
  db: Knex,
  deliveries: readonly NewDelivery[],
): Promise<number> {
  if (deliveries.length === 0) return 0;
  const inserted = await rows<{ n: number }>(
    db,
    `WITH ins AS (
       INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, payload)
       SELECT * FROM unnest(?::uuid[], ?::uuid[], ?::bigint[], ?::text[], ?::text[])
       ON CONFLICT (endpoint_id, event_id) DO NOTHING
       RETURNING 1
     )
     SELECT count(*)::int AS n, CASE WHEN count(*) > 0 THEN pg_notify(?, 'due') END AS notified
     FROM ins`,
    [
      deliveries.map((d) => d.id),
      deliveries.map((d) => d.endpointId),
      deliveries.map((d) => d.eventId),
      deliveries.map((d) => d.eventType),
      deliveries.map((d) => d.payload),
      WEBHOOKS_CHANNEL,
    ],
  );
  return inserted[0]?.n ?? 0;
}
