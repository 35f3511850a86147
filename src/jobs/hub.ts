/**
 * In-process fan-out of "job finished" events for long-poll waiters. The event feed (events.ts)
 * publishes every event of the log here, whichever process wrote it; a waiting request holds
 * only a subscription (a timer and a set entry), never a database connection.
 */

/** Subscription key for one job. */
export const jobTopic = (id: string) => `job:${id}`;
/** Subscription key for every job of one batch. */
export const batchTopic = (id: string) => `batch:${id}`;

export class Subscription {
  private fired = false;
  private release: (() => void) | undefined;

  constructor(
    private readonly hub: JobEvents,
    readonly topic: string,
  ) {}

  /** Marks an event; wakes `next()` if it is waiting, else the next call returns at once. */
  notify(): void {
    this.fired = true;
    this.release?.();
  }

  /**
   * Resolves when an event arrived since the last call (or arrives now), after `ms`, when
   * `signal` aborts, or when the hub closes.
   */
  next(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.fired || this.hub.closed || signal?.aborted || ms <= 0) {
      this.fired = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.release = undefined;
        this.fired = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.release = done;
    });
  }

  close(): void {
    this.hub.unsubscribe(this);
    this.release?.();
  }
}

export class JobEvents {
  private readonly topics = new Map<string, Set<Subscription>>();
  private isClosed = false;

  get closed(): boolean {
    return this.isClosed;
  }

  /** Number of open subscriptions (waiting requests). */
  get size(): number {
    let n = 0;
    for (const subs of this.topics.values()) n += subs.size;
    return n;
  }

  subscribe(topic: string): Subscription {
    const sub = new Subscription(this, topic);
    let subs = this.topics.get(topic);
    if (!subs) this.topics.set(topic, (subs = new Set()));
    subs.add(sub);
    return sub;
  }

  unsubscribe(sub: Subscription): void {
    const subs = this.topics.get(sub.topic);
    if (!subs) return;
    subs.delete(sub);
    if (subs.size === 0) this.topics.delete(sub.topic);
  }

  /** A job (and its batch, if any) changed for good: wake whoever waits on either. */
  publish(jobId: string | null, batchId: string | null): void {
    if (jobId) this.emit(jobTopic(jobId));
    if (batchId) this.emit(batchTopic(batchId));
  }

  /** Wakes every waiter (they look again): after a LISTEN reconnect, when events were lost. */
  wakeAll(): void {
    for (const subs of this.topics.values()) for (const sub of subs) sub.notify();
  }

  /** Shutdown: every waiter answers now with what it has, and new waits return at once. */
  close(): void {
    this.isClosed = true;
    this.wakeAll();
  }

  private emit(topic: string) {
    const subs = this.topics.get(topic);
    if (subs) for (const sub of subs) sub.notify();
  }
}
