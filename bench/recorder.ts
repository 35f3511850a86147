/**
 * A remote heuristic for the pick-up phase (`HEURISTIC=http`): it answers at once, in the
 * original service's format, and notes when each call arrives, by the transaction's description.
 * The time from a submit's sending to its call's arrival is the pick-up as a client and the
 * heuristic see it, with the service's HTTP request, its insert's commit and its call to the
 * heuristic in it; the peers' pick-up likewise runs from the enqueue call to the handler's start.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { now } from './harness.js';

export interface Recorder {
  /** The endpoint to give the service as HEURISTIC_URL. */
  url: string;
  /**
   * When the call for `description` arrived (now, or once it does); rejects, naming it, when no
   * call has come within `timeoutMs`.
   */
  arrival(description: string, timeoutMs?: number): Promise<number>;
  close(): Promise<void>;
}

/** The transaction's description in a call's body; undefined when it is not JSON. */
function descriptionOf(body: Buffer): string | undefined {
  try {
    return String((JSON.parse(body.toString('utf8')) as { description?: unknown }).description);
  } catch {
    return undefined;
  }
}

export async function startRecorder(): Promise<Recorder> {
  const arrived = new Map<string, number>();
  const waiting = new Map<string, (at: number) => void>();
  const server = http.createServer((req, res) => {
    const at = now();
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const description = descriptionOf(Buffer.concat(chunks));
      if (description === undefined) {
        res.writeHead(400).end();
        return;
      }
      const waiter = waiting.get(description);
      if (waiter) {
        waiting.delete(description);
        waiter(at);
      } else arrived.set(description, at);
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ merchant: { name: 'Bench' } }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/normalize_merchant`,
    arrival(description, timeoutMs = 30_000) {
      const at = arrived.get(description);
      if (at !== undefined) {
        arrived.delete(description);
        return Promise.resolve(at);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(description);
          reject(new Error(`no heuristic call for "${description}" within ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(description, (arrivedAt) => {
          clearTimeout(timer);
          resolve(arrivedAt);
        });
      });
    },
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
