/**
 * Statements about webhook endpoints: a client's URLs, the event types each wants, its signing
 * secrets and whether it is enabled. Every change NOTIFYs WEBHOOKS_CHANNEL (`endpoints`), so
 * every process's deliverer learns whether there is anything to fan out to.
 * Deliveries and the fan-out cursor are in deliveries.ts.
 */
import type { Knex } from 'knex';
import { WEBHOOKS_CHANNEL } from '../channels.js';
import type { EventType } from './events.js';
import { rows } from './rows.js';

export type DisabledReason = 'manual' | 'gone' | 'failing';

export interface EndpointRow {
  id: string;
  client_id: string;
  url: string;
  description: string | null;
  event_types: EventType[];
  enabled: boolean;
  disabled_reason: DisabledReason | null;
  disabled_at: Date | null;
  failing_since: Date | null;
  last_success_at: Date | null;
  last_failure_at: Date | null;
  /** When the previous secret stops signing, while it still does. */
  previous_secret_expires_at: Date | null;
  /** Deliveries not delivered and not given up yet (pending or being attempted). */
  pending_deliveries: number;
  created_at: Date;
  updated_at: Date;
}

/** Never the secrets: those are returned only by the statements that make them. */
const COLUMNS = `id, client_id, url, description, event_types, enabled, disabled_reason,
  disabled_at, failing_since, last_success_at, last_failure_at,
  CASE WHEN previous_secret_expires_at > now() THEN previous_secret_expires_at END
    AS previous_secret_expires_at,
  created_at, updated_at,
  (SELECT count(*)::int FROM webhook_deliveries d
   WHERE d.endpoint_id = webhook_endpoints.id AND d.status IN ('pending', 'delivering'))
    AS pending_deliveries`;

const notifyChanged = `pg_notify('${WEBHOOKS_CHANNEL}', 'endpoints')`;

// Inserts an endpoint for `clientId` unless it already has `maxPerClient` (the client's row is
// locked first, so concurrent creates count each other); undefined when at the limit.
export function insertEndpoint(
  db: Knex,
  endpoint: {
    id: string;
    clientId: string;
    url: string;
    description: string | null;
    eventTypes: readonly EventType[];
    secret: string;
    maxPerClient: number;
  },
): Promise<EndpointRow | undefined> {
  return db.transaction(async (trx) => {
    await trx.raw(`SELECT 1 FROM clients WHERE id = ? FOR UPDATE`, [endpoint.clientId]);
    const [row] = await rows<EndpointRow & { notified: unknown }>(
      trx,
      `INSERT INTO webhook_endpoints (id, client_id, url, description, event_types, secret)
       SELECT ?, ?, ?, ?, ?::text[], ?
       WHERE (SELECT count(*) FROM webhook_endpoints WHERE client_id = ?) < ?
       RETURNING ${COLUMNS}, ${notifyChanged} AS notified`,
      [
        endpoint.id,
        endpoint.clientId,
        endpoint.url,
        endpoint.description,
        [...endpoint.eventTypes],
        endpoint.secret,
        endpoint.clientId,
        endpoint.maxPerClient,
      ],
    );
    if (!row) return undefined;
    const { notified: _notified, ...endpointRow } = row;
    return endpointRow;
  });
}

// Reads the client's endpoints, oldest first; changes nothing.
export function listEndpoints(db: Knex, clientId: string): Promise<EndpointRow[]> {
  return rows<EndpointRow>(
    db,
    `SELECT ${COLUMNS} FROM webhook_endpoints WHERE client_id = ? ORDER BY created_at, id`,
    [clientId],
  );
}

// Reads one of the client's endpoints; changes nothing.
export async function getEndpoint(
  db: Knex,
  id: string,
  clientId: string,
): Promise<EndpointRow | undefined> {
  const [row] = await rows<EndpointRow>(
    db,
    `SELECT ${COLUMNS} FROM webhook_endpoints WHERE id = ? AND client_id = ?`,
    [id, clientId],
  );
  return row;
}

export interface EndpointPatch {
  url?: string;
  description?: string | null;
  eventTypes?: readonly EventType[];
  enabled?: boolean;
}

