/**
 * Push delivery, wired: the webhook use-cases, the fan-out, the deliverer and the event streams,
 * fed by the event feed and the WEBHOOKS_CHANNEL notifications. service.ts creates one per
 * process and takes it apart on shutdown.
 */
import type { Knex } from 'knex';
import type { Registry } from 'prom-client';
import type { Config } from '../config.js';
import { purgeDeliveries } from '../db/sql/deliveries.js';
import type { EventRow } from '../db/sql/events.js';
import { coerceError } from '../errors.js';
import type { Logger } from '../log.js';
import { Deliverer } from './deliverer.js';
import { Fanout } from './fanout.js';
import { PushMetrics } from './metrics.js';
import type { Resolve } from './ssrf.js';
import { EventStreams } from './stream.js';
import { Webhooks } from './webhooks.js';

export interface PushOptions {
  db: Knex;
  log: Logger;
  config: Readonly<Config>;
  /** Where the metrics go (the service's registry); none without it. */
  registry?: Registry;
  /** How webhook host names are resolved. @defaultValue dns.lookup */
  resolve?: Resolve;
  /** Randomness of the retry jitter. @defaultValue Math.random */
  random?: () => number;
}

export class Push {
  readonly webhooks: Webhooks;
  readonly streams: EventStreams;
  readonly deliverer: Deliverer;
  private readonly fanout: Fanout;
  private purgeTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: PushOptions) {
    const { db, log, config } = opts;
    const policy = { allowPrivate: config.webhookAllowPrivate };
    this.webhooks = new Webhooks({ db, policy, resolve: opts.resolve });
    this.streams = new EventStreams(db, log, {
      heartbeatMs: config.eventsHeartbeatMs,
      maxPerClient: config.eventsMaxStreamsPerClient,
    });
    const metrics = opts.registry
      ? new PushMetrics(opts.registry, { db, streams: () => this.streams.size })
      : undefined;
    this.deliverer = new Deliverer({
      db,
      log,
      metrics,
      concurrency: config.webhookConcurrency,
      perEndpoint: config.webhookEndpointConcurrency,
      timeoutMs: config.webhookTimeoutMs,
      scheduleMs: config.webhookRetryScheduleMs,
      disableAfterMs: config.webhookDisableAfterMs,
      pollMs: config.webhookPollMs,
      policy,
      resolve: opts.resolve,
      random: opts.random,
    });
    this.fanout = new Fanout(db, log, () => this.deliverer.wake());
  }

  async start(): Promise<void> {
    await this.fanout.start();
    this.deliverer.start();
    this.purgeTimer = setInterval(() => void this.purge(), this.opts.config.purgeIntervalMs);
    this.purgeTimer.unref();
    // The deliverer polls on its own; this is the fan-out's safety net.
    this.pollTimer = setInterval(() => this.fanout.run(), this.opts.config.webhookPollMs);
    this.pollTimer.unref();
    void this.purge();
  }

  /** Events committed, whichever process wrote them (the event feed). */
  heard(events: readonly EventRow[]): void {
    this.streams.heard(events);
    this.fanout.heardEvents(events);
  }

  /** A WEBHOOKS_CHANNEL notification. */
  notified(payload: string): void {
    if (payload === 'endpoints')
      void this.fanout.endpointsChanged().then(() => this.deliverer.wake());
    else this.deliverer.wake();
  }

  /** After a LISTEN reconnect: notifications may have been lost. */
  caughtUp(): void {
    this.streams.caughtUp();
    void this.fanout.caughtUp();
    this.deliverer.wake();
  }

  /** Ends the event streams (before the HTTP server closes). */
  closeStreams(): void {
    this.streams.close();
  }

  /** Stops fanning out and delivering; attempts in flight get `graceMs` to answer. */
  async stop(graceMs: number): Promise<void> {
    clearInterval(this.purgeTimer);
    clearInterval(this.pollTimer);
    this.streams.close();
    await this.fanout.stop();
    await this.deliverer.stop(graceMs);
  }

  /** Deletes deliveries finished longer ago than the job retention. */
  private async purge(): Promise<void> {
    try {
      const retentionMs = this.opts.config.jobRetentionMs;
      let purged = 0;
      for (;;) {
        const n = await purgeDeliveries(this.opts.db, { retentionMs, limit: 1000 });
        purged += n;
        if (n < 1000) break;
      }
      if (purged > 0) this.opts.log.info({ purged }, 'purged webhook deliveries past retention');
    } catch (err) {
      this.opts.log.error({ err: coerceError(err) }, 'purging webhook deliveries failed');
    }
  }
}
