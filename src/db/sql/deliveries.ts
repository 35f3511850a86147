/**
 * Statements about webhook deliveries: claiming due deliveries (leases, a cap per endpoint),
 * recording what an attempt came to, the delivery log and redelivery, and the retention purge.
 * The fan-out that inserts them is in fanout.ts.
 *
 * Fencing, as for jobs: a claim sets status = 'delivering', locked_by, locked_until and
 * attempts + 1; the outcome is written only where (id, status, locked_by, attempts) still match,
 * so an attempt whose lease expired (its process died, another took it over) changes nothing.
 */
import type { Knex } from 'knex';
import { WEBHOOKS_CHANNEL } from '../channels.js';
import { rows } from './rows.js';

export type DeliveryStatus = 'pending' | 'delivering' | 'delivered' | 'failed';

export interface DeliveryRow {
  id: string;
  endpoint_id: string;
  event_id: string;
  event_type: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: Date | null;
  last_attempt_at: Date | null;
  last_status: number | null;
  last_error: string | null;
  created_at: Date;
  finished_at: Date | null;
}

const COLUMNS = `d.id, d.endpoint_id, d.event_id::text, d.event_type, d.status, d.attempts,
  CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
  d.last_attempt_at, d.last_status, d.last_error, d.created_at, d.finished_at`;

// ---- claiming ------------------------------------------------------------------------------

/** A delivery's due condition: pending and due, or claimed under a lease that expired. */
const claimable = (alias: string) =>
  `((${alias}.status = 'pending' AND ${alias}.next_attempt_at <= now())
    OR (${alias}.status = 'delivering' AND ${alias}.locked_until <= now()))`;

// Locks up to `limit` enabled endpoints that have due deliveries and fewer than `perEndpoint`
// in flight, earliest due first, skipping those another claimer holds: while a claim
// transaction holds an endpoint, no other can count and claim its deliveries, which is what
// makes the per-endpoint cap hold across processes. (FOR NO KEY UPDATE: the fan-out's inserts,
// which only key-share the endpoint, are not held up.) A claim only updates deliveries that no
// attempt holds (due, or with an expired lease), so it does not wait on an outcome being
// written, which holds its delivery and then waits for the endpoint.
export async function lockDueEndpoints(
  trx: Knex.Transaction,
  opts: { limit: number; perEndpoint: number },
): Promise<string[]> {
  const locked = await rows<{ id: string }>(
    trx,
    `SELECT e.id FROM webhook_endpoints e
     WHERE e.enabled
       AND EXISTS (SELECT 1 FROM webhook_deliveries d
                   WHERE d.endpoint_id = e.id AND ${claimable('d')})
       AND (SELECT count(*) FROM webhook_deliveries x
            WHERE x.endpoint_id = e.id AND x.status = 'delivering' AND x.locked_until > now()) < ?
     ORDER BY (SELECT min(d.next_attempt_at) FROM webhook_deliveries d
               WHERE d.endpoint_id = e.id AND d.status = 'pending') NULLS FIRST, e.id
     LIMIT ?
     FOR NO KEY UPDATE OF e SKIP LOCKED`,
    [opts.perEndpoint, opts.limit],
  );
  return locked.map((r) => r.id);
}

/** A claimed delivery with what its attempt needs. */
export interface ClaimedDelivery {
  id: string;
  endpoint_id: string;
  event_type: string;
  payload: string;
  attempts: number;
  /** Attempts before the current retry schedule began (a redelivery starts a new one). */
  retry_from: number;
  url: string;
  /** The current secret, and the previous one while it still signs. */
  secrets: string[];
}