// Sets the given fields of one of the client's endpoints. Enabling clears the disabled state
// and the failure streak, and makes it receive events from now on (what happened while it was
// disabled is not sent; deliveries made before wait and resume); disabling records `manual`.
// An endpoint disabled for another reason stays as it is unless `enabled: true` is given.
export async function updateEndpoint(
  db: Knex,
  id: string,
  clientId: string,
  patch: EndpointPatch,
): Promise<EndpointRow | undefined> {
  const enabled = patch.enabled === undefined ? null : patch.enabled;
  const [row] = await rows<EndpointRow & { notified: unknown }>(
    db,
    `UPDATE webhook_endpoints SET
       url = coalesce(?, url),
       description = CASE WHEN ? THEN ? ELSE description END,
       event_types = coalesce(?::text[], event_types),
       enabled = coalesce(?::boolean, enabled),
       disabled_reason = CASE
         WHEN ?::boolean IS TRUE THEN NULL
         WHEN ?::boolean IS FALSE AND enabled THEN 'manual'
         ELSE disabled_reason END,
       disabled_at = CASE
         WHEN ?::boolean IS TRUE THEN NULL
         WHEN ?::boolean IS FALSE AND enabled THEN now()
         ELSE disabled_at END,
       failing_since = CASE WHEN ?::boolean IS TRUE THEN NULL ELSE failing_since END,
       start_tx = CASE WHEN ?::boolean IS TRUE AND NOT enabled THEN pg_current_xact_id()
                  ELSE start_tx END,
       updated_at = now()
     WHERE id = ? AND client_id = ?
     RETURNING ${COLUMNS}, ${notifyChanged} AS notified`,
    [
      patch.url ?? null,
      patch.description !== undefined,
      patch.description ?? null,
      patch.eventTypes ? [...patch.eventTypes] : null,
      enabled,
      enabled,
      enabled,
      enabled,
      enabled,
      enabled,
      enabled,
      id,
      clientId,
    ],
  );
  if (!row) return undefined;
  const { notified: _notified, ...endpointRow } = row;
  return endpointRow;
}

// Deletes one of the client's endpoints and (by cascade) its deliveries; whether it existed.
export async function deleteEndpoint(db: Knex, id: string, clientId: string): Promise<boolean> {
  const deleted = await rows(
    db,
    `DELETE FROM webhook_endpoints WHERE id = ? AND client_id = ? RETURNING ${notifyChanged}`,
    [id, clientId],
  );
  return deleted.length > 0;
}

// Sets a new secret on one of the client's endpoints; the current one becomes the previous
// secret, signing beside the new one for `graceMs`.
export async function rotateSecret(
  db: Knex,
  opts: { id: string; clientId: string; secret: string; graceMs: number },
): Promise<EndpointRow | undefined> {
  const [row] = await rows<EndpointRow>(
    db,
    `UPDATE webhook_endpoints SET
       previous_secret = secret, secret = ?,
       previous_secret_expires_at = now() + make_interval(secs => ? / 1000.0),
       updated_at = now()
     WHERE id = ? AND client_id = ?
     RETURNING ${COLUMNS}`,
    [opts.secret, opts.graceMs, opts.id, opts.clientId],
  );
  return row;
}

// Reads whether any endpoint is enabled (is there anything to fan out to?); changes nothing.
export async function anyEnabledEndpoint(db: Knex): Promise<boolean> {
  const [row] = await rows<{ any: boolean }>(
    db,
    `SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled) AS any`,
  );
  return row?.any === true;
}

/** An enabled endpoint as the fan-out matches events against it. */
export interface Subscriber {
  id: string;
  client_id: string;
  event_types: EventType[];
  /** The creating transaction: events of later transactions are its own. */
  start_tx: string;
}

// Reads the enabled endpoints of these clients; changes nothing.
export function enabledEndpointsOf(db: Knex, clientIds: readonly string[]): Promise<Subscriber[]> {
  return rows<Subscriber>(
    db,
    `SELECT id, client_id, event_types, start_tx::text FROM webhook_endpoints
     WHERE enabled AND client_id = ANY(?::uuid[])`,
    [[...clientIds]],
  );
}
