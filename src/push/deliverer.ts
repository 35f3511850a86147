/**
 * The deliverer: claims due deliveries and sends them, at most `concurrency` at once in this
 * process and at most `perEndpoint` at once per endpoint across all processes, so a slow
 * receiver cannot hold every slot.
 *
 * Claims are leases (as for jobs): a process that dies mid-delivery leaves its deliveries to
 * be claimed again when the lease expires, so a delivery is sent at least once, normally once.
 * An answer is written fenced on the claim. 2xx is delivered; 410 fails it and disables the
 * endpoint; anything else, or no answer, retries after the next delay of the schedule (with
 * jitter), and fails the delivery when the schedule is used up.
 *
 * Wake-ups: new deliveries (the fan-out, NOTIFY `due`), a freed slot, and a timer set for the
 * next retry or lease expiry; the poll is only a safety net.
 */
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { coerceError } from '../errors.js';
import {
  type ClaimedDelivery,
  type DeliveryOutcome,
  claimDeliveries,
  lockDueEndpoints,
  nextDeliveryDue,
  recordDelivery,
  releaseDeliveries,
} from '../db/sql/deliveries.js';
import { withDbRetry } from '../db/transient.js';
import type { Logger } from '../log.js';
import type { PushMetrics } from './metrics.js';
import { type AttemptResult, sendWebhook } from './send.js';
import { signedHeaders } from './signing.js';
import type { AddressPolicy, Resolve } from './ssrf.js';

export interface DelivererOptions {
  db: Knex;
  log: Logger;
  metrics?: PushMetrics;
  concurrency: number;
  perEndpoint: number;
  timeoutMs: number;
  /** Delays before each retry; after the last, the delivery fails. */
  scheduleMs: readonly number[];
  disableAfterMs: number;
  pollMs: number;
  policy: AddressPolicy;
  /** How host names are resolved. @defaultValue dns.lookup */
  resolve?: Resolve;
  /** @defaultValue Math.random */
  random?: () => number;
}

interface InFlight {
  claim: ClaimedDelivery;
  abort: AbortController;
  done: Promise<void>;
}

export class Deliverer {
  readonly workerId = `webhooks-${randomUUID()}`;
  private readonly inFlight = new Map<string, InFlight>();
  private claiming: Promise<void> | undefined;
  private again = false;
  private stopped = true;
  private pollTimer: NodeJS.Timeout | undefined;
  private dueTimer: NodeJS.Timeout | undefined;
  /** A claim outlives any attempt: the attempt's time limit twice over. */
  private readonly leaseMs: number;

  constructor(private readonly opts: DelivererOptions) {
    this.leaseMs = opts.timeoutMs * 2 + 1000;
  }

  get busy(): number {
    return this.inFlight.size;
  }

  start(): void {
    this.stopped = false;
    this.pollTimer = setInterval(() => this.wake(), this.opts.pollMs);
    this.pollTimer.unref();
    this.wake();
  }

  /** Claims what is due now (coalesced: one claim loop at a time). */
  wake(): void {
    if (this.stopped) return;
    if (this.claiming) {
      this.again = true;
      return;
    }
    this.claiming = this.claimLoop().finally(() => (this.claiming = undefined));
  }

