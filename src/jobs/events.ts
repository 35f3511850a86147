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
 *
 * A process alone on its database announces nothing: nobody would hear it, and each
 * announcement is a statement, a commit and a notification this process reads back (about 5 %
 * of a single submit's cost when every job runs at once: docs/performance-log.md, "The runner's
 * share of a single submit, and where it could go"). Every process says `origin:hello` on the
 * events channel when it starts listening (and again after a reconnect), answers another's hello
 * with `origin:here`, and says `here` every third of `presenceMs`; any notification from another
 * process counts as its presence, which lasts `presenceMs`. For 2 s after its hello (time for
 * the others to answer it) and while another process is present, a process announces as before.
 * A process of a version before this one says no hello: once it has been silent for
 * `presenceMs` it is not announced to, and its waiters learn of other processes' events at their
 * deadline or poll (delayed, not lost), until it announces something itself.
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
/** Payloads (after `origin:`) that only say a process listens; `hello` asks the others to answer. */
const HELLO = 'hello';
const HERE = 'here';
/** After a hello, how long the others have to answer before they are taken to be gone. */
const ANSWER_MS = 2_000;

export interface EventFeedOptions {
  /**
   * How long another process counts as listening after its last notification; this process says
   * `here` every third of it. Infinity: always announce (a writer that does not listen).
   * @defaultValue 60 s
   */
  presenceMs?: number;
  /** The clock presence is measured by. @defaultValue Date.now */
  now?: () => number;
}

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
  /** Presence messages being sent, so `idle()` can wait for them. */
  private readonly saying = new Set<Promise<void>>();
  private readonly presenceMs: number;
  private readonly now: () => number;
  /** Until when another process counts as listening (see the file's comment). */
  private othersUntil = 0;
  private hereTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Knex,
    private readonly log: Logger,
    /** Sends an EVENTS_CHANNEL notification; none (tests): other processes are not told. */
    private readonly notify?: (payload: string) => Promise<void>,
    options: EventFeedOptions = {},
  ) {
    this.presenceMs = options.presenceMs ?? 60_000;
    this.now = options.now ?? Date.now;
    // Infinity: for good; else until the others have had the time to answer its hello.
    this.presumeOthers(Number.isFinite(this.presenceMs) ? ANSWER_MS : Infinity);
  }

  /**
   * This process listens now: it says hello, then `here` every third of `presenceMs`, until
   * `stop()`.
   */
  start(): void {
    this.helloAll();
    if (this.hereTimer || !Number.isFinite(this.presenceMs)) return;
    this.hereTimer = setInterval(() => this.say(HERE), Math.max(1, this.presenceMs / 3));
    this.hereTimer.unref();
  }

  stop(): void {
    clearInterval(this.hereTimer);
    this.hereTimer = undefined;
  }

  /** Another process may be listening: announcements (and the pending ones) are worth sending. */
  othersListening(): boolean {
    return this.now() < this.othersUntil;
  }

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
    if (this.notify && this.othersListening()) {
      this.unannounced.push(txId);
      this.announcing ??= this.announce();
    }
  }

  /** An EVENTS_CHANNEL notification: read the named transactions' events and hand them on. */
  notified(payload: string): void {
    // `origin:tx,tx,…`, `origin:hello` or `origin:here`; a bare transaction id is what the
    // trigger of migration 0006 sent.
    const colon = payload.indexOf(':');
    if (colon >= 0 && payload.slice(0, colon) === this.origin) return;
    // Another process: it listens too.
    this.presumeOthers(this.presenceMs);
    const rest = payload.slice(colon + 1);
    if (rest === HELLO) return this.say(HERE);
    if (rest === HERE) return;
    const txIds = rest.split(',').filter((id) => TX_ID.test(id));
    if (txIds.length > 0) this.read(txIds);
  }

  /**
   * Another process's notification on another channel (one that names its origin): it listens
   * too. Its own, `origin` being this process's, is not.
   */
  heardFrom(origin: string): void {
    if (origin !== this.origin) this.presumeOthers(this.presenceMs);
  }

  /**
   * After a LISTEN reconnect: notifications sent meanwhile are lost, a hello among them, so the
   * others are taken to be there again, and asked.
   */
  caughtUp(): void {
    this.helloAll();
    for (const listener of this.reconnectListeners) listener();
  }

  /**
   * Resolves once every read started so far has been delivered, and every announcement and
   * presence message sent.
   */
  async idle(): Promise<void> {
    await Promise.all([...this.reading, ...this.saying, this.announcing]);
  }

  /** Asks the others to answer; until they have had the time to, they are taken to be there. */
  private helloAll() {
    this.presumeOthers(ANSWER_MS);
    this.say(HELLO);
  }

  /** Another process counts as listening for `ms` from now, at least. */
  private presumeOthers(ms: number) {
    this.othersUntil = Math.max(this.othersUntil, this.now() + ms);
  }

  /** Sends `origin:what` (a presence message); a failure waits for the next one. */
  private say(what: typeof HELLO | typeof HERE) {
    if (!this.notify) return;
    const said = this.notify(`${this.origin}:${what}`)
      .catch((err: unknown) => {
        this.log.debug(
          { err: coerceError(err) },
          'could not tell other processes this one listens',
        );
      })
      .finally(() => this.saying.delete(said));
    this.saying.add(said);
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