// Sets status=delivering, locked_by, locked_until=now()+lease, attempts+1, last_attempt_at for
// up to `limit` due deliveries of the endpoints this transaction locked, at most
// `perEndpoint` in flight per endpoint (counting live leases of every process). Runs as its own
// statement after lockDueEndpoints, so it sees every claim committed before the locks were taken.
export function claimDeliveries(
  trx: Knex.Transaction,
  opts: {
    endpointIds: readonly string[];
    workerId: string;
    limit: number;
    perEndpoint: number;
    leaseMs: number;
  },
): Promise<ClaimedDelivery[]> {
  return rows<ClaimedDelivery>(
    trx,
    `WITH room AS (
       SELECT e.id, ?::int - (
         SELECT count(*)::int FROM webhook_deliveries x
         WHERE x.endpoint_id = e.id AND x.status = 'delivering' AND x.locked_until > now()
       ) AS n
       FROM unnest(?::uuid[]) AS e(id)
     ), picked AS (
       SELECT p.id FROM room r CROSS JOIN LATERAL (
         SELECT d.id, d.due FROM (
           (SELECT id, next_attempt_at AS due FROM webhook_deliveries
            WHERE endpoint_id = r.id AND status = 'pending' AND next_attempt_at <= now()
            ORDER BY next_attempt_at, event_id LIMIT greatest(r.n, 0))
           UNION ALL
           (SELECT id, locked_until AS due FROM webhook_deliveries
            WHERE endpoint_id = r.id AND status = 'delivering' AND locked_until <= now()
            ORDER BY locked_until LIMIT greatest(r.n, 0))
         ) d ORDER BY d.due LIMIT greatest(r.n, 0)
       ) p
       ORDER BY p.due
       LIMIT ?
     )
     UPDATE webhook_deliveries d SET status = 'delivering', locked_by = ?,
       locked_until = now() + make_interval(secs => ? / 1000.0),
       attempts = d.attempts + 1, last_attempt_at = now()
     FROM picked, webhook_endpoints e
     WHERE d.id = picked.id AND e.id = d.endpoint_id AND ${claimable('d')}
     RETURNING d.id, d.endpoint_id, d.event_type, d.payload, d.attempts, d.retry_from, e.url,
       array_remove(ARRAY[e.secret,
         CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END], NULL)
         AS secrets`,
    [opts.perEndpoint, [...opts.endpointIds], opts.limit, opts.workerId, opts.leaseMs],
  );
}

// Reads when the next delivery becomes claimable (a retry falls due, a lease expires), if any,
// among enabled endpoints with fewer than `perEndpoint` in flight (a full endpoint is claimed
// again by whoever frees a slot); changes nothing.
export async function nextDeliveryDue(db: Knex, perEndpoint: number): Promise<Date | undefined> {
  const [row] = await rows<{ due: Date | null }>(
    db,
    `SELECT least(
       (SELECT min(first.due) FROM (
          SELECT d.endpoint_id, min(d.next_attempt_at) AS due FROM webhook_deliveries d
          JOIN webhook_endpoints e ON e.id = d.endpoint_id
          WHERE d.status = 'pending' AND e.enabled
          GROUP BY d.endpoint_id) first
        WHERE (SELECT count(*) FROM webhook_deliveries x
               WHERE x.endpoint_id = first.endpoint_id AND x.status = 'delivering'
                 AND x.locked_until > now()) < ?),
       (SELECT min(d.locked_until) FROM webhook_deliveries d
        JOIN webhook_endpoints e ON e.id = d.endpoint_id
        WHERE d.status = 'delivering' AND e.enabled)) AS due`,
    [perEndpoint],
  );
  return row?.due ?? undefined;
}

// ---- outcomes ------------------------------------------------------------------------------

export type DeliveryOutcome =
  | { kind: 'delivered'; status: number }
  /** Retry after `delayMs`. */
  | { kind: 'retry'; status: number | null; error: string | null; delayMs: number }
  /** No retries left, or the endpoint answered 410 (`gone`: the endpoint is disabled). */
  | { kind: 'failed'; status: number | null; error: string | null; gone: boolean };