  /**
   * Stops claiming, lets attempts in flight answer for up to `graceMs`, then aborts the rest
   * and hands them back (that attempt is not counted).
   */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.dueTimer);
    await this.claiming;
    const running = [...this.inFlight.values()];
    if (running.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([Promise.all(running.map((f) => f.done)), grace]);
    clearTimeout(timer);
    for (const flight of this.inFlight.values()) flight.abort.abort();
    await Promise.all(running.map((f) => f.done));
  }

  private async claimLoop(): Promise<void> {
    try {
      do {
        this.again = false;
        const free = this.opts.concurrency - this.inFlight.size;
        if (free <= 0) return;
        const claimed = await this.claim(free);
        for (const claim of claimed) this.launch(claim);
        // A full claim may have left more behind.
        if (claimed.length === free) this.again = true;
      } while (this.again && !this.stopped);
      await this.scheduleNextDue();
    } catch (err) {
      this.opts.log.error({ err: coerceError(err) }, 'claiming webhook deliveries failed');
      this.setDueTimer(1000);
    }
  }

  private claim(free: number): Promise<ClaimedDelivery[]> {
    return this.opts.db.transaction(async (trx) => {
      const endpointIds = await lockDueEndpoints(trx, {
        limit: free,
        perEndpoint: this.opts.perEndpoint,
      });
      if (endpointIds.length === 0) return [];
      return claimDeliveries(trx, {
        endpointIds,
        workerId: this.workerId,
        limit: free,
        perEndpoint: this.opts.perEndpoint,
        leaseMs: this.leaseMs,
      });
    });
  }

  /** Sleeps until the next retry or lease expiry (at most the poll interval). */
  private async scheduleNextDue(): Promise<void> {
    if (this.stopped || this.inFlight.size >= this.opts.concurrency) return;
    const due = await nextDeliveryDue(this.opts.db, this.opts.perEndpoint);
    if (due) this.setDueTimer(due.getTime() - Date.now());
  }

  private setDueTimer(ms: number) {
    if (this.stopped) return;
    clearTimeout(this.dueTimer);
    this.dueTimer = setTimeout(() => this.wake(), Math.min(this.opts.pollMs, Math.max(10, ms)));
    this.dueTimer.unref();
  }

  private launch(claim: ClaimedDelivery) {
    const abort = new AbortController();
    const done = this.attempt(claim, abort.signal)
      .catch((err: unknown) => {
        // The lease brings it back if the outcome could not be written.
        this.opts.log.error(
          { err: coerceError(err), delivery: claim.id, endpoint: claim.endpoint_id },
          'recording a webhook delivery failed',
        );
      })
      .finally(() => {
        this.inFlight.delete(claim.id);
        this.wake();
      });
    this.inFlight.set(claim.id, { claim, abort, done });
  }

  private async attempt(claim: ClaimedDelivery, signal: AbortSignal): Promise<void> {
    const { log, metrics } = this.opts;
    const started = performance.now();
    const result = await sendWebhook({
      url: claim.url,
      body: claim.payload,
      headers: signedHeaders(claim.id, new Date(), claim.payload, claim.secrets),
      timeoutMs: this.opts.timeoutMs,
      policy: this.opts.policy,
      resolve: this.opts.resolve,
      signal,
    });
    const seconds = (performance.now() - started) / 1000;
    if (result.kind === 'unanswered' && signal.aborted) {
      // Shutdown: hand it back; it is sent again (at least once) by whoever claims it next.
      const claims = [claim];
      await withDbRetry(() => releaseDeliveries(this.opts.db, { workerId: this.workerId, claims }));
      return;
    }
    const outcome = this.decide(claim, result);
    // Fenced, so trying again after a deadlock or a dropped connection is safe; an outcome that
    // cannot be written is sent again once the lease expires (at least once).
    const { recorded, disabled } = await withDbRetry(() =>
      recordDelivery(this.opts.db, {
        id: claim.id,
        workerId: this.workerId,
        attempts: claim.attempts,
        outcome,
        disableAfterMs: this.opts.disableAfterMs,
      }),
    );
    const label = !recorded
      ? 'lease_lost'
      : outcome.kind === 'failed' && outcome.gone
        ? 'gone'
        : outcome.kind;
    metrics?.delivered(label, seconds);
    // Ids and codes only: never the URL (it may carry a token), the secret or the body.
    const line = {
      delivery: claim.id,
      endpoint: claim.endpoint_id,
      type: claim.event_type,
      attempt: claim.attempts,
      outcome: label,
      status: result.kind === 'answered' ? result.status : undefined,
      error: result.kind === 'unanswered' ? result.error : undefined,
      durationMs: Math.round(seconds * 1000),
    };
    if (outcome.kind === 'delivered') log.debug(line, 'webhook delivered');
    else log.warn(line, 'webhook delivery failed');
    if (disabled) {
      log.warn({ endpoint: claim.endpoint_id, reason: disabled }, 'webhook endpoint disabled');
    }
  }

  private decide(claim: ClaimedDelivery, result: AttemptResult): DeliveryOutcome {
    const status = result.kind === 'answered' ? result.status : null;
    if (status !== null && status >= 200 && status < 300) return { kind: 'delivered', status };
    const error =
      result.kind === 'unanswered'
        ? result.error
        : status !== null && status >= 300 && status < 400
          ? `redirect not followed (HTTP ${status})`
          : `HTTP ${status}`;
    if (status === 410) return { kind: 'failed', status, error, gone: true };
    const retry = claim.attempts - claim.retry_from;
    const delay = this.opts.scheduleMs[retry - 1];
    if (delay === undefined) return { kind: 'failed', status, error, gone: false };
    const jitter = 0.8 + 0.4 * (this.opts.random ?? Math.random)();
    return { kind: 'retry', status, error, delayMs: Math.round(delay * jitter) };
  }
}
