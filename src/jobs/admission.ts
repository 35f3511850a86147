/**
 * Backpressure on submits: a cap on each client's pending jobs (429) and on all pending jobs
 * (503), both with Retry-After.
 *
 * Counting pending jobs on every submit would cost a scan as long as the queue. Instead each
 * process keeps the counts it last read (a bounded index count) and adds what it admits itself.
 * A count older than `refreshMs` is read again in the background while submits are admitted on
 * the last one; a submit waits for a count only when the last one would refuse it (so a client
 * whose jobs started is let in at once) or none was read yet. With a backlog of a million jobs a
 * count reads a million index entries (a quarter of a second, measured by the big-table bench),
 * so counts are read at most a tenth of the time: the next one no sooner than ten times the
 * last one's duration. Within one process this is exact up to the submits in flight while a
 * count is read; with several processes, a cap can be overshot by what the others admit within
 * one refresh interval. A cap is a guard rail, not an invoice.
 */
import type { JobStore } from '../db/store.js';
import { QueueFullError, QuotaExceededError } from '../errors.js';
import type { QueueEstimator } from './eta.js';

export interface AdmissionOptions {
  /** Pending jobs one client may have. */
  clientMaxPending: number;
  /** Pending jobs of all clients together. */
  maxPending: number;
  /** How long a count is trusted (at least; see READ_DUTY). @defaultValue 1000 */
  refreshMs?: number;
  /** The clock. @defaultValue Date.now */
  now?: () => number;
}

/** Counts are read at most this share of the time: trusted for this many times their duration. */
const READ_DUTY = 10;
const NEVER = Number.NEGATIVE_INFINITY;

/** Before refusing, a count older than this is read again. */
const RECHECK_MS = 100;
const MAX_TRACKED_CLIENTS = 10_000;

interface Count {
  value: number;
  /** When the value was read (NEVER: not yet). */
  at: number;
  /** How long the last read took. */
  tookMs: number;
  reading?: Promise<void>;
}

export class Admission {
  private readonly refreshMs: number;
  private readonly global: Count = { value: 0, at: NEVER, tookMs: 0 };
  private readonly now: () => number;
  private readonly clients = new Map<string, Count>();

  constructor(
    private readonly store: Pick<JobStore, 'countPending'>,
    private readonly estimator: QueueEstimator,
    private readonly opts: AdmissionOptions,
  ) {
    this.refreshMs = opts.refreshMs ?? 1000;
    this.now = opts.now ?? Date.now;
  }

  /**
   * Admits `n` new pending jobs for `clientId`, or throws QuotaExceededError (the client's cap)
   * or QueueFullError (the global cap). Call `release` if the admitted jobs were not inserted after all.
   */
  async admit(clientId: string, n: number): Promise<void> {
    let client = this.clients.get(clientId);
    if (!client) {
      if (this.clients.size >= MAX_TRACKED_CLIENTS) this.clients.clear();
      client = { value: 0, at: NEVER, tookMs: 0 };
      this.clients.set(clientId, client);
    }
    const globalCap = this.opts.maxPending;
    const clientCap = this.opts.clientMaxPending;
    const readGlobal = () => this.store.countPending({ cap: globalCap + 1 });
    const readClient = () => this.store.countPending({ clientId, cap: clientCap + 1 });
    await Promise.all([
      this.fresh(this.global, readGlobal, n, globalCap),
      this.fresh(client, readClient, n, clientCap),
    ]);
    if (this.global.value + n > globalCap) {
      const retryAfter = await this.estimator.forBacklog(this.global.value + n - globalCap);
      throw new QueueFullError(globalCap, retryAfter);
    }
    if (client.value + n > clientCap) {
      const retryAfter = await this.estimator.forBacklog(client.value + n - clientCap);
      throw new QuotaExceededError(clientCap, n, retryAfter);
    }
    this.global.value += n;
    client.value += n;
  }

  /**
   * Admits `n` jobs, runs `insert`, and gives back what did not end up queued: everything if
   * `insert` throws, else `n - queued(result)` (an idempotent replay queues nothing, a result
   * answered from the cache at once does not queue).
   */
  async admitting<T>(
    clientId: string,
    n: number,
    insert: () => Promise<T>,
    queued: (result: T) => number,
  ): Promise<T> {
    await this.admit(clientId, n);
    let result: T;
    try {
      result = await insert();
    } catch (err) {
      this.release(clientId, n);
      throw err;
    }
    this.release(clientId, n - queued(result));
    return result;
  }

  /** Gives back an admission that inserted nothing (an idempotent replay). */
  release(clientId: string, n: number): void {
    this.global.value = Math.max(0, this.global.value - n);
    const client = this.clients.get(clientId);
    if (client) client.value = Math.max(0, client.value - n);
  }

  /**
   * Reads `count` again when it is stale: in the background while the last value admits `n`,
   * waiting for it when that would refuse (unless it is brand new) or nothing was read yet.
   */
  private async fresh(count: Count, read: () => Promise<number>, n: number, cap: number) {
    const age = this.now() - count.at;
    const admits = count.value + n <= cap;
    const trustedMs = Math.max(this.refreshMs, READ_DUTY * count.tookMs);
    if (age < trustedMs && (admits || age < RECHECK_MS)) return;
    // One read at a time per count; requests arriving meanwhile share it.
    if (!count.reading) {
      const started = this.now();
      count.reading = read()
        .then((value) => {
          count.value = value;
          count.at = this.now();
          count.tookMs = count.at - started;
        })
        .finally(() => (count.reading = undefined));
    }
    if (admits && count.at !== NEVER) {
      // A failed background read is retried by the next submit; this one is admitted.
      count.reading.catch(() => undefined);
      return;
    }
    await count.reading;
  }
}
