/**
 * The event log's in-process consumers. Every statement that appends events reports them to this
 * process after its commit (the store's `onAppended`): the feed hands them on at once (from the
 * statement's own answer, or read back by transaction id for a large batch) and tells the other
 * processes with one EVENTS_CHANNEL notification naming the transaction. Those read the named
 * transactions' events once and hand them on: long-poll waiters wake (hub.ts), the runner aborts
 * an attempt whose job was canceled, and any other subscriber (the event stream, webhooks) gets
 * them in order.
 *
 * The notification is sent after the commit, not by the writing transaction: a transaction that
 * NOTIFYs holds Postgres's notify lock through its commit, so every completion of every process
 * would commit one at a time (docs/performance.md). One notification is in flight per process;
 * the transactions committed meanwhile share the next one (payload `origin:tx,tx,…`).
 *
 * Notifications can be lost: while the LISTEN connection is down (`caughtUp()` after a reconnect
 * tells every consumer to look again), or when the writer dies between its commit and the
 * notification. Long-poll waiters read again at their deadline, the event streams and the
 * webhook fan-out read the log on their own poll, and the runner's lease renewal finds a
 * canceled job, so a lost notification delays, it never loses.
 */
import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { coerceError } from '../errors.js';
import { type Appended, type EventRow, eventsOfTransactions } from '../db/sql/events.js';
import type { Logger } from '../log.js';

export type EventListener = (events: readonly EventRow[]) => void;

/** Transaction ids per notification: the payload stays under Postgres's 8,000 bytes. */
const TX_IDS_PER_NOTIFICATION = 300;
const TX_ID = /^\d{1,20}$/;

export class EventFeed {
  private readonly listeners = new Set<EventListener>();
  private readonly reconnectListeners = new Set<() => void>();
  /** Reads in flight, so `idle()` can wait for them. */
  private readonly reading = new Set<Promise<void>>();
  /**
   * Names this process in its notifications, so it skips its own (the pending announcements
   * carry it too: runner/announce.ts).
   */
  readonly origin = randomBytes(6).toString('hex');
  /** Committed transactions not yet announced to the other processes. */
  private unannounced: string[] = [];
  private announcing: Promise<void> | undefined;

  constructor(
    private readonly db: Knex,
    private readonly log: Logger,
    /** Sends an EVENTS_CHANNEL notification; none (tests): other processes are not told. */
    private readonly notify?: (payload: string) => Promise<void>,
  ) {}

  /** Calls `listener` with each transaction's events; returns the unsubscribe function. */
  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Calls `listener` after a LISTEN reconnect (events may have been missed). */
  onCatchUp(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  /** A statement of this process appended events and committed. */
  appended(appended: Appended): void {
    const { txId } = appended;
    if (txId === undefined) return;
    if (appended.rows) this.deliver(appended.rows);
    else this.read([txId]);
    if (this.notify) {
      this.unannounced.push(txId);
      this.announcing ??= this.announce();
    }
  }

  /** An EVENTS_CHANNEL notification: read the named transactions' events and hand them on. */
  notified(payload: string): void {
    // `origin:tx,tx,…`; a bare transaction id is what the trigger of migration 0006 sent.
    const colon = payload.indexOf(':');
    if (colon >= 0 && payload.slice(0, colon) === this.origin) return;
    const txIds = payload
      .slice(colon + 1)
      .split(',')
      .filter((id) => TX_ID.test(id));
    if (txIds.length > 0) this.read(txIds);
  }

  /** After a LISTEN reconnect: notifications sent meanwhile are lost. */
  caughtUp(): void {
    for (const listener of this.reconnectListeners) listener();
  }

  /** Resolves once every read started so far has been delivered, and every announcement sent. */
  async idle(): Promise<void> {
    await Promise.all([...this.reading, this.announcing]);
  }

  private read(txIds: readonly string[]) {
    const read = eventsOfTransactions(this.db, txIds)
      .then((events) => this.deliver(events))
      .catch((err: unknown) => {
        // The waiters' own deadlines, the streams' polls and the lease renewal cover a lost read.
        this.log.warn({ err: coerceError(err), txIds }, 'reading appended events failed');
      })
      .finally(() => this.reading.delete(read));
    this.reading.add(read);
  }

  /** Sends the unannounced transactions, one notification at a time, until none are left. */
  private async announce(): Promise<void> {
    try {
      while (this.unannounced.length > 0 && this.notify) {
        const txIds = this.unannounced.splice(0, TX_IDS_PER_NOTIFICATION);
        try {
          await this.notify(`${this.origin}:${txIds.join(',')}`);
        } catch (err) {
          this.log.warn(
            { err: coerceError(err), transactions: txIds.length },
            'could not tell other processes of appended events; they see them on their next poll',
          );
        }
      }
    } finally {
      this.announcing = undefined;
    }
  }

  private deliver(events: readonly EventRow[]) {
    if (events.length === 0) return;
    for (const listener of this.listeners) {
      try {
        listener(events);
      } catch (err) {
        this.log.error({ err }, 'an event listener failed');
      }
    }
  }
}
