/**
 * Reading `GET /events` from Node: the stream parsed with eventsource-parser (a maintained SSE
 * parser, not hand-written), reconnecting with `Last-Event-ID` when the connection drops, so the
 * caller gets every event once, in order, for as long as it keeps reading.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type EventSourceMessage, EventSourceParserStream } from 'eventsource-parser/stream';
import { ApiError } from './client.js';

export interface StreamedEvent {
  /** The event id: pass it as `after` to resume after it. */
  id: string;
  type: string;
  /** `{type, timestamp, data}`: data is the job or batch as GET returns it. */
  message: { type: string; timestamp: string; data: unknown };
}

export interface EventStreamOptions {
  baseUrl: string;
  apiKey?: string;
  /** Start after this event id; without it, from now. */
  after?: string;
  types?: string[];
  batch?: string;
  /** Stops the stream. */
  signal?: AbortSignal;
  /** Called before reconnecting after a dropped connection. */
  onReconnect?: (info: { after: string | undefined; delayMs: number; reason: string }) => void;
  /** Failed connection attempts in a row before giving up. @defaultValue 8 */
  maxRetries?: number;
  fetch?: typeof fetch;
}

/** Every event of the caller (filtered) from `after` on, until `signal` aborts. */
export async function* streamEvents(opts: EventStreamOptions): AsyncGenerator<StreamedEvent> {
  const base = opts.baseUrl.replace(/\/+$/, '');
  const doFetch = opts.fetch ?? globalThis.fetch;
  let after = opts.after;
  let retryMs = 2000;
  let failures = 0;
  while (!opts.signal?.aborted) {
    const query = new URLSearchParams();
    if (opts.types?.length) query.set('types', opts.types.join(','));
    if (opts.batch) query.set('batch', opts.batch);
    let reason: string;
    try {
      const res = await doFetch(`${base}/events${query.size ? `?${query.toString()}` : ''}`, {
        headers: {
          accept: 'text/event-stream',
          ...(opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {}),
          ...(after ? { 'last-event-id': after } : {}),
        },
        signal: opts.signal,
      });
      if (!res.ok || !res.body) {
        const problem = await res.json().catch(() => undefined);
        throw new ApiError(res.status, problem as ConstructorParameters<typeof ApiError>[1]);
      }
      failures = 0;
      const messages = res.body
        .pipeThrough(new TextDecoderStream())
        .pipeThrough(
          new EventSourceParserStream({ onRetry: (ms) => (retryMs = Math.min(ms, 60_000)) }),
        );
      for await (const m of messages as AsyncIterable<EventSourceMessage>) {
        if (m.id === undefined || m.event === undefined) continue;
        after = m.id;
        yield { id: m.id, type: m.event, message: JSON.parse(m.data) as StreamedEvent['message'] };
      }
      reason = 'the server ended the stream';
    } catch (err) {
      if (opts.signal?.aborted) return;
      if (err instanceof ApiError && err.status < 500 && err.status !== 429) throw err;
      reason = err instanceof Error ? err.message : String(err);
    }
    if (++failures > (opts.maxRetries ?? 8)) throw new Error(`event stream lost: ${reason}`);
    const delayMs = retryMs * Math.min(failures, 5);
    opts.onReconnect?.({ after, delayMs, reason });
    await sleep(delayMs, undefined, { signal: opts.signal }).catch(() => undefined);
  }
}
