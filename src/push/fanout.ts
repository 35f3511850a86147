/**
 * The fan-out: turns the event log into deliveries, one per (event, endpoint that wants it).
 *
 * A round is one transaction: lock the cursor row (SKIP LOCKED, so one process fans out at a
 * time and the others return at once), read the events after it with the gap-free cursor read
 * (`readEvents`), match them against the enabled endpoints of their clients, insert the
 * deliveries with their bodies (UNIQUE per endpoint and event), and move the cursor; all or
 * nothing. Rounds run when the event feed reports committed events (and after endpoint changes,
 * and on the deliverer's safety-net poll), never when no endpoint is enabled: then submitting
 * and completing jobs costs the database nothing here.
 *
 * `readEvents` holds back events behind a transaction still running, and a round that found the
 * cursor busy may have missed what it was woken for: both retry after a short, growing pause
 * until the cursor has passed every transaction this process heard about.
 */
import type { Knex } from 'knex';
import { coerceError } from '../errors.js';
import { type EventCursor, type EventRow, eventsAfter, readEvents } from '../db/sql/events.js';
import { insertDeliveries, lockFanoutCursor, setFanoutCursor } from '../db/sql/fanout.js';
import { anyEnabledEndpoint, enabledEndpointsOf } from '../db/sql/webhooks.js';
import type { Logger } from '../log.js';
import { messagesOf } from './payload.js';
import { randomUUID } from 'node:crypto';

/** Events per round. */
const ROUND = 500;
const RETRY_MIN_MS = 25;
const RETRY_MAX_MS = 1000;

type Round = { kind: 'busy' } | { kind: 'done' | 'more'; cursor: EventCursor; inserted: number };

export class Fanout {
  /** Whether any endpoint is enabled: without one, rounds are skipped. */
  private anyEnabled = false;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  /** The newest transaction this process heard append events. */
  private heard = 0n;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = RETRY_MIN_MS;
  /**
   * Ask the database whether events after the cursor are left unread (held back, or readable by
   * now): at the start (events committed before this process listened were never heard of) and
   * after a LISTEN reconnect, until none are.
   */
  private recheck = true;

  constructor(
    private readonly db: Knex,
    private readonly log: Logger,
    /** Deliveries were inserted: wake the local deliverer (others hear the NOTIFY). */
    private readonly onDue: () => void,
  ) {}

  /** Learns whether any endpoint is enabled, then fans out what is waiting. */
  async start(): Promise<void> {
    await this.endpointsChanged();
  }

  /** After a LISTEN reconnect: notifications may have been lost. */
  async caughtUp(): Promise<void> {
    this.recheck = true;
    await this.endpointsChanged();
  }

  /** Events committed (from the event feed). */
  heardEvents(events: readonly EventRow[]): void {
    for (const event of events) {
      const tx = BigInt(event.tx_id);
      if (tx > this.heard) this.heard = tx;
    }
    this.run();
  }

  /** Endpoints were created, changed or deleted somewhere: look again whether any is enabled. */
  async endpointsChanged(): Promise<void> {
    if (this.stopped) return;
    try {
      this.anyEnabled = await anyEnabledEndpoint(this.db);
    } catch (err) {
      // Assume there is one: a round too many costs little, a round skipped costs deliveries.
      this.anyEnabled = true;
      this.log.warn({ err: coerceError(err) }, 'reading webhook endpoints failed');
    }
    this.run();
  }

  /** Runs rounds until the cursor has caught up (coalesced: one loop at a time). */
  run(): void {
    if (this.stopped || !this.anyEnabled) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.running = this.loop().finally(() => (this.running = undefined));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.running;
  }

  private async loop(): Promise<void> {
    let caughtUp = false;
    try {
      for (;;) {
        this.again = false;
        const round = await this.round();
        if (round.kind === 'more' && !this.stopped) continue;
        caughtUp = round.kind === 'done' && BigInt(round.cursor.txId) >= this.heard;
        if (caughtUp && this.recheck && round.kind === 'done') {
          caughtUp = !(await eventsAfter(this.db, { after: round.cursor }));
          this.recheck = !caughtUp;
        }
        if (!this.again || this.stopped) break;
      }
    } catch (err) {
      this.log.error({ err: coerceError(err) }, 'webhook fan-out failed; retrying');
    }
    if (caughtUp) {
      this.retryMs = RETRY_MIN_MS;
    } else if (!this.stopped) {
      // Busy, held back by an older transaction, or failed: look again shortly.
      this.retryTimer = setTimeout(() => this.run(), this.retryMs);
      this.retryTimer.unref();
      this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
    }
  }

  /** One transaction: up to ROUND events fanned out and the cursor moved past them. */
  private round(): Promise<Round> {
    return this.db
      .transaction(async (trx): Promise<Round> => {
        const cursor = await lockFanoutCursor(trx);
        if (!cursor) return { kind: 'busy' };
        const events = await readEvents(trx, { after: cursor, limit: ROUND });
        const last = events.at(-1);
        if (!last) return { kind: 'done', cursor, inserted: 0 };
        const subscribers = await enabledEndpointsOf(trx, [
          ...new Set(events.map((e) => e.client_id)),
        ]);
        const pairs = events.flatMap((event) =>
          subscribers
            .filter(
              (s) =>
                s.client_id === event.client_id &&
                s.event_types.includes(event.type) &&
                BigInt(event.tx_id) > BigInt(s.start_tx),
            )
            .map((s) => ({ event, endpointId: s.id })),
        );
        const messages = await messagesOf(trx, [...new Set(pairs.map((p) => p.event))]);
        const inserted = await insertDeliveries(
          trx,
          pairs.map(({ event, endpointId }) => ({
            id: randomUUID(),
            endpointId,
            eventId: event.id,
            eventType: event.type,
            payload: messages.get(event.id) ?? 'null',
          })),
        );
        const moved = { txId: last.tx_id, id: last.id };
        await setFanoutCursor(trx, moved);
        return { kind: events.length === ROUND ? 'more' : 'done', cursor: moved, inserted };
      })
      .then((round) => {
        if (round.kind !== 'busy' && round.inserted > 0) this.onDue();
        return round;
      });
  }
}
