/**
 * Push delivery metrics, on the service's registry: webhook attempts by outcome, their latency,
 * deliveries not yet finished (read from Postgres at scrape time, so every process reports the
 * shared backlog) and event streams open in this process.
 */
import type { Knex } from 'knex';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { countUnfinishedDeliveries } from '../db/sql/deliveries.js';

/** What one attempt came to; `lease_lost`: its claim had expired, nothing was written. */
export type DeliveryLabel = 'delivered' | 'retry' | 'failed' | 'gone' | 'lease_lost';

export class PushMetrics {
  private readonly attempts: Counter<'outcome'>;
  private readonly seconds: Histogram<'outcome'>;

  constructor(registry: Registry, sources: { db: Knex; streams: () => number }) {
    const registers = [registry];
    this.attempts = new Counter({
      name: 'merchant_webhook_deliveries_total',
      help:
        'Webhook delivery attempts by outcome: delivered (2xx), retry (will be tried again), ' +
        'failed (no retries left), gone (410: endpoint disabled), lease_lost.',
      labelNames: ['outcome'],
      registers,
    });
    this.seconds = new Histogram({
      name: 'merchant_webhook_delivery_duration_seconds',
      help: 'Duration of webhook delivery attempts (DNS, connect, answer), by outcome.',
      labelNames: ['outcome'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    new Gauge({
      name: 'merchant_webhook_deliveries_pending',
      help: 'Webhook deliveries not yet finished in the shared database, by status (pending, delivering).',
      labelNames: ['status'],
      registers,
      async collect() {
        const counts = await countUnfinishedDeliveries(sources.db);
        this.set({ status: 'pending' }, counts.pending);
        this.set({ status: 'delivering' }, counts.delivering);
      },
    });
    new Gauge({
      name: 'merchant_event_streams_open',
      help: 'GET /events streams open in this process.',
      registers,
      collect() {
        this.set(sources.streams());
      },
    });
  }

  delivered(outcome: DeliveryLabel, seconds: number): void {
    this.attempts.inc({ outcome });
    this.seconds.observe({ outcome }, seconds);
  }
}
