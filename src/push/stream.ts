/**
 * The event stream (`GET /events`, Server-Sent Events): a client's own events as they happen,
 * for clients without a public endpoint.
 *
 * Each stream is a cursor over the log (`readEvents`, gap-free): it writes what follows its
 * position, then sleeps until the event feed reports one of its client's events. `id:` is the
 * event id; a client that reconnects with `Last-Event-ID` (or `?after=`) resumes right after that
 * event, in log order, so it gets exactly what it missed: no gaps, no repeats. An event the
 * feed reported but the cursor read held back (an older transaction still running) is looked
 * for again after a short, growing pause. Comments (`: heartbeat`) keep idle connections alive.
 *
 * One feed subscription serves every stream of the process, by client.
 */
import type { Writable } from 'node:stream';
import type { Knex } from 'knex';
import { coerceError } from '../errors.js';
import {
  type EventCursor,
  type EventRow,
  type EventType,
  eventCursor,
  eventsAfter,
  logPosition,
  readEvents,
} from '../db/sql/events.js';
import type { Logger } from '../log.js';
import { EventExpiredError, StreamLimitError } from './errors.js';
import { messagesOf } from './payload.js';

export interface StreamFilter {
  clientId: string;
  types?: readonly EventType[];
  batchId?: string;
}

const PAGE = 200;
const RECHECK_MIN_MS = 25;
const RECHECK_MAX_MS = 1000;
/** What a client's EventSource waits before reconnecting. */
const RECONNECT_MS = 2000;
/** At shutdown, how long a client may take to read the end of its stream. */
const HANG_UP_AFTER_MS = 1000;

type Position = readonly [tx: bigint, id: bigint];
const positionOf = (c: EventCursor | EventRow): Position =>
  'txId' in c ? [BigInt(c.txId), BigInt(c.id)] : [BigInt(c.tx_id), BigInt(c.id)];
const after = (a: Position, b: Position) => a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);

export class EventStreams {
  private readonly byClient = new Map<string, Set<EventStream>>();
  private closed = false;

  constructor(
    private readonly db: Knex,
    private readonly log: Logger,
    private readonly opts: { heartbeatMs: number; maxPerClient: number },
  ) {}

  /** Streams open now. */
  get size(): number {
    let n = 0;
    for (const streams of this.byClient.values()) n += streams.size;
    return n;
  }

  /**
   * Where a stream starts: right after event `afterId` (one of the client's, still kept), or
   * from now. Throws EventExpiredError for an id that is not in the client's log.
   */
  async startingPoint(clientId: string, afterId: string | undefined): Promise<EventCursor> {
    if (afterId === undefined) return logPosition(this.db);
    const cursor = await eventCursor(this.db, afterId, clientId);
    if (!cursor) throw new EventExpiredError(afterId);
    return cursor;
  }

  /**
   * Throws StreamLimitError when the client holds as many streams as it may. Call it right
   * before `open`, with no await between the two, so that concurrent requests cannot all pass.
   */
  makeRoom(clientId: string): void {
    const { maxPerClient } = this.opts;
    if ((this.byClient.get(clientId)?.size ?? 0) >= maxPerClient) {
      throw new StreamLimitError(maxPerClient);
    }
  }

  /**
   * Streams the filtered events after `from` into `out` until it closes or the service stops;
   * `hangUp` drops the connection of a client that does not read what is left at shutdown.
   */
  open(filter: StreamFilter, from: EventCursor, out: Writable, hangUp: () => void): void {
    if (this.closed) {
      out.end();
      return;
    }
    const stream = new EventStream(
      this.db,
      this.log,
      this.opts.heartbeatMs,
      filter,
      from,
      out,
      hangUp,
    );
    let streams = this.byClient.get(filter.clientId);
    if (!streams) this.byClient.set(filter.clientId, (streams = new Set()));
    streams.add(stream);
    void stream.pump().finally(() => {
      streams.delete(stream);
      if (streams.size === 0 && this.byClient.get(filter.clientId) === streams) {
        this.byClient.delete(filter.clientId);
      }
    });
  }

  /** Events committed (from the event feed): wake the streams of their clients. */
  heard(events: readonly EventRow[]): void {
    for (const event of events) {
      for (const stream of this.byClient.get(event.client_id) ?? []) stream.heard(event);
    }
  }

  /** After a LISTEN reconnect: notifications may be lost, every stream looks again. */
  caughtUp(): void {
    for (const streams of this.byClient.values()) for (const s of streams) s.lookAgain();
  }

  /** Ends every stream (shutdown), so that closing the server does not wait for them. */
  close(): void {
    this.closed = true;
    for (const streams of this.byClient.values()) {
      for (const s of streams) s.stop(HANG_UP_AFTER_MS);
    }
  }
}