// Records an attempt's outcome, fenced on the claim, and on its endpoint: a success ends the
// failure streak; a failure starts or continues it and disables the endpoint (`failing`) when
// the streak is older than `disableAfterMs`; a 410 disables it (`gone`). NOTIFYs `endpoints`
// when this disabled one. Returns whether the claim still held, and whether it disabled it.
export async function recordDelivery(
  db: Knex,
  opts: {
    id: string;
    workerId: string;
    attempts: number;
    outcome: DeliveryOutcome;
    disableAfterMs: number;
  },
): Promise<{ recorded: boolean; disabled: 'gone' | 'failing' | null }> {
  const { outcome } = opts;
  const ok = outcome.kind === 'delivered';
  const nextStatus: DeliveryStatus =
    outcome.kind === 'retry' ? 'pending' : outcome.kind === 'delivered' ? 'delivered' : 'failed';
  const [row] = await rows<{ recorded: boolean; disabled: 'gone' | 'failing' | null }>(
    db,
    `WITH d AS (
       UPDATE webhook_deliveries SET status = ?,
         next_attempt_at = CASE WHEN ? = 'pending'
           THEN now() + make_interval(secs => ?::bigint / 1000.0) END,
         finished_at = CASE WHEN ? = 'pending' THEN NULL ELSE now() END,
         last_status = ?::int, last_error = ?, locked_by = NULL, locked_until = NULL
       WHERE id = ? AND status = 'delivering' AND locked_by = ? AND attempts = ?
       RETURNING endpoint_id
     ), before AS (
       SELECT e.id, e.enabled, coalesce(e.failing_since, now()) AS streak
       FROM webhook_endpoints e JOIN d ON d.endpoint_id = e.id
     ), decided AS (
       SELECT id, CASE
         WHEN NOT enabled OR ?::boolean THEN NULL
         WHEN ?::boolean THEN 'gone'
         WHEN streak < now() - make_interval(secs => ?::bigint / 1000.0) THEN 'failing'
       END AS disable
       FROM before
     ), e AS (
       UPDATE webhook_endpoints e SET
         last_success_at = CASE WHEN ?::boolean THEN now() ELSE e.last_success_at END,
         last_failure_at = CASE WHEN ?::boolean THEN e.last_failure_at ELSE now() END,
         failing_since = CASE WHEN ?::boolean THEN NULL ELSE coalesce(e.failing_since, now()) END,
         enabled = e.enabled AND x.disable IS NULL,
         disabled_reason = coalesce(x.disable, e.disabled_reason),
         disabled_at = CASE WHEN x.disable IS NULL THEN e.disabled_at ELSE now() END
       FROM decided x WHERE e.id = x.id
       RETURNING x.disable
     )
     SELECT EXISTS (SELECT 1 FROM d) AS recorded, (SELECT disable FROM e) AS disabled,
       (SELECT pg_notify(?, 'endpoints') FROM e WHERE disable IS NOT NULL) AS notified`,
    [
      nextStatus,
      nextStatus,
      outcome.kind === 'retry' ? Math.round(outcome.delayMs) : 0,
      nextStatus,
      outcome.status,
      ok ? null : outcome.error,
      opts.id,
      opts.workerId,
      opts.attempts,
      ok,
      outcome.kind === 'failed' && outcome.gone,
      opts.disableAfterMs,
      ok,
      ok,
      ok,
      WEBHOOKS_CHANNEL,
    ],
  );
  return { recorded: row?.recorded === true, disabled: row?.disabled ?? null };
}

// Hands claimed deliveries back (status=pending, due now, the attempt not counted): on
// shutdown, for attempts that were stopped before an answer.
export async function releaseDeliveries(
  db: Knex,
  opts: { workerId: string; claims: readonly { id: string; attempts: number }[] },
): Promise<number> {
  if (opts.claims.length === 0) return 0;
  const res = await db.raw<{ rowCount: number }>(
    `UPDATE webhook_deliveries d SET status = 'pending', next_attempt_at = now(),
       attempts = d.attempts - 1, locked_by = NULL, locked_until = NULL
     FROM unnest(?::uuid[], ?::int[]) AS c(id, attempts)
     WHERE d.id = c.id AND d.attempts = c.attempts AND d.locked_by = ?
       AND d.status = 'delivering'`,
    [opts.claims.map((c) => c.id), opts.claims.map((c) => c.attempts), opts.workerId],
  );
  return res.rowCount;
}

