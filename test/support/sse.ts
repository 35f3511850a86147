/**
 * Reading `GET /events` as a client does: over a real socket, parsed with eventsource-parser
 * (not by hand), collecting messages and comments as they arrive.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type EventSourceMessage, EventSourceParserStream } from 'eventsource-parser/stream';
import type { Harness } from './harness.js';

/** The harness's app on a loopback port (streams need a real socket). */
export async function serve(h: Harness): Promise<{ base: string; close(): Promise<void> }> {
  const handle = h.app.callback();
  const server = http.createServer((req, res) => void handle(req, res));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

export interface OpenStream {
  status: number;
  headers: Headers;
  /** The body of an error answer. */
  problem: unknown;
  messages: EventSourceMessage[];
  comments: string[];
  /** Resolves when the server ends the stream (or it is closed). */
  ended: Promise<void>;
  close(): void;
}

export async function openEvents(
  base: string,
  apiKey: string,
  opts: { query?: string; lastEventId?: string } = {},
): Promise<OpenStream> {
  const abort = new AbortController();
  const res = await fetch(`${base}/events${opts.query ?? ''}`, {
    headers: {
      authorization: `Bearer ${apiKey}`,
      ...(opts.lastEventId !== undefined && { 'last-event-id': opts.lastEventId }),
    },
    signal: abort.signal,
  });
  const stream: OpenStream = {
    status: res.status,
    headers: res.headers,
    problem: undefined,
    messages: [],
    comments: [],
    ended: Promise.resolve(),
    close: () => abort.abort(),
  };
  if (!res.ok || !res.body) {
    stream.problem = await res.json();
    return stream;
  }
  const parsed = res.body
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream({ onComment: (c) => stream.comments.push(c) }));
  stream.ended = (async () => {
    try {
      for await (const message of parsed) stream.messages.push(message);
    } catch {
      // closed by us
    }
  })();
  return stream;
}