class EventStream {
  /** The furthest log position of an event the feed reported for this stream. */
  private heardUpTo: Position = [0n, 0n];
  private endSleep: (() => void) | undefined;
  private endDrain: (() => void) | undefined;
  private woken = false;
  private stopped = false;
  /**
   * Ask the database whether events after the cursor are left unread (held back, or readable by
   * now): at the start (events committed before the stream opened were never heard of) and
   * after a LISTEN reconnect, until none are.
   */
  private recheck = true;
  private cursor: Position;

  constructor(
    private readonly db: Knex,
    private readonly log: Logger,
    private readonly heartbeatMs: number,
    private readonly filter: StreamFilter,
    private from: EventCursor,
    private readonly out: Writable,
    private readonly hangUp: () => void,
  ) {
    this.cursor = positionOf(from);
    out.on('close', () => this.stop());
    out.on('error', () => this.stop());
  }

  heard(event: EventRow): void {
    const { types, batchId } = this.filter;
    if (types && !types.includes(event.type)) return;
    if (batchId && event.batch_id !== batchId) return;
    const position = positionOf(event);
    if (!after(position, this.cursor)) return; // written already
    if (after(position, this.heardUpTo)) this.heardUpTo = position;
    this.wake();
  }

  wake(): void {
    this.woken = true;
    this.endSleep?.();
  }

  lookAgain(): void {
    this.recheck = true;
    this.wake();
  }

  /** Ends the stream; with `hangUpAfterMs`, drops the connection if the end is not read by then. */
  stop(hangUpAfterMs?: number): void {
    if (this.stopped) return;
    this.stopped = true;
    this.endSleep?.();
    this.endDrain?.();
    if (this.out.writableEnded) return;
    this.out.end();
    if (hangUpAfterMs !== undefined) {
      const timer = setTimeout(() => this.hangUp(), hangUpAfterMs);
      timer.unref();
      this.out.once('close', () => clearTimeout(timer));
    }
  }

  async pump(): Promise<void> {
    let recheckMs = RECHECK_MIN_MS;
    let lastWrite = Date.now();
    try {
      this.write(`retry: ${RECONNECT_MS}\n: connected\n\n`);
      while (!this.stopped) {
        this.woken = false;
        const events = await readEvents(this.db, {
          after: this.from,
          limit: PAGE,
          clientId: this.filter.clientId,
          types: this.filter.types,
          batchId: this.filter.batchId,
        });
        if (events.length > 0) {
          await this.send(events);
          lastWrite = Date.now();
          if (events.length === PAGE) continue;
        }
        // Something is still unread (held back): look again soon; otherwise sleep until woken.
        // (Every event before the cursor has been written: the cursor read never skips.)
        let unread = after(this.heardUpTo, this.cursor);
        if (!unread && this.recheck) {
          unread = await eventsAfter(this.db, { after: this.from, ...this.filter });
          this.recheck = unread;
        }
        recheckMs = unread ? Math.min(RECHECK_MAX_MS, recheckMs * 2) : RECHECK_MIN_MS;
        const quiet = this.heartbeatMs - (Date.now() - lastWrite);
        if (quiet <= 0) {
          this.write(': heartbeat\n\n');
          lastWrite = Date.now();
          continue;
        }
        await this.sleep(unread ? Math.min(recheckMs, quiet) : quiet);
      }
    } catch (err) {
      // The client reconnects with Last-Event-ID and misses nothing.
      if (!this.stopped) this.log.warn({ err: coerceError(err) }, 'event stream failed; ending it');
    } finally {
      this.stop();
    }
  }

  private async send(events: readonly EventRow[]) {
    const messages = await messagesOf(this.db, events);
    let text = '';
    for (const event of events) {
      text += `id: ${event.id}\nevent: ${event.type}\ndata: ${messages.get(event.id) ?? 'null'}\n\n`;
    }
    const last = events.at(-1);
    if (last) {
      this.from = { txId: last.tx_id, id: last.id };
      this.cursor = positionOf(last);
    }
    if (!this.write(text)) await this.drained();
  }

  private write(text: string): boolean {
    if (this.stopped || this.out.writableEnded) return true;
    return this.out.write(text);
  }

  /** Resolves when the client has taken what was written, or the stream stops. */
  private drained(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.out.off('drain', done);
        this.endDrain = undefined;
        resolve();
      };
      this.out.once('drain', done);
      this.endDrain = done;
    });
  }

  /** Resolves after `ms`, when woken, or when stopped. */
  private sleep(ms: number): Promise<void> {
    if (this.woken || this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.endSleep = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.endSleep = done;
    });
  }
}
