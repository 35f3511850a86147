/**
 * LISTENs on a few channels over one dedicated connection (outside the knex pool, which would
 * hand the session to other queries) and calls the channel's handler with each NOTIFY's
 * payload. The connection is re-established with backoff when it drops; since notifications
 * sent meanwhile are lost, `onReconnect` is called after each reconnect so that the runner looks
 * for work and long-poll waiters look again.
 */
import pg from 'pg';
import type { Logger } from '../log.js';
import { coerceError } from '../errors.js';

export interface NotifierOptions {
  connectionString: string;
  /** A connection attempt that gets no answer (a stalled server) fails after this. */
  connectTimeoutMs?: number;
  /** Channel name -> handler, called with the NOTIFY payload. */
  channels: Readonly<Record<string, (payload: string) => void>>;
  /** Called after a lost connection is back: notifications may have been missed. */
  onReconnect: () => void;
  log: Logger;
}

export class PgNotifier {
  private client: pg.Client | undefined;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;

  constructor(private readonly opts: NotifierOptions) {}

  /** Resolves once listening; rejects if the first connection fails. */
  async start(): Promise<void> {
    await this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.opts.connectionString,
      application_name: 'merchant-normalizer-listener',
      keepAlive: true,
      ...(this.opts.connectTimeoutMs !== undefined && {
        connectionTimeoutMillis: this.opts.connectTimeoutMs,
      }),
    });
    client.on('notification', (msg) => this.opts.channels[msg.channel]?.(msg.payload ?? ''));
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, new Error('connection ended')));
    await client.connect();
    for (const channel of Object.keys(this.opts.channels)) {
      await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
    }
    if (this.stopped) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.failures = 0;
  }

  private lost(client: pg.Client, err: unknown) {
    if (this.stopped || this.client !== client) return;
    this.client = undefined;
    client.removeAllListeners('end');
    void client.end().catch(() => undefined);
    this.opts.log.warn({ err: coerceError(err) }, 'LISTEN connection lost; reconnecting');
    this.scheduleReconnect();
  }

  private scheduleReconnect() {
    const delay = Math.min(30_000, 250 * 2 ** this.failures++);
    this.retryTimer = setTimeout(() => {
      this.connect().then(
        () => {
          if (!this.stopped) this.opts.onReconnect(); // we may have missed notifications
        },
        (err: unknown) => {
          this.opts.log.warn({ err: coerceError(err), delay }, 'LISTEN reconnect failed');
          if (!this.stopped) this.scheduleReconnect();
        },
      );
    }, delay);
    this.retryTimer.unref();
  }
}
