/**
 * The webhook use-cases: a client registers, reads, changes, deletes its endpoints, rotates a
 * signing secret, reads an endpoint's delivery log and asks for a redelivery. Another client's
 * endpoint is "not found". URLs are checked (ssrf.ts) at registration and on every change.
 */
import type { Knex } from 'knex';
import { NotFoundError } from '../errors.js';
import { EVENT_TYPES, type EventType } from '../db/sql/events.js';
import {
  type DeliveryRow,
  listDeliveries,
  redeliver as redeliverStatement,
} from '../db/sql/deliveries.js';
import {
  type EndpointPatch,
  type EndpointRow,
  deleteEndpoint,
  getEndpoint,
  insertEndpoint,
  listEndpoints,
  rotateSecret,
  updateEndpoint,
} from '../db/sql/webhooks.js';
import { DeliveryInFlightError, WebhookLimitError } from './errors.js';
import { newSecret } from './signing.js';
import { type AddressPolicy, type Resolve, checkUrl } from './ssrf.js';
import { randomUUID } from 'node:crypto';

/** Endpoints one client may have. */
export const MAX_ENDPOINTS_PER_CLIENT = 20;
/** How long a rotated-out secret keeps signing beside the new one. */
export const ROTATION_GRACE_MS = 24 * 60 * 60 * 1000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface WebhooksDeps {
  db: Knex;
  policy: AddressPolicy;
  /** How host names are resolved. @defaultValue dns.lookup */
  resolve?: Resolve;
}

export class Webhooks {
  constructor(private readonly deps: WebhooksDeps) {}

  /** Registers an endpoint; the secret is returned here and by rotation, never again. */
  async create(
    owner: string,
    input: { url: string; events?: readonly EventType[]; description?: string | null },
  ): Promise<{ endpoint: EndpointRow; secret: string }> {
    await checkUrl(input.url, this.deps.policy, this.deps.resolve);
    const secret = newSecret();
    const endpoint = await insertEndpoint(this.deps.db, {
      id: randomUUID(),
      clientId: owner,
      url: input.url,
      description: input.description ?? null,
      eventTypes: distinct(input.events ?? EVENT_TYPES),
      secret,
      maxPerClient: MAX_ENDPOINTS_PER_CLIENT,
    });
    if (!endpoint) throw new WebhookLimitError(MAX_ENDPOINTS_PER_CLIENT);
    return { endpoint, secret };
  }

  list(owner: string): Promise<EndpointRow[]> {
    return listEndpoints(this.deps.db, owner);
  }

  async get(owner: string, id: string): Promise<EndpointRow> {
    const row = UUID.test(id)
      ? await getEndpoint(this.deps.db, id.toLowerCase(), owner)
      : undefined;
    if (!row) throw new NotFoundError('webhook', id);
    return row;
  }

  async update(
    owner: string,
    id: string,
    patch: {
      url?: string;
      events?: readonly EventType[];
      description?: string | null;
      enabled?: boolean;
    },
  ): Promise<EndpointRow> {
    const endpoint = await this.get(owner, id);
    if (patch.url !== undefined) await checkUrl(patch.url, this.deps.policy, this.deps.resolve);
    const changes: EndpointPatch = {
      url: patch.url,
      description: patch.description,
      eventTypes: patch.events && distinct(patch.events),
      enabled: patch.enabled,
    };
    const row = await updateEndpoint(this.deps.db, endpoint.id, owner, changes);
    if (!row) throw new NotFoundError('webhook', id); // deleted meanwhile
    return row;
  }

  async remove(owner: string, id: string): Promise<void> {
    const deleted = UUID.test(id) && (await deleteEndpoint(this.deps.db, id.toLowerCase(), owner));
    if (!deleted) throw new NotFoundError('webhook', id);
  }

  /** A new secret; the current one keeps signing beside it for ROTATION_GRACE_MS. */
  async rotateSecret(
    owner: string,
    id: string,
  ): Promise<{ endpoint: EndpointRow; secret: string }> {
    const secret = newSecret();
    const endpoint = UUID.test(id)
      ? await rotateSecret(this.deps.db, {
          id: id.toLowerCase(),
          clientId: owner,
          secret,
          graceMs: ROTATION_GRACE_MS,
        })
      : undefined;
    if (!endpoint) throw new NotFoundError('webhook', id);
    return { endpoint, secret };
  }

  /** One page of an endpoint's delivery log, newest event first. */
  async deliveries(
    owner: string,
    id: string,
    page: { beforeEventId?: string; limit: number },
  ): Promise<DeliveryRow[]> {
    const endpoint = await this.get(owner, id);
    return listDeliveries(this.deps.db, { endpointId: endpoint.id, clientId: owner, ...page });
  }

  /** Sends a delivery again now (with a fresh retry schedule), whatever became of it. */
  async redeliver(owner: string, id: string, deliveryId: string): Promise<DeliveryRow> {
    const endpoint = await this.get(owner, id);
    const found = UUID.test(deliveryId)
      ? await redeliverStatement(this.deps.db, {
          id: deliveryId.toLowerCase(),
          endpointId: endpoint.id,
          clientId: owner,
        })
      : undefined;
    if (!found) throw new NotFoundError('delivery', deliveryId);
    if (!found.reset) throw new DeliveryInFlightError(found.row.id);
    return found.row;
  }
}

function distinct(types: readonly EventType[]): EventType[] {
  return EVENT_TYPES.filter((t) => types.includes(t));
}