// ---- the delivery log ----------------------------------------------------------------------

// Reads up to `limit` deliveries of one of the client's endpoints, newest event first (below
// `beforeEventId`); changes nothing.
export function listDeliveries(
  db: Knex,
  opts: { endpointId: string; clientId: string; beforeEventId?: string; limit: number },
): Promise<DeliveryRow[]> {
  return rows<DeliveryRow>(
    db,
    `SELECT ${COLUMNS} FROM webhook_deliveries d
     JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.client_id = ?
     WHERE d.endpoint_id = ? AND (?::bigint IS NULL OR d.event_id < ?::bigint)
     ORDER BY d.event_id DESC LIMIT ?`,
    [
      opts.clientId,
      opts.endpointId,
      opts.beforeEventId ?? null,
      opts.beforeEventId ?? null,
      opts.limit,
    ],
  );
}

// Makes a delivery of one of the client's endpoints due again now, with a fresh retry schedule,
// unless an attempt is in flight; NOTIFYs `due`. Returns the delivery and whether it was reset.
export async function redeliver(
  db: Knex,
  opts: { id: string; endpointId: string; clientId: string },
): Promise<{ row: DeliveryRow; reset: boolean } | undefined> {
  const [row] = await rows<DeliveryRow & { reset: boolean; notified: unknown }>(
    db,
    `WITH target AS (
       SELECT d.id, d.status FROM webhook_deliveries d
       JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.client_id = ?
       WHERE d.id = ? AND d.endpoint_id = ?
       FOR UPDATE OF d
     ), reset AS (
       UPDATE webhook_deliveries d SET status = 'pending', next_attempt_at = now(),
         retry_from = d.attempts, finished_at = NULL
       FROM target t WHERE d.id = t.id AND t.status <> 'delivering'
       RETURNING ${COLUMNS}, true AS reset, pg_notify(?, 'due') AS notified
     )
     SELECT * FROM reset
     UNION ALL
     SELECT ${COLUMNS}, false, NULL FROM webhook_deliveries d JOIN target t ON t.id = d.id
     WHERE NOT EXISTS (SELECT 1 FROM reset)`,
    [opts.clientId, opts.id, opts.endpointId, WEBHOOKS_CHANNEL],
  );
  if (!row) return undefined;
  const { reset, notified: _notified, ...delivery } = row;
  return { row: delivery, reset };
}

// ---- housekeeping --------------------------------------------------------------------------

// Deletes up to `limit` deliveries that finished (delivered or failed) over `retentionMs` ago.
export async function purgeDeliveries(
  db: Knex,
  opts: { retentionMs: number; limit: number },
): Promise<number> {
  const res = await db.raw<{ rowCount: number }>(
    `DELETE FROM webhook_deliveries WHERE id IN (
       SELECT id FROM webhook_deliveries
       WHERE finished_at < now() - make_interval(secs => ? / 1000.0)
       LIMIT ?
     )`,
    [opts.retentionMs, opts.limit],
  );
  return res.rowCount;
}

// Reads the deliveries not yet finished, by status (pending, delivering); changes nothing.
export async function countUnfinishedDeliveries(
  db: Knex,
): Promise<{ pending: number; delivering: number }> {
  const [row] = await rows<{ pending: number; delivering: number }>(
    db,
    `SELECT count(*) FILTER (WHERE status = 'pending')::int AS pending,
            count(*) FILTER (WHERE status = 'delivering')::int AS delivering
     FROM webhook_deliveries WHERE status IN ('pending', 'delivering')`,
  );
  return row ?? { pending: 0, delivering: 0 };
}
