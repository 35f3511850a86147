/**
 * The event log's in-process consumers. Every process hears one EVENTS_CHANNEL notification per
 * committed transaction that appended events (payload: its transaction id), reads those events
 * once, and hands them on: long-poll waiters wake (hub.ts), the runner aborts an attempt whose
 * job was canceled, and any other subscriber (the event stream, webhooks) gets them in order.
 *
 * Notifications can be lost while the LISTEN connection is down; `caughtUp()` after a reconnect
 * tells every consumer to look again instead.
 */
import type { Knex } from 'knex';
import { coerceError } from '../errors.js';
import { type EventRow, eventsOfTransaction } from '../db/sql/events.js';
import type { Logger } from '../log.js';

export type EventListener = (events: readonly EventRow[]) => void;

export class EventFeed {
  private readonly listeners = new Set<EventListener>();
  private readonly reconnectListeners = new Set<() => void>();
  /** Reads in flight, so `idle()` can wait for them. */
  private readonly reading = new Set<Promise<void>>();

  constructor(
    private readonly db: Knex,
    private readonly log: Logger,
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

  /** An EVENTS_CHANNEL notification: read that transaction's events and hand them on. */
  notified(txId: string): void {
    if (!/^\d{1,20}$/.test(txId)) return;
    const read = eventsOfTransaction(this.db, txId)
      .then((events) => this.deliver(events))
      .catch((err: unknown) => {
        // The waiters' own timeouts and the runner's heartbeat cover a lost read.
        this.log.warn({ err: coerceError(err), txId }, 'reading appended events failed');
      })
      .finally(() => this.reading.delete(read));
    this.reading.add(read);
  }

  /** After a LISTEN reconnect: notifications sent meanwhile are lost. */
  caughtUp(): void {
    for (const listener of this.reconnectListeners) listener();
  }

  /** Resolves once every read started so far has been delivered. */
  async idle(): Promise<void> {
    await Promise.all([...this.reading]);
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
